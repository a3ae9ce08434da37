"""egnet ablate and egnet compare on generated NightCity scenes: tiny backbone, a few iterations."""

import json
import os

import pytest

from egnet_core.cli import main
from egnet_core.data.synthetic import write_nightcity
from egnet_core.reports.comparison import read_row

# Every variant gets the same seed and budget; the val split (NightCity's test set) is scored at its size.
SETTINGS = ["--set", "model.backbone=resnet18", "--set", "model.output_stride=8", "--set", "data.crop_size=64",
            "--set", "data.workers=0", "--set", "optim.batch_size=2", "--set", "optim.iterations=2",
            "--set", "run.val_every=2", "--set", "run.checkpoint_every=1", "--set", "run.device=cpu",
            ]


@pytest.fixture(scope="module")
def night_data(tmp_path_factory):
    return write_nightcity(tmp_path_factory.mktemp("nightcity"), train=6, val=2, width=128, height=64, seed=0).root


@pytest.mark.slow
def test_the_study_trains_and_scores_each_variant_and_a_rerun_resumes_instead_of_retraining(night_data, tmp_path,
                                                                                             capsys):
    out = tmp_path / "study"
    # A study killed while training its second variant: egnet done, no_egl stopped after iteration 1 (what a kill
    # leaves behind, since checkpoints are written whole).
    assert main(["ablate", "--data", str(night_data), "--out", str(out), "--variants", "egnet",
                 "--native-size", *SETTINGS]) == 0
    assert main(["train", *SETTINGS, "--set", f"data.root={night_data}", "--set", "model.variant=no_egl",
                 "--set", f"run.out_dir={out / 'runs/no_egl'}", "--set", "run.stop_at=1"]) == 0
    assert not (out / "runs/no_egl/final.pt").exists()
    done_egnet = (out / "runs/egnet/final.pt").stat().st_mtime_ns
    capsys.readouterr()

    assert main(["ablate", "--data", str(night_data), "--out", str(out), "--variants", "egnet,no_egl,fcn",
                 "--native-size", *SETTINGS]) == 0
    printed = capsys.readouterr().out
    assert "egnet: done earlier" in printed and "no_egl: trained" in printed and "fcn: trained" in printed
    assert (out / "runs/egnet/final.pt").stat().st_mtime_ns == done_egnet, "a finished variant is not retrained"
    log = (out / "runs/no_egl/train.log").read_text()
    assert "resum" in log.lower(), log  # continued from its iteration-1 checkpoint, not from scratch

    table = (out / "comparison.md").read_text()
    assert table.count("| egnet |") == 1 and table.count("| no_egl |") == 1
    assert "EF1 [0.0, 0.1)" in table and "GFLOPs (1024×512)" in table
    assert (out / "comparison.png").stat().st_size > 0
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert [row["name"] for row in rows] == ["egnet", "no_egl", "fcn"]  # Table 1's FCN beside the ablations
    assert table.count("| fcn |") == 1
    egnet, no_egl = (read_row(out / "runs" / name) for name in ("egnet", "no_egl"))
    # The EGL's two attention convolutions: the full model has more parameters than "w/o EGL".
    assert egnet.cost.parameters > no_egl.cost.parameters > 0
    assert egnet.cost.gflops > 0 and egnet.cost.ms_per_frame > 0 and egnet.cost.device == "cpu"
    for row in (egnet, no_egl):
        assert 0.0 <= row.miou <= 1.0 and 0.0 <= row.mef1 <= 1.0


def write_metrics(path, miou, mef1, bins=("[0.0, 0.1)", "[0.1, 0.2)")):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"miou": miou, "mef1": mef1, "ef1": {name: mef1 for name in bins}}))
    return path


def test_compare_builds_the_table_from_two_runs_of_other_people(tmp_path, capsys):
    ours = write_metrics(tmp_path / "ours/test/metrics.json", 0.512, 0.734)  # egnet ablate's layout
    theirs = write_metrics(tmp_path / "theirs/metrics.json", 0.498, 0.701)  # egnet evaluate --out's
    assert main(["compare", str(tmp_path / "ours"), str(theirs), "--out", str(tmp_path / "table"),
                 "--title", "NightCity test"]) == 0
    table = (tmp_path / "table/comparison.md").read_text()
    assert "# NightCity test" in table
    assert "| ours | **51.20** | **0.7340** | 0.734 | 0.734 | – | – | – |" in table
    assert "| theirs | 49.80 | 0.7010 | 0.701 | 0.701 | – | – | – |" in table
    assert os.path.getsize(tmp_path / "table/comparison.png") > 0
    assert str(ours) in table


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing", "does not exist: give a metrics.json or a run folder"),
    (lambda tmp: tmp, "holds no test/metrics.json or metrics.json"),
    (lambda tmp: (tmp / "metrics.json").write_text("{}") and tmp / "metrics.json",
     "is not a metrics.json of egnet evaluate"),
])
def test_compare_names_what_it_cannot_read(tmp_path, make, message):
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        read_row(make(tmp_path))


def test_runs_scored_with_different_bins_cannot_share_a_table(tmp_path, capsys):
    write_metrics(tmp_path / "a/metrics.json", 0.5, 0.5)
    write_metrics(tmp_path / "b/metrics.json", 0.5, 0.5, bins=("[0.0, 0.5)", "[0.5, 1.0]"))
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "t")]) == 2
    assert "runs scored with different bins cannot share a table" in capsys.readouterr().err


def test_ablate_names_unknown_variants(tmp_path, capsys):
    assert main(["ablate", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--variants", "egnet,dropout"]) == 2
    assert "unknown variant(s) ['dropout']" in capsys.readouterr().err
