"""``egnet bag segment`` on real rosbag2 bags (sqlite3 and MCAP) of generated night frames, good and damaged."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest
import yaml
from helpers import night_frames, snapshot, tiny_model, tiny_torchvision_model
from helpers_ros import TYPESTORE, image_pixels, read_bag
from rosbags.rosbag2 import Reader, Writer

from egnet_core.cli import build_parser, main
from egnet_core.data.exposure import exposure_map
from egnet_core.deploy.export import export_onnx
from egnet_core.deploy.inference import Segmenter
from egnet_core.model.checkpoint import save_checkpoint
from egnet_ros.bag_segment import total_frames
from egnet_ros.bags import BagWriter, write_camera_bag

CAMERA = "/camera/image_raw"
FRAMES = 5
RATE_HZ = 10.0


@pytest.fixture(scope="module")
def frames():
    return night_frames(FRAMES, seed=3)


def segment_command(source, output, checkpoint, *extra) -> list[str]:
    return ["bag", "segment", str(source), str(output), "--checkpoint", str(checkpoint), *extra]


def test_bag_segment_chooses_its_precision_by_default():
    parser = build_parser()
    assert parser.parse_args(segment_command("in", "out", "c.pt")).precision == "auto"
    for precision in ("auto", "fp32", "bf16", "fp16"):
        assert parser.parse_args(segment_command("in", "out", "c.pt", "--precision", precision)).precision == precision


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "jpeg"])
@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_every_frame_is_segmented_into_a_new_bag_with_the_input_headers_and_log_times(
    tmp_path, frames, tiny_checkpoint, storage, compressed, capsys
):
    source = tmp_path / "drive"
    write_camera_bag(source, frames, storage=storage, compressed=compressed, rate_hz=RATE_HZ)
    before = snapshot(source)

    # fp32, the reference's precision: the default, auto, may choose a faster path that differs on a few pixels
    code = main(segment_command(source, tmp_path / "out", tiny_checkpoint, "--batch", "2", "--color",
                                "--device", "cpu", "--precision", "fp32"))

    assert code == 0
    summary = capsys.readouterr().out
    assert f"{FRAMES} frames segmented" in summary and "frames/s) on cpu (fp32)" in summary
    assert snapshot(source) == before, "the input bag is only read"
    inputs, outputs = read_bag(source)[CAMERA], read_bag(tmp_path / "out")
    expected_topics = {CAMERA} | {f"/egnet{CAMERA}/{name}" for name in ("labels", "exposure", "color")}
    assert set(outputs) == expected_topics
    assert [t for t, _ in outputs[CAMERA]] == [t for t, _ in inputs], "the input frames are copied"
    segmenter = Segmenter(tiny_model())
    for name, encoding in (("labels", "mono8"), ("exposure", "32FC1"), ("color", "rgb8")):
        written = outputs[f"/egnet{CAMERA}/{name}"]
        assert [t for t, _ in written] == [t for t, _ in inputs], f"{name}: one message per frame, at its log time"
        for (_, msg), (_, source_msg) in zip(written, inputs):
            assert msg.header.stamp == source_msg.header.stamp and msg.header.frame_id == "camera_optical"
            assert (msg.width, msg.height, msg.encoding) == (128, 64, encoding)
    for (_, msg), (_, source_msg) in zip(outputs[f"/egnet{CAMERA}/labels"], inputs):
        if compressed:
            rgb = cv2.imdecode(source_msg.data, cv2.IMREAD_COLOR)[..., ::-1]
        else:
            rgb = image_pixels(source_msg, "u1", 3)[..., ::-1]
        np.testing.assert_array_equal(image_pixels(msg, "u1"), segmenter.predict(np.ascontiguousarray(rgb)).labels)


def test_a_network_without_an_exposure_stream_writes_each_frames_measured_exposure(tmp_path, frames, caplog):
    checkpoint = save_checkpoint(tmp_path / "fcn.pt", tiny_torchvision_model("fcn"))
    write_camera_bag(tmp_path / "drive", frames[:2])
    with caplog.at_level(logging.INFO, logger="egnet_core"):
        # fp32, the reference's precision (auto may choose bf16, whose labels differ on a few of a random net's pixels)
        assert main(segment_command(tmp_path / "drive", tmp_path / "out", checkpoint, "--no-input",
                                    "--precision", "fp32")) == 0
    assert "fcn network without an exposure stream: its exposure maps are each frame's measured exposure" in \
        caplog.text
    outputs = read_bag(tmp_path / "out")
    segmenter = Segmenter(tiny_torchvision_model("fcn"))
    labels, exposure = outputs[f"/egnet{CAMERA}/labels"], outputs[f"/egnet{CAMERA}/exposure"]
    assert len(labels) == len(exposure) == 2
    for (_, label_msg), (_, exposure_msg), rgb in zip(labels, exposure, frames):
        assert (image_pixels(label_msg, "u1") == segmenter.predict(rgb).labels).mean() >= 0.999
        np.testing.assert_allclose(image_pixels(exposure_msg, "<f4"), exposure_map(rgb), atol=1e-6)


@pytest.mark.slow
def test_an_exported_onnx_model_segments_a_bag_like_its_checkpoint(tmp_path, frames, tiny_checkpoint):
    write_camera_bag(tmp_path / "drive", frames[:2])
    exported = export_onnx(tiny_checkpoint, tmp_path / "model.onnx", size=(128, 64), dynamic=True)
    for model, out in ((tiny_checkpoint, "from_pt"), (exported, "from_onnx")):
        command = segment_command(tmp_path / "drive", tmp_path / out, model, "--no-input", "--precision", "fp32")
        assert main(command) == 0
    labels = {out: read_bag(tmp_path / out)[f"/egnet{CAMERA}/labels"] for out in ("from_pt", "from_onnx")}
    for (_, a), (_, b) in zip(labels["from_pt"], labels["from_onnx"]):
        assert (image_pixels(a, "u1") == image_pixels(b, "u1")).mean() >= 0.999


@pytest.mark.slow
def test_a_pt2e_int8_model_segments_a_bag_like_the_int8_segmenter(tmp_path, frames, trained_int8):
    write_camera_bag(tmp_path / "drive", frames[:2])
    for model, out in ((trained_int8["checkpoint"], "from_pt"), (trained_int8["int8"], "from_int8")):
        command = segment_command(tmp_path / "drive", tmp_path / out, model, "--no-input", "--precision", "fp32",
                                  "--input-size", "128x64")
        assert main(command) == 0
    labels = {out: read_bag(tmp_path / out)[f"/egnet{CAMERA}/labels"] for out in ("from_pt", "from_int8")}
    assert len(labels["from_int8"]) == 2
    # The bag tool runs the int8 file through the shared predictor: exactly its labels. How close int8 stays to
    # the float model is test_int8_pt2e's; here the float model's labels only show it is the same network.
    int8 = Segmenter.from_checkpoint(trained_int8["int8"], input_size=(128, 64))
    for frame, (_, from_int8), (_, from_pt) in zip(frames, labels["from_int8"], labels["from_pt"]):
        np.testing.assert_array_equal(image_pixels(from_int8, "u1"), int8.predict(frame).labels)
        assert (image_pixels(from_int8, "u1") == image_pixels(from_pt, "u1")).mean() >= 0.95


def test_the_output_metadata_is_what_ros2_bag_info_reads(tmp_path, frames, tiny_checkpoint):
    write_camera_bag(tmp_path / "drive", frames, storage="mcap")
    assert main(segment_command(tmp_path / "drive", tmp_path / "out", tiny_checkpoint, "--no-input",
                                "--prefix", "/night")) == 0

    info = yaml.safe_load((tmp_path / "out/metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 5 and info["storage_identifier"] == "mcap", "Humble's, which every distro reads"
    assert info["message_count"] == 2 * FRAMES
    assert info["duration"]["nanoseconds"] == round((FRAMES - 1) * 1e9 / RATE_HZ)
    for relative in info["relative_file_paths"]:
        assert (tmp_path / "out" / relative).is_file()
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert set(topics) == {f"/night{CAMERA}/labels", f"/night{CAMERA}/exposure"}
    for topic in topics.values():
        assert topic["message_count"] == FRAMES
        assert topic["topic_metadata"]["type"] == "sensor_msgs/msg/Image"
        assert topic["topic_metadata"]["serialization_format"] == "cdr"
        assert topic["topic_metadata"]["offered_qos_profiles"] == ""


def test_an_existing_output_is_kept_unless_overwrite_and_never_a_non_bag(tmp_path, frames, tiny_checkpoint, capsys):
    write_camera_bag(tmp_path / "drive", frames[:2])
    command = segment_command(tmp_path / "drive", tmp_path / "out", tiny_checkpoint)
    assert main(command) == 0
    before = snapshot(tmp_path / "out")

    assert main(command) == 2
    assert "exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert snapshot(tmp_path / "out") == before
    assert main(command + ["--overwrite"]) == 0
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/todo.txt").write_text("keep me")
    assert main(command[:3] + [str(tmp_path / "notes")] + command[4:] + ["--overwrite"]) == 2
    assert "is not a bag egnet wrote (it has no metadata.yaml); refusing to replace it" in capsys.readouterr().err
    assert (tmp_path / "notes/todo.txt").read_text() == "keep me"


def write_mixed_bag(path, frames) -> None:
    """Good frames with an undecodable message, an unknown encoding and a too-small image after the second."""
    write_camera_bag(path, frames)
    with Reader(path) as reader:
        messages = [(t, bytes(d)) for _, t, d in reader.messages()]
    shutil.rmtree(path)
    image_type, header_type = TYPESTORE.types["sensor_msgs/msg/Image"], TYPESTORE.types["std_msgs/msg/Header"]
    header = header_type(stamp=TYPESTORE.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="camera")
    depth = image_type(header=header, height=64, width=128, encoding="32FC1", is_bigendian=0, step=512,
                       data=np.zeros(64 * 512, np.uint8))
    tiny = image_type(header=header, height=8, width=8, encoding="mono8", is_bigendian=0, step=8,
                      data=np.zeros(64, np.uint8))
    after = messages[min(1, len(messages) - 1)][0] if messages else 0
    messages += [(after + 1, b"\x00\x01\x00\x00garbage"),
                 (after + 2, bytes(TYPESTORE.serialize_cdr(depth, "sensor_msgs/msg/Image"))),
                 (after + 3, bytes(TYPESTORE.serialize_cdr(tiny, "sensor_msgs/msg/Image")))]
    with BagWriter(path, "sqlite3") as writer:
        for log_time, data in sorted(messages):
            writer.write(CAMERA, "sensor_msgs/msg/Image", log_time, data)


def test_bad_messages_are_skipped_with_their_reason_and_the_rest_is_segmented(
    tmp_path, frames, tiny_checkpoint, capsys
):
    write_mixed_bag(tmp_path / "drive", frames)

    # --no-input: the input's garbage message would be copied as it is
    code = main(segment_command(tmp_path / "drive", tmp_path / "out", tiny_checkpoint, "--no-input"))

    assert code == 0
    out = capsys.readouterr().out
    assert f"{FRAMES} frames segmented" in out
    assert "skipped 1: /camera/image_raw: message of 11 bytes does not decode as sensor_msgs/msg/Image" in out
    assert "skipped 1: /camera/image_raw: unsupported image encoding '32FC1'" in out
    assert "skipped 1: /camera/image_raw: image of width=8 × height=8 is below the network's 32×32 minimum" in out
    assert len(read_bag(tmp_path / "out")[f"/egnet{CAMERA}/labels"]) == FRAMES
    assert "exposure of the drive" in out and "| [0.9, 1.0] |" in out


def truncate(path, fraction: float) -> None:
    (storage_file,) = [f for f in path.iterdir() if f.suffix in (".db3", ".mcap")]
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[: int(len(data) * fraction)])


def test_a_truncated_mcap_recording_is_segmented_up_to_the_cut(tmp_path, frames, tiny_checkpoint, capsys):
    # Camera-sized frames, so that each fills an MCAP chunk of its own (rosbags closes chunks at 1 MiB).
    large = [cv2.resize(frame, (1024, 512), interpolation=cv2.INTER_NEAREST) for frame in frames]
    write_camera_bag(tmp_path / "drive", large, storage="mcap")
    truncate(tmp_path / "drive", 0.7)  # a recorder killed mid-drive: no summary, no footer, a cut record
    (storage_file,) = (tmp_path / "drive").glob("*.mcap")
    assert total_frames(storage_file) is None  # alone, the file's lost summary held the counts: no progress total

    code = main(segment_command(tmp_path / "drive", tmp_path / "out", tiny_checkpoint))

    assert code == 0
    out = capsys.readouterr().out
    segmented = len(read_bag(tmp_path / "out")[f"/egnet{CAMERA}/labels"])
    assert 1 <= segmented < FRAMES
    assert f"{segmented} frames segmented" in out
    assert f"is damaged after {segmented} message(s): Truncated record" in out


def test_a_sqlite3_file_whose_header_is_damaged_is_an_error_naming_it(tmp_path, frames, tiny_checkpoint, capsys):
    write_camera_bag(tmp_path / "drive", frames)
    (storage_file,) = (tmp_path / "drive").glob("*.db3")
    with storage_file.open("r+b") as file:
        file.write(b"not a database!!")  # over "SQLite format 3\0": no page of it can be trusted

    code = main(segment_command(tmp_path / "drive", tmp_path / "out", tiny_checkpoint))

    assert code == 2
    assert f"bag '{tmp_path / 'drive'}' cannot be read: " in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bag_with_nothing_to_segment_exits_non_zero(tmp_path, tiny_checkpoint, capsys):
    write_mixed_bag(tmp_path / "drive", [])

    assert main(segment_command(tmp_path / "drive", tmp_path / "out", tiny_checkpoint)) == 1
    assert "0 frames segmented" in capsys.readouterr().out


def test_an_unknown_topic_is_an_error_listing_the_image_topics(tmp_path, frames, tiny_checkpoint, capsys):
    write_camera_bag(tmp_path / "drive", frames[:1])
    assert main(segment_command(tmp_path / "drive", tmp_path / "out", tiny_checkpoint, "--topic", "/front/image")) == 2
    assert "has no image topic '/front/image'; its image topics: ['/camera/image_raw']" in capsys.readouterr().err


@pytest.mark.parametrize("layout", ["input file in output", "input folder in output", "output in input",
                                    "same", "same through ..", "same through a symlink"])
@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_an_output_overlapping_the_input_is_refused_before_anything_is_touched(
    tmp_path, frames, tiny_checkpoint, storage, layout, capsys
):
    area = tmp_path / "area"
    write_camera_bag(area / "out", frames[:2], storage=storage)  # an earlier output of egnet's
    write_camera_bag(area / "out/drive", frames[:2], storage=storage)
    (storage_file,) = [f for f in (area / "out").iterdir() if f.suffix in (".db3", ".mcap")]
    (area / "link").symlink_to(area / "out/drive")
    source, output = {
        "input file in output": (storage_file, area / "out"),
        "input folder in output": (area / "out/drive", area / "out"),
        "output in input": (area / "out/drive", area / "out/drive/segmented"),
        "same": (area / "out/drive", area / "out/drive"),
        "same through ..": (area / "out/drive", area / "out/drive/../drive"),
        "same through a symlink": (area / "out/drive", area / "link"),
    }[layout]
    before = snapshot(area)

    assert main(segment_command(source, output, tiny_checkpoint, "--overwrite")) == 2

    assert "overlap" in capsys.readouterr().err
    assert snapshot(area) == before, "neither the input nor anything around it is touched"


def test_overwrite_replaces_only_a_bag_egnet_wrote_and_names_any_other_file(
    tmp_path, frames, tiny_checkpoint, capsys
):
    write_camera_bag(tmp_path / "drive", frames[:2])
    source = snapshot(tmp_path / "drive")
    command = segment_command(tmp_path / "drive", tmp_path / "out", tiny_checkpoint, "--overwrite")
    assert main(command) == 0
    (tmp_path / "out/thesis.txt").write_text("four years of work")
    before = snapshot(tmp_path / "out")

    assert main(command) == 2
    err = capsys.readouterr().err
    assert "thesis.txt" in err and "refusing to replace it" in err
    assert snapshot(tmp_path / "out") == before

    (tmp_path / "out/thesis.txt").unlink()
    assert main(command) == 0, "a bag egnet wrote, alone in its folder, is replaced"
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["metadata.yaml", "out.db3"]
    assert snapshot(tmp_path / "drive") == source, "the input is only read"


def test_overwrite_refuses_a_bag_egnet_did_not_write(tmp_path, frames, tiny_checkpoint, capsys):
    write_camera_bag(tmp_path / "drive", frames[:2])
    with Writer(tmp_path / "recorded", version=8) as writer:  # as `ros2 bag record` would leave it: no egnet mark
        connection = writer.add_connection("/imu", "std_msgs/msg/Header", typestore=TYPESTORE)
        header = TYPESTORE.types["std_msgs/msg/Header"](
            stamp=TYPESTORE.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="imu")
        writer.write(connection, 1, bytes(TYPESTORE.serialize_cdr(header, "std_msgs/msg/Header")))
    before = snapshot(tmp_path / "recorded")

    assert main(segment_command(tmp_path / "drive", tmp_path / "recorded", tiny_checkpoint, "--overwrite")) == 2

    assert "egnet did not write" in capsys.readouterr().err
    assert snapshot(tmp_path / "recorded") == before


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "jpeg"])
def test_frames_over_the_pixel_limit_are_skipped_naming_their_size_and_the_limit(
    tmp_path, frames, tiny_checkpoint, compressed, capsys
):
    small = [cv2.resize(frame, (64, 32)) for frame in frames[:2]]
    write_camera_bag(tmp_path / "drive", [small[0], frames[0], small[1], frames[1]], compressed=compressed)

    assert main(segment_command(tmp_path / "drive", tmp_path / "out", tiny_checkpoint,
                                "--max-frame-pixels", "4096")) == 0

    out = capsys.readouterr().out
    assert "2 frames segmented" in out
    assert ("skipped 2: /camera/image_raw: image of width=128 × height=64 = 8192 pixels exceeds "
            "max_frame_pixels=4096") in out
    assert [m.width for _, m in read_bag(tmp_path / "out")[f"/egnet{CAMERA}/labels"]] == [64, 64]


def test_a_pixel_limit_below_one_is_an_error(tmp_path, frames, tiny_checkpoint, capsys):
    write_camera_bag(tmp_path / "drive", frames[:1])
    assert main(segment_command(tmp_path / "drive", tmp_path / "out", tiny_checkpoint, "--max-frame-pixels", "0")) == 2
    assert "max_frame_pixels must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_mcap_cut_inside_its_first_chunk_says_where_it_is_damaged(tmp_path, frames, tiny_checkpoint, capsys):
    write_camera_bag(tmp_path / "drive", frames, storage="mcap")  # small frames: all in one chunk
    truncate(tmp_path / "drive", 0.5)
    (storage_file,) = (tmp_path / "drive").glob("*.mcap")

    assert main(segment_command(tmp_path / "drive", tmp_path / "out", tiny_checkpoint)) == 1
    out = capsys.readouterr().out
    assert "0 frames segmented" in out
    assert (f"input damaged: bag '{tmp_path / 'drive'}' is damaged after 0 message(s): "
            f"{storage_file}: Truncated record at offset") in out

    assert main(segment_command(storage_file, tmp_path / "out2", tiny_checkpoint)) == 2
    err = capsys.readouterr().err
    assert (f"bag '{storage_file}' is damaged before any image topic could be read: "
            f"{storage_file}: Truncated record at offset") in err


@pytest.mark.parametrize("fraction, layout", [(0.6, "folder"), (0.99, "folder"), (0.99, "file")])
def test_a_cut_sqlite3_file_is_segmented_up_to_its_first_lost_page(tmp_path, tiny_checkpoint, fraction, layout, capsys):
    frames = night_frames(40, width=64, height=32, seed=4)  # enough rows that the table's pages spread out
    write_camera_bag(tmp_path / "full", frames)
    recorded = [t for t, _ in read_bag(tmp_path / "full")[CAMERA]]
    shutil.copytree(tmp_path / "full", tmp_path / "drive")
    truncate(tmp_path / "drive", fraction)
    (storage_file,) = (tmp_path / "drive").glob("*.db3")
    before = snapshot(tmp_path / "drive")

    source = tmp_path / "drive" if layout == "folder" else storage_file

    code = main(segment_command(source, tmp_path / "out", tiny_checkpoint))

    out = capsys.readouterr().out
    assert code == 0, out
    segmented = [t for t, _ in read_bag(tmp_path / "out")[f"/egnet{CAMERA}/labels"]]
    assert 1 <= len(segmented) <= len(frames)
    assert segmented == recorded[: len(segmented)], "the frames before the first lost page, in recording order"
    assert f"{len(segmented)} frames segmented" in out
    assert (f"input damaged: bag '{source}' is damaged after {len(segmented)} message(s): "
            f"{storage_file} holds {storage_file.stat().st_size} of the") in out
    assert snapshot(tmp_path / "drive") == before, "the damaged input is only read"
