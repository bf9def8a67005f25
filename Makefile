# Every target builds the environment it needs, so a fresh machine needs only
# Python 3.11, make and network access to PyPI.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
TVENV ?= .venv-typecheck
OUT ?= out/demo
PYTEST_ARGS ?=

.PHONY: help venv test test-fast demo build validate wheels typecheck bench clean

help:
	@echo "make demo       generate -> train -> evaluate -> predict on a small default (OUT=$(OUT))"
	@echo "make test       run the whole test suite (creates .venv first)"
	@echo "make test-fast  skip tests marked slow"
	@echo "make build      build the Blender extension zip into dist/"
	@echo "make typecheck  mypy over the Blender layer against fake-bpy-module-5-0"
	@echo "make bench      run the benchmarks in benchmarks/"

$(VENV)/.stamp: requirements/runtime.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (bpy 5.0.1 is cp311 only); set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/runtime.txt
	touch $@

venv: $(VENV)/.stamp

test: venv
	bash scripts/run_tests.sh $(PY) $(PYTEST_ARGS)

test-fast: venv
	bash scripts/run_tests.sh $(PY) -m "not slow" $(PYTEST_ARGS)

demo: venv
	$(PY) scripts/demo.py --out $(OUT)

# Bundled third-party wheels (pycocotools, opencv) for the extension zip and for a Blender
# binary's own Python (scripts/deps.py); skipped when the manifest's list is already present.
wheels: venv
	$(PY) scripts/build_extension.py wheels

# wheels -> stage build/extension -> Blender's own `blender_ext.py build` -> validate folder and zip.
build: venv
	$(PY) scripts/build_extension.py build --out dist

validate: venv
	$(PY) scripts/build_extension.py validate

$(TVENV)/.stamp: requirements/typecheck.txt
	$(PYTHON) -m venv $(TVENV)
	$(TVENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/typecheck.txt
	touch $@

typecheck: $(TVENV)/.stamp
	$(TVENV)/bin/mypy --config-file pyproject.toml blender_instseg/blender blender_instseg/core blender_instseg/pipeline \
		scripts/build_extension.py scripts/deps.py

bench: venv
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf build dist .pytest_cache .mypy_cache
