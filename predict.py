"""Label texts with a checkpoint: `python predict.py ckpt_path=... text="..."` or `input=file.txt|.csv`."""

from ftcompare.cli import hydra_entry
from ftcompare.prediction import predict

main = hydra_entry("predict", predict)

if __name__ == "__main__":
    main()
