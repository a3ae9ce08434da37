"""The `egnet` command as a user runs it: real console script, real files."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import night_frames, tiny_model, tiny_torchvision_model, with_egl_attention
from helpers_ros import next_domain_id

from egnet_core.cli import build_parser, main
from egnet_core.demo import run_demo
from egnet_core.deploy.options import available_cpus
from egnet_core.model.checkpoint import save_checkpoint
from egnet_core.reports.visualize import exposure_picture

EGNET = str(Path(sys.executable).parent / "egnet")


def _egnet(*args, check=True):
    completed = subprocess.run([EGNET, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check:
        assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.mark.integration
def test_predict_writes_colour_labels_train_ids_and_exposure(tmp_path, tiny_checkpoint):
    (frame,) = night_frames(1, width=160, height=96)
    image_path = tmp_path / "night.png"
    cv2.imwrite(str(image_path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    before = image_path.read_bytes()
    _egnet("predict", image_path, "--checkpoint", tiny_checkpoint, "--out", tmp_path / "out", "--device", "cpu")
    colour = cv2.imread(str(tmp_path / "out" / "night_color.png"))
    train_ids = cv2.imread(str(tmp_path / "out" / "night_trainIds.png"), cv2.IMREAD_UNCHANGED)
    exposure = cv2.imread(str(tmp_path / "out" / "night_exposure.png"))
    assert colour.shape == exposure.shape == (96, 160, 3)
    assert train_ids.shape == (96, 160) and train_ids.max() < 19
    assert image_path.read_bytes() == before  # the input is never modified


def test_predict_attention_writes_both_egls_maps_beside_the_labels(tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "egnet.pt", with_egl_attention(tiny_model(), stage2=0.2, stage3=0.8))
    (frame,) = night_frames(1, width=96, height=64)
    cv2.imwrite(str(tmp_path / "night.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    assert main(["predict", str(tmp_path / "night.png"), "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "out"), "--device", "cpu", "--attention"]) == 0
    out = tmp_path / "out"
    assert sorted(path.name for path in out.iterdir()) == [
        "night_attention_stage2.png", "night_attention_stage3.png", "night_color.png", "night_exposure.png",
        "night_trainIds.png"]
    assert "night_attention_stage3.png" in capsys.readouterr().out
    for stage, value in ((2, 0.2), (3, 0.8)):
        picture = cv2.cvtColor(cv2.imread(str(out / f"night_attention_stage{stage}.png")), cv2.COLOR_BGR2RGB)
        expected = exposure_picture(np.full((64, 96), value, np.float32))
        np.testing.assert_array_equal(picture, expected)  # W_r in the exposure map's colours


@pytest.mark.parametrize("model", [lambda: tiny_torchvision_model("deeplabv3"), lambda: tiny_model(variant="no_egl")],
                         ids=["deeplabv3", "no_egl"])
def test_predict_attention_is_refused_for_a_model_without_egls_before_any_file_is_written(tmp_path, capsys, model):
    checkpoint = save_checkpoint(tmp_path / "model.pt", model())
    cv2.imwrite(str(tmp_path / "night.png"), np.zeros((64, 96, 3), np.uint8))
    assert main(["predict", str(tmp_path / "night.png"), "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "out"), "--device", "cpu", "--attention"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"egnet predict: error: --attention with {str(checkpoint)!r}: the model is ")
    assert "which has no Exposure Guidance Layer and so no attention maps (Eq. 1)" in error
    assert len(error.strip().splitlines()) == 1
    assert list((tmp_path / "out").iterdir()) == []


def test_more_threads_than_cpus_are_capped_with_a_warning(tmp_path, tiny_checkpoint, caplog):
    image_path = tmp_path / "night.png"
    cv2.imwrite(str(image_path), np.zeros((32, 64, 3), np.uint8))
    threads = torch.get_num_threads()
    try:
        assert main(["predict", str(image_path), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "out"),
                     "--device", "cpu", "--threads", "9999"]) == 0
        assert torch.get_num_threads() == available_cpus()  # 9999 threads made predict 12 times slower
    finally:
        torch.set_num_threads(threads)
    assert f"--threads is 9999, more than the {available_cpus()} CPU(s) this process may use" in caplog.text


@pytest.mark.integration
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["predict", "missing.png", "--checkpoint", "{ckpt}", "--out", "o"], "image 'missing.png' does not exist"),
        (["predict", "x.png", "--checkpoint", "nowhere.pt", "--out", "o"], "checkpoint 'nowhere.pt' does not exist"),
        (["predict", "x.png", "--checkpoint", "{ckpt}", "--out", "o", "--device", "tpu"], "got 'tpu'"),
        (["train", "--set", "optim.lr=-1"], "optim.lr must be positive, got -1"),
        (["synth-data", "{tmp}", "--size", "10x10"], "at least 32x32"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(tmp_path, tiny_checkpoint, arguments, message):
    arguments = [a.format(ckpt=tiny_checkpoint, tmp=tmp_path) for a in arguments]
    completed = subprocess.run([EGNET, *arguments], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_predict_chooses_its_precision_by_default_and_evaluate_keeps_fp32():
    parser = build_parser()
    predict = parser.parse_args(["predict", "x.png", "--checkpoint", "c.pt", "--out", "o"])
    evaluate = parser.parse_args(["evaluate", "--checkpoint", "c.pt", "--data", "d", "--out", "o"])
    assert (predict.precision, evaluate.precision) == ("auto", "fp32")  # published metrics: the same everywhere
    auto = parser.parse_args(["evaluate", "--checkpoint", "c.pt", "--data", "d", "--out", "o", "--precision", "auto"])
    assert auto.precision == "auto"


def test_predict_logs_the_precision_it_chose(tmp_path, tiny_checkpoint, caplog):
    image_path = tmp_path / "night.png"
    cv2.imwrite(str(image_path), cv2.cvtColor(night_frames(1, width=96, height=64)[0], cv2.COLOR_RGB2BGR))
    with caplog.at_level(logging.INFO, logger="egnet_core.deploy.precision_choice"):
        assert main(["predict", str(image_path), "--checkpoint", str(tiny_checkpoint), "--out",
                     str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert "precision auto chose" in caplog.text and "(96×64 frames, batch 1)" in caplog.text


@pytest.mark.parametrize(
    ("arguments", "option", "place"),
    [
        (["predict", "missing.png", "--checkpoint", "nowhere.pt", "--out", "{blocked}/out"], "--out", "out"),
        (["evaluate", "--checkpoint", "nowhere.pt", "--data", "nowhere", "--out", "{blocked}/out"], "--out", "out"),
        (["export", "--checkpoint", "nowhere.pt", "--onnx", "{blocked}/model.onnx"], "--onnx", "model.onnx"),
        (["bench", "--quick", "--checkpoint", "nowhere.pt", "--out", "{blocked}/out"], "--out", "out"),
        (["synth-data", "{blocked}/out", "--train", "1", "--val", "1"], "OUT_DIR", "out"),
        (["train", "--set", "data.root=nowhere", "--set", "run.out_dir={blocked}/out"], "run.out_dir", "out"),
        (["stats", "--data", "nowhere", "--out", "{blocked}/figure.png"], "--out", "figure.png"),
        (["bag", "segment", "nowhere", "{blocked}/bag", "--checkpoint", "nowhere.pt"], "OUT_BAG", "bag"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_an_unwritable_output_is_refused_before_any_work(tmp_path, capsys, arguments, option, place):
    # A file where the output folder should be: unwritable for every user, root included. Every other input is
    # missing, so an error about the output proves that it was checked first.
    blocked = tmp_path / "notes.txt"
    blocked.write_text("a file, not a folder")
    assert main([argument.format(blocked=blocked) for argument in arguments]) == 2
    error = capsys.readouterr().err
    assert f"{option} {str(blocked / place)!r} cannot be written: {str(blocked)!r} is a file, not a folder" in error
    assert blocked.read_text() == "a file, not a folder"


@pytest.mark.integration
def test_synth_data_stats_and_evaluate_on_a_generated_data_set(tmp_path, tiny_checkpoint):
    _egnet("synth-data", tmp_path / "data", "--train", 2, "--val", 2, "--size", "128x64", "--seed", 3)
    assert len(list((tmp_path / "data" / "NightCity-images" / "images" / "val").glob("*.png"))) == 2
    stats = _egnet("stats", "--data", tmp_path / "data", "--out", tmp_path / "figure4.png")
    assert "[0.9, 1.0]" in stats.stdout and (tmp_path / "figure4.png").stat().st_size > 0
    _egnet("evaluate", "--checkpoint", tiny_checkpoint, "--data", tmp_path / "data", "--out", tmp_path / "report",
           "--eval-size", "96x96", "--device", "cpu")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    for key in ("miou", "mef1", "pixel_accuracy", "iou", "ef1"):
        assert key in metrics
    assert set(metrics["iou"]) >= {"road", "car", "sky"}
    assert len(metrics["ef1"]) == 10
    example = cv2.imread(str(next((tmp_path / "report" / "examples").glob("*.png"))))
    assert example.shape[1] == 6 * 2 * example.shape[0]  # 2:1 panels: ..., input exposure, then both EGLs' W_r
    assert "Figure 9" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.integration
def test_training_script_and_cli_are_one_code_path(tmp_path):
    script = Path(__file__).resolve().parent.parent / "training" / "train.py"
    completed = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0
    assert completed.stdout == _egnet("train", "--help").stdout


@pytest.mark.integration
def test_the_demo_pipeline_at_a_tiny_size_then_again_over_its_own_output_but_not_over_other_files(tmp_path):
    report = run_demo(tmp_path / "demo", size=(128, 64), iterations=2, device="cpu", domain_id=next_domain_id())
    run = tmp_path / "demo" / "run"
    assert report.checkpoint == run / "final.pt"  # the last iteration's model, not one chosen on val
    assert len((run / "holdout.txt").read_text().split("\n")) > 2  # validated on held-out scenes
    assert list(report.steps) == ["night_drive"] and not report.skipped  # the ROS side's step, found by entry point
    drive = report.steps["night_drive"].result
    assert drive.offline.frames == 6 and not drive.offline.skipped and drive.offline.damage is None
    # The node keeps the newest frame only (it may skip some when the machine is busy), never the last one.
    assert drive.live.played == 6 and drive.live.complete
    assert all(1 <= count <= 6 for count in drive.live.recorded.values()), drive.live.recorded
    assert "## The night drive as a rosbag2" in report.pictures["report"].read_text()
    assert 0.0 <= report.miou <= 1.0 and 0.0 <= report.mef1 <= 1.0
    for path in report.pictures.values():
        assert path.stat().st_size > 0
    assert "mIoU" in report.pictures["report"].read_text()
    strip = cv2.imread(str(report.pictures["strip"]))
    assert strip.shape[0] == 3 * 192  # one row per example

    # The README's command, again: the demo replaces what it wrote, and only that.
    options = {"size": (128, 64), "iterations": 1, "device": "cpu", "drive_frames": 2}
    (tmp_path / "demo" / "stale.txt").write_text("left over")
    second = run_demo(tmp_path / "demo", domain_id=next_domain_id(), **options)
    assert second.checkpoint == report.checkpoint and second.checkpoint.is_file()
    assert not (tmp_path / "demo" / "stale.txt").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="'.*mine': it holds files that no earlier demo wrote"):
        run_demo(tmp_path / "mine", domain_id=next_domain_id(), **options)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def _predict(tmp_path, checkpoint, *images, extra=()):
    return main(["predict", *map(str, images), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"),
                 "--device", "cpu", *extra])


def test_predict_keeps_inputs_of_one_name_from_different_folders_apart(tmp_path, tiny_checkpoint):
    first, second = night_frames(2, width=64, height=32)
    for folder, frame in (("left", first), ("right", second)):
        (tmp_path / "drive" / folder).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "drive" / folder / "night.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    images = [tmp_path / "drive" / "left" / "night.png", tmp_path / "drive" / "right" / "night.png"]
    assert _predict(tmp_path, tiny_checkpoint, *images) == 0
    written = sorted(str(path.relative_to(tmp_path / "out")) for path in (tmp_path / "out").rglob("*.png"))
    assert written == [f"{side}/night_{kind}.png" for side in ("left", "right")
                       for kind in ("color", "exposure", "trainIds")]
    for side, frame in (("left", first), ("right", second)):  # each exposure picture is its own frame's
        exposure = cv2.imread(str(tmp_path / "out" / side / "night_exposure.png"))
        assert exposure.shape == frame.shape


def test_predict_names_inputs_of_one_stem_in_one_folder_by_their_extension(tmp_path, tiny_checkpoint):
    (frame,) = night_frames(1, width=64, height=32)
    for suffix in (".png", ".jpg"):
        cv2.imwrite(str(tmp_path / f"night{suffix}"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    assert _predict(tmp_path, tiny_checkpoint, tmp_path / "night.png", tmp_path / "night.jpg") == 0
    assert (tmp_path / "out" / "night_png_trainIds.png").is_file()
    assert (tmp_path / "out" / "night_jpg_trainIds.png").is_file()


def test_predict_never_replaces_earlier_results_unless_asked(tmp_path, tiny_checkpoint, capsys):
    (frame,) = night_frames(1, width=64, height=32)
    image = tmp_path / "night.png"
    cv2.imwrite(str(image), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "out").mkdir()
    kept = tmp_path / "out" / "night_trainIds.png"
    kept.write_bytes(b"an earlier result")
    assert _predict(tmp_path, tiny_checkpoint, image) == 2
    error = capsys.readouterr().err
    assert f"1 output file(s) in --out exist already ({kept}); pass --overwrite" in error
    assert kept.read_bytes() == b"an earlier result"
    assert not (tmp_path / "out" / "night_color.png").exists()  # refused before any work
    assert _predict(tmp_path, tiny_checkpoint, image, extra=["--overwrite"]) == 0
    assert cv2.imread(str(kept), cv2.IMREAD_UNCHANGED).shape == (32, 64)


def test_stats_counts_the_exposure_of_a_folder_of_images_without_labels(tmp_path, capsys):
    photos = tmp_path / "night-photos"
    for index, frame in enumerate(night_frames(3, width=64, height=32)):
        (photos / f"trip{index % 2}").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(photos / f"trip{index % 2}" / f"{index}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    assert main(["stats", "--data", str(photos), "--out", str(tmp_path / "figure4.png")]) == 0
    out = capsys.readouterr().out
    assert "no labels: image folder" in out and "label statistics (image/label pairs, share of ignored" in out
    assert f"exposure of 3 train images in {photos}" in out and "[0.9, 1.0]" in out
    assert (tmp_path / "figure4.png").stat().st_size > 0


def test_stats_of_a_folder_without_images_names_both_problems(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["stats", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "figure4.png")]) == 2
    error = capsys.readouterr().err
    assert "images/train' does not exist" in error and "holds no .png/.jpg/.jpeg images" in error


@pytest.mark.parametrize("dataset", ["acdc-night", "dark-zurich"])
def test_synth_data_and_evaluate_in_a_night_benchmark_layout(tmp_path, tiny_checkpoint, dataset):
    data = tmp_path / dataset
    assert main(["synth-data", str(data), "--dataset", dataset, "--train", "1", "--val", "2", "--size", "64x32"]) == 0
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--data", str(data), "--dataset", dataset,
                 "--out", str(tmp_path / "report"), "--eval-size", "64x32", "--device", "cpu"]) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["images"] == 2 and len(metrics["ef1"]) == 10
