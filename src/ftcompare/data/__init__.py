"""One LightningDataModule for text classification (IMDb by default) and its training order."""

from ftcompare.data.datamodule import TextClassificationDataModule
from ftcompare.data.sampling import EpochOrder, ResumableBatches

__all__ = ["EpochOrder", "ResumableBatches", "TextClassificationDataModule"]
