# Set-up, demo and tests. Every target is idempotent and works offline after the first install.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages: the demo speech corpus (real recorded speech), the piano demo (fluidsynth renders
# music21 scores with the FluidR3 General MIDI soundfont), and headless Chromium for the samples-page test.
APT_PACKAGES := klettres-data ktuberling-data fluidsynth fluid-soundfont-gm chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VCTK_CLIPS := ../shared/data/vctk_test_clips/hr
NOW := $(shell date +%Y-%m-%d_%H-%M-%S)
PIANO_DIR := outputs/demo_piano/$(NOW)
MISMATCH_EXPERIMENT ?= demo
MISMATCH_SEEDS ?= 1234,1235
MISMATCH_ARGS ?=
MISMATCH_DIR := outputs/mismatch_$(MISMATCH_EXPERIMENT)/$(NOW)
# `make demo` trains AP-BWE (it met the demo goal, SNR >= 16.5 dB and LSD <= 1.30 on the VCTK
# clips, in both bf16 seeds of 2026-12-05; docs/models.md); DEMO_EXPERIMENT=demo (or `make
# demo-unet`) is the 2017 U-Net
DEMO_EXPERIMENT ?= demo_apbwe

.PHONY: speech-r4-train speech-r4-evaluate speech-r4-export test-capabilities setup apt demo demo-unet demo-apbwe demo-robust demo-piano mismatch-demo mismatch-demo-apbwe models-table bench data-vctk data-piano test lint format

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

# The demo recipe: build the corpus, train EXPERIMENT into RUN_DIR, evaluate its best checkpoint
# (chosen on validation only) on the held-out languages and on the five VCTK clips of ../shared.
define demo_run
	$(PY) -m audio_superres.data.demo_speech
	$(PY) train.py experiment=$(1) test_after_fit=false hydra.run.dir=$(2)
	$(PY) evaluate.py ckpt_path=$(2)/checkpoints/best.ckpt hydra.run.dir=$(2)/eval
	@if [ -d $(VCTK_CLIPS) ]; then \
	  echo "Real-world check on the five VCTK test clips ($(VCTK_CLIPS)):"; \
	  $(PY) evaluate.py ckpt_path=$(2)/checkpoints/best.ckpt data=folder \
	    data.root=$(VCTK_CLIPS) data.test_speakers='*' hydra.run.dir=$(2)/eval_vctk; \
	  echo "Samples page (VCTK clips): $(2)/eval_vctk/report/index.html"; fi
	@echo "Samples page: $(2)/eval/report/index.html"
	@echo "Run directory: $(2)"
endef

demo: setup
	$(call demo_run,$(DEMO_EXPERIMENT),outputs/$(DEMO_EXPERIMENT)/$(NOW))

# The 2017 U-Net (experiment=demo) and AP-BWE (experiment=demo_apbwe), each in the same CPU budget.
demo-unet: setup
	$(call demo_run,demo,outputs/demo/$(NOW))

demo-apbwe: setup
	$(call demo_run,demo_apbwe,outputs/demo_apbwe/$(NOW))

# AP-BWE trained on the degradations of real recordings (lowpass=robust), then the robustness grid
# (conf/degradations/robustness.yaml: 55 conditions) on the held-out languages (48 files) and on the
# five VCTK clips: robustness.csv, summary.md and heatmaps in robustness/ and robustness_vctk/.
ROBUST_DIR := outputs/demo_robust/$(NOW)
demo-robust: setup
	$(PY) -m audio_superres.data.demo_speech
	$(PY) train.py experiment=demo_robust test_after_fit=false hydra.run.dir=$(ROBUST_DIR)
	$(PY) evaluate.py ckpt_path=$(ROBUST_DIR)/checkpoints/best.ckpt degradations=robustness \
	  hydra.run.dir=$(ROBUST_DIR)/robustness
	@if [ -d $(VCTK_CLIPS) ]; then \
	  echo "Robustness grid on the five VCTK test clips ($(VCTK_CLIPS)):"; \
	  $(PY) evaluate.py ckpt_path=$(ROBUST_DIR)/checkpoints/best.ckpt degradations=robustness \
	    data=folder data.root=$(VCTK_CLIPS) data.test_speakers='*' \
	    hydra.run.dir=$(ROBUST_DIR)/robustness_vctk; fi
	@echo "Grid summaries: $(ROBUST_DIR)/robustness/summary.md $(ROBUST_DIR)/robustness_vctk/summary.md"
	@echo "Run directory: $(ROBUST_DIR)"

