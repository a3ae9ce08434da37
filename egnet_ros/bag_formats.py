"""The rosbag2 layout each ROS 2 distro's ``ros2 bag info`` and ``ros2 bag play`` read, for the bags egnet writes.

rosbags writes metadata versions 8 and 9 only; Humble's reader (metadata version 5) takes
``offered_qos_profiles`` as a YAML *string*, and Jazzy's own recorder writes it as a YAML list, which Humble
rejects with "yaml-cpp: bad conversion". So the storage files are written by rosbags and the metadata, in
``metadata.yaml`` and inside the storage file, is rewritten here as the chosen distro's rosbag2 writes it.

What each distro parses, from ros2/rosbag2's source (``convert<BagMetadata>::decode`` and
``convert<TopicMetadata>::decode``: ``rosbag2_storage/src/rosbag2_storage/metadata_io.cpp`` on the humble
branch, ``rosbag2_storage/include/rosbag2_storage/yaml.hpp`` on jazzy; QoS in
``rosbag2_transport/src/rosbag2_transport/qos.cpp`` (humble), ``rosbag2_storage/src/rosbag2_storage/qos.cpp``
(jazzy)). yaml-cpp only looks keys up, so a key a version does not read is ignored:

- every version: ``version`` (int), ``storage_identifier``, ``duration: {nanoseconds}``,
  ``starting_time: {nanoseconds_since_epoch}``, ``message_count``, ``relative_file_paths`` (list of str),
  ``topics_with_message_count``: list of ``{topic_metadata: {name, type, serialization_format}, message_count}``;
- version >= 3: ``compression_format``, ``compression_mode`` (str); >= 4: ``offered_qos_profiles`` per topic;
  >= 5: ``files``: list of ``{path, starting_time, duration, message_count}``;
- version >= 6 (Jazzy's reader): ``custom_data`` (a str->str map); >= 7: ``type_description_hash`` per topic
  (str); >= 8: ``ros_distro`` (str);
- ``offered_qos_profiles``: below 9 a *string* holding a YAML list of profiles (``""`` for none; the player then
  uses its default), each with integer ``history``, ``reliability``, ``durability``, ``liveliness``, ``depth``,
  ``deadline``/``lifespan``/``liveliness_lease_duration`` as ``{sec, nsec}`` and a bool
  ``avoid_ros_namespace_conventions``; from 9 the list itself, the policies by rmw's names (``keep_last``,
  ``best_effort``, ...). Jazzy's reader takes either form of a profile; Humble's only the integers.

Humble (rosbag2 0.15) writes version 5; Jazzy (0.26) version 9. Kilted (0.32) reads and writes as Jazzy: its
rosbag2_storage changelog since 0.26 changes no metadata field, and rolling's ``yaml.hpp``, ``qos.cpp`` and
``bag_metadata.hpp`` at 0.29 are Jazzy's. Jazzy and Kilted read a version-5 bag by the version-5 rules, so a
Humble bag is read by all three.

egnet's mark (``custom_data``) stays in every version: Humble's reader and Jazzy's reader of a version-5 bag
never look the key up, and ``--overwrite`` reads it from the file itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import yaml
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapWriter
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer
from rosbags.typesys import Stores

DISTROS = ("humble", "jazzy", "kilted")
DEFAULT_DISTRO = "humble"  # the oldest supported: the newer distros read its bags too


@dataclass(frozen=True)
class BagFormat:
    """What a distro's rosbag2 writes and reads."""

    distro: str
    metadata_version: int  # BagMetadata::version
    sqlite_schema: int  # SqliteStorage::kDBSchemaVersion_
    typestore: Stores  # the message definitions (MCAP schemas, sqlite3 message_definitions) and their hashes

    @property
    def rosbags_version(self) -> int:
        """The metadata version rosbags writes the storage files with: 8 stores QoS profiles as the integer
        YAML string every version below 9 reads, 9 as the named list."""
        return 9 if self.metadata_version >= 9 else 8


FORMATS = {
    "humble": BagFormat("humble", metadata_version=5, sqlite_schema=3, typestore=Stores.ROS2_HUMBLE),
    "jazzy": BagFormat("jazzy", metadata_version=9, sqlite_schema=4, typestore=Stores.ROS2_JAZZY),
    "kilted": BagFormat("kilted", metadata_version=9, sqlite_schema=4, typestore=Stores.ROS2_KILTED),
}

# SqliteStorage::initialize() of Humble (rosbag2_storage_default_plugins, schema 3): no message_definitions
# table, no type_description_hash column, and a metadata table Humble creates but never fills.
HUMBLE_SQLITE_SCHEMA = """
CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);
CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
                    serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);
CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL,
                      data BLOB NOT NULL);
CREATE INDEX timestamp_idx ON messages (timestamp ASC);
INSERT INTO schema(schema_version, ros_distro) VALUES (3, 'humble');
"""


