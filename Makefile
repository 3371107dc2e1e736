PYTHON ?= python3
PIP := $(PYTHON) -m pip
TORCH_VERSION ?= 2.13.0

.PHONY: install run test lint format clean tensorboard

install: ## torch first (a bare `torch` requirement would pull CUDA wheels), then the package
	$(PIP) install "torch==$(TORCH_VERSION)"
	$(PIP) install -e ".[dev]"

run: install ## train LoRA on the embedded defaults (IMDb + all-MiniLM-L6-v2) and print test accuracy
	$(PYTHON) train.py strategy=lora

test: install ## the test suite (tiny models; one marked test trains the real embedded model)
	$(PYTHON) -m pytest

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
