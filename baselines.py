"""Classical baselines on the same split as training: `python baselines.py [overrides]`."""

from ftcompare.baselines import run
from ftcompare.cli import hydra_entry

main = hydra_entry("baselines", run)

if __name__ == "__main__":
    main()
