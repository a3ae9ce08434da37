"""Wall-clock timing of repeated and interleaved calls, shared by ``egnet bench``, the int8 export's precision
choice and the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def timed(function, repeats: int, warm_up: bool = False) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``function``, after one untimed call when ``warm_up``."""
    if warm_up:
        function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def interleaved(functions: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each of ``functions``' calls, one call each in each of ``rounds`` rounds; each round starts one
    further along their order (two alternate), so a drift of the machine's speed falls on all of them alike."""
    names = list(functions)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name] += timed(functions[name], 1)
    return seconds


def synchronized(value, device: torch.device):
    """``value`` once ``device`` has finished the work queued for it (CUDA runs asynchronously), so that a timed
    call includes that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return value
