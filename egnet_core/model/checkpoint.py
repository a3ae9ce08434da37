"""Checkpoints: one plain dict that carries the model config beside the weights, so a path is enough.

Files are read with ``torch.load(weights_only=True)``: loading a checkpoint never runs pickled code. They are
written atomically (a temporary file in the same folder, then a rename), so a crash mid-write leaves the
previous file intact. Every command that loads a model goes through ``load_checkpoint``, which refuses a file
whose weights or config are not finite: a diverged run's NaNs would otherwise label every pixel as class 0.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from egnet_core.config import ModelConfig
from egnet_core.model.networks import Network, build_model
from egnet_core.model.weights_file import read_weights_file

FORMAT = "egnet-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike, model: Network, **extra: Any) -> Path:
    """Write ``model`` (weights and config) and any ``extra`` entries (optimizer state, iteration, ...).
    A full disk is an OSError that says so and names the folder; no temporary file is left behind."""
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
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if _disk_full(error):
            raise OSError(f"the disk holding {str(path.parent)!r} is full: {path.name} was not written (an earlier "
                          "file of that name is left as it was); free space there and run again (a training run "
                          "continues with --resume)") from error
        raise
    return path


def _disk_full(error: BaseException) -> bool:
    """Whether ``error`` comes from a full disk. torch's zip writer reports the file's own OSError as a
    RuntimeError ("unexpected pos") raised while handling it, so the chain of causes is searched."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict, checked to be an egnet checkpoint; errors name the file and the problem."""
    path = Path(path)
    state = read_weights_file(path, what="checkpoint", expected="egnet checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {str(path)!r} is not an egnet checkpoint (no {FORMAT!r} format marker)")
    if state.get("version") != VERSION:
        raise ValueError(f"checkpoint {str(path)!r} has format version {state.get('version')!r}; "
                         f"this egnet reads {VERSION}")
    _check_weights(state.get("model"), path)
    _check_finite_config(state.get("model_config"), path)
    return state


def _check_weights(weights: Any, path: Path) -> None:
    """A state dict (parameter name -> tensor) whose floating-point tensors hold finite numbers only."""
    if weights is None:
        raise ValueError(f"checkpoint {str(path)!r} has no 'model' entry: it holds no weights")
    if not isinstance(weights, dict):
        raise ValueError(f"checkpoint {str(path)!r} holds {_a(weights)} under 'model'; expected a state dict "
                         "(parameter name -> tensor), as save_checkpoint writes")
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"checkpoint {str(path)!r} holds {_a(tensor)} as 'model' entry {name!r}; expected a "
                             "state dict (parameter name -> tensor), as save_checkpoint writes")
    bad = [name for name, tensor in weights.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(f"checkpoint {str(path)!r} holds non-finite weights (NaN or infinity) in "
                         f"{', '.join(bad[:3])}{more}: the run that wrote it diverged; use an earlier checkpoint")


def _check_finite_config(config: Any, path: Path) -> None:
    if not isinstance(config, dict):
        return  # checkpoint_config names a missing or malformed config
    bad = [f"model_config.{name} = {value!r}" for name, value in config.items()
           if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        raise ValueError(f"checkpoint {str(path)!r} holds a non-finite model config: {', '.join(bad)}")


def _a(value: Any) -> str:
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def checkpoint_config(state: dict[str, Any], path: str | os.PathLike) -> ModelConfig:
    try:
        return ModelConfig.from_dict(state["model_config"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"checkpoint {str(path)!r} carries no valid model config: {error}") from error


def load_model(path: str | os.PathLike) -> Network:
    """The network stored at ``path`` (EGNet, or the DeepLabV3 or FCN its config's ``arch`` names), on the CPU, in
    eval mode. A checkpoint written before ``arch`` existed is an EGNet."""
    state = load_checkpoint(path)
    config = checkpoint_config(state, path)
    # The weights come from the checkpoint: the backbone's ImageNet file is not needed again.
    model = build_model(dataclasses.replace(config, backbone_weights=None))
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as error:
        raise ValueError(f"checkpoint {str(path)!r} does not fit its own model config {config}: {error}") from error
    return model.eval()


class CheckpointMismatch(ValueError):
    """A model of another architecture than the caller requires; ``differences``: field -> (found, expected)."""

    def __init__(self, path: str | os.PathLike, differences: dict[str, tuple[Any, Any]]) -> None:
        listed = ", ".join(f"{name}={found!r} (expected {expected!r})"
                           for name, (found, expected) in differences.items())
        super().__init__(f"checkpoint {str(path)!r} is from another architecture: {listed}")
        self.path = path
        self.differences = differences


def check_same_architecture(found: ModelConfig, expected: ModelConfig, path: str | os.PathLike) -> None:
    """CheckpointMismatch listing every field (but the backbone weights file) in which ``found`` differs from
    ``expected``."""
    differences = {
        field.name: (getattr(found, field.name), getattr(expected, field.name))
        for field in dataclasses.fields(ModelConfig)
        if field.name != "backbone_weights" and getattr(found, field.name) != getattr(expected, field.name)
    }
    if differences:
        raise CheckpointMismatch(path, differences)
