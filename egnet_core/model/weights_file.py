"""Files of tensors written by ``torch.save`` (checkpoints, backbone weights), read with ``weights_only=True`` so
that loading never runs pickled code. When a file is not what was expected, the error says what it is instead:
a folder, an empty file, a text file, a zip archive torch cannot read."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
_PICKLE_MAGIC = b"\x80"  # the pickle protocol marker: torch.save's format before the zip one
_SUFFIXES = (".pt", ".pth", ".bin")


def read_weights_file(path: Path, *, what: str, expected: str) -> Any:
    """What ``torch.save`` wrote at ``path``, on the CPU. ``what`` names the file in errors ("checkpoint"),
    ``expected`` says what should be in it ("egnet checkpoint")."""
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder, not {_article(expected)} {expected} file{_hint(path)}")
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} is not a regular file; expected {_article(expected)} {expected}")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{what} {str(path)!r} is empty (0 bytes), not {_article(expected)} {expected}: "
                         "was it cut short while being copied or written?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types here (UnpicklingError, RuntimeError, EOFError, KeyError...)
        with open(path, "rb") as file:
            head = file.read(32)
        message = f"{what} {str(path)!r} is not a readable {expected}: it is {_contents(head, size)}"
        if head.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):  # torch's own formats: its reason is worth reading
            message += f" that torch.load refused: {_reason(error)}"
        raise ValueError(message) from error


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def _hint(folder: Path) -> str:
    found = sorted(p.name for p in folder.iterdir() if p.suffix in _SUFFIXES and p.is_file())
    return f"; it holds {', '.join(found[:3])}{', ...' if len(found) > 3 else ''}: pass one of those" if found else ""


def _contents(head: bytes, size: int) -> str:
    if head.startswith(_ZIP_MAGIC):
        return f"a zip archive of {size} bytes"
    if head.startswith(_PICKLE_MAGIC):
        return f"a Python pickle of {size} bytes"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:  # text whose last character was cut by the 32 bytes read, or binary
        text = head[: error.start].decode("utf-8") if error.start > len(head) - 4 else "\0"
    if text.strip() and all(character.isprintable() or character.isspace() for character in text):
        return f"a text file of {size} bytes beginning {text.strip().splitlines()[0][:24]!r}"
    return f"{size} bytes of another format beginning {head[:8]!r}"


def _reason(error: Exception) -> str:
    if isinstance(error, pickle.UnpicklingError):  # what weights_only refuses: any object but tensors and containers
        return "it holds Python objects other than tensors and plain containers, which egnet never unpickles"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
