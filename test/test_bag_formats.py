"""Bags egnet writes are read by the ``ros2 bag`` of the distro they are written for (Humble by default, which
Jazzy and Kilted read too), judged by readers that follow rosbag2's own C++ field by field (helpers_rosbag2)."""

from __future__ import annotations

import sqlite3

import pytest
import yaml
from helpers import night_frames, snapshot
from helpers_ros import TYPESTORE, image_pixels, read_bag
from helpers_rosbag2 import IMAGE, READERS, BadConversion, read_metadata
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from egnet_core.cli import build_parser, main
from egnet_ros.bags import BagError, write_camera_bag

CAMERA = "/camera/image_raw"
FRAMES = 3
NEWER = {"humble": READERS, "jazzy": ("jazzy", "kilted"), "kilted": ("jazzy", "kilted")}
SUFFIX = {"sqlite3": "db3", "mcap": "mcap"}
STORES = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY, "kilted": Stores.ROS2_KILTED}


@pytest.fixture(scope="module")
def frames():
    return night_frames(FRAMES, seed=4)


def metadata_text(bag) -> str:
    return (bag / "metadata.yaml").read_text()


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("distro", ["humble", "jazzy", "kilted"])
def test_a_bag_written_for_a_distro_is_read_by_it_and_the_newer_ones_and_by_rosbags(tmp_path, frames, distro, storage):
    write_camera_bag(tmp_path / "drive", frames, storage=storage, distro=distro)

    for reader in NEWER[distro]:
        info = read_metadata(metadata_text(tmp_path / "drive"), reader)
        assert info["version"] == (5 if distro == "humble" else 9), reader
        assert info["storage_identifier"] == storage and info["message_count"] == FRAMES
        [topic] = info["topics"]
        assert (topic["name"], topic["type"], topic["serialization_format"], topic["message_count"]) == (
            CAMERA, IMAGE, "cdr", FRAMES)
        assert [f["path"] for f in info["files"]] == info["relative_file_paths"] == [f"drive.{SUFFIX[storage]}"]
        if distro != "humble":
            assert info["custom_data"] == {"written_by": "egnet"} and info["ros_distro"] == distro
    raw = yaml.safe_load(metadata_text(tmp_path / "drive"))["rosbag2_bagfile_information"]
    assert raw["custom_data"] == {"written_by": "egnet"}, "egnet's mark, in every version"
    if distro == "humble":
        assert "ros_distro" not in raw and "type_description_hash" not in raw["topics_with_message_count"][0][
            "topic_metadata"]
    else:
        assert raw["ros_distro"] == distro
        digest = raw["topics_with_message_count"][0]["topic_metadata"]["type_description_hash"]
        assert digest == get_typestore(STORES[distro]).hash_rihs01(IMAGE)
    written = read_bag(tmp_path / "drive")[CAMERA]
    assert [msg.header.stamp.sec for _, msg in written] == [1_700_000_000] * FRAMES
    for (_, msg), rgb in zip(written, frames):
        assert (image_pixels(msg, "u1", 3)[..., ::-1] == rgb).all()


