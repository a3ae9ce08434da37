"""rosbag2 bags, sqlite3 and MCAP, read and written with the pure-Python ``rosbags`` library (no ROS install).

Messages stay serialized (CDR) until a caller decodes one, so copying a topic costs no decoding. Reading
streams: one message in memory at a time. A bag that breaks while it is read (a truncated file, a bad record)
ends the stream with a :class:`BagDamaged` that says how many messages came before the damage and where the
file broke; an MCAP file that lost its end (a recording that was killed) is read record by record up to the
cut, and a sqlite3 file cut short is read row by row up to its first lost page. Bags of every rosbag2 metadata
version (4 to 9), split into several files or zstd-compressed (file by file, decompressed into a temporary
folder, or message by message), are read by rosbags as recorded; a folder without ``metadata.yaml`` (a recorder
killed before it wrote one) is read from its storage files, with a warning. Input files are only read.

A bag written here is laid out as one distro's rosbag2 writes it (:mod:`.bag_formats`) and carries egnet's mark
in its ``metadata.yaml`` (``custom_data``); ``overwrite`` replaces only such a bag, and only when its folder
holds nothing but the bag's own files.
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from tempfile import TemporaryDirectory

import apsw
import cv2
import numpy as np
import yaml
from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin
from rosbags.rosbag2.metadata import ReaderMetadata, parse_qos
from rosbags.rosbag2.reader import DirectoryReader
from rosbags.rosbag2.storage_mcap import McapReader
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader
from rosbags.typesys import Stores, get_typestore

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

from .bag_formats import DEFAULT_DISTRO, DISTROS, FORMATS, DistroWriter
from .image_conversion import ImageFields

log = logging.getLogger(__name__)

# Messages are (de)serialized with Jazzy's definitions; Image, CompressedImage and Header are the same in every
# ROS 2 distro, so bags from any of them read alike. New bags carry their distro's definitions (bag_formats).
TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
_typestore = cache(get_typestore)
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
# custom_data of metadata.yaml in every bag BagWriter writes: what lets --overwrite tell egnet's bags from others.
MARK = ("written_by", "egnet")


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
    which fills schemas, channels and connections as it goes, so what precedes the cut survives. Where the
    scan breaks is kept in ``damage``: a file cut inside its first chunk has no connection to read at all.
    """

    damage: str | None = None

    def _open(self) -> None:
        try:
            super()._open()
        except ReaderError as error:
            if str(error) not in ("File end magic is invalid.", "Invalid MCAP footer."):
                raise
            self.data_end = self.path.stat().st_size
            try:
                self.meta_scan()
            except ReaderError as cut:  # the cut record: messages_scan stops there again and says so
                self.damage = f"{self.path}: {cut}"


