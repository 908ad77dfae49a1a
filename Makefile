# Set-up and entry points. `make demo` and `make test` do everything on a fresh machine:
# a virtual environment in .venv, the CPU torch wheel first (so nothing pulls a CUDA
# build), then neuronscope with its extras, Debian's Chromium for browser tests, and
# the offline photo set.

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
STAMP := $(VENV)/.neuronscope-installed
PHOTOS ?= $(HOME)/.cache/neuronscope/photos
export NEURONSCOPE_PHOTOS := $(PHOTOS)
# idle OpenMP threads sleep instead of spinning: on a shared or busy machine, spinning made
# 2-thread runs 4-13x slower than 1-thread ones (docs/render-speed.md); must be set before torch loads
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo test photos browser bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[judges,photos,serve,ray,biggan,test]'
	touch $@

install: $(STAMP)

photos: $(STAMP)
	$(PY) scripts/build_photoset.py $(PHOTOS)

browser:
	@bash scripts/install_chromium.sh

demo: $(STAMP)
	$(VENV)/bin/neuronscope demo --out demo_out

test: $(STAMP) photos browser
	$(PY) -m pytest -q

bench: $(STAMP) photos
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
