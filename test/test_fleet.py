"""``egnet bag segment IN... --out DIR`` on fleets of real bags: mirrored outputs, one summary, workers, torchrun,
runs killed and resumed."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import gray_frame, night_frames, snapshot
from helpers_ros import image_pixels, read_bag
from rosbags.rosbag2 import Reader, Writer

from egnet_core.cli import main
from egnet_core.deploy.inference import Segmenter
from egnet_core.model.checkpoint import load_model
from egnet_ros.bags import TYPESTORE, write_camera_bag
from egnet_ros.fleet_outputs import LOCK_FILE

CAMERA = "/camera/image_raw"
LABELS = f"/egnet{CAMERA}/labels"
# Each drive of the fleet fixture: where it lies under drives/, its frames, how it is stored.
DRIVES = {"2026-11-01/a": (3, "sqlite3", False), "2026-11-01/late/b": (2, "mcap", False),
          "2026-11-02/c": (4, "sqlite3", True)}


def fleet_command(*inputs, out, checkpoint, extra=()) -> list[str]:
    # fp32: the default, auto, times precisions at start-up; every test here compares results
    return ["bag", "segment", *map(str, inputs), "--out", str(out), "--checkpoint", str(checkpoint),
            "--device", "cpu", "--precision", "fp32", *extra]


@pytest.fixture
def fleet(tmp_path) -> Path:
    root = tmp_path / "drives"
    for index, (name, (count, storage, compressed)) in enumerate(DRIVES.items()):
        write_camera_bag(root / name, night_frames(count, width=64, height=48, seed=index), storage=storage,
                         compressed=compressed)
    return root


def outputs(out: Path) -> dict[str, list[np.ndarray]]:
    """Each output bag under ``out`` by its relative path, as its label maps."""
    bags = sorted(p.parent for p in out.rglob("metadata.yaml"))
    return {bag.relative_to(out).as_posix(): [image_pixels(m, "u1") for _, m in read_bag(bag)[LABELS]]
            for bag in bags}


def drives_of(out: Path) -> dict:
    """summary.json without how the run went (``run``, seconds): what the drives held."""
    content = json.loads((out / "summary.json").read_text())
    for drive in [*content["drives"], content["total"]]:
        drive.pop("seconds")
    return {key: content[key] for key in ("drives", "total", "failed")}


def assert_same(a, b, path="summary") -> None:
    """Equal, floats to 1e-6: processes with other thread counts sum a softmax in another order."""
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{index}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def assert_same_outputs(a: Path, b: Path) -> None:
    first, second = outputs(a), outputs(b)
    assert first.keys() == second.keys()
    for name in first:
        assert len(first[name]) == len(second[name]), name
        for x, y in zip(first[name], second[name]):
            np.testing.assert_array_equal(x, y)


def hidden(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob(".*"))


def test_every_bag_in_nested_folders_goes_to_a_mirrored_tree_with_one_summary(fleet, tmp_path, tiny_checkpoint,
                                                                               capsys):
    before = snapshot(fleet)

    code = main(fleet_command(fleet, out=tmp_path / "out", checkpoint=tiny_checkpoint))

    assert code == 0
    printed = capsys.readouterr().out
    assert "3 bags under the common folder" in printed and "2026-11-01/late/b: 2 frames" in printed
    assert "9 frames in 3 drives (0 finished by an earlier run, 0 failed)" in printed
    assert snapshot(fleet) == before, "the inputs are only read"
    segmented = outputs(tmp_path / "out")
    assert {name: len(labels) for name, labels in segmented.items()} == {name: d[0] for name, d in DRIVES.items()}
    assert sorted((tmp_path / "out/2026-11-01/late/b").iterdir())[0].name == "b.mcap", "stored as the input"
    assert hidden(tmp_path / "out") == [f"{Path(name).parent}/.{Path(name).name}.drive.json".removeprefix("./")
                                        for name in sorted(DRIVES)], "no partial is left, only the records"
    reference = Segmenter(load_model(tiny_checkpoint))
    first = read_bag(fleet / "2026-11-01/a")[CAMERA][0][1]
    expected = reference.predict(np.ascontiguousarray(image_pixels(first, "u1", 3)[..., ::-1])).labels
    np.testing.assert_array_equal(segmented["2026-11-01/a"][0], expected)

    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert [d["bag"] for d in summary["drives"]] == sorted(DRIVES)
    assert summary["total"]["frames"] == 9 and summary["failed"] == []
    assert summary["total"]["duration_s"] == pytest.approx(0.2 + 0.1 + 0.3)  # 10 Hz: (frames - 1) / 10 each
    assert sum(summary["total"]["class_pixels"]) == 9 * 64 * 48
    assert len(summary["total"]["darkest"]) == 9, "fewer frames than the top 10: all of them, darkest first"
    markdown = (tmp_path / "out/summary.md").read_text()
    assert "3 drives, 9 frames" in markdown and "| 2026-11-02/c | 4 |" in markdown
    assert (tmp_path / "out/summary_exposure.png").is_file() and (tmp_path / "out/summary_classes.png").is_file()


def write_drive(path: Path, frames: list[np.ndarray], *, topic: str, start_ns: int) -> None:
    write_camera_bag(path, frames, topic=topic, start_ns=start_ns, rate_hz=10.0)


def test_the_summary_names_the_darkest_most_saturated_and_least_confident_frames(tmp_path, tiny_checkpoint):
    start = 1_700_000_000 * 10**9
    drives = {  # (bag, topic): frames whose exposure is known by construction
        ("day/a", "/front"): [gray_frame(120), gray_frame(90, bright_share=0.25), gray_frame(100)],
        ("night/b", "/rear"): [gray_frame(60), gray_frame(8), gray_frame(40, bright_share=0.5), gray_frame(30)],
    }
    for (bag, topic), frames in drives.items():
        write_drive(tmp_path / "drives" / bag, frames, topic=topic, start_ns=start)
    tiny = np.zeros((8, 8, 3), np.uint8)  # below the network's minimum: skipped, with its reason
    write_drive(tmp_path / "drives/night/tiny", [tiny, gray_frame(200)], topic="/front", start_ns=start)

    assert main(fleet_command(tmp_path / "drives", out=tmp_path / "out", checkpoint=tiny_checkpoint,
                              extra=["--top", "2"])) == 0

    total = json.loads((tmp_path / "out/summary.json").read_text())["total"]
    where = [(f["bag"], f["topic"], f["stamp_ns"]) for f in total["darkest"]]
    assert where == [("night/b", "/rear", start + 10**8), ("night/b", "/rear", start + 3 * 10**8)]
    assert total["darkest"][0]["value"] == pytest.approx(8 / 255)
    where = [(f["bag"], f["topic"], f["stamp_ns"], f["value"]) for f in total["most_saturated"]]
    assert where == [("night/b", "/rear", start + 2 * 10**8, 0.5), ("day/a", "/front", start + 10**8, 0.25)]
    # The least confident: the reference predictor's own mean confidence of every frame, the lowest two.
    segmenter = Segmenter(load_model(tiny_checkpoint))
    scores = sorted((float(segmenter.predict(frame, confidence=True).confidence.mean(dtype=np.float64)), bag, topic,
                     start + index * 10**8)
                    for (bag, topic), frames in [*drives.items(), (("night/tiny", "/front"), [None, gray_frame(200)])]
                    for index, frame in enumerate(frames) if frame is not None)
    assert [(f["bag"], f["topic"], f["stamp_ns"]) for f in total["least_confident"]] == [s[1:] for s in scores[:2]]
    assert [f["value"] for f in total["least_confident"]] == pytest.approx([s[0] for s in scores[:2]])
    (reason,) = total["skipped"]
    assert reason.startswith("/front: image of width=8 × height=8 is below the network's 32×32 minimum")
    markdown = (tmp_path / "out/summary.md").read_text()
    assert f"| 1 | night/b | /rear | {start // 10**9}.100000000 |" in markdown


def test_a_bag_that_cannot_be_read_fails_alone_and_is_retried_by_the_next_run(fleet, tmp_path, tiny_checkpoint,
                                                                             capsys):
    (storage,) = (fleet / "2026-11-02/c").glob("*.db3")
    original = storage.read_bytes()
    storage.write_bytes(b"not a database!!" + original[16:])

    assert main(fleet_command(fleet, out=tmp_path / "out", checkpoint=tiny_checkpoint)) == 1

    printed = capsys.readouterr().out
    assert "2026-11-02/c: FAILED: bag" in printed and "1 failed" in printed
    assert sorted(outputs(tmp_path / "out")) == ["2026-11-01/a", "2026-11-01/late/b"]
    assert not list((tmp_path / "out").rglob("*.partial")), "the failed bag's partial is removed"
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert [f["bag"] for f in summary["failed"]] == ["2026-11-02/c"]
    assert "cannot be read" in summary["failed"][0]["reason"]

    storage.write_bytes(original)
    assert main(fleet_command(fleet, out=tmp_path / "out", checkpoint=tiny_checkpoint)) == 0
    printed = capsys.readouterr().out
    assert "2026-11-01/a: finished by an earlier run (3 frames)" in printed and "2026-11-02/c: 4 frames" in printed
    assert sorted(outputs(tmp_path / "out")) == sorted(DRIVES)


def kill_state(out: Path, state: str) -> None:
    """The state a run killed while it was finishing drive ``2026-11-02/c`` leaves, from a finished run's."""
    folder, partial = out / "2026-11-02", out / "2026-11-02/.c.partial"
    lock = json.dumps({"written_by": "egnet", "input": "drives/2026-11-02/c", "pid": 1})
    if state == "mid-bag":  # its storage file half-written, no metadata.yaml, no record
        data = (folder / "c/c.db3").read_bytes()
        (partial / "c").mkdir(parents=True)
        (partial / "c/c.db3").write_bytes(data[: len(data) // 2])
        shutil.rmtree(folder / "c")
        (folder / ".c.drive.json").unlink()
    elif state == "record written, bag not moved":
        partial.mkdir()
        (folder / "c").rename(partial / "c")
    elif state == "bag moved, partial not removed":
        partial.mkdir()
    (partial / LOCK_FILE).write_text(lock)


@pytest.mark.parametrize("state", ["mid-bag", "record written, bag not moved", "bag moved, partial not removed"])
def test_a_killed_run_is_resumed_without_redoing_finished_bags_or_leaving_a_partial(
    fleet, tmp_path, tiny_checkpoint, state, capsys
):
    command = fleet_command(fleet, out=tmp_path / "out", checkpoint=tiny_checkpoint)
    assert main(command) == 0
    reference = drives_of(tmp_path / "out")
    kill_state(tmp_path / "out", state)
    finished = {path: stamp for path, stamp in snapshot(tmp_path / "out").items()
                if "2026-11-01" in str(path)}  # the drives finished before the kill: outputs and records
    capsys.readouterr()

    assert main(command) == 0

    printed = capsys.readouterr().out
    assert {path: stamp for path, stamp in snapshot(tmp_path / "out").items() if path in finished} == finished
    assert "2026-11-01/a: finished by an earlier run" in printed
    redone = state != "bag moved, partial not removed"
    assert ("2026-11-02/c: 4 frames" in printed) == redone
    assert not list((tmp_path / "out").rglob("*.partial")), "the partial is removed"
    assert {name: len(labels) for name, labels in outputs(tmp_path / "out").items()} == \
        {name: d[0] for name, d in DRIVES.items()}
    assert drives_of(tmp_path / "out") == reference, "the summary is the uninterrupted run's"


@pytest.mark.integration
def test_a_run_killed_mid_bag_by_sigkill_is_resumed(tmp_path, tiny_checkpoint):
    """SIGKILL once the first drive is published and the second's storage file is being written."""
    write_camera_bag(tmp_path / "drives/a_short", night_frames(2, width=64, height=48))
    long_frames = 150  # seconds of work for the tiny model: the kill lands long before it is done
    scenes = night_frames(5, width=64, height=48)
    write_camera_bag(tmp_path / "drives/b_long", (scenes[i % len(scenes)] for i in range(long_frames)))
    out = tmp_path / "out"
    command = [str(Path(sys.executable).with_name("egnet")), *fleet_command(tmp_path / "drives", out=out,
                                                                           checkpoint=tiny_checkpoint)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.monotonic() + 300
        while not ((out / ".a_short.drive.json").exists() and (out / ".b_long.partial/b_long/b_long.db3").exists()):
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the run never started the second bag"
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    short = snapshot(out / "a_short") | {out / ".a_short.drive.json": snapshot(out)[out / ".a_short.drive.json"]}
    killed_mid_bag = not (out / "b_long").exists()  # else the bag was published in the instant before the kill

    assert main(fleet_command(tmp_path / "drives", out=out, checkpoint=tiny_checkpoint)) == 0

    assert snapshot(out / "a_short") | {out / ".a_short.drive.json": snapshot(out)[out / ".a_short.drive.json"]} \
        == short, "the drive finished before the kill is not redone"
    assert not list(out.rglob("*.partial"))
    assert len(read_bag(out / "b_long")[LABELS]) == long_frames
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"]["frames"] == long_frames + 2
    assert summary["run"]["resumed"] == (["a_short"] if killed_mid_bag else ["a_short", "b_long"])


@pytest.mark.integration
def test_two_workers_give_the_outputs_and_summary_of_one(fleet, tmp_path, tiny_checkpoint):
    assert main(fleet_command(fleet, out=tmp_path / "one", checkpoint=tiny_checkpoint)) == 0
    assert main(fleet_command(fleet, out=tmp_path / "two", checkpoint=tiny_checkpoint,
                              extra=["--workers", "2"])) == 0

    assert_same_outputs(tmp_path / "one", tmp_path / "two")
    assert_same(drives_of(tmp_path / "one"), drives_of(tmp_path / "two"))
    run = json.loads((tmp_path / "two/summary.json").read_text())["run"]
    assert run["workers"] == 2 and len(run["peak_memory_mib"]) == 3, "this process and its two workers"


@pytest.mark.integration
def test_two_torchrun_processes_on_gloo_split_the_bags_and_write_one_summary(fleet, tmp_path, tiny_checkpoint):
    assert main(fleet_command(fleet, out=tmp_path / "alone", checkpoint=tiny_checkpoint)) == 0
    torchrun = Path(sys.executable).with_name("torchrun")
    egnet = Path(sys.executable).with_name("egnet")
    completed = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "--no-python", str(egnet),
         *fleet_command(fleet, out=tmp_path / "ranks", checkpoint=tiny_checkpoint)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    by_rank = {rank: sorted(line.split()[2].rstrip(":") for line in lines if line.startswith(f"[rank {rank}]"))
               for rank in (0, 1)}
    assert by_rank[0] and by_rank[1], "each process took a share"
    assert sorted(by_rank[0] + by_rank[1]) == sorted(DRIVES), "every bag exactly once"
    assert sum("summary: " in line for line in lines) == 1, "rank 0 alone writes the summary"
    assert_same_outputs(tmp_path / "alone", tmp_path / "ranks")
    assert_same(drives_of(tmp_path / "alone"), drives_of(tmp_path / "ranks"))
    run = json.loads((tmp_path / "ranks/summary.json").read_text())["run"]
    assert run["world_size"] == 2 and len(run["peak_memory_mib"]) == 2


def test_outputs_in_the_way_are_refused_before_anything_is_touched(fleet, tmp_path, tiny_checkpoint, capsys):
    write_camera_bag(tmp_path / "out/2026-11-01/a", [gray_frame(30)])  # from the one-bag form: no record
    before = snapshot(tmp_path / "out")

    assert main(fleet_command(fleet, out=tmp_path / "out", checkpoint=tiny_checkpoint)) == 2

    assert "exists without its record '.a.drive.json' beside it" in capsys.readouterr().err
    assert snapshot(tmp_path / "out") == before
    assert main(fleet_command(fleet, out=tmp_path / "out", checkpoint=tiny_checkpoint, extra=["--overwrite"])) == 0
    assert len(outputs(tmp_path / "out")["2026-11-01/a"]) == 3, "egnet's bag replaced with --overwrite"

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/summary.md").write_text("my notes")
    assert main(fleet_command(fleet, out=tmp_path / "mine", checkpoint=tiny_checkpoint)) == 2
    assert "holds ['summary.md'], which an earlier egnet fleet run did not write" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["summary.md"]


@pytest.mark.parametrize("out", ["drives/segmented", "."])
def test_an_output_folder_overlapping_the_inputs_is_refused_before_it_is_created(fleet, tmp_path, tiny_checkpoint,
                                                                                 out, capsys):
    before = snapshot(tmp_path)
    assert main(fleet_command(fleet, out=tmp_path / out, checkpoint=tiny_checkpoint)) == 2
    assert "overlap" in capsys.readouterr().err
    assert snapshot(tmp_path) == before and not (fleet / "segmented").exists()


def test_the_one_bag_form_is_kept_and_ambiguous_command_lines_are_refused(fleet, tmp_path, tiny_checkpoint, capsys):
    one = ["--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    a, b = fleet / "2026-11-01/a", fleet / "2026-11-01/late/b"
    refusals = {
        (str(a), str(b), str(tmp_path / "x")): f"got 3 path(s) without --out: to segment them all, write "
                                                f"`egnet bag segment {a} {b} {tmp_path / 'x'} --out DIR`",
        (str(a), str(tmp_path / "x"), "--workers", "2"): "--workers is for many bags, with --out DIR",
        (str(a), str(tmp_path / "x"), "--top", "3"): "--top is for many bags, with --out DIR",
        (str(a), "--out", str(tmp_path / "x"), "--workers", "0"): "--workers must be at least 1, got 0",
        (str(a), "--out", str(tmp_path / "x"), "--top", "0"): "--top must be at least 1, got 0",
        (str(fleet), str(tmp_path / "x")): f"IN_BAG '{fleet}' is a folder of bags, not a bag: to segment every bag "
                                           f"under it, write `egnet bag segment {fleet} --out {tmp_path / 'x'}`",
    }
    for paths, message in refusals.items():
        assert main(["bag", "segment", *paths, *one]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "x").exists()
    with Reader(a) as reader:
        messages = [(log_time, bytes(data)) for _, log_time, data in reader.messages()]
    with Writer(tmp_path / "recorded", version=8) as writer:  # as `ros2 bag record` leaves it: no egnet mark
        connection = writer.add_connection(CAMERA, "sensor_msgs/msg/Image", typestore=TYPESTORE)
        for log_time, data in messages:
            writer.write(connection, log_time, data)
    before = snapshot(tmp_path)
    assert main(["bag", "segment", str(a), str(tmp_path / "recorded"), *one, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"OUT_BAG '{tmp_path / 'recorded'}' is a bag egnet did not write" in err
    assert f"write `egnet bag segment {a} {tmp_path / 'recorded'} --out DIR`" in err
    assert snapshot(tmp_path) == before

    assert main(["bag", "segment", str(a), str(tmp_path / "single"), *one]) == 0, "IN_BAG OUT_BAG as before"
    assert len(read_bag(tmp_path / "single")[LABELS]) == 3
