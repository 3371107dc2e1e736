"""The order of the training examples: a function of (seed, epoch) alone, resumable mid-epoch, shardable for DDP."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import BatchSampler, Sampler
from transformers.trainer_pt_utils import LengthGroupedSampler


class EpochOrder(Sampler[int]):
    """The order of the training examples, set by (seed, epoch) alone: a resumed run sees the order an
    uninterrupted one would. Lightning calls `set_epoch`. With `lengths`, examples of similar length
    are kept together (transformers' `LengthGroupedSampler`: less padding per batch). Under DDP each of
    `processes` takes every processes-th example of the one order, padded (like `DistributedSampler`)
    so all get the same number of batches."""

    def __init__(
        self,
        size: int,
        seed: int,
        lengths: list[int] | None = None,
        batch_size: int = 1,
        processes: int = 1,
        rank: int = 0,
    ) -> None:
        self.size, self.seed, self.lengths, self.batch_size = size, seed, lengths, batch_size
        self.processes, self.rank = processes, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        seeds = torch.randint(2**62, (self.epoch + 1,), generator=torch.Generator().manual_seed(self.seed))
        return torch.Generator().manual_seed(int(seeds[-1]))

    def __len__(self) -> int:
        return math.ceil(self.size / self.processes)

    def __iter__(self) -> Iterator[int]:
        if self.lengths is None:
            order = torch.randperm(self.size, generator=self.generator()).tolist()
        else:
            order = list(LengthGroupedSampler(self.batch_size, lengths=self.lengths, generator=self.generator()))
        order += order[: len(self) * self.processes - self.size]
        return iter(order[self.rank :: self.processes])


class ResumableBatches(BatchSampler):
    """Batches of an `EpochOrder`. Length-grouped batches are served in random order, so no stretch of an
    epoch (or a benchmark's window) is all long or all short batches, after the two longest: the memory
    peak shows at once, and the step every run's memory tracker measures (the second) has the full length
    in every strategy. After a resume the batches the run had already trained in that epoch are left out,
    once."""

    sampler: EpochOrder

    def __init__(self, sampler: EpochOrder, batch_size: int) -> None:
        super().__init__(sampler, batch_size, drop_last=False)
        self.skip = 0

    def resume(self, epoch: int, trained: int) -> None:
        self.sampler.epoch, self.skip = epoch, trained

    def __iter__(self) -> Iterator[list[int]]:
        batches = list(super().__iter__())
        lengths = self.sampler.lengths
        if lengths is not None:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.sampler.generator()).tolist()]
            longest = sorted(range(len(batches)), key=lambda k: -max(lengths[i] for i in batches[k]))[:2]
            batches = [batches[k] for k in longest] + [b for k, b in enumerate(batches) if k not in longest]
        skip, self.skip = self.skip, 0
        yield from batches[skip:]
