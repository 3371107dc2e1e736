"""Peak training memory by category before a run, without weights or training:
`python estimate.py -m model=bert_base,roberta_base strategy=full,lora,frozen,gradual data.batch_size=8,16,32`."""

from ftcompare.cli import hydra_entry
from ftcompare.memory.estimate import estimate

main = hydra_entry("estimate", estimate)

if __name__ == "__main__":
    main()
