# Set-up, demo and tests. Every target is idempotent and works offline after the first install.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages: the demo speech corpus (real recorded speech), and later the piano demo and browser tests.
APT_PACKAGES := klettres-data ktuberling-data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR := outputs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)

.PHONY: setup apt demo test lint format clean-outputs

setup: $(STAMP) apt

$(STAMP): pyproject.toml
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages: $$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

demo: setup
	$(PY) -m audio_superres.data.demo_speech
	$(PY) train.py experiment=demo hydra.run.dir=$(DEMO_DIR)
	$(PY) evaluate.py ckpt_path=$(DEMO_DIR)/checkpoints/best.ckpt hydra.run.dir=$(DEMO_DIR)/eval
	@echo "Run directory: $(DEMO_DIR)"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests train.py evaluate.py

format: $(STAMP)
	$(VENV)/bin/ruff format src tests train.py evaluate.py

test: setup lint
	$(PY) -m pytest -q
