"""textsvc: train, evaluate, document and serve text classifiers and generators.

Importing the package stays cheap (no torch). textsvc's own architectures are registered with the
transformers Auto classes the moment transformers' Auto model module is imported, so that after
`import textsvc`, `AutoModelForSequenceClassification.from_pretrained(model_dir)` loads any textsvc model.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_AUTO_MODULE = "transformers.models.auto.modeling_auto"


class _RegisterWhenAutoImported(importlib.abc.MetaPathFinder):
    """Runs `register_auto_classes` right after transformers' Auto model module is first executed.

    Registering eagerly would import torch and transformers' modelling code (~5 s) on `import textsvc`.
    """

    def find_spec(self, fullname, path, target=None):
        if fullname != _AUTO_MODULE:
            return None
        sys.meta_path.remove(self)  # let the normal finders locate the module
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_then_register(module):
            execute(module)
            from textsvc.models import register_auto_classes

            register_auto_classes()

        spec.loader.exec_module = exec_then_register
        return spec


def _install_registration_hook() -> None:
    if _AUTO_MODULE in sys.modules:
        from textsvc.models import register_auto_classes

        register_auto_classes()
    elif not any(isinstance(finder, _RegisterWhenAutoImported) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterWhenAutoImported())


_install_registration_hook()
