"""The order in which training samples are drawn: a pure function of (seed, iteration), so that a resumed run
draws exactly the batches, crops and flips that an uninterrupted run would have drawn."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler


class IterationSampler(Sampler):
    """Yields ``(dataset index, augmentation seed)`` for iterations ``start..end`` of one process.

    Each epoch is a fresh permutation seeded by (seed, epoch); process ``rank`` of ``world_size`` takes its
    slice of every global batch, so the processes together see each sample once per epoch.
    """

    def __init__(
        self, size: int, *, batch_size: int, seed: int, start: int, end: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if size < 1:
            raise ValueError("the training set is empty")
        if batch_size % world_size:
            raise ValueError(f"optim.batch_size {batch_size} is not divisible by the {world_size} processes")
        self.size = size
        self.per_process = batch_size // world_size
        self.batch_size = batch_size
        self.seed = seed
        self.start = start
        self.end = end
        self.rank = rank

    def __len__(self) -> int:
        return (self.end - self.start) * self.per_process

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, order = -1, None
        for iteration in range(self.start, self.end):
            for slot in range(self.per_process):
                position = iteration * self.batch_size + self.rank * self.per_process + slot
                if position // self.size != epoch:
                    epoch = position // self.size
                    order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
                yield int(order[position % self.size]), self.seed * 1_000_003 + position


class SeededSamples(Dataset):
    """Wraps a data set so each sample's random augmentation is seeded by its ``IterationSampler`` seed."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]
