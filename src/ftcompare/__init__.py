"""Compare fine-tuning strategies (full, frozen, LoRA, gradual) of pretrained transformers."""

__version__ = "0.1.0"
