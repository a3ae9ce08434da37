"""Trained weights for ``egnet bench``'s accuracy guards, trained once per configuration and code version.

Randomly initialised networks have near-tied logits, so whether a faster path keeps their labels says little;
the bench judges its guards on models trained with the demo's recipe (``engine/scene_training.py``) instead.
Training takes minutes, so each model is cached under ``<cache>/<key>/model.pt``, where the key is a digest of
the full resolved training config, the generated scenes, egnet's version and the source of the code that defines
the model and its training: another config or a code change trains anew, and a later run reuses the file.

A cached file appears only by an atomic rename of a complete checkpoint; training runs in a temporary folder
beside it that is removed however the training ends (a killed process may leave one, which is never read).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import egnet_core
from egnet_core.engine.scene_training import SceneRecipe, train_on_generated_scenes
from egnet_core.model.checkpoint import load_model, save_checkpoint

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "model.pt"
# Where the model and its training are defined: a change to any of these files trains the cached models anew.
CODE_PARTS = ("config.py", "model", "engine", "criteria", "data")
KEY_LENGTH = 16  # hex digits of the SHA-256 digest kept in folder names and tables


@dataclass(frozen=True)
class BenchWeights:
    checkpoint: Path  # <cache>/<key>/model.pt
    key: str
    iterations: int
    reused: bool  # False: trained by this call

    def describe(self) -> str:
        """What the table says of the rows that used these weights."""
        return f"trained {self.iterations} it on generated scenes (cache key {self.key})"


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CACHE_HOME/egnet/bench-weights``, or ``~/.cache/egnet/bench-weights`` (the XDG default)."""
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "egnet" / "bench-weights"


def code_digest(package: Path = Path(egnet_core.__file__).parent) -> str:
    """SHA-256 over egnet's version and the Python source under ``package``'s CODE_PARTS, path by path."""
    digest = hashlib.sha256(f"egnet {egnet_core.__version__}\n".encode())
    for part in CODE_PARTS:
        files = [package / part] if part.endswith(".py") else sorted((package / part).rglob("*.py"))
        for path in files:
            digest.update(f"{path.relative_to(package).as_posix()}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def cache_key(recipe: SceneRecipe, *, device: str, code: str) -> str:
    """The digest of everything that decides the trained weights: the resolved training config (less the folders
    it is written to, which are the cache's own), the generated scenes and the ``code`` digest."""
    config = recipe.config(Path("data"), Path("run"), device=device).to_dict()
    del config["data"]["root"], config["run"]["out_dir"]
    scenes = {"train": recipe.train_scenes, "val": recipe.val_scenes, "size": list(recipe.size), "seed": recipe.seed}
    text = json.dumps({"config": config, "scenes": scenes, "code": code}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def bench_weights(recipe: SceneRecipe, cache: Path, *, device: str, code: str | None = None) -> BenchWeights:
    """The cached checkpoint of ``recipe`` trained on ``device``, trained and cached first when there is none.
    ``code``: the code digest (default: this egnet's). An unwritable ``cache`` is an OSError naming it."""
    key = cache_key(recipe, device=device, code=code or code_digest())
    target = Path(cache) / key / CHECKPOINT_NAME
    if target.is_file():
        log.info("reusing %s (trained %d it on generated scenes, cache key %s)", target, recipe.iterations, key)
        return BenchWeights(checkpoint=target, key=key, iterations=recipe.iterations, reused=True)
    scratch = _scratch_folder(Path(cache), key)
    try:
        log.info("training the bench's weights (cache key %s): %d it on generated scenes in %s", key,
                 recipe.iterations, scratch)
        trained = train_on_generated_scenes(recipe, scratch, device=device)
        # Weights and recipe only (no optimizer state), written to a temporary file and renamed into place.
        save_checkpoint(target, load_model(trained.summary.final_checkpoint), bench_key=key,
                        bench_recipe=json.dumps(asdict(recipe)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("cached %s", target)
    return BenchWeights(checkpoint=target, key=key, iterations=recipe.iterations, reused=False)


def _scratch_folder(cache: Path, key: str) -> Path:
    try:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / key).mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".training-{key}-", dir=cache))
    except OSError as error:
        raise OSError(f"the bench weights cache {str(cache)!r} is not writable ({error.strerror or error}): give "
                      "--weights-cache a folder you can write, or a cache holding trained weights") from error
