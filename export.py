"""Export a checkpoint as a Hugging Face folder: `python export.py ckpt_path=... [merge=false]`."""

from ftcompare.cli import hydra_entry
from ftcompare.export import export

main = hydra_entry("export", export)

if __name__ == "__main__":
    main()
