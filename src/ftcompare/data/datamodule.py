"""One LightningDataModule for text classification: IMDb by default, any HF dataset or local file.

Every strategy sees the same split: de-duplicated by text, stratified by label, drawn with a
fixed seed. Tokenised splits live in the `datasets` cache, so a second run does not re-tokenise.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict
from datasets.fingerprint import Hasher
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding

from ftcompare.data.sampling import EpochOrder, ResumableBatches
from ftcompare.data.sources import load_source
from ftcompare.data.truncation import check_truncation, encode
from ftcompare.errors import ConfigError
from ftcompare.models import load_pretrained

log = logging.getLogger(__name__)
EXAMPLE = "example"  # the batch key of each row's index in its split


def _fractional(found: set[Any], column: str) -> str:
    fractions = sorted(v for v in found if isinstance(v, float) and not v.is_integer())
    return (
        f"data column {column!r} holds fractional labels ({', '.join(map(str, fractions[:3]))}): a label is a class, "
        "not a score. Fix: map each value to a class (an integer 0..k-1 or a name) in the file"
    )


def _infer_label_names(found: set[Any], column: str) -> list[str]:
    """Label names from the data when the config gives none: sorted strings name themselves; integers
    0..k-1 are named by their digits. The mapping is logged, so a run says what its classes were."""
    if all(isinstance(v, str) for v in found):
        names = sorted(found)
    elif any(isinstance(v, float) and not v.is_integer() for v in found):
        raise ConfigError(_fractional(found, column))
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in found) and found == set(range(len(found))):
        names = [str(v) for v in sorted(found)]
    else:
        raise ConfigError(
            f"data column {column!r} has labels {sorted(map(repr, found))}: neither all strings nor the integers "
            "0..k-1. Fix: set data.label_names=[...] (a name per class; integer labels index it)"
        )
    mapping = ", ".join(f"{name!r} -> {i}" for i, name in enumerate(names))
    log.info("labels from the data: %s (set data.label_names=[...] for another order)", mapping)
    return names


class TextClassificationDataModule(L.LightningDataModule):
    """Loads, de-duplicates, splits and tokenises a labelled text dataset."""

    def __init__(
        self,
        source: dict[str, Any],
        tokenizer: str,
        label_names: list[str] | None,
        text_column: str = "text",
        label_column: str = "label",
        pool_split: str = "train",
        test_split: str | None = None,
        where: dict[str, Any] | None = None,
        where_if_present: bool = False,
        train_size: int = 4000,
        train_subset: int | None = None,
        val_size: int = 1000,
        test_size: int = 1000,
        split_seed: int = 42,
        max_length: int = 256,
        truncation: str = "head",
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        group_by_length: bool = False,
        seed: int = 0,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        check_truncation(truncation)
        self.save_hyperparameters(logger=False)
        self.tokenizer = load_pretrained(AutoTokenizer, tokenizer, trust_remote_code)
        self.collate = DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=8)
        self.splits: DatasetDict | None = None
        self.fingerprints: dict[str, str] = {}  # per split, set by setup(): which examples, for comparability
        self.dropped: dict[str, int] = {}  # empty or whitespace-only texts dropped, per source split
        self.train_batches: ResumableBatches | None = None
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches trained in it) from a checkpoint
        self.label_names: list[str] | None = list(label_names) if label_names is not None else None

    def _prepare(self, ds: Dataset, split: str) -> Dataset:
        """Filter rows, check columns and labels, rename to `text` / `labels` as ClassLabel."""
        hp = self.hparams
        if hp.text_column == hp.label_column:
            raise ConfigError(
                f"data.text_column and data.label_column are both {hp.text_column!r}. Fix: name the text column "
                f"and the label column of the data (it has {ds.column_names})"
            )
        missing = [c for c in (hp.text_column, hp.label_column) if c not in ds.column_names]
        if missing:
            raise ConfigError(
                f"data split {split!r} has no column(s) {missing}; it has {ds.column_names}. "
                "Fix: set data.text_column / data.label_column"
            )
        for column, value in (hp.where or {}).items():
            if column not in ds.column_names:
                if hp.where_if_present:  # eval.py on other data: the training run's filter was for its own data
                    log.info(
                        "data.where: no column %r in this data, so its filter %r=%r is dropped", column, column, value
                    )
                    continue
                raise ConfigError(
                    f"data.where filters on column {column!r}, which data split {split!r} does not have (it has "
                    f"{ds.column_names}). Fix: name a column it has, or +data.where=null for no filter"
                )
            ds = ds.filter(lambda v, value=value: v == value, input_columns=column)
        ds = ds.select_columns([hp.text_column, hp.label_column])
        rows = len(ds)
        ds = ds.filter(lambda t: isinstance(t, str) and t.strip() != "", input_columns=hp.text_column)
        self.dropped[split] = rows - len(ds)
        if self.dropped[split]:
            log.warning("split %r: dropped %d empty, whitespace-only or missing texts", split, self.dropped[split])
        found = set(ds.unique(hp.label_column))
        if any(isinstance(v, float) and not v.is_integer() for v in found):
            raise ConfigError(_fractional(found, hp.label_column))
        if len(found) == 1:
            raise ConfigError(
                f"data column {hp.label_column!r} of split {split!r} holds one class only ({next(iter(found))!r}): "
                "there is nothing to tell apart. Fix: data with at least two classes"
            )
        if self.label_names is None:
            self.label_names = _infer_label_names(found, hp.label_column)
        names = self.label_names
        if found <= set(names):  # string labels: map to their index in label_names
            ds = ds.map(lambda v: {hp.label_column: names.index(v)}, input_columns=hp.label_column)
        elif not found <= set(range(len(names))):
            raise ConfigError(
                f"data column {hp.label_column!r} has labels {sorted(map(str, found))} outside the label set "
                f"{names} (indices 0..{len(names) - 1}). Fix: set data.label_names to match the data"
            )
        ds = ds.rename_columns({hp.text_column: "text", hp.label_column: "labels"})
        return ds.cast_column("labels", ClassLabel(names=names))

    @staticmethod
    def _dedup(ds: Dataset, exclude: set[str] | None = None) -> Dataset:
        """Keep the first occurrence of each text (and none that appear in `exclude`)."""
        seen = set(exclude or ())
        keep = []
        for i, text in enumerate(ds["text"]):
            if text not in seen:
                seen.add(text)
                keep.append(i)
        return ds.select(keep)

    def _split(self, loaded: DatasetDict) -> DatasetDict:
        hp = self.hparams
        for name in filter(None, (hp.pool_split, hp.test_split)):
            if name not in loaded:
                raise ConfigError(f"data.pool_split/test_split={name!r} is not one of {list(loaded)}")
        pool = self._dedup(self._prepare(loaded[hp.pool_split], hp.pool_split))
        if hp.test_split:
            test_pool = self._dedup(self._prepare(loaded[hp.test_split], hp.test_split), set(pool["text"]))
            _check_fits("test_size", hp.test_size, len(test_pool), hp.test_split, self.dropped[hp.test_split])
            test = self._draw(test_pool, hp.test_size, "test_size")[1]
            need, dropped = hp.train_size + hp.val_size, self.dropped[hp.pool_split]
            _check_fits("train_size + val_size", need, len(pool), hp.pool_split, dropped)
        else:
            need = hp.train_size + hp.val_size + hp.test_size
            _check_fits(
                "train_size + val_size + test_size", need, len(pool), hp.pool_split, self.dropped[hp.pool_split]
            )
            pool, test = self._draw(pool, hp.test_size, "test_size")
        train, val = self._draw(pool, hp.val_size, "val_size", hp.train_size)
        if hp.train_subset is not None:
            train = nested_subset(train, hp.train_subset)
        splits = DatasetDict(train=train, validation=val, test=test)
        for name, split in splits.items():
            labels = split.unique("labels")
            if len(labels) < 2:
                setting = {"train": "train_size", "validation": "val_size", "test": "test_size"}[name]
                raise ConfigError(
                    f"data.{setting}={len(split)} gives a {name} split with one class only "
                    f"({self.label_names[labels[0]]!r}): accuracy would mean nothing. "
                    "Fix: larger split sizes, or data with every label in data.label_names"
                )
        return splits

    def _draw(
        self, ds: Dataset, size: int, setting: str, rest_size: int | None = None
    ) -> tuple[Dataset | None, Dataset]:
        """Draw `size` rows stratified by label; return (rest, drawn), rest capped at `rest_size`."""
        if size == len(ds):
            return None, ds.shuffle(seed=self.hparams.split_seed)
        try:
            parts = ds.train_test_split(
                test_size=size, train_size=rest_size, stratify_by_column="labels", seed=self.hparams.split_seed
            )
        except ValueError as err:
            raise ConfigError(
                f"data.{setting}={size} cannot be drawn stratified by label ({err}). Fix: larger split sizes"
            ) from err
        return parts["train"], parts["test"]

    def _tokenize(self, ds: Dataset) -> Dataset:
        hp = self.hparams
        fingerprint = Hasher.hash(
            [ds._fingerprint, self.tokenizer.name_or_path, type(self.tokenizer).__name__, hp.max_length, hp.truncation]
        )
        return ds.map(
            lambda batch: encode(self.tokenizer, batch["text"], hp.max_length, hp.truncation),
            batched=True,
            remove_columns=["text"],
            new_fingerprint=fingerprint,
            desc="Tokenising",
        )

    def raw_splits(self) -> DatasetDict:
        """The untokenised splits (`text`, `labels`), e.g. for classical baselines."""
        return self._split(load_source(self.hparams.source))

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            raw = self.raw_splits()
            self.fingerprints = {name: split_fingerprint(split) for name, split in raw.items()}
            # `example`: each row's position in its split, carried by every batch so predictions name their examples
            self.splits = DatasetDict(
                {k: self._tokenize(v).add_column(EXAMPLE, list(range(len(v)))) for k, v in raw.items()}
            )

    def _loader(self, split: str, **batching: Any) -> DataLoader:
        assert self.splits is not None, "call setup() first"
        hp = self.hparams
        return DataLoader(
            self.splits[split].with_format("torch"),
            **batching,
            collate_fn=self.collate,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            generator=torch.Generator(),  # workers' seeds drawn from here, not from the global RNG dropout uses
        )

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        assert self.splits is not None, "call setup() first"
        lengths = self._lengths("train") if hp.group_by_length else None
        order = EpochOrder(len(self.splits["train"]), hp.seed, lengths, hp.batch_size, *self._replicas())
        self.train_batches = ResumableBatches(order, hp.batch_size)
        if self.resume_at is not None:
            self.train_batches.resume(*self.resume_at)
        return self._loader("train", batch_sampler=self.train_batches)

    def state_dict(self) -> dict[str, int]:
        """Saved in checkpoints: where in the data the run is (epoch, batches of it trained), so a resumed
        run goes on with the very next batch. Lightning's own loader state is restored too late when the
        LR schedule sized itself from the loader, so it lives here."""
        trainer = self.trainer
        if trainer is None:
            return {}
        epoch, trained = trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if trained >= trainer.num_training_batches:  # saved at the epoch's end: go on with the next one
            epoch, trained = epoch + 1, 0
        return {"epoch": epoch, "batches": trained}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if state_dict:
            self.resume_at = (state_dict["epoch"], state_dict["batches"])
            if self.train_batches is not None:
                self.train_batches.resume(*self.resume_at)

    def _replicas(self) -> tuple[int, int]:
        """(processes, this one's rank): under DDP each process trains and evaluates its own share."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _lengths(self, split: str) -> list[int]:
        """Tokens per example of `split`, for length-grouped batches."""
        assert self.splits is not None, "call setup() first"
        return [len(ids) for ids in self.splits[split]["input_ids"]]

    def eval_loader(self, split: str, limit: int | None = None) -> DataLoader:
        """Evaluation batches of `split` (its first `limit` examples if given); with `group_by_length`, longest
        first: less padding, and the memory peak shows at once."""
        assert self.splits is not None, "call setup() first"
        processes, rank = self._replicas()
        size = min(len(self.splits[split]), limit or len(self.splits[split]))
        share: Sequence[int] = range(rank, size, processes)  # disjoint shares: metrics sync exactly
        if self.hparams.group_by_length:
            lengths = self._lengths(split)
            share = sorted(share, key=lambda i: -lengths[i])
        return self._loader(
            split, batch_size=self.hparams.eval_batch_size or 2 * self.hparams.batch_size, sampler=share
        )

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader("test")


def nested_subset(train: Dataset, size: int) -> Dataset:
    """`size` rows of the train split for learning curves: the first `size` of an order that interleaves the labels
    in proportion to their counts, so smaller subsets lie inside larger ones (250 in 500 in ... in the whole split)
    and each label's count is within one of its share. Validation and test are untouched."""
    labels = np.asarray(train["labels"])
    position = np.empty(len(labels))
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        position[rows] = (np.arange(len(rows)) + 0.5) / len(rows)  # where each row falls within its label
    return train.select(np.sort(np.argsort(position, kind="stable")[:size]))


def split_fingerprint(split: Dataset) -> str:
    """SHA-256 over the split's (text, label) pairs in order: equal only for the same examples."""
    digest = hashlib.sha256()
    for text, label in zip(split["text"], split["labels"], strict=True):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()


def _check_fits(setting: str, need: int, have: int, split: str, dropped: int = 0) -> None:
    if need > have:
        blank = f" ({dropped} empty or missing texts dropped)" if dropped else ""
        raise ConfigError(
            f"data.{setting.replace(' + ', ' + data.')} = {need} does not fit: split {split!r} has {have} unique "
            f"labelled texts after de-duplication{blank}. Fix: lower the split sizes"
            + (", or fill in the empty texts" if dropped else "")
        )
