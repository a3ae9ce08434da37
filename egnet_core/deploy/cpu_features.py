"""The CPU's matrix features that decide which inference paths can be fast: read from /proc/cpuinfo's flags."""

from __future__ import annotations

from pathlib import Path

# Linux's flag -> the name Intel's and AMD's manuals give it, in the order a table lists them.
MATRIX_FEATURES = {
    "avx512f": "AVX-512",
    "avx512_bf16": "AVX-512 BF16",
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
    "amx_fp16": "AMX-FP16",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
}


def cpu_features(cpuinfo: str) -> tuple[str, ...]:
    """The MATRIX_FEATURES named in the first ``flags`` line of /proc/cpuinfo text (x86; empty elsewhere)."""
    line = next((line for line in cpuinfo.splitlines() if line.split(":", 1)[0].strip() == "flags"), "")
    flags = set(line.partition(":")[2].split())
    return tuple(name for flag, name in MATRIX_FEATURES.items() if flag in flags)


def this_cpu_features() -> tuple[str, ...]:
    """``cpu_features`` of this machine; empty where there is no /proc/cpuinfo."""
    try:
        return cpu_features(Path("/proc/cpuinfo").read_text())
    except FileNotFoundError:
        return ()
