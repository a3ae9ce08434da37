"""rosbag2 bags, sqlite3 and MCAP, read and written with the pure-Python ``rosbags`` library (no ROS install).

Messages stay serialized (CDR) until a caller decodes one, so copying a topic costs no decoding. Reading
streams: one message in memory at a time. A bag that breaks while it is read (a truncated file, a bad record)
ends the stream with a :class:`BagDamaged` that says how many messages came before the damage; an MCAP file
that lost its end (a recording that was killed) is read record by record up to the cut.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import apsw
import cv2
import numpy as np
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import McapReader
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader
from rosbags.typesys import Stores, get_typestore

from .image_conversion import ImageFields

# Message definitions and hashes written into new bags: those of the current LTS distro. Image,
# CompressedImage and Header are the same in every ROS 2 distro, so bags from any of them read alike.
TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
BAG_VERSION = 8  # metadata.yaml version of Jazzy's rosbag2; `ros2 bag info` reads it on Jazzy and later
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}


class BagError(ValueError):
    """A bag that cannot be opened or written; the text names the path and the problem."""


class BagDamaged(BagError):
    """A bag that broke while it was read; the messages before the damage were delivered."""


@dataclass(frozen=True)
class BagRecord:
    topic: str
    msgtype: str
    log_time: int  # ns: when the recorder received the message
    data: bytes  # serialized (CDR)


class _SalvagingMcapReader(McapReader):
    """An MCAP file without its summary and footer is scanned from its first record, as far as it is whole.

    Relies on rosbags' scanning of unindexed files (``meta_scan``, ``messages_scan`` up to ``data_end``),
    which fills schemas, channels and connections as it goes, so what precedes the cut survives.
    """

    def _open(self) -> None:
        try:
            super()._open()
        except ReaderError as error:
            if str(error) not in ("File end magic is invalid.", "Invalid MCAP footer."):
                raise
            self.data_end = self.path.stat().st_size
            try:
                self.meta_scan()
            except ReaderError:
                pass  # the cut record: messages_scan stops there again and says so


class _DirectoryReader(DirectoryReader):
    STORAGE_PLUGINS = {"mcap": _SalvagingMcapReader, "sqlite3": Sqlite3Reader}


class _Reader(Reader):
    STORAGE_PLUGINS = {"dir": _DirectoryReader, ".mcap": _SalvagingMcapReader, ".db3": Sqlite3Reader}


@contextmanager
def open_bag(path: str | Path) -> Iterator[Reader]:
    """An open reader of a rosbag2 directory or a single ``.db3``/``.mcap`` file, for a ``with`` block."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {str(path)!r} does not exist")
    try:
        reader = _Reader(path)
        reader.open()
    except (ReaderError, apsw.Error, OSError, KeyError, ValueError) as error:
        raise BagError(f"bag {str(path)!r} cannot be read: {error}") from error
    try:
        yield reader
    finally:
        reader.close()


def storage_of(reader: Reader) -> str:
    """``sqlite3`` or ``mcap``."""
    storage = reader.storage
    if isinstance(storage, DirectoryReader):
        storage = storage.storages[0] if storage.storages else storage
    return "mcap" if isinstance(storage, McapReader) else "sqlite3"


def image_connections(reader: Reader, topics: Sequence[str] | None, path: str | Path) -> list[Connection]:
    """The connections of the image topics asked for (all image topics when ``topics`` is None)."""
    images = [c for c in reader.connections if c.msgtype in IMAGE_TYPES]
    available = sorted({c.topic for c in images})
    if topics is None:
        if not images:
            raise BagError(f"bag {str(path)!r} has no {' or '.join(IMAGE_TYPES)} topic; its topics: "
                           f"{sorted({f'{c.topic} ({c.msgtype})' for c in reader.connections})}")
        return images
    missing = [topic for topic in topics if topic not in available]
    if missing:
        raise BagError(f"bag {str(path)!r} has no image topic {', '.join(map(repr, missing))}; "
                       f"its image topics: {available}")
    return [c for c in images if c.topic in topics]


