"""Frozen configuration dataclasses, one module per concern, over the shared machinery in `common`."""
