"""Checkpoints: one plain dict that carries the model config beside the weights, so a path is enough.

Files are read with ``torch.load(weights_only=True)``: loading a checkpoint never runs pickled code. They are
written atomically (a temporary file in the same folder, then a rename), so a crash mid-write leaves the
previous file intact.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from egnet_core.config import ModelConfig
from egnet_core.model.egnet import EGNet, build_model

FORMAT = "egnet-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, model: EGNet, **extra: Any) -> Path:
    """Write ``model`` (weights and config) and any ``extra`` entries (optimizer state, iteration, ...)."""
    state = {"format": FORMAT, "version": VERSION, "model_config": model.config.to_dict(), "model": model.state_dict()}
    state.update(extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict, checked to be an egnet checkpoint; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"checkpoint {str(path)!r} is not a readable egnet checkpoint: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {str(path)!r} is not an egnet checkpoint (no {FORMAT!r} format marker)")
    if state.get("version") != VERSION:
        raise ValueError(f"checkpoint {str(path)!r} has format version {state.get('version')!r}; this egnet reads {VERSION}")
    return state


def checkpoint_config(state: dict[str, Any], path: str | os.PathLike) -> ModelConfig:
    try:
        return ModelConfig.from_dict(state["model_config"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"checkpoint {str(path)!r} carries no valid model config: {error}") from error


def load_model(path: str | os.PathLike) -> EGNet:
    """The EGNet stored at ``path``, on the CPU, in eval mode."""
    state = load_checkpoint(path)
    config = checkpoint_config(state, path)
    # The weights come from the checkpoint: the backbone's ImageNet file is not needed again.
    model = build_model(dataclasses.replace(config, backbone_weights=None))
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as error:
        raise ValueError(f"checkpoint {str(path)!r} does not fit its own model config {config}: {error}") from error
    return model.eval()


def check_same_architecture(found: ModelConfig, expected: ModelConfig, path: str | os.PathLike) -> None:
    """ValueError listing every field (but the backbone weights file) in which ``found`` differs from ``expected``."""
    differences = [
        f"{field.name}={getattr(found, field.name)!r} (expected {getattr(expected, field.name)!r})"
        for field in dataclasses.fields(ModelConfig)
        if field.name != "backbone_weights" and getattr(found, field.name) != getattr(expected, field.name)
    ]
    if differences:
        raise ValueError(f"checkpoint {str(path)!r} is from another architecture: {', '.join(differences)}")