# Piano demo: keyboard pieces of the music21 corpus rendered offline, trained ~15 min on CPU.
demo-piano: setup
	$(PY) -m audio_superres.data.demo_piano
	$(PY) train.py experiment=demo_piano test_after_fit=false hydra.run.dir=$(PIANO_DIR)
	$(PY) evaluate.py ckpt_path=$(PIANO_DIR)/checkpoints/best.ckpt hydra.run.dir=$(PIANO_DIR)/eval
	@echo "Run directory: $(PIANO_DIR)"

# Filter-mismatch grid (train none/chebyshev/butterworth/random x test all five filters, every seed
# of MISMATCH_SEEDS), ~20 min per seed on 2 CPU cores: summary.md (mean +- std over seeds),
# summary.csv and heatmaps land in the sweep directory. Any model: MISMATCH_EXPERIMENT=demo_apbwe
# (with MISMATCH_ARGS for its step budget: `make mismatch-demo-apbwe`).
mismatch-demo: setup
	$(PY) -m audio_superres.data.demo_speech
	$(PY) train.py -m sweep=filter_mismatch_demo experiment=$(MISMATCH_EXPERIMENT) \
	  seed=$(MISMATCH_SEEDS) hydra.sweep.dir=$(MISMATCH_DIR) $(MISMATCH_ARGS)
	@echo "Sweep directory: $(MISMATCH_DIR) (re-aggregate: $(PY) -m audio_superres.report.sweep $(MISMATCH_DIR))"

# The same grid for AP-BWE (apbwe_small): 500 of its ~0.6 s steps take about the U-Net jobs' 5 minutes.
mismatch-demo-apbwe:
	$(MAKE) mismatch-demo MISMATCH_EXPERIMENT=demo_apbwe \
	  MISMATCH_ARGS="trainer.max_steps=500 trainer.val_check_interval=250"

# Every CPU-size model with the same wall-clock training budget on the demo corpus, next to cubic.
models-table: setup
	$(PY) -m audio_superres.data.demo_speech
	$(PY) -m audio_superres.report.model_table --minutes 5 --out outputs/models_table/$(NOW)

# Every benchmark, one command: one JSON line per figure (README "Performance"). Default: peak,
# model, loader, infer, prepare; also stream, seams, upsample (--ckpt), cache (--corpus-root).
# BENCH_ARGS=--quick for a short run; e.g. BENCH_ARGS="peak model --models audiounet",
# BENCH_ARGS="upsample --ckpt CKPT", BENCH_ARGS="cache --corpus-root data/VCTK".
bench: $(STAMP)
	$(PY) -m audio_superres.bench $(BENCH_ARGS)

# Real corpora (internet): resumable, size- and checksum-verified; rerun to resume.
data-vctk: $(STAMP)
	$(PY) -m audio_superres.data.download vctk --dest data/VCTK

data-piano: $(STAMP)
	$(PY) -m audio_superres.data.download piano --dest data/piano

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests train.py evaluate.py upsample.py

format: $(STAMP)
	$(VENV)/bin/ruff format src tests train.py evaluate.py upsample.py

