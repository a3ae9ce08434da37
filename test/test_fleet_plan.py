"""Finding a fleet's bags in nested folders, mirroring them under the output folder, and splitting them."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from helpers import gray_frame, snapshot

from egnet_ros.bags import BagError, write_camera_bag
from egnet_ros.fleet_plan import FleetBag, find_bags, is_bag, share_of


def record(path: Path, frames: int = 1, storage: str = "sqlite3") -> Path:
    write_camera_bag(path, [gray_frame(40)] * frames, storage=storage)
    return path


@pytest.fixture
def drives(tmp_path) -> Path:
    """drives/day1/{a (sqlite3), b (MCAP)}, drives/day2/late/c, an unclosed recording, bags not to be found."""
    root = tmp_path / "drives"
    record(root / "day1/a")
    record(root / "day1/b", storage="mcap")
    record(root / "day2/late/c", frames=3)
    (root / "day2/unclosed").mkdir()
    (root / "day2/unclosed/unclosed_0.mcap.zstd").write_bytes(b"recorder killed before metadata.yaml")
    record(root / "day2/late/c_copy")
    (root / "day1/b/extra").mkdir()  # inside a bag: not searched
    record(root / "day1/b/extra/nested")
    record(root / ".trash/old")  # hidden: not searched
    (root / "notes").mkdir()
    (root / "notes/readme.txt").write_text("no bags here")
    return root


def names(bags) -> list[str]:
    return [bag.name for bag in bags]


def test_bags_are_found_in_nested_folders_but_not_inside_a_bag_or_a_hidden_folder(drives, tmp_path):
    before = snapshot(drives)

    bags = find_bags([drives], tmp_path / "out")

    assert names(bags) == ["day1/a", "day1/b", "day2/late/c", "day2/late/c_copy", "day2/unclosed"]
    assert bags[0].source == drives / "day1/a" and bags[0].relative == PurePosixPath("day1/a")
    assert bags[2].size > bags[0].size > 0
    assert snapshot(drives) == before, "finding bags only reads"


def test_outputs_mirror_the_inputs_under_their_common_folder(drives, tmp_path):
    # day1 is searched, c is a bag: their common folder is drives/ (day1's own, and c's parent's)
    assert names(find_bags([drives / "day1", drives / "day2/late/c"], tmp_path / "out")) == [
        "day1/a", "day1/b", "day2/late/c"]
    assert names(find_bags([drives / "day1"], tmp_path / "out")) == ["a", "b"]
    assert names(find_bags([drives / "day1/a"], tmp_path / "out")) == ["a"]
    (storage,) = (drives / "day1/a").glob("*.db3")
    assert names(find_bags([storage], tmp_path / "out")) == ["a"], "a single file's output is named for its stem"


def test_a_bag_given_twice_is_segmented_once(drives, tmp_path):
    (storage,) = (drives / "day1/a").glob("*.db3")
    for inputs in ([drives / "day1", drives / "day1/a"], [drives / "day1", storage], [storage, drives / "day1/a"]):
        bags = find_bags(inputs, tmp_path / "out")
        assert [bag.source for bag in bags if bag.name.endswith("a")] == [drives / "day1/a"], inputs


def test_an_output_that_would_lie_inside_another_is_refused(drives, tmp_path):
    with pytest.raises(BagError, match=r"output '.*out/b/extra/nested' would lie inside the output '.*out/b' of "):
        find_bags([drives / "day1", drives / "day1/b/extra/nested"], tmp_path / "out")


def test_two_bags_that_would_share_an_output_are_refused_naming_both(tmp_path):
    record(tmp_path / "in/drive")
    record(tmp_path / "elsewhere/drive", storage="mcap")
    mcap = (tmp_path / "elsewhere/drive/drive.mcap").rename(tmp_path / "in/drive.mcap")
    with pytest.raises(BagError, match=r"bags '.*in/drive' and '.*in/drive.mcap' would both be written to "
                                       r"'.*out/drive'"):
        find_bags([tmp_path / "in/drive", mcap], tmp_path / "out")


@pytest.mark.parametrize("out", ["drives/segmented", ".", "drives/day1/a/out"])
def test_an_output_folder_overlapping_an_input_is_refused(drives, tmp_path, out):
    with pytest.raises(BagError, match="overlap"):
        find_bags([drives], tmp_path / out)


def test_inputs_without_bags_are_errors_naming_them(drives, tmp_path):
    with pytest.raises(BagError, match=r"input '.*missing' does not exist"):
        find_bags([drives / "missing"], tmp_path / "out")
    with pytest.raises(BagError, match=r"input '.*notes' holds no rosbag2 bag"):
        find_bags([drives / "notes"], tmp_path / "out")
    with pytest.raises(BagError, match=r"input '.*readme.txt' is not a .db3 or .mcap file"):
        find_bags([drives / "notes/readme.txt"], tmp_path / "out")


def test_a_folder_is_a_bag_by_its_metadata_or_storage_files(drives):
    assert is_bag(drives / "day1/a") and is_bag(drives / "day2/unclosed")
    assert not is_bag(drives / "day1") and not is_bag(drives / "notes")


def test_every_bag_goes_to_exactly_one_process_the_same_on_every_one_balanced_by_size(tmp_path):
    sizes = [50, 10, 40, 30, 20, 20, 5]
    bags = [FleetBag(tmp_path / str(i), PurePosixPath(f"bag{i}"), size) for i, size in enumerate(sizes)]
    shares = [share_of(bags, rank, 3) for rank in range(3)]

    assert sorted(names(b for share in shares for b in share)) == sorted(names(bags)), "each bag exactly once"
    assert shares == [share_of(bags, rank, 3) for rank in range(3)], "deterministic"
    loads = [sum(bag.size for bag in share) for share in shares]
    assert max(loads) - min(loads) <= max(sizes) // 2
    for share in shares:
        assert names(share) == sorted(names(share)), "each share in the sorted order"
    assert share_of(bags, 0, 1) == bags
    with pytest.raises(ValueError, match=r"rank must lie in \[0, 3\), got 3"):
        share_of(bags, 3, 3)
