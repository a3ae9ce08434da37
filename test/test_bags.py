"""Bags as every rosbag2 release records them are read whole and left untouched: each metadata version (4 to 9),
split bags, zstd-compressed bags (file by file, message by message) and folders whose recorder was killed before
it wrote metadata.yaml. The bags are laid out by helpers_rosbag2 the way rosbag2 writes them."""

from __future__ import annotations

import logging
import sqlite3

import numpy as np
import pytest
from helpers import night_frames, snapshot
from helpers_ros import TYPESTORE
from helpers_rosbag2 import IMAGE, read_metadata, record_bag

from egnet_core.cli import main
from egnet_ros.bag_segment import total_frames
from egnet_ros.bags import BagDamaged, BagError, image_connections, open_bag, read_records

CAMERA = "/camera/image_raw"
START = 1_700_000_000_000_000_000


def camera_messages(count: int, *, width: int = 16, height: int = 8) -> list[tuple[int, bytes]]:
    """(log time, CDR) of ``count`` bgr8 Images at 10 frames/s, each pixel a function of its frame."""
    header_type, time_type = TYPESTORE.types["std_msgs/msg/Header"], TYPESTORE.types["builtin_interfaces/msg/Time"]
    messages = []
    for index in range(count):
        log_time = START + index * 100_000_000
        header = header_type(stamp=time_type(sec=log_time // 10**9, nanosec=log_time % 10**9), frame_id="camera")
        pixels = np.full(height * width * 3, index, np.uint8)
        image = TYPESTORE.types[IMAGE](header=header, height=height, width=width, encoding="bgr8", is_bigendian=0,
                                       step=width * 3, data=pixels)
        messages.append((log_time, bytes(TYPESTORE.serialize_cdr(image, IMAGE))))
    return messages


def read_whole(path) -> list[tuple[int, bytes]]:
    with open_bag(path) as reader:
        return [(r.log_time, r.data) for r in read_records(reader, image_connections(reader, None, path), path)]


VERSIONS = [(4, "sqlite3")] + [(version, storage) for version in (5, 6, 7, 8, 9) for storage in ("sqlite3", "mcap")]


@pytest.mark.parametrize(("version", "storage"), VERSIONS)
def test_a_bag_of_every_metadata_version_is_read_whole_and_untouched(tmp_path, version, storage):
    messages = camera_messages(4)
    record_bag(tmp_path / "drive", messages, version=version, storage=storage)
    text = (tmp_path / "drive/metadata.yaml").read_text()
    for distro in ("humble", "jazzy") if version <= 5 else ("jazzy",):  # the layout is one rosbag2 reads
        assert read_metadata(text, distro)["version"] == version
    before = snapshot(tmp_path / "drive")

    assert read_whole(tmp_path / "drive") == messages
    assert total_frames(tmp_path / "drive") == 4
    assert snapshot(tmp_path / "drive") == before


@pytest.mark.parametrize(("version", "storage"), [(5, "sqlite3"), (5, "mcap"), (9, "sqlite3"), (9, "mcap")])
def test_a_split_bag_is_read_across_its_files_in_recording_order(tmp_path, version, storage):
    messages = camera_messages(7)
    files = record_bag(tmp_path / "drive", messages, version=version, storage=storage, split=3)
    suffix = "db3" if storage == "sqlite3" else "mcap"
    assert [f.name for f in files] == [f"drive_{i}.{suffix}" for i in range(3)]

    assert read_whole(tmp_path / "drive") == messages


@pytest.mark.parametrize(("version", "storage"), [(5, "sqlite3"), (5, "mcap"), (9, "sqlite3"), (9, "mcap")])
def test_a_bag_compressed_file_by_file_is_read_without_writing_beside_it(tmp_path, version, storage):
    messages = camera_messages(5)
    files = record_bag(tmp_path / "drive", messages, version=version, storage=storage, split=2, compression="file")
    assert [f.name for f in files] == [f"drive_{i}.{'db3' if storage == 'sqlite3' else 'mcap'}.zstd" for i in (0, 1)]
    before = snapshot(tmp_path)

    assert read_whole(tmp_path / "drive") == messages
    assert snapshot(tmp_path) == before, "decompressed elsewhere: nothing is added to or changed in the input"


@pytest.mark.parametrize("version", [5, 9])
def test_a_bag_compressed_message_by_message_is_read(tmp_path, version):
    messages = camera_messages(3)
    record_bag(tmp_path / "drive", messages, version=version, compression="message")

    assert read_whole(tmp_path / "drive") == messages


@pytest.mark.parametrize("metadata", [True, False], ids=["closed", "killed"])
def test_a_message_that_does_not_decompress_ends_the_messages_as_damage(tmp_path, metadata):
    messages = camera_messages(3)
    record_bag(tmp_path / "drive", messages, version=5, compression="message", metadata=metadata)
    with sqlite3.connect(tmp_path / "drive/drive_0.db3") as db:  # a zstd frame header, then noise
        db.execute("UPDATE messages SET data = ? WHERE id = 2", (b"\x28\xb5\x2f\xfd" + bytes(range(40)),))
    db.close()
    read = []

    with pytest.raises(BagDamaged, match=r"damaged after 1 message\(s\): .*[Zz]standard"):
        with open_bag(tmp_path / "drive") as reader:
            for record in read_records(reader, image_connections(reader, None, tmp_path), tmp_path):
                read.append(record.data)

    assert read == [messages[0][1]]


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_folder_without_metadata_is_read_from_its_storage_files_with_a_warning(tmp_path, storage, caplog):
    messages = camera_messages(12)
    files = record_bag(tmp_path / "drive", messages, version=9, storage=storage, split=11, metadata=False)
    before = snapshot(tmp_path)

    with caplog.at_level(logging.WARNING, logger="egnet_ros.bags"):
        assert read_whole(tmp_path / "drive") == messages, "drive_10 after drive_9: split order, not name order"

    [warning] = [r.getMessage() for r in caplog.records if "metadata.yaml" in r.getMessage()]
    assert "has no metadata.yaml" in warning and "reading its storage files directly" in warning
    assert ", ".join(f.name for f in files) in warning
    assert total_frames(tmp_path / "drive") == 12
    assert snapshot(tmp_path) == before


def test_a_killed_mcap_recording_is_read_up_to_where_its_last_file_was_cut(tmp_path):
    messages = camera_messages(8, width=64, height=48)
    files = record_bag(tmp_path / "drive", messages, version=9, storage="mcap", split=2, metadata=False)
    files[-1].write_bytes(files[-1].read_bytes()[: files[-1].stat().st_size * 3 // 4])  # no summary, chunk cut
    read = []

    with pytest.raises(BagDamaged, match=r"damaged after 4 message\(s\): .*drive_1.mcap: Truncated record"):
        with open_bag(tmp_path / "drive") as reader:
            for record in read_records(reader, image_connections(reader, None, tmp_path), tmp_path):
                read.append((record.log_time, record.data))

    assert read == messages[:4], "the closed file whole; the cut file's chunk is lost with its end"


def test_a_killed_recording_compressed_message_by_message_is_read(tmp_path):
    messages = camera_messages(3)
    record_bag(tmp_path / "drive", messages, version=9, split=2, compression="message", metadata=False)

    assert read_whole(tmp_path / "drive") == messages


def test_a_killed_compressed_recording_is_read_from_its_compressed_and_its_open_file(tmp_path):
    """File-by-file compression compresses each file as the next one opens: a killed recorder leaves the
    earlier ones compressed and the last one as it was being written."""
    messages = camera_messages(6)
    record_bag(tmp_path / "drive", messages[:4], version=5, split=2, compression="file", metadata=False)
    record_bag(tmp_path / "last", messages[4:], version=5, metadata=False)
    (tmp_path / "last/last_0.db3").rename(tmp_path / "drive/drive_2.db3")
    before = snapshot(tmp_path / "drive")

    assert read_whole(tmp_path / "drive") == messages
    assert snapshot(tmp_path / "drive") == before


@pytest.mark.parametrize("metadata", [True, False], ids=["closed", "killed"])
def test_a_compressed_file_cut_short_is_an_error_naming_the_bag(tmp_path, metadata):
    record_bag(tmp_path / "drive", camera_messages(40, width=64, height=48), version=5, split=2,
               compression="file", metadata=metadata)
    cut = tmp_path / "drive/drive_1.db3.zstd"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    before = snapshot(tmp_path)

    with pytest.raises(BagError, match=f"bag '{tmp_path / 'drive'}' cannot be read: .*"):
        read_whole(tmp_path / "drive")

    assert snapshot(tmp_path) == before


def test_a_folder_with_neither_metadata_nor_storage_files_is_an_error_naming_what_it_holds(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/todo.txt").write_text("buy milk")

    with pytest.raises(BagError, match=r"has no metadata.yaml and no .db3 or .mcap file.*\['todo.txt'\]"):
        read_whole(tmp_path / "notes")


def test_bag_segment_segments_a_split_compressed_humble_recording(tmp_path, tiny_checkpoint, capsys):
    frames = night_frames(3, seed=6)
    header_type, time_type = TYPESTORE.types["std_msgs/msg/Header"], TYPESTORE.types["builtin_interfaces/msg/Time"]
    messages = []
    for index, rgb in enumerate(frames):
        header = header_type(stamp=time_type(sec=1_700_000_000 + index, nanosec=0), frame_id="camera")
        image = TYPESTORE.types[IMAGE](header=header, height=64, width=128, encoding="rgb8", is_bigendian=0,
                                       step=128 * 3, data=rgb.reshape(-1))
        messages.append((START + index * 10**9, bytes(TYPESTORE.serialize_cdr(image, IMAGE))))
    record_bag(tmp_path / "drive", messages, version=5, split=2, compression="file")
    before = snapshot(tmp_path / "drive")

    assert main(["bag", "segment", str(tmp_path / "drive"), str(tmp_path / "out"), "--checkpoint",
                 str(tiny_checkpoint), "--device", "cpu"]) == 0

    assert "3 frames segmented" in capsys.readouterr().out
    assert snapshot(tmp_path / "drive") == before
    assert read_metadata((tmp_path / "out/metadata.yaml").read_text(), "humble")["message_count"] == 3 * 3
