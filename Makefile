# Set-up and entry points. `make demo` and `make test` do everything on a fresh machine:
# a virtual environment in .venv, the CPU torch wheel first (so nothing pulls a CUDA
# build), then neuronscope with its extras, Debian's Chromium for browser tests, and
# the offline photo set.
#
# Which torch: TORCH_SPEC (default torch==2.13.0) from TORCH_INDEX (default PyTorch's CPU
# wheel index). Left at its default, a wheel already on local disk (pip's configured
# find-links) is used first, offline; otherwise the CPU index. Set it to choose, e.g.
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cu126   # a CUDA 12.6 build
#   make install TORCH_INDEX=                                         # whatever pip's own index gives
# torch's dependencies then come from pip's ordinary index; the installed torch satisfies
# TORCH_SPEC, so no later step replaces it.

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
STAMP := $(VENV)/.neuronscope-installed
PHOTOS ?= $(HOME)/.cache/neuronscope/photos
export NEURONSCOPE_PHOTOS := $(PHOTOS)
# idle OpenMP threads sleep instead of spinning: on a shared or busy machine, spinning made
# 2-thread runs 4-13x slower than 1-thread ones (docs/render-speed.md); must be set before torch loads
export OMP_WAIT_POLICY ?= PASSIVE
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# the optional ONNX importer: onnx2torch declares torchvision (for two detection ops only), which
# would replace the CPU torch with a CUDA build, so it is installed without dependencies
ONNX2TORCH ?= onnx2torch==1.5.15

.PHONY: install torch torchvision demo test photos browser bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(MAKE) --no-print-directory torch
	$(PIP) install -e '.[judges,photos,serve,ray,biggan,onnx,test]'
	$(PIP) install --no-deps '$(ONNX2TORCH)'
	touch $@

install: $(STAMP)

# torch alone, as described at the top (also: `make torch TORCH_INDEX=...` to switch builds)
torch:
	test -x $(PY) || python3 -m venv $(VENV)
ifeq ($(origin TORCH_INDEX),file)
	$(PIP) install --no-index --no-deps '$(TORCH_SPEC)' 2>/dev/null \
	  || $(PIP) install --no-deps --index-url '$(TORCH_INDEX)' '$(TORCH_SPEC)'
else
	$(PIP) install --no-deps $(if $(TORCH_INDEX),--index-url '$(TORCH_INDEX)') '$(TORCH_SPEC)'
endif
	$(PIP) install '$(TORCH_SPEC)'

# optional: torchvision (for torchvision:NAME and timm:NAME models) built for the same torch
# and from the same index; PyPI's torchvision 0.28.0 is a CUDA build whose operators fail to
# load beside a CPU torch ("operator torchvision::nms does not exist"). The release is the one
# made with the installed torch (torchvision 0.X with torch 2.(X-15): 0.28 with 2.13)
TORCHVISION_SPEC ?= $(shell $(PY) -c "import torch; m = int(torch.__version__.split('.')[1]); print(f'torchvision==0.{m + 15}.*')" 2>/dev/null || echo torchvision==0.28.0)
torchvision: $(STAMP)
	$(PIP) install --no-deps $(if $(TORCH_INDEX),--index-url '$(TORCH_INDEX)') '$(TORCHVISION_SPEC)'

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
