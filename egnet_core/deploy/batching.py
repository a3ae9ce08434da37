"""Frames of one size gathered into batches: one forward pass needs frames of one size."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")


def batches_of_one_size(
    items: Iterable[Item], batch_size: int, size: Callable[[Item], Hashable]
) -> Iterator[list[Item]]:
    """``items`` in order, up to ``batch_size`` at a time; an item whose ``size(item)`` differs from the batch's
    starts a new batch, so that a stream of mixed sizes keeps its order."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size!r}")
    batch: list[Item] = []
    for item in items:
        if batch and size(item) != size(batch[0]):
            yield batch
            batch = []
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def group_by_size(items: Iterable[Item], size: Callable[[Item], Hashable]) -> list[list[Item]]:
    """``items`` grouped by ``size(item)``, whatever their order: one batch per size, sizes in the order first
    seen, items in their order within each (the frames that several cameras sent at once)."""
    groups: dict[Hashable, list[Item]] = {}
    for item in items:
        groups.setdefault(size(item), []).append(item)
    return list(groups.values())
