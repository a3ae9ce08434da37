import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import tiny_model, with_sigint_default, write_cityscapes

from egnet_core.config import load_train_config
from egnet_core.data.holdout import HOLDOUT_FILE, read_names
from egnet_core.data.imageio import read_label
from egnet_core.data.synthetic import write_nightcity
from egnet_core.engine.train import TrainingDiverged, build_training_data, load_pretrained, train
from egnet_core.model.checkpoint import load_checkpoint, load_model, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def night_data(tmp_path_factory):
    return write_nightcity(tmp_path_factory.mktemp("nightcity"), train=6, val=2, width=128, height=64, seed=0).root


def _config(data, out, *extra):
    return load_train_config(None, [
        f"data.root={data}", f"run.out_dir={out}", "model.backbone=resnet18", "model.output_stride=32",
        "data.crop_size=64", "data.workers=0", "data.eval_size=null", "optim.batch_size=2", "optim.lr=0.01",
        "run.log_every=1", "run.device=cpu", *extra,
    ])


def _without_the_test_split(data: Path, copy: Path) -> Path:
    """A copy of a NightCity root with no val split at all: a run that opened any val file would fail."""
    copy = shutil.copytree(data, copy)
    for folder in ("NightCity-images/images/val", "NightCity-label/label/val", "NightCity-label/color/val"):
        shutil.rmtree(copy / folder)
    return copy


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "scalars.jsonl").read_text().splitlines()]
    return {row["iteration"]: row["total"] for row in rows if "total" in row}


@pytest.mark.slow
def test_a_short_run_lowers_the_loss_and_leaves_checkpoints(night_data, tmp_path):
    summary = train(_config(night_data, tmp_path, "optim.iterations=30", "run.val_every=30",
                            "run.checkpoint_every=10", "run.keep_last=2"))
    losses = _losses(tmp_path)
    assert len(losses) == 30
    first, last = sum(losses[i] for i in range(1, 6)) / 5, sum(losses[i] for i in range(26, 31)) / 5
    assert last < 0.8 * first, (first, last)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["iter_0000020.pt", "iter_0000030.pt"]
    assert summary.last_checkpoint.name == "iter_0000030.pt"
    assert load_model(tmp_path / "best.pt").config.backbone == "resnet18"  # usable by path alone
    assert summary.final_checkpoint == tmp_path / "final.pt" and load_model(tmp_path / "final.pt")
    assert "val mIoU" in (tmp_path / "train.log").read_text()
    assert any((tmp_path / "tensorboard").iterdir())


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_loss_curve(night_data, tmp_path):
    whole = _config(night_data, tmp_path / "whole", "optim.iterations=6", "run.val_every=100")
    train(whole)
    interrupted = _config(night_data, tmp_path / "parts", "optim.iterations=6", "run.val_every=100", "run.stop_at=3")
    train(interrupted)
    assert max(_losses(tmp_path / "parts")) == 3
    resumed = _config(night_data, tmp_path / "parts", "optim.iterations=6", "run.val_every=100")
    train(resumed, resume=True)
    expected, got = _losses(tmp_path / "whole"), _losses(tmp_path / "parts")
    assert sorted(got) == list(range(1, 7))
    for iteration in range(1, 7):
        assert got[iteration] == pytest.approx(expected[iteration], rel=1e-4, abs=1e-5), iteration
    final = load_checkpoint(tmp_path / "parts" / "checkpoints" / "iter_0000006.pt")
    reference = load_checkpoint(tmp_path / "whole" / "checkpoints" / "iter_0000006.pt")
    for key, value in reference["model"].items():
        torch.testing.assert_close(final["model"][key], value, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("checkpoint_every", "reason"),
    [
        (100, r"at iteration (\d+): the loss is (nan|inf)"),  # only the last iteration would checkpoint
        (1, r"iteration (\d+): (the loss is (nan|inf)|\d+ weight tensors are not finite)"),
    ],
)
@pytest.mark.slow
def test_a_diverging_run_warns_once_then_stops_before_any_checkpoint_holds_non_finite_weights(
    night_data, tmp_path, caplog, checkpoint_every, reason
):
    # At lr 1000 the tiny model's loss grows 1e5-fold in one step; a few steps later BatchNorm statistics
    # overflow and the loss is NaN.
    config = _config(night_data, tmp_path, "optim.lr=1000.0", "optim.iterations=30", "run.val_every=100",
                     f"run.checkpoint_every={checkpoint_every}", "run.keep_last=30")
    with caplog.at_level(logging.WARNING, logger="egnet_core"), pytest.raises(TrainingDiverged) as raised:
        train(config)
    stopped = int(re.search(reason, str(raised.value)).group(1))
    assert "optim.lr" in str(raised.value)
    assert max(_losses(tmp_path)) <= stopped < 30
    growing = [record for record in caplog.records if "above its first value" in record.getMessage()]
    assert len(growing) == 1 and growing[0].levelno == logging.WARNING
    checkpoints = sorted((tmp_path / "checkpoints").glob("iter_*.pt"))
    assert all(int(path.stem.removeprefix("iter_")) < stopped for path in checkpoints)
    for path in checkpoints:
        state = torch.load(path, weights_only=True)["model"]
        assert all(torch.isfinite(tensor).all() for tensor in state.values() if tensor.is_floating_point()), path
    assert bool(checkpoints) == (checkpoint_every == 1)
    assert not (tmp_path / "best.pt").exists()


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_split_without_a_valid_label_stops_training_before_the_first_iteration(night_data, tmp_path, split):
    data = shutil.copytree(night_data, tmp_path / "data")
    for label_file in (data / "NightCity-label" / "label" / split).glob("*_labelIds.png"):
        cv2.imwrite(str(label_file), np.full_like(read_label(label_file), 200))
    with pytest.raises(ValueError, match=f"nightcity {split}: none of the .* label maps .* only the values \\[200\\]"):
        train(_config(data, tmp_path / "out", "optim.iterations=2", "run.val_every=100",
                      f"data.validate_on={'val' if split == 'val' else 'holdout'}"))
    assert not (tmp_path / "out" / "scalars.jsonl").exists()
    assert not list((tmp_path / "out" / "checkpoints").glob("*.pt"))


