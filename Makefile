# atrous: `make demo` (the main job) and `make test` (the suite). Each sets everything up first.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CSRC   := $(shell find csrc -type f \( -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' \))

DEPS_STAMP  := $(VENV)/.atrous-deps
BUILD_STAMP := $(VENV)/.atrous-built

.PHONY: demo test install cross-tools build info clean bench bench-quick bench-models bench-models-quick bench-same-isa \
	experiment notebooks gallery browser

# The main job: what was built, every kernel checked against PyTorch, the quick benchmark, then a
# small DeepLabV3+ trained on CPU (about 3 minutes on 2 cores). Everything lands in $(DEMO_OUT)/.
DEMO_OUT ?= demo-out
demo: install
	$(PY) -m atrous.info
	$(PY) -m atrous demo
	MPLBACKEND=Agg $(PY) -m atrous bench --quick --out $(DEMO_OUT)/bench
	MPLBACKEND=Agg $(PY) -m atrous train --preset demo --out $(DEMO_OUT)
	@echo "demo: pictures and results in $(DEMO_OUT)/: predictions.png, overlays/, erf.png, bench/"

test: install browser cross-tools
	$(PY) -m ruff check atrous tests tutorials
	MPLBACKEND=Agg $(PY) -m pytest

install: $(BUILD_STAMP)

# Headless Chromium for the gallery's browser test, installed like torch when it can be (Debian's
# chromium, as root); without it that one test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
	  echo "make: chromium could not be installed (needs apt-get as root): the gallery browser test will skip"

# Every teaching figure with its caption in one page: $(GALLERY_OUT)/index.html.
GALLERY_OUT ?= gallery-out
gallery: install
	MPLBACKEND=Agg $(PY) -m atrous gallery --out $(GALLERY_OUT)

# The ARM64 cross compiler and qemu-user for tests/extension/test_arm64_driver.py, installed when
# this is a Debian/Ubuntu machine and we are root; otherwise that test skips and says why.
cross-tools:
	@command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++-aarch64-linux-gnu qemu-user; } || \
	  echo "cross-tools: g++-aarch64-linux-gnu / qemu-user not installed; the ARM64 test will skip"

# The virtual environment with torch and the build tools (torch must be present before the
# extension builds, hence --no-build-isolation below). torchvision and timm come in the same pip
# call as torch, so they match it; the package's extras never bring another torch.
$(DEPS_STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch torchvision timm numpy ninja "setuptools>=64" wheel
	touch $@

# Installs the package as README "Install" says (pip, pyproject.toml, --no-build-isolation against
# the venv's torch), editable for kernel work; compiles the extension, then prints what was built.
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

# Both tables again with atrous and PyTorch held to AVX2 (an AVX2 laptop), in their own README blocks.
bench-same-isa: install
	$(PY) -m atrous bench --same-isa avx2 --update-readme README.md
	$(PY) -m atrous bench --models --same-isa avx2 --update-readme README.md

# The three designs of "When does atrous convolution help?" (README): reach (5 seeds), transfer
# (3 seeds), legacy (3 seeds); each rewrites its README table. Figures and JSON in experiment-out/.
experiment: install
	MPLBACKEND=Agg $(PY) -m atrous experiment --design reach --workers 2 --no-progress --out experiment-out --update-readme README.md
	MPLBACKEND=Agg $(PY) -m atrous experiment --design transfer --workers 2 --no-progress --out experiment-out --update-readme README.md
	MPLBACKEND=Agg $(PY) -m atrous experiment --design legacy --seeds 0,1,2 --no-progress --out experiment-out/legacy \
		--update-readme README.md

# Jupyter from the project's environment, on the tutorials folder (the `tutorials` extra of setup.py:
# JupyterLab and ipywidgets, whose sliders drive the interactive pictures).
notebooks: install
	$(PIP) install --quiet jupyterlab ipywidgets
	cd tutorials && ../$(PY) -m jupyter lab

clean:
	rm -rf build *.egg-info atrous/_C*.so atrous/_build_config.json
