# atrous: `make demo` (the main job) and `make test` (the suite). Each sets everything up first.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CSRC   := $(shell find csrc -type f \( -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' \))

DEPS_STAMP  := $(VENV)/.atrous-deps
BUILD_STAMP := $(VENV)/.atrous-built

.PHONY: demo test install build info clean bench bench-quick bench-models bench-models-quick experiment notebooks

# The main job: what was built, every kernel checked against PyTorch, the quick benchmark, then a
# small DeepLabV3+ trained on CPU (about 3 minutes on 2 cores). Everything lands in $(DEMO_OUT)/.
DEMO_OUT ?= demo-out
demo: install
	$(PY) -m atrous.info
	$(PY) -m atrous demo
	MPLBACKEND=Agg $(PY) -m atrous bench --quick --out $(DEMO_OUT)/bench
	MPLBACKEND=Agg $(PY) -m atrous train --preset demo --out $(DEMO_OUT)
	@echo "demo: pictures and results in $(DEMO_OUT)/: predictions.png, overlays/, erf.png, bench/"

test: install
	$(PY) -m ruff check atrous tests tutorials
	MPLBACKEND=Agg $(PY) -m pytest

install: $(BUILD_STAMP)

# The virtual environment with torch and the build tools (torch must be present before the
# extension builds, hence --no-build-isolation below).
$(DEPS_STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch numpy ninja setuptools wheel
	touch $@

# Installs the package in editable mode, which compiles the extension, then prints what was built.
$(BUILD_STAMP): $(DEPS_STAMP) $(CSRC) setup.py pyproject.toml
	$(PIP) install --quiet --no-build-isolation -e '.[test]'
	$(PY) -m atrous.info
	touch $@

# Incremental rebuild for kernel work (ninja recompiles only what changed).
build: $(DEPS_STAMP)
	$(PY) setup.py build_ext --inplace
	touch $(BUILD_STAMP)

info: install
	$(PY) -m atrous.info

# Times every op against PyTorch and rewrites the README's benchmark table.
bench: install
	$(PY) -m atrous bench --update-readme README.md

bench-quick: install
	$(PY) -m atrous bench --quick

# Whole models, impl="atrous" against impl="torch"; rewrites the README's model table.
bench-models: install
	$(PY) -m atrous bench --models --update-readme README.md

bench-models-quick: install
	$(PY) -m atrous bench --models --quick

# The three designs of "When does atrous convolution help?" (README): reach (5 seeds), transfer
# (3 seeds), legacy (3 seeds); each rewrites its README table. Figures and JSON in experiment-out/.
experiment: install
	MPLBACKEND=Agg $(PY) -m atrous experiment --design reach --workers 2 --no-progress --out experiment-out --update-readme README.md
	MPLBACKEND=Agg $(PY) -m atrous experiment --design transfer --workers 2 --no-progress --out experiment-out --update-readme README.md
	MPLBACKEND=Agg $(PY) -m atrous experiment --design legacy --seeds 0,1,2 --no-progress --out experiment-out/legacy \
		--update-readme README.md

# Jupyter from the project's environment, on the tutorials folder.
notebooks: install
	$(PIP) install --quiet jupyterlab
	cd tutorials && ../$(PY) -m jupyter lab

clean:
	rm -rf build *.egg-info atrous/_C*.so atrous/_build_config.json
