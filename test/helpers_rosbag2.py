"""rosbag2 as each ROS 2 distro's C++ reads and writes it, from ros2/rosbag2's source, independently of egnet_ros.

:func:`read_metadata` parses a ``metadata.yaml`` by the rules of one distro's ``MetadataIo::read_metadata`` (what
``ros2 bag info`` and ``ros2 bag play`` do first), field by field as its yaml-cpp ``convert<>`` specialisations
do: a missing key or a node of the wrong kind is :class:`BadConversion`, as yaml-cpp throws. :func:`record_bag`
lays a bag out the way one rosbag2 release's recorder leaves it: the storage files (split, compressed file by
file or message by message), the sqlite3 schema of that release and its ``metadata.yaml``.
"""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import yaml
from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat
from rosbags.rosbag2.enums import CompressionMode
from rosbags.rosbag2.storage_mcap import McapWriter
from rosbags.typesys import Stores, get_typestore

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

IMAGE = "sensor_msgs/msg/Image"


class BadConversion(Exception):
    """What yaml-cpp throws (TypedBadConversion, InvalidNode): the bag does not open in that distro."""


# ------------------------------------------------------------------------------------------------------------
# Readers. Humble: rosbag2_storage/src/rosbag2_storage/metadata_io.cpp (humble branch) and, for the QoS string
# `ros2 bag play` parses, rosbag2_transport/src/rosbag2_transport/qos.cpp. Jazzy: rosbag2_storage/include/
# rosbag2_storage/yaml.hpp and rosbag2_storage/src/rosbag2_storage/qos.cpp (jazzy branch); Kilted's are Jazzy's.

READERS = ("humble", "jazzy", "kilted")

# rmw's enum values (rmw/types.h) and names (rmw/src/qos_string_conversions.c)
HISTORY = {0: "system_default", 1: "keep_last", 2: "keep_all", 3: "unknown"}
RELIABILITY = {0: "system_default", 1: "reliable", 2: "best_effort", 3: "unknown", 4: "best_available"}
DURABILITY = {0: "system_default", 1: "transient_local", 2: "volatile", 3: "unknown", 4: "best_available"}
LIVELINESS = {0: "system_default", 1: "automatic", 2: "manual_by_node", 3: "manual_by_topic", 4: "unknown",
              5: "best_available"}


def _at(node, key: str, where: str):
    """``node[key]`` on a const yaml-cpp node: a missing key (or a node that is no map) is invalid, and any
    conversion of it throws."""
    if not isinstance(node, dict) or key not in node:
        raise BadConversion(f"{where}{key}: missing")
    return node[key]


def _str(node, key: str, where: str) -> str:
    value = _at(node, key, where)
    if value is None or isinstance(value, (dict, list)):  # as<std::string>() takes scalars only
        raise BadConversion(f"{where}{key}: {value!r} is not a string")
    return str(value)


