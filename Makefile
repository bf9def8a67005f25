# Every target builds the environments it needs, so a fresh machine needs only Python 3.13 and
# Python 3.11 (found by scripts/find_python.sh: PATH, /usr/bin, /usr/local/bin or pyenv; or set
# PYTHON313= / PYTHON311=), make and network access to PyPI.
#   .venv-blender  Python 3.13, bpy 5.3.0: the current Blender (5.1-5.3) as a module
#   .venv          Python 3.11, torch + bpy 5.0.1: the model side, and Blender 4.2-5.0 for the
#                  compatibility run of the Blender-layer tests
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BVENV ?= .venv-blender
BPY := $(BVENV)/bin/python
TVENV ?= .venv-typecheck
OUT ?= out/demo
PYTEST_ARGS ?=

.PHONY: help venv test test-fast test-current test-model demo build validate wheels typecheck bench clean

help:
	@echo "make demo       generate -> train -> evaluate -> predict on a small default (OUT=$(OUT))"
	@echo "make test       the whole suite: Blender 5.3 (Python 3.13), then the model side and Blender 5.0 (Python 3.11)"
	@echo "make test-fast  the same, skipping tests marked slow"
	@echo "make test-current / test-model   one of the two runs of make test"
	@echo "make build      build the Blender extension zip into dist/"
	@echo "make typecheck  mypy over the Blender layer against fake-bpy-module-5-0"
	@echo "make bench      run the benchmarks in benchmarks/"

$(VENV)/.stamp: requirements/py311.txt scripts/find_python.sh
	@py=$$(scripts/find_python.sh 3.11) || exit 2; echo "$(VENV): $$py"; $$py -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/py311.txt
	touch $@

$(BVENV)/.stamp: requirements/py313.txt scripts/find_python.sh
	@py=$$(scripts/find_python.sh 3.13) || exit 2; echo "$(BVENV): $$py"; $$py -m venv $(BVENV)
	$(BPY) -m pip install --quiet --disable-pip-version-check -r requirements/py313.txt
	touch $@

venv: $(VENV)/.stamp $(BVENV)/.stamp

# The extension tests install the built zip, so the bundled wheels are fetched first.
test: venv wheels
	bash scripts/run_tests.sh $(BPY) $(PY) $(PYTEST_ARGS)

test-fast: venv wheels
	bash scripts/run_tests.sh --mark "not slow" $(BPY) $(PY) $(PYTEST_ARGS)

# One half of `make test` each (e.g. while working on one side).
test-current: venv wheels
	bash scripts/run_tests.sh --only current $(BPY) $(PY) $(PYTEST_ARGS)

test-model: venv wheels
	bash scripts/run_tests.sh --only model $(BPY) $(PY) $(PYTEST_ARGS)

# The Blender side (generate, predict view) on Blender 5.3's Python; train/evaluate on the torch Python.
demo: venv
	$(BPY) scripts/demo.py --out $(OUT) --torch-python $(PY)

# Bundled third-party wheels (pycocotools, opencv) for the extension zip and for a Blender
# binary's own Python (scripts/deps.py); skipped when the manifest's list is already present.
wheels: venv
	$(PY) scripts/build_extension.py wheels

# wheels -> stage build/extension -> Blender's own `blender_ext.py build` -> validate folder and zip.
build: venv
	$(PY) scripts/build_extension.py build --out dist

validate: venv
	$(PY) scripts/build_extension.py validate

$(TVENV)/.stamp: requirements/typecheck.txt scripts/find_python.sh
	@py=$$(scripts/find_python.sh 3.11) || exit 2; $$py -m venv $(TVENV)
	$(TVENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/typecheck.txt
	touch $@

typecheck: $(TVENV)/.stamp
	$(TVENV)/bin/mypy --config-file pyproject.toml blender_instseg/blender blender_instseg/core blender_instseg/pipeline blender_instseg/procs blender_instseg/generator \
		scripts/build_extension.py scripts/deps.py

bench: venv
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf build dist .pytest_cache .mypy_cache
