"""A fleet output is complete or egnet's partial; only egnet's partials, held by no process, are removed."""

from __future__ import annotations

import json

import pytest
from helpers import count_frame, gray_frame, snapshot

from egnet_core.reports.drive_summary import DriveCounter
from egnet_ros.bags import BagError, write_camera_bag
from egnet_ros.fleet_outputs import LOCK_FILE, OutputSlot, State, remove_partial


def drive_record(name: str = "a"):
    counter = DriveCounter(name)
    count_frame(counter, 0, gray_frame(30))
    return counter.summary(skipped={}, damage=None, seconds=0.1)


def publish(slot: OutputSlot, **options) -> None:
    with slot.writing(slot.bag, overwrite=options.get("overwrite", False)) as partial:
        write_camera_bag(partial, [gray_frame(30)])
        slot.publish(drive_record())


def test_a_bag_is_written_in_its_partial_folder_and_published_with_its_record(tmp_path):
    slot = OutputSlot(tmp_path / "out/day1/a")
    assert slot.state(overwrite=False) is State.TO_DO

    with slot.writing(tmp_path / "drives/day1/a", overwrite=False) as partial:
        assert partial == tmp_path / "out/day1/.a.partial/a"
        lock = json.loads((slot.partial / LOCK_FILE).read_text())
        assert lock["written_by"] == "egnet" and lock["input"] == str(tmp_path / "drives/day1/a")
        write_camera_bag(partial, [gray_frame(30)])
        assert not slot.bag.exists()
        slot.publish(drive_record())

    assert sorted(p.name for p in slot.bag.iterdir()) == ["a.db3", "metadata.yaml"]
    assert sorted(p.name for p in slot.bag.parent.iterdir()) == [".a.drive.json", "a"], "no partial is left"
    assert slot.state(overwrite=False) is State.DONE
    assert slot.read_record() == drive_record()
    assert slot.state(overwrite=True) is State.TO_DO


def test_a_failure_while_writing_removes_the_partial(tmp_path):
    slot = OutputSlot(tmp_path / "a")
    with pytest.raises(ValueError, match="boom"), slot.writing(tmp_path / "in", overwrite=False) as partial:
        write_camera_bag(partial, [gray_frame(30)])
        raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []


def test_an_output_without_its_record_is_refused_unless_overwrite_and_only_egnets_is_replaced(tmp_path):
    slot = OutputSlot(tmp_path / "a")
    write_camera_bag(slot.bag, [gray_frame(30)])  # egnet's bag, from the one-bag form: no record
    with pytest.raises(BagError, match=r"output '.*a' exists without its record '.a.drive.json' beside it"):
        slot.state(overwrite=False)
    assert slot.state(overwrite=True) is State.TO_DO
    publish(slot, overwrite=True)
    assert slot.state(overwrite=False) is State.DONE

    (tmp_path / "b").mkdir()
    (tmp_path / "b/thesis.txt").write_text("mine")
    foreign = OutputSlot(tmp_path / "b")
    with pytest.raises(BagError, match="is not a bag egnet wrote"):
        publish(foreign, overwrite=True)
    assert (tmp_path / "b/thesis.txt").read_text() == "mine"


def killed_partial(tmp_path) -> OutputSlot:
    """The partial a run killed mid-bag leaves: its lock file and a half-written storage file, no metadata.yaml."""
    slot = OutputSlot(tmp_path / "out/a")
    write_camera_bag(tmp_path / "whole", [gray_frame(30)] * 4)
    (slot.partial / "a").mkdir(parents=True)
    data = (tmp_path / "whole/whole.db3").read_bytes()
    (slot.partial / "a/a.db3").write_bytes(data[: len(data) // 2])
    (slot.partial / LOCK_FILE).write_text(json.dumps({"written_by": "egnet", "input": "x", "pid": 1}))
    return slot


def test_a_partial_left_by_a_killed_run_is_removed(tmp_path):
    slot = killed_partial(tmp_path)
    assert slot.state(overwrite=False) is State.TO_DO
    remove_partial(slot.partial, "a")
    assert not slot.partial.exists()


@pytest.mark.parametrize("intruder", ["notes.txt", "a/notes.txt", "a/a.db3.bak"])
def test_a_partial_holding_anything_else_is_refused_untouched(tmp_path, intruder):
    slot = killed_partial(tmp_path)
    (slot.partial / intruder).write_text("someone else's")
    before = snapshot(slot.partial)

    with pytest.raises(BagError, match=rf"holds \['{intruder}'\], which egnet did not write there; refusing"):
        slot.state(overwrite=False)
    with pytest.raises(BagError, match="refusing to remove it"):
        publish(slot)
    assert snapshot(slot.partial) == before


def test_a_partial_without_egnets_lock_is_refused_and_an_empty_one_removed(tmp_path):
    slot = killed_partial(tmp_path)
    (slot.partial / LOCK_FILE).write_text("{}")
    with pytest.raises(BagError, match=f"has no {LOCK_FILE} of egnet's; refusing to remove it"):
        remove_partial(slot.partial, "a")
    assert (slot.partial / "a/a.db3").exists()

    empty = OutputSlot(tmp_path / "out/b")
    empty.partial.mkdir()  # a run killed between creating the folder and its lock
    publish(empty)
    assert empty.state(overwrite=False) is State.DONE


def test_a_partial_another_process_is_writing_is_refused(tmp_path):
    slot = OutputSlot(tmp_path / "a")
    with slot.writing(tmp_path / "in", overwrite=False) as partial:
        write_camera_bag(partial, [gray_frame(30)])
        # flock is per open file: this process opening the lock again is refused as another would be
        with pytest.raises(BagError, match=r"is being written by another process \(.*\"pid\""):
            slot.state(overwrite=False)
        with pytest.raises(BagError, match="is being written by another process"):
            remove_partial(slot.partial, "a")
        assert (partial / "a.db3").exists()
        slot.publish(drive_record())
