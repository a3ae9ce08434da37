"""One fleet output, written so that a killed run can be resumed: a bag is complete, or egnet's partial.

For the output ``DIR/REL/NAME`` of a drive the bag is written inside ``DIR/REL/.NAME.partial/`` (as
``.NAME.partial/NAME``, so that its storage files carry the bag's own name), beside a lock file that marks the
folder as egnet's and is held (``flock``) while the bag is written. When the bag is closed, its drive's record
(the summary of what it held) is written to ``DIR/REL/.NAME.drive.json`` and then the bag is renamed into place
in one step: an output at ``NAME`` with its record beside it is complete. A run killed at any point leaves
complete bags and at most the partials of the bags in flight; the next run skips the complete ones (reading
their records back for the summary) and removes a partial before redoing it, but only one that is egnet's and
that no living process holds: a partial holding anything but the lock file and the bag's own files, or held by
another process, is refused untouched.
"""

from __future__ import annotations

import enum
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from egnet_core.reports.drive_summary import DriveSummary

from .bags import MARK, BagError, remove_own_bag

log = logging.getLogger(__name__)

LOCK_FILE = "egnet.lock"


class State(enum.Enum):
    TO_DO = "to do"
    DONE = "done"  # complete, with its record


@dataclass(frozen=True)
class OutputSlot:
    """Where one drive's output and its record go."""

    bag: Path  # DIR/REL/NAME: the complete output bag

    @property
    def partial(self) -> Path:
        return self.bag.with_name(f".{self.bag.name}.partial")

    @property
    def record(self) -> Path:
        return self.bag.with_name(f".{self.bag.name}.drive.json")

    def state(self, *, overwrite: bool) -> State:
        """DONE where the complete output and its record exist (and ``overwrite`` was not asked); BagError, before
        anything is touched, where the output exists without a record (a bag this tool did not write) unless
        ``overwrite``, or where another process holds the partial."""
        if self.partial.exists() or self.partial.is_symlink():
            _check_partial(self.partial, self.bag.name)
        exists = self.bag.exists() or self.bag.is_symlink()
        if exists and not overwrite:
            if not self.record.is_file():
                raise BagError(f"output {str(self.bag)!r} exists without its record {self.record.name!r} beside it: "
                               "a fleet run did not finish it; move it away, or pass --overwrite to replace it (only a "
                               "bag egnet wrote is replaced)")
            self.read_record()
            return State.DONE
        return State.TO_DO

    def discard_partial(self) -> None:
        """Remove what a run killed between finishing the bag and removing its partial folder left there."""
        remove_partial(self.partial, self.bag.name)

    def read_record(self) -> DriveSummary:
        try:
            return DriveSummary.from_json(json.loads(self.record.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise BagError(f"record {str(self.record)!r} of the finished output {str(self.bag)!r} does not read: "
                           f"{error}; remove both to segment the bag again") from None

    @contextmanager
    def writing(self, source: Path, *, overwrite: bool) -> Iterator[Path]:
        """The path to write the bag to, in a fresh partial folder held by this process; an earlier partial of
        egnet's is removed first and, with ``overwrite``, the complete output egnet wrote. Call :meth:`publish`
        inside the block once the bag is closed; if the block raises, the partial is removed."""
        remove_partial(self.partial, self.bag.name)
        if overwrite and (self.bag.exists() or self.bag.is_symlink()):
            remove_own_bag(self.bag)
            self.record.unlink(missing_ok=True)
        self.partial.mkdir(parents=True)
        with (self.partial / LOCK_FILE).open("x", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            json.dump({MARK[0]: MARK[1], "input": str(source), "pid": os.getpid()}, lock)
            lock.flush()
            try:
                yield self.partial / self.bag.name
            except Exception:
                _remove(self.partial, self.bag.name)
                raise

    def publish(self, record: DriveSummary) -> None:
        """The record written, then the closed bag moved into place, then the partial folder removed."""
        temporary = self.record.with_name(self.record.name + ".tmp")
        temporary.write_text(json.dumps(record.to_json(), indent=2) + "\n", encoding="utf-8")
        temporary.replace(self.record)
        (self.partial / self.bag.name).rename(self.bag)
        (self.partial / LOCK_FILE).unlink()
        self.partial.rmdir()


def remove_partial(partial: Path, name: str) -> None:
    """Remove the partial folder egnet left for the bag ``name``; BagError, touching nothing, where it is not
    egnet's, holds anything else, or another process is still writing it."""
    if not (partial.exists() or partial.is_symlink()):
        return
    _check_partial(partial, name)
    with _held(partial):
        _remove(partial, name)
    log.info("removed the partial output %s of an interrupted run", partial)


def _check_partial(partial: Path, name: str) -> None:
    if partial.is_symlink() or not partial.is_dir():
        raise BagError(f"{str(partial)!r} is in the place of egnet's partial output but is not a folder; refusing "
                       "to remove it: move it away")
    entries = sorted(entry.name for entry in partial.iterdir())
    if not entries:
        return  # created by a run killed before it wrote its lock: empty, so removing it deletes nothing
    others = [entry for entry in entries if entry not in (LOCK_FILE, name)]
    bag = partial / name
    if bag.exists():
        if bag.is_symlink() or not bag.is_dir():
            others.append(name)
        else:
            own = _own_files(name)
            others += [f"{name}/{entry.name}" for entry in bag.iterdir()
                       if entry.name not in own or entry.is_symlink() or not entry.is_file()]
    if others or not _marked(partial / LOCK_FILE):
        what = f"holds {others}, which egnet did not write there" if others else f"has no {LOCK_FILE} of egnet's"
        raise BagError(f"partial output {str(partial)!r} {what}; refusing to remove it: move it away")
    with _held(partial):
        pass


def _own_files(name: str) -> set[str]:
    """The files rosbags writes into a bag folder ``name`` (sqlite3's journal among them)."""
    return {f"{name}.db3", f"{name}.db3-journal", f"{name}.mcap", "metadata.yaml", "metadata.yaml.tmp"}


def _marked(lock: Path) -> bool:
    try:
        return json.loads(lock.read_text(encoding="utf-8")).get(MARK[0]) == MARK[1]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


@contextmanager
def _held(partial: Path) -> Iterator[None]:
    """The partial's lock taken, or BagError where a living process holds it (a run still writing it)."""
    lock_path = partial / LOCK_FILE
    if not lock_path.exists():
        yield
        return
    with lock_path.open("r", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BagError(f"partial output {str(partial)!r} is being written by another process "
                           f"({lock_path.read_text(encoding='utf-8')}); wait for it to finish or stop it") from None
        yield


def _remove(partial: Path, name: str) -> None:
    bag = partial / name
    if bag.is_dir():
        for entry in bag.iterdir():
            entry.unlink()
        bag.rmdir()
    (partial / LOCK_FILE).unlink(missing_ok=True)
    partial.rmdir()