def test_resume_without_a_checkpoint_or_with_another_model_is_refused(night_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="found no checkpoint"):
        train(_config(night_data, tmp_path, "optim.iterations=2"), resume=True)
    train(_config(night_data, tmp_path, "optim.iterations=2", "run.val_every=100"))
    with pytest.raises(ValueError, match="cannot resume"):
        train(_config(night_data, tmp_path, "optim.iterations=4", "model.variant=sum"), resume=True)


def test_fine_tuning_refuses_a_checkpoint_with_another_number_of_classes(tmp_path):
    path = save_checkpoint(tmp_path / "seven.pt", tiny_model(num_classes=7))
    with pytest.raises(ValueError, match="segmentation_head.weight \\(7, 512, 1, 1\\) vs \\(19, 512, 1, 1\\)"):
        load_pretrained(tiny_model(), str(path))
    source = tiny_model(variant="egnet")
    target = tiny_model(variant="egnet")
    torch.nn.init.constant_(target.segmentation_head.bias, 3.0)
    load_pretrained(target, str(save_checkpoint(tmp_path / "same.pt", source)))
    torch.testing.assert_close(target.state_dict(), source.state_dict())


_WRITER = """
import sys, torch
from egnet_core.model.checkpoint import save_checkpoint
from egnet_core.model.egnet import EGNet
model = EGNet(backbone="resnet50")
generation = 0
while True:
    save_checkpoint(sys.argv[1], model, generation=generation)
    print(generation, flush=True)  # after the rename: this generation is the file's content now
    generation += 1
"""


