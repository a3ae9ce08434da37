"""Failures of a model at run time, typed so that callers catch them and nothing else."""

from __future__ import annotations


class InferenceError(RuntimeError):
    """The model could not run on these frames on its device: out of memory, a device or driver error, an ONNX
    Runtime failure. The Segmenter is still usable: the next frames may succeed."""
