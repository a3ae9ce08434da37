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


TRAINING_CONFIGS = sorted(path for path in CONFIGS.rglob("*.yaml") if path.name != "segment.yaml")  # node params


@pytest.mark.parametrize("path", TRAINING_CONFIGS, ids=lambda path: str(path.relative_to(CONFIGS)))
def test_every_shipped_config_loads_and_never_validates_on_nightcitys_test_split(path):
    config = load_train_config(str(path))
    assert config.data.validate_on == "holdout" and 0 < config.data.holdout < 1
    assert config.run.out_dir.startswith("runs/")


def test_the_training_configs_are_found():
    assert {"train_nightcity.yaml", "train_cityscapes_nightcity.yaml", "no_egl.yaml"} <= {
        path.name for path in TRAINING_CONFIGS}


def test_the_mixed_config_trains_on_cityscapes_and_nightcity():
    mixed = load_train_config(str(CONFIGS / "train_cityscapes_nightcity.yaml"))
    assert mixed.data.dataset == "cityscapes+nightcity" and mixed.data.cityscapes_root
    paper = load_train_config(str(CONFIGS / "train_nightcity_lr1e-2.yaml"))
    assert mixed.model == paper.model and mixed.optim == paper.optim


def test_resize_crop_needs_the_test_size():
    with pytest.raises(ValueError, match="data.train_geometry 'resize_crop' resizes .* data.eval_size, which is null"):
        load_train_config(None, ["data.train_geometry=resize_crop", "data.eval_size=null"])
    assert load_train_config(None, ["data.holdout=runs/a/holdout.txt"]).data.holdout == "runs/a/holdout.txt"


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
        ("data.validate_on=test", "data.validate_on must be one of holdout, val, got 'test'"),
        ("data.holdout=0", r"data.holdout must be a fraction of the training split in \(0, 1\).*got 0"),
        ("data.holdout=1", r"data.holdout must be a fraction .* got 1$"),
        ("data.holdout=-0.1", r"data.holdout must be a fraction .* got -0.1"),
        ("data.holdout=1.5", r"data.holdout must be a fraction .* got 1.5"),
        ("data.holdout=' '", r"data.holdout must be a fraction .* or the path of a file of sample names, got ' '"),
        ("data.holdout=true", r"data.holdout must be float \| str, got True"),
        ("data.holdout=null", r"data.holdout must be float \| str, got None"),
        ("data.holdout=[0.1]", r"data.holdout must be float \| str, got \[0.1\]"),
        ("data.holdout=.nan", "data.holdout must be a finite number, got nan"),
        ("data.train_geometry=stretch", "data.train_geometry must be one of crop, resize, resize_crop, got 'stretch'"),
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


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=.inf", "optim.lr must be a finite number, got inf"),
        ("optim.momentum=.nan", "optim.momentum must be a finite number, got nan"),
        ("model.w1=.nan", "model.w1 must be a finite number, got nan"),
        ("model.w2=-.inf", "model.w2 must be a finite number, got -inf"),
        ("data.scale_max=.inf", "data.scale_max must be a finite number, got inf"),
    ],
)
def test_numbers_that_must_be_finite_are_refused_otherwise(override, message):
    with pytest.raises(ValueError, match=message):
        load_train_config(None, [override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.iterations=null", "optim.iterations must be int, got None"),
        ("optim.batch_size=null", "optim.batch_size must be int, got None"),
        ("run.val_every=null", "run.val_every must be int, got None"),
        ("run.seed=null", "run.seed must be int, got None"),
        ("data.root=null", "data.root must be str, got None"),
        ("run.out_dir=null", "run.out_dir must be str, got None"),
        ("data.eval_size=[a,b]", r"data.eval_size must be \[width, height\].*got \['a', 'b'\]"),
        ("data.eval_size=[64]", r"data.eval_size must be \[width, height\].*got \[64\]"),
        ("optim.lr=[", r"--set optim.lr: '\[' is not a YAML value"),
        ("data.eval_size=64", r"data.eval_size must be tuple\[int, int\] \| None, got 64"),
    ],
)
def test_null_and_malformed_values_name_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        load_train_config(None, [override])