def _int(node, key: str, where: str, *, unsigned: bool = False) -> int:
    value = _at(node, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or (unsigned and value < 0):
        raise BadConversion(f"{where}{key}: {value!r} is not {'an unsigned' if unsigned else 'an'} integer")
    return value


def _bool(node, key: str, where: str) -> bool:
    value = _at(node, key, where)
    if not isinstance(value, bool):
        raise BadConversion(f"{where}{key}: {value!r} is not a bool")
    return value


def _list(node, key: str, where: str) -> list:
    value = _at(node, key, where)
    if not isinstance(value, list):
        raise BadConversion(f"{where}{key}: {value!r} is not a sequence")
    return value


def _nanoseconds(node, key: str, where: str) -> int:
    return _int(_at(node, key, where), "nanoseconds", f"{where}{key}.", unsigned=True)


def _since_epoch(node, key: str, where: str) -> int:
    return _int(_at(node, key, where), "nanoseconds_since_epoch", f"{where}{key}.", unsigned=True)


def _time(node, key: str, where: str) -> tuple[int, int]:
    value = _at(node, key, where)
    return (_int(value, "sec", f"{where}{key}.", unsigned=True), _int(value, "nsec", f"{where}{key}.", unsigned=True))


def _humble_qos(node, where: str) -> dict:
    """convert<Rosbag2QoS>::decode (humble): every policy an integer, every key read."""
    return {"history": HISTORY.get(_int(node, "history", where), "?"), "depth": _int(node, "depth", where),
            "reliability": RELIABILITY.get(_int(node, "reliability", where), "?"),
            "durability": DURABILITY.get(_int(node, "durability", where), "?"),
            "deadline": _time(node, "deadline", where), "lifespan": _time(node, "lifespan", where),
            "liveliness": LIVELINESS.get(_int(node, "liveliness", where), "?"),
            "liveliness_lease_duration": _time(node, "liveliness_lease_duration", where),
            "avoid_ros_namespace_conventions": _bool(node, "avoid_ros_namespace_conventions", where)}


def _jazzy_qos(node, where: str) -> dict:
    """convert<rclcpp::QoS>::decode (jazzy): integers when ``history`` is one of rmw's (a version-8 profile),
    rmw's names otherwise (an unknown name reads as unknown); ``depth`` is read for keep_last only."""
    history = _at(node, "history", where)
    if isinstance(history, int) and not isinstance(history, bool) and history in HISTORY:
        policies = {"history": HISTORY[history]}
        for key, names in (("reliability", RELIABILITY), ("durability", DURABILITY), ("liveliness", LIVELINESS)):
            policies[key] = names.get(_int(node, key, where), "?")
    else:
        policies = {key: _str(node, key, where) for key in ("history", "reliability", "durability", "liveliness")}
        for key, names in (("history", HISTORY), ("reliability", RELIABILITY), ("durability", DURABILITY),
                           ("liveliness", LIVELINESS)):
            policies[key] = policies[key] if policies[key] in names.values() else "unknown"
    depth = _int(node, "depth", where) if policies["history"] == "keep_last" else None
    return {**policies, "depth": depth, "deadline": _time(node, "deadline", where),
            "lifespan": _time(node, "lifespan", where),
            "liveliness_lease_duration": _time(node, "liveliness_lease_duration", where),
            "avoid_ros_namespace_conventions": _bool(node, "avoid_ros_namespace_conventions", where)}


def _qos_list(profiles, where: str, decode) -> list[dict]:
    if not isinstance(profiles, list):  # decode_for_version<std::vector<...>> of a non-sequence
        raise BadConversion(f"{where}: {profiles!r} is not a sequence of QoS profiles")
    return [decode(profile, f"{where}[{i}].") for i, profile in enumerate(profiles)]


def _offered_qos(meta: dict, version: int, distro: str, where: str) -> list[dict]:
    if version < 4:
        return []
    if distro == "humble":  # a string; Player::publisher_qos_for_topic parses it unless it is empty
        text = _str(meta, "offered_qos_profiles", where)
        return _qos_list(yaml.safe_load(text), where + "offered_qos_profiles", _humble_qos) if text else []
    if version >= 9:
        return _qos_list(_at(meta, "offered_qos_profiles", where), where + "offered_qos_profiles", _jazzy_qos)
    text = _str(meta, "offered_qos_profiles", where)  # to_rclcpp_qos_vector: "" is no profile
    return _qos_list(yaml.safe_load(text), where + "offered_qos_profiles", _jazzy_qos) if text else []


def _custom_data(node, where: str) -> dict[str, str]:
    """convert<std::unordered_map<std::string, std::string>>::decode iterates the node: null is empty."""
    value = _at(node, "custom_data", where)
    if value is None:
        return {}
    if not isinstance(value, dict) or any(v is None or isinstance(v, (dict, list)) for v in value.values()):
        raise BadConversion(f"{where}custom_data: {value!r} is not a map of strings")
    return {str(k): str(v) for k, v in value.items()}


def read_metadata(text: str, distro: str) -> dict:
    """``metadata.yaml`` parsed as ``distro``'s rosbag2 parses it (plus the QoS profiles ``ros2 bag play`` parses),
    as a plain dict; :class:`BadConversion` where that distro's reader throws."""
    if distro not in READERS:
        raise ValueError(f"no reader for {distro!r}")
    node = _at(yaml.safe_load(text), "rosbag2_bagfile_information", "")
    where = "rosbag2_bagfile_information."
    version = _int(node, "version", where)
    info = {"version": version, "storage_identifier": _str(node, "storage_identifier", where),
            "duration": _nanoseconds(node, "duration", where),
            "starting_time": _since_epoch(node, "starting_time", where),
            "message_count": _int(node, "message_count", where, unsigned=True), "topics": []}
    for i, topic in enumerate(_list(node, "topics_with_message_count", where)):
        at = f"{where}topics_with_message_count[{i}]."
        meta = _at(topic, "topic_metadata", at)
        at += "topic_metadata."
        info["topics"].append({
            "name": _str(meta, "name", at), "type": _str(meta, "type", at),
            "serialization_format": _str(meta, "serialization_format", at),
            "offered_qos_profiles": _offered_qos(meta, version, distro, at),
            "type_description_hash": _str(meta, "type_description_hash", at)
            if distro != "humble" and version >= 7 else "",
            "message_count": _int(topic, "message_count", at[: -len("topic_metadata.")], unsigned=True),
        })
    paths = _list(node, "relative_file_paths", where)
    if any(p is None or isinstance(p, (dict, list)) for p in paths):
        raise BadConversion(f"{where}relative_file_paths: {paths!r} is not a sequence of strings")
    info["relative_file_paths"] = [str(p) for p in paths]
    if version >= 3:
        info["compression_format"] = _str(node, "compression_format", where)
        info["compression_mode"] = _str(node, "compression_mode", where)
    if version >= 5:
        info["files"] = [{"path": _str(f, "path", f"{where}files[{i}]."),
                          "starting_time": _since_epoch(f, "starting_time", f"{where}files[{i}]."),
                          "duration": _nanoseconds(f, "duration", f"{where}files[{i}]."),
                          "message_count": _int(f, "message_count", f"{where}files[{i}].", unsigned=True)}
                         for i, f in enumerate(_list(node, "files", where))]
    if distro != "humble" and version >= 6:
        info["custom_data"] = _custom_data(node, where)
    if distro != "humble" and version >= 8:
        info["ros_distro"] = _str(node, "ros_distro", where)
    return info


# ------------------------------------------------------------------------------------------------------------
# Recorders: what each rosbag2 release writes (SequentialWriter, SequentialCompressionWriter, the zstd compressor
# and the sqlite3 and MCAP storage plugins of that branch).


@dataclass(frozen=True)
class Release:
    """One rosbag2 release's recorder."""

    distro: str
    metadata_version: int
    sqlite_schema: int  # 2: Foxy's and Galactic's tables, without a schema table
    infinite: tuple[int, int]  # an infinite QoS duration as that era's rmw reported it to the recorder
    typestore: Stores


_INFINITE = (9223372036, 854775807)  # RMW_DURATION_INFINITE
RELEASES = {
    4: Release("galactic", 4, 2, (2147483647, 4294967295), Stores.ROS2_GALACTIC),  # Fast DDS' before rmw#301
    5: Release("humble", 5, 3, _INFINITE, Stores.ROS2_HUMBLE),
    6: Release("rolling", 6, 3, _INFINITE, Stores.ROS2_HUMBLE),  # custom_data (rosbag2#1038, 2022), never released
    7: Release("iron", 7, 4, _INFINITE, Stores.ROS2_IRON),
    8: Release("rolling", 8, 4, _INFINITE, Stores.ROS2_IRON),  # ros_distro (rosbag2#1241, 2023)
    9: Release("kilted", 9, 4, _INFINITE, Stores.ROS2_KILTED),
}

_SQLITE_TABLES = {
    "topics": "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, "
              "serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL{hash});",
    "messages": "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, "
                "timestamp INTEGER NOT NULL, data BLOB NOT NULL);"
                "CREATE INDEX timestamp_idx ON messages (timestamp ASC);",
    "schema": "CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);"
              "CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL, "
              "metadata TEXT NOT NULL);",
    "message_definitions": "CREATE TABLE message_definitions(id INTEGER PRIMARY KEY, topic_type TEXT NOT NULL, "
                           "encoding TEXT NOT NULL, encoded_message_definition TEXT NOT NULL, "
                           "type_description_hash TEXT NOT NULL);",
}


def camera_qos(release: Release) -> list[dict]:
    """The profile a camera driver offers (rclcpp's SensorDataQoS), as the recorder serializes it."""
    infinite = {"sec": release.infinite[0], "nsec": release.infinite[1]}
    profile = {"history": 1, "depth": 5, "reliability": 2, "durability": 2, "deadline": infinite,
               "lifespan": infinite, "liveliness": 1, "liveliness_lease_duration": infinite,
               "avoid_ros_namespace_conventions": False}
    if release.metadata_version >= 9:  # rmw's names (rosbag2#1476)
        profile.update(history="keep_last", reliability="best_effort", durability="volatile", liveliness="automatic")
    return [profile]


def _qos_text(release: Release) -> str:
    return yaml.safe_dump(camera_qos(release), sort_keys=False).strip()


def _write_sqlite3(file: Path, release: Release, topic: str, messages, compress_messages: bool, metadata: dict):
    typestore = get_typestore(release.typestore)
    digest = typestore.hash_rihs01(IMAGE) if release.metadata_version >= 7 else ""
    with sqlite3.connect(file) as db:
        db.executescript(_SQLITE_TABLES["topics"].format(hash=", type_description_hash TEXT NOT NULL"
                                                         if release.sqlite_schema >= 4 else ""))
        db.executescript(_SQLITE_TABLES["messages"])
        if release.sqlite_schema >= 3:
            db.executescript(_SQLITE_TABLES["schema"])
            db.execute("INSERT INTO schema VALUES (?, ?)", (release.sqlite_schema, release.distro))
        columns = [1, topic, IMAGE, "cdr", _qos_text(release)] + ([digest] if release.sqlite_schema >= 4 else [])
        db.execute(f"INSERT INTO topics VALUES ({', '.join('?' * len(columns))})", columns)
        if release.sqlite_schema >= 4:
            db.executescript(_SQLITE_TABLES["message_definitions"])
            db.execute("INSERT INTO message_definitions (topic_type, encoding, encoded_message_definition, "
                       "type_description_hash) VALUES (?, 'ros2msg', ?, ?)",
                       (IMAGE, typestore.generate_msgdef(IMAGE, ros_version=2)[0], digest))
        for log_time, data in messages:
            data = zstd.compress(data, level=1) if compress_messages else data  # ZSTD_compressCCtx, level 1
            db.execute("INSERT INTO messages (timestamp, topic_id, data) VALUES (?, 1, ?)", (log_time, data))
        if release.sqlite_schema >= 4:  # SqliteStorage::update_metadata (Iron and later)
            db.execute("INSERT INTO metadata (metadata_version, metadata) VALUES (?, ?)",
                       (release.metadata_version, yaml.safe_dump(metadata, sort_keys=False)))
    db.close()


def _write_mcap(file: Path, release: Release, topic: str, messages, metadata: dict):
    """rosbags' MCAP storage writer: the ros2 profile, a ros2msg schema, the channel's offered_qos_profiles."""
    typestore = get_typestore(release.typestore)
    msgdef = typestore.generate_msgdef(IMAGE, ros_version=2)[0]
    connection = Connection(1, topic, IMAGE, MessageDefinition(MessageDefinitionFormat.MSG, msgdef),
                            typestore.hash_rihs01(IMAGE), 0, ConnectionExtRosbag2("cdr", []), None)
    with TemporaryDirectory() as scratch:
        folder = Path(scratch) / file.stem  # McapWriter names its file after its folder
        folder.mkdir()
        writer = McapWriter(folder, CompressionMode.NONE)
        writer.add_msgtype(connection)
        writer.add_connection(connection, _qos_text(release))
        for log_time, data in messages:
            writer.write(connection, log_time, data)
        writer.close(release.metadata_version, yaml.safe_dump(metadata, sort_keys=False))
        (folder / f"{file.stem}.mcap").replace(file)


def _metadata(release: Release, storage: str, topic: str, paths: list[str], files: list[dict], compression: str,
              count: int, start: int, end: int) -> dict:
    """``rosbag2_bagfile_information`` as convert<BagMetadata>::encode of that release orders and fills it."""
    qos = camera_qos(release) if release.metadata_version >= 9 else _qos_text(release)
    meta = {"name": topic, "type": IMAGE, "serialization_format": "cdr", "offered_qos_profiles": qos}
    if release.metadata_version >= 7:
        meta["type_description_hash"] = get_typestore(release.typestore).hash_rihs01(IMAGE)
    head = {"version": release.metadata_version, "storage_identifier": storage}
    if release.metadata_version < 5:  # Foxy's encoder put the file paths second
        head["relative_file_paths"] = paths
    info = {**head, "duration": {"nanoseconds": end - start}, "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": count, "topics_with_message_count": [{"topic_metadata": meta, "message_count": count}],
            "compression_format": "zstd" if compression != "none" else "",
            "compression_mode": compression.upper() if compression != "none" else ""}
    if release.metadata_version >= 5:
        info["relative_file_paths"] = paths
        info["files"] = files
    if release.metadata_version >= 6:
        info["custom_data"] = {}
    if release.metadata_version >= 8:
        info["ros_distro"] = release.distro
    return info


def record_bag(path: Path, messages: list[tuple[int, bytes]], *, version: int, storage: str = "sqlite3",
               topic: str = "/camera/image_raw", split: int = 1, compression: str = "none",
               metadata: bool = True) -> list[Path]:
    """Record ``messages`` (log time, CDR Image) as the rosbag2 release writing metadata ``version`` does: split
    into ``split`` files ``<bag>_<n>.db3``/``.mcap``, each compressed whole to ``<file>.zstd`` (``compression``
    "file"; ``relative_file_paths`` names the compressed files, ``files`` keeps the names they were written
    under) or every message's data compressed ("message", sqlite3 only: the MCAP plugin refuses it), and
    ``metadata.yaml`` written unless the recorder was killed first. Returns the storage files."""
    release = RELEASES[version]
    path.mkdir()
    chunks = [messages[i * len(messages) // split:(i + 1) * len(messages) // split] for i in range(split)]
    names = [f"{path.name}_{i}.{'db3' if storage == 'sqlite3' else 'mcap'}" for i in range(split)]
    files = [{"path": name, "starting_time": {"nanoseconds_since_epoch": chunk[0][0]},
              "duration": {"nanoseconds": chunk[-1][0] - chunk[0][0]}, "message_count": len(chunk)}
             for name, chunk in zip(names, chunks)]
    relative = [f"{name}.zstd" if compression == "file" else name for name in names]
    info = _metadata(release, storage, topic, relative, files, compression, len(messages), messages[0][0],
                     messages[-1][0])
    written = []
    for name, chunk in zip(names, chunks):
        file = path / name
        if storage == "sqlite3":
            _write_sqlite3(file, release, topic, chunk, compression == "message", info)
        else:
            _write_mcap(file, release, topic, chunk, info)
        if compression == "file":  # ZstdCompressor::compress_uri, then the original is removed
            file.with_name(f"{name}.zstd").write_bytes(zstd.compress(file.read_bytes(), level=1))
            file.unlink()
            file = file.with_name(f"{name}.zstd")
        written.append(file)
    if metadata:
        (path / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False))
    return written
