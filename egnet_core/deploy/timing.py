"""Wall-clock timing of repeated calls, shared by ``egnet bench``, the int8 export's precision choice and the
benchmark scripts."""

from __future__ import annotations

import time


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