def test_a_humble_sqlite3_file_has_humbles_schema_and_a_jazzy_one_carries_its_metadata(tmp_path, frames):
    write_camera_bag(tmp_path / "humble", frames[:1], distro="humble")
    write_camera_bag(tmp_path / "jazzy", frames[:1], distro="jazzy")

    with sqlite3.connect(tmp_path / "humble/humble.db3") as db:  # SqliteStorage::initialize, schema 3 (humble)
        assert db.execute("SELECT schema_version, ros_distro FROM schema").fetchall() == [(3, "humble")]
        assert {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {
            "schema", "metadata", "topics", "messages"}
        assert [row[1] for row in db.execute("PRAGMA table_info(topics)")] == [
            "id", "name", "type", "serialization_format", "offered_qos_profiles"]
        assert db.execute("SELECT COUNT(*) FROM metadata").fetchone() == (0,), "Humble never fills it"
    with sqlite3.connect(tmp_path / "jazzy/jazzy.db3") as db:  # schema 4, with its metadata (Iron and later)
        assert db.execute("SELECT schema_version, ros_distro FROM schema").fetchall() == [(4, "jazzy")]
        [(version, text)] = db.execute("SELECT metadata_version, metadata FROM metadata").fetchall()
        [(encoding, definition)] = db.execute(
            "SELECT encoding, encoded_message_definition FROM message_definitions").fetchall()
    assert version == 9
    stored = read_metadata(yaml.safe_dump({"rosbag2_bagfile_information": yaml.safe_load(text)}), "jazzy")
    assert stored["ros_distro"] == "jazzy" and stored["topics"][0]["name"] == CAMERA
    assert encoding == "ros2msg"
    assert definition == get_typestore(Stores.ROS2_JAZZY).generate_msgdef(IMAGE, ros_version=2)[0]


@pytest.mark.parametrize("distro", ["humble", "kilted"])
def test_an_mcap_file_carries_the_distros_definitions_and_metadata(tmp_path, frames, distro):
    write_camera_bag(tmp_path / "drive", frames[:1], storage="mcap", distro=distro)

    with Reader(tmp_path / "drive/drive.mcap") as reader:  # the file alone, as `ros2 bag info x.mcap` opens it
        [connection] = reader.connections
        assert connection.msgdef.data == get_typestore(STORES[distro]).generate_msgdef(IMAGE, ros_version=2)[0]
        assert connection.msgtype == IMAGE and connection.ext.serialization_format == "cdr"
    data = (tmp_path / "drive/drive.mcap").read_bytes()
    assert b"serialized_metadata" in data and f"version: {5 if distro == 'humble' else 9}\n".encode() in data


def test_the_format_jazzy_records_is_what_humble_cannot_read(tmp_path):
    """The readers can fail: Jazzy's own layout (metadata version 9, rosbags' too) breaks Humble's, as the issue
    reports ("yaml-cpp: bad conversion"), while Jazzy's and Kilted's read it."""
    header = TYPESTORE.types["std_msgs/msg/Header"](
        stamp=TYPESTORE.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="camera")
    sensor_data = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.VOLATILE,
                      QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
    with Writer(tmp_path / "recorded", version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        connection = writer.add_connection("/header", "std_msgs/msg/Header", typestore=TYPESTORE,
                                           offered_qos_profiles=[sensor_data])
        writer.write(connection, 1, bytes(TYPESTORE.serialize_cdr(header, "std_msgs/msg/Header")))

    with pytest.raises(BadConversion, match="offered_qos_profiles.*not a string"):
        read_metadata(metadata_text(tmp_path / "recorded"), "humble")
    for reader in ("jazzy", "kilted"):
        [profile] = read_metadata(metadata_text(tmp_path / "recorded"), reader)["topics"][0]["offered_qos_profiles"]
        assert (profile["history"], profile["depth"], profile["reliability"]) == ("keep_last", 5, "best_effort")


def test_bag_segment_writes_humbles_layout_by_default_and_the_distro_asked_for(tmp_path, frames, tiny_checkpoint):
    write_camera_bag(tmp_path / "drive", frames[:2], distro="jazzy")
    before = snapshot(tmp_path / "drive")
    command = ["bag", "segment", str(tmp_path / "drive"), "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]

    assert main(command[:3] + [str(tmp_path / "for_humble")] + command[3:]) == 0
    assert main(command[:3] + [str(tmp_path / "for_kilted")] + command[3:] + ["--distro", "kilted"]) == 0

    assert snapshot(tmp_path / "drive") == before
    humble = read_metadata(metadata_text(tmp_path / "for_humble"), "humble")
    assert humble["version"] == 5 and humble["message_count"] == 3 * 2
    assert {topic["name"] for topic in humble["topics"]} == {CAMERA, f"/egnet{CAMERA}/labels",
                                                            f"/egnet{CAMERA}/exposure"}
    assert read_metadata(metadata_text(tmp_path / "for_kilted"), "kilted")["ros_distro"] == "kilted"
    with pytest.raises(BadConversion):
        read_metadata(metadata_text(tmp_path / "for_kilted"), "humble")
    assert build_parser().parse_args(command[:3] + ["out"] + command[3:]).distro == "humble"
    with pytest.raises(SystemExit):
        build_parser().parse_args(command[:3] + ["out"] + command[3:] + ["--distro", "rolling"])


def test_an_unknown_distro_is_refused_before_an_existing_output_is_touched(tmp_path, frames):
    write_camera_bag(tmp_path / "out", frames[:1])
    before = snapshot(tmp_path / "out")

    with pytest.raises(BagError, match=r"distro must be one of \['humble', 'jazzy', 'kilted'\], got 'iron'"):
        write_camera_bag(tmp_path / "out", frames[:1], overwrite=True, distro="iron")

    assert snapshot(tmp_path / "out") == before
