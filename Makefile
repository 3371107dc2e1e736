PYTHON ?= python3
PIP := $(PYTHON) -m pip
TORCH_VERSION ?= 2.13.0

.PHONY: install run test test-fast bench compare check-fast-defaults report lint format clean tensorboard

install: ## torch first (a bare `torch` requirement would pull CUDA wheels), then the package
	$(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -e ".[dev]"

run: install ## train LoRA on the embedded defaults (IMDb + all-MiniLM-L6-v2) and print test accuracy
	@echo "make run: LoRA, 3 epochs of 4,000 reviews. 15 min on a 2-core CPU with avx512-bf16 (bf16, 2026-11-26); slower on an"
	@echo "AVX2-only CPU (fp32), about a minute on one H200 GPU; after the first steps the run prints its own forecast."
	$(PYTHON) train.py strategy=lora

test: install ## the whole test suite (tiny models; tests marked `slow` train the real embedded model)
	$(PYTHON) -m pytest

test-fast: install ## the test suite without the tests marked `slow`
	$(PYTHON) -m pytest -m "not slow"

bench: install ## training throughput per strategy, ours vs Hugging Face Trainer (~11 min on 2 CPU cores); ARGS="--strategies full" etc.
	$(PYTHON) bench.py $(ARGS)

compare: ## the study: four strategies x seeds 0,1,2 on the defaults; writes the report into the sweep folder
	$(PYTHON) train.py -m experiment=compare

FAST := multirun/fast_defaults
check-fast-defaults: ## the fast defaults' 3-seed accuracy check (LoRA, full; 18 runs: hours on 2 CPU cores, minutes on a GPU)
	FTC_CHEAP_MASKS=1 $(PYTHON) train.py -m strategy=lora,full seed=0,1,2 model.attn_implementation=sdpa model.fast_dropout=false data.group_by_length=false hydra.sweep.dir=$(FAST)/stock $(ARGS)
	FTC_CHEAP_MASKS=1 $(PYTHON) train.py -m strategy=lora,full seed=0,1,2 data.group_by_length=false hydra.sweep.dir=$(FAST)/cheap_masks $(ARGS)
	FTC_CHEAP_MASKS=1 $(PYTHON) train.py -m strategy=lora,full seed=0,1,2 hydra.sweep.dir=$(FAST)/defaults $(ARGS)
	$(PYTHON) report.py $(FAST)/stock $(FAST)/cheap_masks $(FAST)/defaults --out $(FAST)/report

report: ## re-write the report of a sweep: make report SWEEP=multirun/<date>/<time> (default: the newest)
	$(PYTHON) report.py $(SWEEP)

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format:
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

tensorboard:
	tensorboard --logdir .

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache build *.egg-info src/*.egg-info
