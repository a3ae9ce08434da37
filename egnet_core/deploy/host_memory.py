"""Freed host memory kept for the next frame, as a caching allocator keeps it.

A CPU frame allocates and frees the same large buffers every time: the compiled graph's intermediates, the residual
stream, the logits. glibc's malloc gives blocks over its mmap threshold (128 KiB, rising with use to at most
32 MiB) straight back to the kernel when they are freed, and trims the top of its heap past twice that, so the next
frame's buffer of the same size faults every one of its pages in again, zero-filled by the kernel. Compiled bf16
EGNet-ResNet101 OS8 at 1024×512 took 269,000 minor page faults a frame (a gigabyte of pages) on a 2-core Xeon with
AMX: 1,050–1,070 ms a frame; with the thresholds below, none, and 775–815 ms (benchmarks/RESULTS.md, 2026-12-02,
fourth session). The convolutions that write the widest outputs (a bottleneck's last, 256 → 1024 channels) ran at a
sixth of the others' rate while their output pages faulted in.

``keep_freed_memory`` raises glibc's mmap threshold to 1 GiB (32 MiB, the ceiling older glibc accepts, where it
refuses that) and its trim threshold to 2 GiB - 1 through ``mallopt``, once per process: freed blocks stay in the
heap for the next frame, as PyTorch's recommended jemalloc or tcmalloc would keep them. The process's resident size
then stays at its high-water mark instead of falling between frames; ``release_freed_memory`` (``malloc_trim``)
gives the free blocks back, as ``egnet bench`` does before each path whose peak it reports, so that a path's peak
is not an earlier one's. Other C libraries (no ``mallopt``) are left as they are.
"""

from __future__ import annotations

import ctypes
import logging
import threading

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int
MMAP_THRESHOLDS = (2**30, 2**25)  # tried in order: newer glibc accepts 1 GiB, every 64-bit glibc 32 MiB

_lock = threading.Lock()
_kept: int | None = None  # the mmap threshold set, 0 where this C library has no mallopt; None: not tried yet


def keep_freed_memory() -> int:
    """Raise this process's malloc thresholds (the module docstring's), once; the mmap threshold now in force in
    bytes, or 0 where the C library has no ``mallopt`` or refused every value."""
    global _kept
    with _lock:
        if _kept is None:
            _kept = _raise_thresholds()
        return _kept


def _raise_thresholds() -> int:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        log.info("this C library has no mallopt: freed host memory goes back to the system between frames")
        return 0
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if not mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD):
        log.info("mallopt refused a trim threshold of %d bytes", TRIM_THRESHOLD)
    for threshold in MMAP_THRESHOLDS:
        if mallopt(M_MMAP_THRESHOLD, threshold):
            return threshold
    log.info("mallopt refused every mmap threshold of %s bytes", MMAP_THRESHOLDS)
    return 0


def release_freed_memory() -> None:
    """Give the heap's free blocks back to the system (glibc's ``malloc_trim(0)``); nothing where there is none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return
    trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
    trim(0)
