#!/usr/bin/env bash
# Run here, before scripts/gpu_check.sh goes to a GPU machine: the wheels its image lacks (or holds too old, such
# as transformers below 5.24), for its Python 3.12, into .whl/ (ignored by git; the device tool carries it).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
pick() { grep -iE "^($1)==" requirements.lock; }
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \
  $(pick 'transformers|tokenizers|huggingface-hub|datasets|flask|waitress|blinker|itsdangerous|werkzeug|gguf|dill|multiprocess|prometheus-client') \
  $(grep -E '^[a-z0-9-]+==' weights.lock)
ls .whl
