"""Freed host memory kept for the next frame (deploy/host_memory.py): in a fresh process, a freed 64 MiB block
comes back without page faults once a CPU Segmenter exists (from the second time on: the first grows the heap),
where before it faulted every page in again each time."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import resource, sys, torch
sys.path.insert(0, "test")
from helpers import tiny_model
from egnet_core.deploy.host_memory import keep_freed_memory
from egnet_core.deploy.inference import Segmenter

def faults_of_a_fresh_block():
    block = torch.empty(64 * 2**20, dtype=torch.uint8)
    block.fill_(1)
    del block  # freed: glibc unmaps a block this large by default
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.empty(64 * 2**20, dtype=torch.uint8)
    block.fill_(2)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

before = [faults_of_a_fresh_block() for _ in range(2)]  # the default: faulted in again every time
Segmenter(tiny_model(), device="cpu")
faults_of_a_fresh_block()  # the first frame after: the heap grows to hold the block
after = faults_of_a_fresh_block()
print(min(before), after, keep_freed_memory())
"""


def test_a_cpu_segmenter_keeps_freed_blocks_for_the_next_frame():
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    before, after, threshold = map(int, done.stdout.split())
    assert before >= 32  # every page of 64 MiB faulted in again: 16,384 with 4 KiB pages, 32 with 2 MiB ones
    assert after <= 16, f"{after} page faults re-using a freed 64 MiB block"
    assert threshold in (2**30, 2**25)


RELEASE = """
import sys
from egnet_core.deploy.host_memory import keep_freed_memory, release_freed_memory
import torch

def resident_mib():
    status = open("/proc/self/status").read()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024

keep_freed_memory()
block = torch.ones(256 * 2**20, dtype=torch.uint8)
del block
kept = resident_mib()
release_freed_memory()
print(kept, resident_mib())
"""


def test_released_memory_leaves_the_resident_set():
    """What the bench does before a path whose peak it reports: the blocks kept for reuse go back."""
    done = subprocess.run([sys.executable, "-c", RELEASE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    kept, released = map(float, done.stdout.split())
    assert kept - released >= 200, f"resident {kept:.0f} MiB with a freed 256 MiB block kept, {released:.0f} after"