@pytest.mark.integration
def test_sigkill_while_writing_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "model.pt"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "0"
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".model.pt.*.tmp")):  # a later save is under way
            assert time.monotonic() < deadline, "the writer never started a second checkpoint"
            time.sleep(0.005)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    finished = [int(line) for line in writer.stdout.read().split()]
    last = finished[-1] if finished else 0
    # The file holds the last generation reported written, or the one whose rename beat its report; never an
    # earlier one, never a torn one.
    assert load_checkpoint(path)["generation"] in (last, last + 1)
    assert load_model(path).config.backbone == "resnet50"


@pytest.mark.integration
def test_torchrun_with_two_processes_on_gloo(night_data, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    completed = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(ROOT / "training" / "train.py"),
         "--set", f"data.root={night_data}", "--set", f"run.out_dir={tmp_path}", "--set", "model.backbone=resnet18",
         "--set", "model.output_stride=32", "--set", "data.crop_size=64", "--set", "data.workers=0",
         "--set", "data.eval_size=null", "--set", "optim.batch_size=4", "--set", "optim.iterations=3",
         "--set", "run.log_every=1", "--set", "run.val_every=3", "--set", "run.device=cpu"],
        capture_output=True, text=True, timeout=600, env=environment,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert sorted(_losses(tmp_path)) == [1, 2, 3]
    assert load_model(tmp_path / "checkpoints" / "iter_0000003.pt").config.backbone == "resnet18"
    assert "x2" in (tmp_path / "train.log").read_text()


