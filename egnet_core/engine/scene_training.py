"""The demo's training recipe: a small EGNet trained briefly on generated night scenes in NightCity's layout.

``egnet demo`` trains its model this way, and ``egnet bench`` judges its accuracy guards on models trained this
way (``deploy/bench_weights.py`` caches them): one recipe, so that "trained like the demo" means one thing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from egnet_core.config import TrainConfig, load_train_config
from egnet_core.data.synthetic import SyntheticDataset, write_nightcity
from egnet_core.engine.train import TrainSummary, train

log = logging.getLogger(__name__)

# The embedded default: small enough for a few minutes on a 2-core CPU, large enough to learn the scenes.
DEMO_TRAINING = (
    "model.backbone=resnet18",
    "model.output_stride=16",
    "data.crop_size=192",
    "data.scale_min=0.75",
    "data.scale_max=1.25",
    "data.workers=1",
    "data.eval_size=null",
    "optim.batch_size=4",
    "optim.lr=0.02",
    "run.log_every=10",
    "run.keep_last=1",
)


@dataclass(frozen=True)
class SceneRecipe:
    """What to train and on what: ``overrides`` of the default TrainConfig (later ones win, so
    ``(*DEMO_TRAINING, "model.backbone=resnet101")`` is the demo's recipe for another backbone), ``iterations``,
    and the generated scenes (``train_scenes`` + ``val_scenes`` at ``size`` (width, height) from ``seed``)."""

    overrides: tuple[str, ...] = DEMO_TRAINING
    iterations: int = 150
    train_scenes: int = 24
    val_scenes: int = 6
    size: tuple[int, int] = (512, 256)
    seed: int = 0

    def config(self, data: Path, out: Path, *, device: str) -> TrainConfig:
        """The full training config: the scenes under ``data``, the run's files under ``out``."""
        return load_train_config(None, [*self.overrides, f"data.root={data}", f"run.out_dir={out}",
                                        f"run.seed={self.seed}", f"run.device={device}",
                                        f"optim.iterations={self.iterations}", f"run.val_every={self.iterations}",
                                        f"run.checkpoint_every={self.iterations}"])


@dataclass(frozen=True)
class SceneTraining:
    scenes: SyntheticDataset  # a NightCity root with the recipe's train and val splits
    summary: TrainSummary  # its final_checkpoint is the model after the last iteration


def train_on_generated_scenes(recipe: SceneRecipe, out: Path, *, device: str) -> SceneTraining:
    """Generate the recipe's scenes under ``out/data`` and train on them into ``out/run``; ``out`` must be new or
    empty. Validation during training uses scenes held out of the train split: the val split stays unseen."""
    width, height = recipe.size
    scenes = write_nightcity(out / "data", train=recipe.train_scenes, val=recipe.val_scenes, width=width,
                             height=height, seed=recipe.seed)
    log.info("generated %d train and %d val night scenes (%dx%d) under %s", scenes.train, scenes.val, width, height,
             scenes.root)
    summary = train(recipe.config(scenes.root, out / "run", device=device))
    return SceneTraining(scenes=scenes, summary=summary)
