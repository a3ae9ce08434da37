from pathlib import Path

import pytest

from egnet_core.config import TrainConfig, load_train_config

CONFIGS = Path(__file__).resolve().parent.parent / "config"


def test_the_paper_config_holds_the_papers_settings():
    config = load_train_config(str(CONFIGS / "train_nightcity.yaml"))
    assert (config.optim.batch_size, config.optim.iterations, config.optim.lr) == (14, 40_000, 1e-5)
    assert (config.optim.poly_power, config.optim.alpha, config.optim.beta) == (0.9, 1.0, 0.01)
    assert (config.model.backbone, config.model.w1, config.model.w2) == ("resnet101", 1.0, 0.3)
    assert config.data.crop_size == 300 and config.data.eval_size == (900, 900)


def test_the_recommended_config_differs_only_in_learning_rate_and_folder():
    paper = load_train_config(str(CONFIGS / "train_nightcity.yaml"))
    fast = load_train_config(str(CONFIGS / "train_nightcity_lr1e-2.yaml"))
    assert fast.optim.lr == 1e-2
    assert fast.model == paper.model and fast.data == paper.data
    assert fast.optim.iterations == paper.optim.iterations


@pytest.mark.parametrize(
    ("variant", "table_row"),
    [("no_egl", "w/o EGL"), ("no_exposure_stream", "w/o ES"), ("concat", "Concat"), ("sum", "Sum"),
     ("extra_input", "Extra Input"), ("exposure_attention", "Attention Map")],
)
def test_one_ablation_config_per_table_row(variant, table_row):
    path = CONFIGS / "ablations" / f"{variant}.yaml"
    assert table_row in path.read_text()
    assert load_train_config(str(path)).model.variant == variant


def test_overrides_reach_every_section():
    config = load_train_config(None, ["optim.lr=0.02", "model.backbone=resnet18", "data.eval_size=[64, 32]",
                                      "run.amp=false", "data.eval_size=null"])
    assert config.optim.lr == 0.02 and config.model.backbone == "resnet18"
    assert config.run.amp is False and config.data.eval_size is None
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-1", "optim.lr must be positive, got -1"),
        ("optim.iterations=1.5", "optim.iterations must be int, got 1.5"),
        ("model.depth=50", "unknown field.*model.depth"),
        ("lr=1", "section.field=value"),
        ("data.workers=true", "data.workers must be int, got True"),
        ("data.dataset=kitti", "data.dataset must be one of .* got 'kitti'"),
        ("data.dataset=cityscapes+nightcity", "data.cityscapes_root is required"),
        ("run.stop_at=0", "run.stop_at must be at least 1"),
        ("model.output_stride=4", "model.output_stride must be one of 8, 16, 32, got 4"),
    ],
)
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        load_train_config(None, [override])


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_train_config(str(tmp_path / "missing.yaml"))
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_train_config(str(tmp_path / "list.yaml"))
    (tmp_path / "sections.yaml").write_text("training:\n  lr: 1\n")
    with pytest.raises(ValueError, match="unknown config section.*training"):
        load_train_config(str(tmp_path / "sections.yaml"))
