"""Command-line pieces the benchmark scripts share."""

import argparse
from pathlib import Path


def timing_parser(doc: str, rounds: int) -> argparse.ArgumentParser:
    """A parser for a script that times paths in interleaved rounds and writes JSON and Markdown: its description
    the first paragraph of ``doc``, with --out (default bench-out) and --rounds (default ``rounds``, at least 1)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="folder for the JSON and Markdown")
    parser.add_argument("--rounds", type=_at_least_one, default=rounds,
                        help=f"interleaved rounds (default: {rounds})")
    return parser


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
