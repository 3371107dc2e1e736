"""Re-evaluate a checkpoint: `python eval.py ckpt_path=outputs/<date>/<time>/checkpoints/epoch_02.ckpt`."""

from ftcompare.cli import hydra_entry
from ftcompare.evaluation import evaluate

main = hydra_entry("eval", evaluate)

if __name__ == "__main__":
    main()