@pytest.mark.slow
def test_resume_orders_checkpoints_by_iteration_and_skips_a_damaged_newest_one(night_data, tmp_path):
    train(_config(night_data, tmp_path, "optim.iterations=4", "run.val_every=100", "run.stop_at=2",
                  "run.checkpoint_every=1", "run.keep_last=5"))
    checkpoints = tmp_path / "checkpoints"
    stranger = checkpoints / "iter_notanumber.pt"  # sorts after every iter_NNNNNNN.pt by name
    stranger.write_bytes((checkpoints / "iter_0000001.pt").read_bytes())
    (checkpoints / "iter_0000003.pt").write_bytes(b"cut short")  # the newest, damaged
    train(_config(night_data, tmp_path, "optim.iterations=4", "run.val_every=100", "run.keep_last=1"), resume=True)
    rows = [json.loads(line) for line in (tmp_path / "scalars.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows if "total" in row] == [1, 2, 3, 4]  # resumed at 2, not 1 or 3
    log = (tmp_path / "train.log").read_text()
    assert f"WARNING --resume skips iter_0000003.pt: checkpoint '{checkpoints / 'iter_0000003.pt'}'" in log
    assert f"resumed from {checkpoints / 'iter_0000002.pt'} at iteration 2" in log
    # Pruning to keep_last=1 keeps the newest checkpoint and leaves a file of another name alone.
    assert sorted(p.name for p in checkpoints.iterdir()) == ["iter_0000004.pt", "iter_notanumber.pt"]
    assert stranger.read_bytes() == (tmp_path / "checkpoints" / "iter_notanumber.pt").read_bytes()


def test_resume_with_only_damaged_checkpoints_names_them(night_data, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "iter_0000005.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="no readable checkpoint .* iter_0000005.pt: checkpoint .* is empty"):
        train(_config(night_data, tmp_path, "optim.iterations=8"), resume=True)


@pytest.mark.integration
@pytest.mark.parametrize("program", ["egnet train", "training/train.py"])
def test_sigint_stops_training_cleanly_and_names_the_checkpoint_to_resume_from(night_data, tmp_path, program):
    command = ([str(Path(sys.executable).parent / "egnet"), "train"] if program == "egnet train"
               else [sys.executable, str(ROOT / "training" / "train.py")])
    settings = [f"data.root={night_data}", f"run.out_dir={tmp_path / 'run'}", "model.backbone=resnet18",
                "model.output_stride=32", "data.crop_size=64", "data.workers=1", "data.eval_size=null",
                "optim.batch_size=2", "optim.iterations=100000", "run.val_every=100000", "run.checkpoint_every=1",
                "run.device=cpu"]
    checkpoints = tmp_path / "run" / "checkpoints"
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        # A session of its own, so that the signal reaches the whole process group, as Ctrl-C in a terminal does.
        trainer = subprocess.Popen(with_sigint_default([*command, *(f"--set={setting}" for setting in settings)]),
                                   stdout=stdout, stderr=stderr, start_new_session=True,
                                   env=dict(os.environ, OMP_NUM_THREADS="1"))
        try:
            deadline = time.monotonic() + 300
            while not list(checkpoints.glob("iter_*.pt")):  # the loop runs: its first checkpoint is written
                assert trainer.poll() is None, (tmp_path / "stderr").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
                time.sleep(0.05)
            os.killpg(trainer.pid, signal.SIGINT)
            trainer.wait(timeout=120)
        finally:
            if trainer.poll() is None:
                os.killpg(trainer.pid, signal.SIGKILL)
                trainer.wait()
    errors = (tmp_path / "stderr").read_text()
    assert trainer.returncode == 130, errors[-3000:]
    assert "Traceback" not in errors and "KeyboardInterrupt" not in errors, errors[-3000:]
    newest = max(checkpoints.glob("iter_*.pt"))
    iteration = int(newest.stem.split("_")[1])
    assert f"--resume continues from {newest} (iteration {iteration})" in errors, errors[-3000:]
    assert not list(checkpoints.glob(".*.tmp"))  # a save cut short by the signal left nothing behind


@pytest.mark.slow
def test_training_validates_on_held_out_train_images_and_never_reads_the_test_split(night_data, tmp_path):
    data = _without_the_test_split(night_data, tmp_path / "data")
    # 5 iterations, validation every 2: the last iteration is neither a validation nor a checkpoint multiple.
    summary = train(_config(data, tmp_path / "run", "optim.iterations=5", "run.val_every=2",
                            "run.checkpoint_every=2", "run.keep_last=5"))
    held_out = read_names(tmp_path / "run" / HOLDOUT_FILE, "holdout")
    assert len(held_out) == 1 and summary.validated_on == "1 held-out train images"  # 10% of 6, at least one
    assert "on 1 images" in (tmp_path / "run" / "train.log").read_text()
    assert load_checkpoint(tmp_path / "run" / "best.pt")["validated_on"] == summary.validated_on
    final = load_checkpoint(tmp_path / "run" / "final.pt")
    assert final["iteration"] == 5 and summary.final_checkpoint == tmp_path / "run" / "final.pt"
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "iter_0000005.pt")
    for key, value in last["model"].items():
        torch.testing.assert_close(final["model"][key], value)
    # The same data set, told to validate on val, fails at once: the run above really had no val to read.
    with pytest.raises(FileNotFoundError, match="images/val"):
        train(_config(data, tmp_path / "explicit", "optim.iterations=2", "data.validate_on=val"))


def test_the_held_out_images_are_taken_out_of_the_training_set(night_data, tmp_path):
    data = build_training_data(_config(night_data, tmp_path, "data.holdout=0.5"))
    training, validation = data.train.names, [sample.name for sample in data.validation]
    assert sorted(validation) == list(data.held_out) and len(validation) == 3
    assert not set(training) & set(validation) and len(training) + len(validation) == 6
    assert data.train[0].image.shape == (3, 64, 64)  # the training view is transformed, the held-out one raw
    assert not (tmp_path / HOLDOUT_FILE).exists()  # no run folder given: nothing written


def test_a_list_of_names_holds_out_those_images(night_data, tmp_path):
    (tmp_path / "mine.txt").write_text("# mine\nChicago_0000\n\nNewYork_0002\n")
    data = build_training_data(_config(night_data, tmp_path, f"data.holdout={tmp_path / 'mine.txt'}"),
                               run_dir=tmp_path / "run")
    assert data.held_out == ("Chicago_0000", "NewYork_0002")
    assert read_names(tmp_path / "run" / HOLDOUT_FILE, "holdout") == data.held_out
    (tmp_path / "wrong.txt").write_text("Chicago_0000\nAtlantis_0042\n")
    with pytest.raises(ValueError, match="1 held-out names are not in the training split: Atlantis_0042"):
        build_training_data(_config(night_data, tmp_path, f"data.holdout={tmp_path / 'wrong.txt'}"))
    with pytest.raises(FileNotFoundError, match=f"data.holdout '{tmp_path / 'none.txt'}' cannot be read"):
        build_training_data(_config(night_data, tmp_path, f"data.holdout={tmp_path / 'none.txt'}"))
    with pytest.raises(ValueError, match="data.holdout 0.95 holds out 6 of the 6 training images"):
        build_training_data(_config(night_data, tmp_path, "data.holdout=0.95"))


@pytest.mark.slow
def test_resume_keeps_the_held_out_images_and_refuses_a_changed_choice(night_data, tmp_path):
    settings = ("optim.iterations=4", "run.val_every=2", "data.holdout=0.3")
    train(_config(night_data, tmp_path, *settings, "run.stop_at=2"))
    written = (tmp_path / HOLDOUT_FILE).read_bytes()
    held_out = read_names(tmp_path / HOLDOUT_FILE, "holdout")
    assert len(held_out) == 2  # 30% of 6
    other = tmp_path / "other.txt"
    other.write_text("\n".join(sorted(set(_night_names(night_data)) - set(held_out))[:2]) + "\n")
    with pytest.raises(ValueError, match="cannot resume: .*holdout.txt' lists the 2 images this run held out"):
        train(_config(night_data, tmp_path, *settings, f"data.holdout={other}"), resume=True)
    with pytest.raises(ValueError, match="holdout.txt' lists images that the run in this folder held out"):
        train(_config(night_data, tmp_path, *settings, "data.validate_on=val"), resume=True)
    with pytest.raises(ValueError, match="lists the images an earlier run held out"):  # a new run, not --resume
        train(_config(night_data, tmp_path, *settings, f"data.holdout={other}"))
    summary = train(_config(night_data, tmp_path, *settings), resume=True)
    assert summary.final_checkpoint == tmp_path / "final.pt" and summary.validated_on == "2 held-out train images"
    assert (tmp_path / HOLDOUT_FILE).read_bytes() == written
    assert "resumed with the 2 held-out images listed in" in (tmp_path / "train.log").read_text()
    # The run's list, given as data.holdout, holds out the same images in a new run.
    again = build_training_data(_config(night_data, tmp_path / "again", f"data.holdout={tmp_path / HOLDOUT_FILE}"))
    assert again.held_out == held_out


def _night_names(root: Path) -> list[str]:
    return sorted(path.stem for path in (root / "NightCity-images" / "images" / "train").glob("*.png"))


@pytest.mark.slow
def test_cityscapes_plus_nightcity_trains_on_both_and_holds_out_from_each(tmp_path):
    write_cityscapes(tmp_path / "cityscapes", {"train": ("aachen", "bremen", "cologne", "dusseldorf")})
    nightcity = write_nightcity(tmp_path / "nightcity", train=4, val=1, width=128, height=64, seed=1).root
    shutil.rmtree(nightcity / "NightCity-images" / "images" / "val")  # never read: the test split
    config = _config(nightcity, tmp_path / "run", "data.dataset=cityscapes+nightcity", "optim.iterations=2",
                     f"data.cityscapes_root={tmp_path / 'cityscapes'}", "data.holdout=0.25")
    data = build_training_data(config)
    assert len(data.held_out) == 2 and sum(name.endswith("_000019") for name in data.held_out) == 1  # one each
    assert len(data.train) == 6
    assert train(config).final_checkpoint == tmp_path / "run" / "final.pt"