def test_the_config_classes_check_their_own_fields():
    from egnet_core.config import DataConfig, ModelConfig, OptimConfig

    with pytest.raises(ValueError, match="optim.iterations must be int, got None"):
        OptimConfig(iterations=None)
    with pytest.raises(ValueError, match="model.w1 must be a finite number, got nan"):
        ModelConfig.from_dict({"w1": float("nan")})
    with pytest.raises(ValueError, match="data.scale_min must be a finite number, got -inf"):
        DataConfig(scale_min=float("-inf"))


@pytest.mark.parametrize("text", ["1e-2", "1E-2", "+1e-2", "10e-3", "1.0e-2", ".1e-1"])
def test_numbers_with_an_exponent_and_no_dot_are_numbers(tmp_path, text):
    assert load_train_config(None, [f"optim.lr={text}"]).optim.lr == pytest.approx(0.01)
    (tmp_path / "lr.yaml").write_text(f"optim:\n  lr: {text}\n")
    assert load_train_config(str(tmp_path / "lr.yaml")).optim.lr == pytest.approx(0.01)
    with pytest.raises(ValueError, match="optim.iterations must be int, got 1000.0"):
        load_train_config(None, ["optim.iterations=1e3"])


def _write(folder, **files):
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return str(folder / f"{next(iter(files))}.yaml")


@pytest.mark.parametrize(
    ("files", "overrides", "message"),
    [
        ({"a": "extends: [b.yaml, c.yaml]\n"}, [], r"extends must be one file name, got \['b.yaml', 'c.yaml'\]"),
        ({"a": "extends: 5\n"}, [], "extends must be one file name, got 5"),
        ({"a": "model: 5\n"}, ["model.w1=2"], "config section 'model' .*a.yaml.* must be a mapping, got 5"),
        ({"a": "extends: b.yaml\nmodel:\n  w1: 2\n", "b": "model: 5\n"}, [],
         "config section 'model' .*b.yaml.* must be a mapping, got 5"),
        ({"a": "extends: b.yaml\nmodel: 5\n", "b": "model:\n  w1: 2\n"}, [],
         "config section 'model' .*a.yaml.* must be a mapping, got 5"),
        ({"a": "extends: b.yaml\n", "b": "extends: a.yaml\n"}, [], "cycle: a.yaml → b.yaml → a.yaml"),
        ({"a": "extends: a.yaml\n"}, [], "cycle: a.yaml → a.yaml"),
    ],
)
def test_malformed_files_name_the_file_and_the_field(tmp_path, files, overrides, message):
    with pytest.raises(ValueError, match=message):
        load_train_config(_write(tmp_path, **files), overrides)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--set", "optim.iterations=null"], "optim.iterations must be int, got None"),
        (["--set", "data.eval_size=[a,b]"], "data.eval_size must be [width, height]"),
        (["--set", "data.scale_max=.inf"], "data.scale_max must be a finite number, got inf"),
        (["--set", "optim.lr=.inf"], "optim.lr must be a finite number, got inf"),
        (["--config", "{tmp}/a.yaml"], "cycle: a.yaml → b.yaml → a.yaml"),
        (["--config", "{tmp}/scalar.yaml", "--set", "model.w1=2"], "must be a mapping, got 5"),
    ],
)
def test_the_cli_prints_one_line_naming_the_field(tmp_path, capsys, arguments, message):
    from egnet_core.cli import main

    _write(tmp_path, a="extends: b.yaml\n", b="extends: a.yaml\n", scalar="model: 5\n")
    assert main(["train", *(argument.format(tmp=tmp_path) for argument in arguments)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("egnet train: error: ") and error.count("\n") == 1, error
    assert message in error