def read_records(reader: Reader, connections: Sequence[Connection], path: str | Path) -> Iterator[BagRecord]:
    """The messages of ``connections`` in log-time order; :class:`BagDamaged` where the bag breaks."""
    count = 0
    try:
        for connection, log_time, data in reader.messages(connections=connections):
            yield BagRecord(topic=connection.topic, msgtype=connection.msgtype, log_time=log_time, data=bytes(data))
            count += 1
    except (ReaderError, apsw.Error, OSError) as error:
        raise BagDamaged(f"bag {str(path)!r} is damaged after {count} message(s): {error}") from error


def decode_message(data: bytes, msgtype: str):
    """The message decoded (rosbags' dataclass, with the fields of sensor_msgs); ValueError if it does not decode."""
    try:
        return TYPESTORE.deserialize_cdr(data, msgtype)
    except Exception as error:  # rosbags raises whatever struct/numpy/its own code meets in a corrupt buffer
        raise ValueError(f"message of {len(data)} bytes does not decode as {msgtype}: {error}") from error


def serialize_image(fields: ImageFields, header) -> bytes:
    """A ``sensor_msgs/Image`` with ``header`` (a decoded message's), serialized for a bag."""
    image_type = TYPESTORE.types[IMAGE]
    return bytes(TYPESTORE.serialize_cdr(image_type(header=header, **fields._asdict()), IMAGE))


class BagWriter:
    """A new rosbag2 at ``path``; topics are added on first use. An existing path is replaced only with
    ``overwrite`` and only if it is a bag (a directory with ``metadata.yaml``)."""

    def __init__(self, path: str | Path, storage: str, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        if storage not in STORAGES:
            raise BagError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        if self.path.exists():
            if not overwrite:
                raise BagError(f"output {str(self.path)!r} exists; pass --overwrite to replace it")
            if not (self.path / "metadata.yaml").is_file():
                raise BagError(f"output {str(self.path)!r} exists and is not a bag; refusing to replace it")
            shutil.rmtree(self.path)
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        self._connections: dict[tuple[str, str], Connection] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *_) -> None:
        self._writer.close()

    def write(self, topic: str, msgtype: str, log_time: int, data: bytes) -> None:
        key = (topic, msgtype)
        if key not in self._connections:
            self._connections[key] = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE)
        self._writer.write(self._connections[key], log_time, data)


def write_camera_bag(
    path: str | Path,
    frames: Iterable[np.ndarray],
    *,
    topic: str = "/camera/image_raw",
    storage: str = "sqlite3",
    compressed: bool = False,
    rate_hz: float = 10.0,
    start_ns: int = 1_700_000_000_000_000_000,
    frame_id: str = "camera_optical",
    overwrite: bool = False,
) -> int:
    """Record H×W×3 RGB ``frames`` as a camera driver would: ``bgr8`` Images (or JPEG CompressedImages) at
    ``rate_hz``, each stamped with its log time. Returns the number of frames written."""
    if rate_hz <= 0:
        raise ValueError(f"rate_hz must be positive, got {rate_hz!r}")
    header_type, time_type = TYPESTORE.types["std_msgs/msg/Header"], TYPESTORE.types["builtin_interfaces/msg/Time"]
    count = 0
    with BagWriter(path, storage, overwrite=overwrite) as writer:
        for count, rgb in enumerate(frames, start=1):
            stamp = start_ns + round((count - 1) * 1e9 / rate_hz)
            header = header_type(stamp=time_type(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame_id)
            bgr = np.ascontiguousarray(rgb[..., ::-1])
            if compressed:
                jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].reshape(-1)
                msg = TYPESTORE.types[COMPRESSED_IMAGE](header=header, format="bgr8; jpeg compressed bgr8", data=jpeg)
                writer.write(topic, COMPRESSED_IMAGE, stamp, bytes(TYPESTORE.serialize_cdr(msg, COMPRESSED_IMAGE)))
            else:
                fields = ImageFields(height=bgr.shape[0], width=bgr.shape[1], encoding="bgr8", is_bigendian=0,
                                     step=bgr.shape[1] * 3, data=bgr.reshape(-1))
                writer.write(topic, IMAGE, stamp, serialize_image(fields, header))
    return count