def distro_metadata(info: dict, bag: BagFormat) -> dict:
    """``rosbag2_bagfile_information`` as ``bag``'s distro writes it, from the one rosbags wrote (version 8 or
    9, QoS profiles already in the form ``bag`` reads), in the key order of rosbag2's encoder."""
    modern = bag.metadata_version >= 9
    topics = []
    for topic in info["topics_with_message_count"]:
        meta = topic["topic_metadata"]
        fields = {key: meta[key] for key in ("name", "type", "serialization_format", "offered_qos_profiles")}
        if modern:
            fields["type_description_hash"] = meta["type_description_hash"]
        topics.append({"topic_metadata": fields, "message_count": topic["message_count"]})
    metadata = {
        "version": bag.metadata_version,
        "storage_identifier": info["storage_identifier"],
        "duration": info["duration"],
        "starting_time": info["starting_time"],
        "message_count": info["message_count"],
        "topics_with_message_count": topics,
        "compression_format": info["compression_format"],
        "compression_mode": info["compression_mode"],
        "relative_file_paths": info["relative_file_paths"],
        "files": info["files"],
        "custom_data": info.get("custom_data") or {},
    }
    if modern:
        metadata["ros_distro"] = bag.distro
    return metadata


def _rewritten(serialized: str, bag: BagFormat) -> str:
    """rosbags' serialized ``BagMetadata`` (the storage files' copy) as ``bag``'s distro serializes it."""
    return yaml.safe_dump(distro_metadata(yaml.safe_load(serialized), bag), sort_keys=False)


class _Sqlite3Writer(Sqlite3Writer):
    """rosbags' sqlite3 storage in the schema of ``bag``'s distro: Humble's schema 3 (no message definitions,
    an empty metadata table), or schema 4 whose metadata table holds the distro's metadata (Iron and later
    read it when a bag has no metadata.yaml)."""

    def __init__(self, bag: BagFormat, path: Path, compression) -> None:
        self.bag = bag
        if bag.sqlite_schema < 4:
            self.SQLITE_SCHEMA = HUMBLE_SQLITE_SCHEMA
        super().__init__(path, compression)
        if bag.sqlite_schema >= 4:
            self.conn.execute("UPDATE schema SET ros_distro = ?", (bag.distro,))

    def add_msgtype(self, connection) -> None:
        if self.bag.sqlite_schema >= 4:
            super().add_msgtype(connection)

    def add_connection(self, connection, offered_qos_profiles: str) -> None:
        if self.bag.sqlite_schema >= 4:
            super().add_connection(connection, offered_qos_profiles)
            return
        self.cursor.execute("INSERT INTO topics VALUES(?, ?, ?, ?, ?)", (
            connection.id, connection.topic, connection.msgtype, connection.ext.serialization_format,
            offered_qos_profiles))

    def close(self, version: int, metadata: str) -> None:
        if self.bag.sqlite_schema >= 4:
            super().close(self.bag.metadata_version, _rewritten(metadata, self.bag))
            return
        self.conn.commit()
        self.conn.execute("PRAGMA optimize")
        self.conn.close()


class _McapWriter(McapWriter):
    """rosbags' MCAP storage whose ``rosbag2`` metadata record holds the distro's metadata (Jazzy and later
    read it when a bag has no metadata.yaml; Humble reads no metadata record)."""

    def __init__(self, bag: BagFormat, path: Path, compression) -> None:
        self.bag = bag
        super().__init__(path, compression)

    def close(self, version: int, metadata: str) -> None:
        super().close(self.bag.metadata_version, _rewritten(metadata, self.bag))


class DistroWriter(Writer):
    """rosbags' Writer of a bag in ``bag``'s format: its storage files and metadata.yaml as that distro's
    rosbag2 writes them."""

    def __init__(self, path: Path, bag: BagFormat, storage: StoragePlugin) -> None:
        super().__init__(path, version=bag.rosbags_version, storage_plugin=storage)
        self.bag = bag
        self.STORAGE_PLUGINS = {StoragePlugin.SQLITE3: partial(_Sqlite3Writer, bag),
                                StoragePlugin.MCAP: partial(_McapWriter, bag)}

    def close(self) -> None:
        super().close()
        written = yaml.safe_load(self.metapath.read_text())["rosbag2_bagfile_information"]
        text = yaml.safe_dump({"rosbag2_bagfile_information": distro_metadata(written, self.bag)}, sort_keys=False)
        temporary = self.metapath.with_suffix(".yaml.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(self.metapath)
