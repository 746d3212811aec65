# Everything from a fresh clone: `make train` (the main job) and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    ?= $(if $(VAEKIT_DATA),$(VAEKIT_DATA),$(wildcard ../shared/data))
RUN     ?= runs/mnist
ARGS    ?=

# Absolute: the notebook and wheel tests run vaekit from other directories.
export VAEKIT_DATA := $(abspath $(DATA))

.PHONY: install test lint docs dist train figures explore results-nll results-nll-hvae results-nll-iaf results-nll-vamp-iaf results-grids bench bench-ttq bench-scaling bench-roofline bench-loop bench-gpu bench-encode bench-ood bench-metrics explorer-bench clean

install: $(STAMP)

# Reinstall when the project's metadata or the pins change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory docs

# The documentation site (mkdocs.yml, docs/) into site/, warnings as errors: a broken link, a
# missing page, a docstring mkdocstrings cannot read or a results record the hook cannot render
# fails the build. Offline and a few seconds: the hook reads the parser and benchmarks/results/.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The wheel and the sdist in dist/, checked by twine (tests/test_wheel.py also installs the wheel
# into a fresh environment and trains from it). pip install dist/vaekit-*.whl installs it.
dist: install
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

# Train the default model (preset mnist) on MNIST, then draw the seed's pictures from it.
# Continues an interrupted run in $(RUN) instead of starting over.
train: install
	if [ -f $(RUN)/last.pt ]; then \
	  $(BIN)/vaekit train --resume $(RUN) $(ARGS); \
	else \
	  $(BIN)/vaekit train --preset mnist --out $(RUN) $(ARGS); \
	fi
	$(MAKE) --no-print-directory figures RUN=$(RUN)

figures: install
	$(BIN)/vaekit sample $(RUN) --n 64
	$(BIN)/vaekit reconstruct $(RUN) --n 64
	$(BIN)/vaekit traverse $(RUN)
	$(BIN)/vaekit interpolate $(RUN) --a 0 --b 1 --steps 10
	$(BIN)/vaekit evaluate $(RUN) --out $(RUN)/eval.json

# The latent explorer on the run: a local web page (http://127.0.0.1:8000/).
explore: install
	$(BIN)/vaekit explore $(RUN) $(ARGS)

# Speed benchmarks (not tests; run them alone): vaekit against the seed's pipeline (A B A B ...),
# time to the seed's 20-epoch test loss, and throughput against batch and image size.
bench: install
	$(BIN)/python benchmarks/speed.py pairs $(ARGS)
bench-ttq: install
	$(BIN)/python benchmarks/speed.py ttq $(ARGS)
bench-scaling: install
	$(BIN)/python benchmarks/speed.py scaling $(ARGS)
# Each preset's training step against the machine's measured matrix-multiply peak (1 thread and
# all cores), and where its time goes (torch.profiler): benchmarks/results/roofline-cpu.json.
bench-roofline: install
	$(BIN)/python benchmarks/roofline.py --profile $(ARGS)

# `vaekit train` itself (a fresh process, an epoch as a 2-epoch run minus a 1-epoch run)
# against the same peak: benchmarks/results/loop-{CPU model}-cpu.json.
bench-loop: install
	$(BIN)/python benchmarks/loop.py $(ARGS)

# A lent GPU's record (benchmarks/gpu.py; offline, under 8 minutes): the python3 there holds
# PyTorch with CUDA, so no venv is made. benchmarks/README.md gives the device command.
bench-gpu:
	PYTHONPATH=$(CURDIR) $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PY)) benchmarks/gpu.py $(ARGS)

# `vaekit encode` of MNIST's 60,000 training images per precision, as a user runs it (RUN: a
# trained run): benchmarks/results/encode-cpu.json.
bench-encode: install
	$(BIN)/python benchmarks/encode.py $(RUN) --out benchmarks/results/encode-cpu.json $(ARGS)

# Out-of-distribution detection: Fashion-MNIST and MNIST models scored on each other, KMNIST,
# noise and constant images (AUROC / FPR@95 of each score).
bench-ood: install
	$(BIN)/python benchmarks/ood.py --out runs/ood $(ARGS)

# Sample quality: FID, KID, precision/recall in MNIST's own classifier's features, of the MNIST
# runs in RUNS (RUN_DIR[=LABEL] ...) at T = 1.0 and 0.7, and the test set against the training set.
RUNS ?= $(RUN)
bench-metrics: install
	$(BIN)/python benchmarks/metrics.py $(RUNS) $(ARGS)

# Decode latency of the explorer on the run, and the README's screenshots of it (desktop, phone).
explorer-bench: install
	$(BIN)/python benchmarks/explorer.py $(RUN) --screenshot docs/explorer.png \
	  --phone-screenshot docs/explorer-phone.png --out benchmarks/results/explorer.json $(ARGS)

# Benchmark (not a test): train mnist-nll, evaluate with K=5000 on the full test set; wants a GPU.
results-nll: install
	$(BIN)/python benchmarks/results_nll.py --out runs/results-nll $(ARGS)

# The same protocol for the hierarchical VAE (K=1000; ~8 h of CPU training, in sittings).
results-nll-hvae: install
	$(BIN)/python benchmarks/results_nll.py --preset mnist-hvae --iw-samples 1000 \
	  --out runs/results-nll-hvae $(ARGS)

# mnist-nll with an IAF posterior (issue 31's full schedule; K=1000, ~1.5 h of 1-thread CPU
# training and ~1.3 h of bound, in sittings).
results-nll-iaf: install
	$(BIN)/python benchmarks/results_nll.py --preset mnist-iaf --iw-samples 1000 \
	  --out runs/results-nll-iaf $(ARGS)

# Issue 32's recipe (mnist-vamp-iaf, K=1000; ~10 h of 1-thread CPU training, in sittings); the
# final weights ship in weights/ with their check (tests/test_records.py).
results-nll-vamp-iaf: install
	$(BIN)/python benchmarks/results_nll.py --preset mnist-vamp-iaf --iw-samples 1000 \
	  --out runs/results-nll-vamp-iaf --ship weights/mnist-vamp-iaf.safetensors $(ARGS)

# The README's grids of prior samples from the NLL runs in GRID_RUNS (runs/NAME, after make
# NAME): 64 each from the final weights, noise seed 0, temperatures 1.0 and 0.7.
GRID_RUNS ?= results-nll results-nll-hvae results-nll-vamp-iaf
results-grids: install
	for run in $(GRID_RUNS); do for t in 1.0 0.7; do \
	  $(BIN)/vaekit sample runs/$$run --n 64 --seed 0 --temperature $$t \
	    --out docs/grids/$$run-t$$t.png || exit 1; done; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