# One pytest worker per core (pytest-xdist; each worker and the scripts it starts use one torch
# thread, tests/conftest.py); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto
# The bundled model speech-r4 (docs/bundled_models.md), the way it was made: the regression arm
# (about 2 hours on one thread), the adversarial arm from the regression arm's step-8000 weights
# (init_from), each scored on the validation split (the arm is chosen on these only), on the
# held-out languages, on the VCTK clips and on the robustness grid; then
# `make speech-r4-export ARM=regression|adversarial` writes src/audio_superres/weights/. Scored in float32
# (precision=32), so that tests/test_bundled_model.py reproduces the card on any CPU.
# Each training resumes from its last.ckpt when run again after an interruption.
SPEECH_R4_DIR ?= outputs/speech_r4
ARM ?= regression
SPEECH_R4_EXPERIMENT_regression := speech_r4
SPEECH_R4_EXPERIMENT_adversarial := speech_r4_adversarial \
  init_from=$(SPEECH_R4_DIR)/regression/checkpoints/step8000.ckpt
speech-r4-train: setup
	$(PY) -m audio_superres.data.demo_speech
	OMP_NUM_THREADS=1 $(PY) train.py experiment=$(SPEECH_R4_EXPERIMENT_$(ARM)) test_after_fit=false \
	  hydra.run.dir=$(SPEECH_R4_DIR)/$(ARM) ckpt_path=auto

speech-r4-evaluate: setup
	$(eval CKPT := $(SPEECH_R4_DIR)/$(ARM)/checkpoints/best.ckpt)
	$(PY) evaluate.py ckpt_path=$(CKPT) precision=32 split=val lowpass=chebyshev hydra.run.dir=$(SPEECH_R4_DIR)/$(ARM)/eval_val
	$(PY) evaluate.py ckpt_path=$(CKPT) precision=32 split=val degradations=robustness hydra.run.dir=$(SPEECH_R4_DIR)/$(ARM)/robustness_val
	$(PY) evaluate.py ckpt_path=$(CKPT) precision=32 lowpass=chebyshev hydra.run.dir=$(SPEECH_R4_DIR)/$(ARM)/eval
	$(PY) evaluate.py ckpt_path=$(CKPT) precision=32 lowpass=chebyshev data=folder data.root=$(VCTK_CLIPS) \
	  data.test_speakers='*' hydra.run.dir=$(SPEECH_R4_DIR)/$(ARM)/eval_vctk
	$(PY) evaluate.py ckpt_path=$(CKPT) precision=32 degradations=robustness hydra.run.dir=$(SPEECH_R4_DIR)/$(ARM)/robustness
	$(PY) evaluate.py ckpt_path=$(CKPT) precision=32 degradations=robustness data=folder data.root=$(VCTK_CLIPS) \
	  data.test_speakers='*' hydra.run.dir=$(SPEECH_R4_DIR)/$(ARM)/robustness_vctk

speech-r4-export: setup
	$(eval RUN := $(SPEECH_R4_DIR)/$(ARM))
	$(PY) -m audio_superres.cli export $(RUN)/checkpoints/best.ckpt --name speech-r4 \
	  -o src/audio_superres/weights --description "$(SPEECH_R4_DESCRIPTION)" \
	  --eval validation=$(RUN)/eval_val --eval validation_robustness=$(RUN)/robustness_val \
	  --eval heldout_languages=$(RUN)/eval \
	  --eval vctk_clips=$(RUN)/eval_vctk --eval robustness_heldout=$(RUN)/robustness \
	  --eval robustness_vctk=$(RUN)/robustness_vctk
SPEECH_R4_DESCRIPTION ?= speech, 4 kHz -> 16 kHz (r=4): AP-BWE small, trained on the degradations real recordings carry, regression then AP-BWE's adversarial recipe

test: setup lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# The suite under each ATen CPU kernel set this machine has (default = no SIMD, avx2, and the
# native one): a test whose tolerance depends on one CPU's kernels fails here (docs/performance.md).
CAPABILITIES ?= default avx2 native
test-capabilities: setup lint
	@for cap in $(CAPABILITIES); do \
	  echo "== ATEN_CPU_CAPABILITY=$$cap"; \
	  if [ "$$cap" = native ]; then env -u ATEN_CPU_CAPABILITY $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal || exit 1; \
	  else ATEN_CPU_CAPABILITY=$$cap $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal || exit 1; fi; \
	done