class _SalvagingSqlite3Reader(Sqlite3Reader):
    """A sqlite3 file shorter than its header says (a recorder killed, a copy cut short) is read row by row up
    to its first lost page.

    SQLite refuses such a file outright; with ``writable_schema`` it uses the pages present and reports the
    first missing one as corruption, so the rows before it survive. They are read in ``id`` order, the order
    they were recorded, because the timestamp index rosbags reads through may itself have lost pages. The
    file is opened read-only and immutable: nothing is written to it or beside it.
    """

    damage: str | None = None

    def open(self) -> None:
        self.damage = _sqlite_cut(self.path)
        if self.damage is None:
            super().open()
            return
        log.warning("%s; reading its rows up to the first lost page", self.damage)
        try:
            self.dbconn = apsw.Connection(f"file:{self.path}?immutable=1",
                                          flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
            self.dbconn.execute("PRAGMA writable_schema=ON")  # read-only still: lets a short file open
            self.connections = self._salvaged_connections()
        except apsw.Error as error:
            if self.dbconn is not None:
                self.dbconn.close()
            raise ReaderError(f"{self.damage}, and its topics cannot be read: {error}") from error

    def _salvaged_connections(self) -> list[Connection]:
        columns = {row[1] for row in self.dbconn.execute("PRAGMA table_info(topics)")}
        qos = "offered_qos_profiles" if "offered_qos_profiles" in columns else "''"
        digest = "type_description_hash" if "type_description_hash" in columns else "''"
        rows = self.dbconn.execute(f"SELECT id, name, type, serialization_format, {qos}, {digest} FROM topics")
        return [
            Connection(cid, topic, msgtype, MessageDefinition(MessageDefinitionFormat.NONE, ""), hash_, 0,
                       ConnectionExtRosbag2(serialization_format, parse_qos(profiles)), self)
            for cid, topic, msgtype, serialization_format, profiles, hash_ in rows
        ]

    def messages(
        self, connections: Collection[Connection], start: int | None = None, stop: int | None = None
    ) -> Iterator[tuple[Connection, int, bytes]]:
        if self.damage is None:
            yield from super().messages(connections, start, stop)
            return
        wanted = {connection.id: connection for connection in connections}
        start, stop = start if start is not None else -(2**63), stop if stop is not None else 2**63
        try:
            for topic_id, log_time, data in self.dbconn.execute(
                "SELECT topic_id, timestamp, data FROM messages ORDER BY id"
            ):
                if topic_id in wanted and start <= log_time < stop:
                    yield wanted[topic_id], log_time, data
        except apsw.Error as error:
            raise ReaderError(f"{self.damage}; its first lost page ends the messages: {error}") from error


def _sqlite_cut(path: Path) -> str | None:
    """Where a sqlite3 file is shorter than its header's page count says, as text; None where it is not."""
    with path.open("rb") as file:
        header = file.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return None  # rosbags' own error says what is wrong with it
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The header's page count holds only while its "version valid for" equals the change counter.
    if not pages or header[92:96] != header[24:28]:
        return None
    size, expected = path.stat().st_size, page_size * pages
    if size >= expected:
        return None
    return f"{path} holds {size} of the {expected} bytes its header claims (cut at {size / expected:.0%})"


def _damage(reader: Reader) -> str | None:
    """Where the bag's storage files broke when they were opened, if they did."""
    storage = reader.storage
    storages = storage.storages if isinstance(storage, DirectoryReader) else [storage]
    found = [damage for each in storages if (damage := getattr(each, "damage", None))]
    return "; ".join(found) or None


class _DirectoryReader(DirectoryReader):
    STORAGE_PLUGINS = {"mcap": _SalvagingMcapReader, "sqlite3": _SalvagingSqlite3Reader}


class _UnindexedDirectoryReader(_DirectoryReader):
    """A bag folder without ``metadata.yaml`` (a recorder killed before it wrote it): its storage files, named
    ``<folder>_<n>.db3``/``.mcap`` by rosbag2 (``.zstd`` when compressed file by file), are read directly in
    split order, their topics taken from each file's own index (a ``.db3``'s topics table, an ``.mcap``'s
    channels and schemas). Compressed files are decompressed into a temporary folder, never beside the input."""

    def __init__(self, path: Path) -> None:  # DirectoryReader's would insist on metadata.yaml
        self.path, self.connections, self.files, self.storages, self.stack = path, [], [], [], None
        self.metadata = ReaderMetadata(0, 2**63 - 1, 0, 0, None, None, None, None)

    def open(self) -> None:
        self.stack = ExitStack()
        try:
            files = _storage_files(self.path)
            log.warning("bag %s has no metadata.yaml (a recording that was not closed?); reading its storage "
                        "files directly: %s", self.path, ", ".join(file.name for file in files))
            for file in files:
                storage = self.STORAGE_PLUGINS[_storage_kind(file)](self._decompressed(file))
                storage.open()
                self.stack.callback(storage.close)
                self.storages.append(storage)
            self.connections = self._merged_connections()
            metadata = [storage.metadata for storage in self.storages]
            start, end = min(m.start_time for m in metadata), max(m.end_time for m in metadata)
            self.metadata = ReaderMetadata(max(0, end - start), start, end, sum(m.message_count for m in metadata),
                                           None, None, None, None)
        except BaseException:
            self.close()
            raise

    def messages(self, connections: Collection[Connection], start: int | None = None, stop: int | None = None
                 ) -> Iterator[tuple[Connection, int, bytes]]:
        """As recorded; data compressed message by message (which only metadata.yaml would say) is
        decompressed: serialized CDR starts with its encapsulation header, never with zstd's frame magic."""
        for connection, log_time, data in super().messages(connections, start, stop):
            yield connection, log_time, zstd.decompress(data) if bytes(data[:4]) == _ZSTD_MAGIC else data

    def _decompressed(self, file: Path) -> Path:
        if file.suffix != ".zstd":
            return file
        plain = Path(self.stack.enter_context(TemporaryDirectory(prefix="egnet-bag-"))) / file.stem
        try:
            with zstd.open(file, "rb") as source, plain.open("wb") as out:
                shutil.copyfileobj(source, out)
        except (zstd.ZstdError, EOFError) as error:
            raise ReaderError(f"{file} does not decompress (zstd): {error}") from error
        return plain

    def _merged_connections(self) -> list[Connection]:
        """One connection per topic, type and QoS across the files, counting the messages of all of them."""
        merged: list[Connection] = []  # not a dict: a connection's ext holds a list, so it is no key
        for connection in (c for storage in self.storages for c in storage.connections):
            key = (connection.topic, connection.msgtype, connection.ext)
            index = next((i for i, c in enumerate(merged) if (c.topic, c.msgtype, c.ext) == key), None)
            if index is None:
                merged.append(connection._replace(id=len(merged) + 1, owner=self))
            else:
                merged[index] = merged[index]._replace(msgcount=merged[index].msgcount + connection.msgcount)
        return merged


_STORAGE_SUFFIXES = {".db3": "sqlite3", ".mcap": "mcap"}
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _storage_kind(file: Path) -> str | None:
    """``sqlite3`` or ``mcap`` for a storage file as rosbag2 names it (``.zstd`` after it when compressed)."""
    return _STORAGE_SUFFIXES.get(Path(file.name.removesuffix(".zstd")).suffix)


def _storage_files(folder: Path) -> list[Path]:
    """The storage files of a bag folder, in split order (``<folder>_0``, ``<folder>_1``, ...); BagError where
    there are none or they mix storages."""
    files = [file for file in folder.iterdir() if file.is_file() and _storage_kind(file)]
    if not files:
        raise BagError(f"bag {str(folder)!r} has no metadata.yaml and no .db3 or .mcap file: is it a rosbag2 "
                       f"folder? It holds {sorted(file.name for file in folder.iterdir())}")
    if len(kinds := {_storage_kind(file) for file in files}) > 1:
        raise BagError(f"bag {str(folder)!r} has no metadata.yaml and holds both {' and '.join(sorted(kinds))} "
                       "files; move the ones that are not part of the recording away")

    def split_index(file: Path) -> tuple[int, str]:
        index = re.search(r"_(\d+)$", Path(file.name.removesuffix(".zstd")).stem)
        return (int(index[1]) if index else -1, file.name)

    return sorted(files, key=split_index)


def _directory_reader(path: Path) -> DirectoryReader:
    return _DirectoryReader(path) if (path / "metadata.yaml").exists() else _UnindexedDirectoryReader(path)


class _Reader(Reader):
    STORAGE_PLUGINS = {"dir": _directory_reader, ".mcap": _SalvagingMcapReader, ".db3": _SalvagingSqlite3Reader}


@contextmanager
def open_bag(path: str | Path) -> Iterator[Reader]:
    """An open reader of a rosbag2 directory or a single ``.db3``/``.mcap`` file, for a ``with`` block."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {str(path)!r} does not exist")
    try:
        reader = _Reader(path)
        reader.open()
    except BagError:
        raise
    except (ReaderError, apsw.Error, OSError, KeyError, ValueError, zstd.ZstdError, EOFError) as error:
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
    missing = [topic for topic in topics if topic not in available] if topics is not None else []
    if (not images or missing) and (damage := _damage(reader)):
        raise BagDamaged(f"bag {str(path)!r} is damaged before any image topic could be read: {damage}")
    if topics is None:
        if not images:
            raise BagError(f"bag {str(path)!r} has no {' or '.join(IMAGE_TYPES)} topic; its topics: "
                           f"{sorted({f'{c.topic} ({c.msgtype})' for c in reader.connections})}")
        return images
    if missing:
        raise BagError(f"bag {str(path)!r} has no image topic {', '.join(map(repr, missing))}; "
                       f"its image topics: {available}")
    return [c for c in images if c.topic in topics]


def read_records(reader: Reader, connections: Sequence[Connection], path: str | Path) -> Iterator[BagRecord]:
    """The messages of ``connections`` in log-time order (in recording order from a cut sqlite3 file);
    :class:`BagDamaged` where the bag breaks, also when it broke where no message of theirs was read."""
    count = 0
    try:
        for connection, log_time, data in reader.messages(connections=connections):
            yield BagRecord(topic=connection.topic, msgtype=connection.msgtype, log_time=log_time, data=bytes(data))
            count += 1
    except (ReaderError, apsw.Error, OSError, zstd.ZstdError) as error:
        raise BagDamaged(f"bag {str(path)!r} is damaged after {count} message(s): {error}") from error
    if damage := _damage(reader):
        raise BagDamaged(f"bag {str(path)!r} is damaged after {count} message(s): {damage}")


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
    """A new rosbag2 at ``path`` that ``distro``'s ``ros2 bag`` reads (see :mod:`.bag_formats`), marked as
    egnet's; topics are added on first use. An existing path is replaced only with ``overwrite``, and only if it
    is a bag egnet wrote whose folder holds nothing else (see :func:`remove_own_bag`)."""

    def __init__(self, path: str | Path, storage: str, *, overwrite: bool = False,
                 distro: str = DEFAULT_DISTRO) -> None:
        self.path = Path(path)
        if storage not in STORAGES:
            raise BagError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        if distro not in DISTROS:
            raise BagError(f"distro must be one of {list(DISTROS)}, got {distro!r}")
        if self.path.exists() or self.path.is_symlink():
            if not overwrite:
                raise BagError(f"output {str(self.path)!r} exists; pass --overwrite to replace it")
            remove_own_bag(self.path)
        self.format = FORMATS[distro]
        self._typestore = _typestore(self.format.typestore)
        self._writer = DistroWriter(self.path, self.format, STORAGES[storage])
        self._writer.set_custom_data(*MARK)
        self._connections: dict[tuple[str, str], Connection] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *_) -> None:
        self._writer.close()

    def write(self, topic: str, msgtype: str, log_time: int, data: bytes) -> None:
        key = (topic, msgtype)
        if key not in self._connections:
            self._connections[key] = self._writer.add_connection(topic, msgtype, typestore=self._typestore)
        self._writer.write(self._connections[key], log_time, data)


def remove_own_bag(path: Path) -> None:
    """Delete the bag egnet wrote at ``path``: its storage files, its ``metadata.yaml`` and then the empty
    folder. Anything else refuses, untouched: a folder that is not a bag egnet wrote (no ``metadata.yaml``,
    or one without egnet's mark), or that holds files besides the bag's own, which are named."""
    if path.is_symlink() or not path.is_dir():
        raise BagError(f"output {str(path)!r} exists and is not a folder; refusing to replace it")
    present = sorted(entry.name for entry in path.iterdir())
    if not present:
        path.rmdir()
        return
    own = _own_bag_files(path)
    others = [name for name in present if name not in own or not (path / name).is_file()]
    if others:
        raise BagError(f"output {str(path)!r} holds {others}, which are not part of the bag egnet wrote there; "
                       "refusing to replace it: move them away or choose another output")
    for name in own:  # metadata.yaml last: a bag interrupted here is still recognised as egnet's
        (path / name).unlink(missing_ok=True)
    path.rmdir()


def is_own_bag(path: Path) -> bool:
    """Whether ``path`` is a bag folder whose metadata.yaml carries egnet's mark."""
    try:
        _own_bag_files(path)
    except BagError:
        return False
    return True


def _own_bag_files(path: Path) -> list[str]:
    """The files of the bag egnet wrote at ``path`` (``metadata.yaml`` last); BagError where egnet did not."""
    refusal = f"output {str(path)!r} is not a bag egnet wrote"
    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        marked = (info.get("custom_data") or {}).get(MARK[0]) == MARK[1]
        storage_files = [Path(relative).name for relative in info["relative_file_paths"]]
    except FileNotFoundError:
        raise BagError(f"{refusal} (it has no metadata.yaml); refusing to replace it") from None
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as error:
        raise BagError(f"{refusal} (its metadata.yaml does not read as one: {error}); refusing to replace it") from None
    if not marked:
        raise BagError(f"{refusal}: egnet did not write it (its metadata.yaml has no custom_data "
                       f"{MARK[0]}: {MARK[1]}); refusing to replace it")
    return [*storage_files, "metadata.yaml"]


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
    distro: str = DEFAULT_DISTRO,
) -> int:
    """Record H×W×3 RGB ``frames`` as a camera driver would: ``bgr8`` Images (or JPEG CompressedImages) at
    ``rate_hz``, each stamped with its log time. Returns the number of frames written."""
    if rate_hz <= 0:
        raise ValueError(f"rate_hz must be positive, got {rate_hz!r}")
    header_type, time_type = TYPESTORE.types["std_msgs/msg/Header"], TYPESTORE.types["builtin_interfaces/msg/Time"]
    count = 0
    with BagWriter(path, storage, overwrite=overwrite, distro=distro) as writer:
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
