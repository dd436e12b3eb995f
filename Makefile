# Fit-AD: every target creates/refreshes .venv as needed and is safe to run twice.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(EXTRAS)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export PIP_PROGRESS_BAR := off

.PHONY: setup system-deps demo test test-all test-gpu bench serve image clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -U "pip>=24"

# torch first, pinned to the CPU wheel that lies on local disk; the project's range admits it,
# so the project install that follows does not fetch another torch build.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[$(EXTRAS)]"
	touch $@

setup: $(STAMP)  ## create .venv and install the project with the dev extras

# Debian packages some tests use: PostgreSQL (an MLflow server on a real PostgreSQL backend), Chromium (the web
# page driven in a real headless browser), kubectl (Debian's kubernetes-client: tests/k8s renders the k8s/
# overlays with `kubectl kustomize` too, when its kustomize is v4 or newer) and OFL fonts in other styles
# (fonts-nanum, fonts-nanum-extra, fonts-comic-neue: serif, brush and hand-lettered panels of fitad.synth_styles).
# Installed only when running as root with
# apt-get, and said so; elsewhere, or if the install fails, those tests skip and say why.
system-deps:  ## install the Debian packages the tests use (root + apt only): postgresql, chromium, kubectl, fonts
	@missing=""; \
	{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="postgresql"; \
	{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } || missing="$$missing chromium"; \
	command -v kubectl >/dev/null 2>&1 || missing="$$missing kubernetes-client"; \
	[ -f /usr/share/fonts/truetype/nanum/NanumMyeongjo.ttf ] || missing="$$missing fonts-nanum"; \
	[ -f /usr/share/fonts/truetype/nanum/NanumPen.ttf ] || missing="$$missing fonts-nanum-extra"; \
	[ -f /usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf ] || missing="$$missing fonts-comic-neue"; \
	if [ -z "$${missing# }" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  export DEBIAN_FRONTEND=noninteractive; updated=""; \
	  for pkg in $$missing; do \
	    echo "make: installing Debian package: $$pkg"; \
	    apt-get install -y -q --no-install-recommends $$pkg >/dev/null 2>&1 || \
	    { [ -z "$$updated" ] && updated=1 && apt-get update -q >/dev/null 2>&1 && \
	      apt-get install -y -q --no-install-recommends $$pkg >/dev/null 2>&1; } || \
	    echo "make: could not install $$pkg; the tests that need it will skip"; \
	  done; \
	else echo "make: not installing$$missing (needs root and apt-get); the tests that need it will skip"; fi

demo: setup  ## run the main job on the embedded defaults (offline, CPU)
	$(VENV)/bin/fitad demo

test: setup system-deps  ## run the test suite (offline; slow and GPU tests skipped)
	@$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

test-all: setup system-deps  ## include slow tests
	$(PY) -m pytest -q -m "not gpu"

test-gpu: setup  ## run only the CUDA tests (pytest -m gpu; they skip without a GPU)
	@$(PY) -m pytest -q -m gpu; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no gpu tests"; exit 0; fi; exit $$rc

serve: setup  ## start the ad service on 127.0.0.1:3000 (embedded defaults)
	$(VENV)/bin/fitad serve

bench: setup  ## run the benchmarks (print JSON)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The container image (Dockerfile): one image for the Kubeflow steps, the MLflow server and the ad service (k8s/).
# Tagged with the package version (src/fitad/__init__.py); the CUDA variant gets a -cuda suffix.
IMAGE ?= ghcr.io/fit-ad/fitad
VARIANT ?= cpu
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/fitad/__init__.py)
IMAGE_TAG := $(VERSION)$(if $(filter cuda,$(VARIANT)),-cuda)

image:  ## build the container image (VARIANT=cpu|cuda)
	@case "$(VARIANT)" in cpu|cuda) ;; *) echo "make image: VARIANT must be cpu or cuda, not '$(VARIANT)'"; exit 1;; esac; \
	if ! command -v docker >/dev/null 2>&1; then \
	  echo "make image: docker is not installed; install Docker to build $(IMAGE):$(IMAGE_TAG)"; exit 1; fi; \
	if ! timeout 30 docker info >/dev/null 2>&1; then \
	  echo "make image: the Docker daemon is not reachable (docker info failed); start it or set DOCKER_HOST, then run make image again"; \
	  exit 1; fi; \
	echo "make image: building $(IMAGE):$(IMAGE_TAG) (VARIANT=$(VARIANT))"; \
	DOCKER_BUILDKIT=1 docker build --build-arg VARIANT=$(VARIANT) --build-arg VERSION=$(VERSION) \
	  -t $(IMAGE):$(IMAGE_TAG) .

clean:  ## remove the venv and generated outputs
	rm -rf $(VENV) .fitad outputs
