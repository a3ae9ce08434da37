"""summary.json, summary.md and the charts of a fleet, from drives whose content is known."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import count_frame as add
from helpers import gray_frame as gray

from egnet_core.reports.drive_summary import DriveCounter, FailedDrive
from egnet_core.reports.fleet_report import (
    FleetRun,
    check_replaceable,
    read_fleet_summary,
    write_fleet_summary,
)

RUN = FleetRun(seconds=2.0, frames=4, resumed=("day/b",), world_size=1, workers=2,
               peak_memory_mib={"rank 0 pid 1": 800.0})


def drives():
    a, b = DriveCounter("day/a", k=2), DriveCounter("night/b", k=2)
    add(a, 0, gray(120), confidence=0.9, label=0)
    add(a, 1, gray(90, bright_share=0.5), confidence=0.8, label=0)
    add(b, 0, gray(5), confidence=0.3, label=13, topic="/rear")
    add(b, 1, gray(20), confidence=0.6, label=13, topic="/rear")
    return (a.summary(skipped={"/front: image of width=8 × height=8 is below the minimum": 1}, damage=None,
                      seconds=1.0),
            b.summary(skipped={}, damage="drive_0.mcap: Truncated record at offset 7", seconds=1.0))


def test_the_summary_has_totals_drives_and_frames_to_look_at(tmp_path):
    files = write_fleet_summary(drives(), [FailedDrive("broken/c", "bag 'c' cannot be read: not a database")], RUN,
                                tmp_path, top_k=2)

    summary = read_fleet_summary(files.json)
    total = summary["total"]
    assert total.frames == 4 and total.drives == 2
    assert [(f.bag, f.topic, f.stamp_ns) for f in total.darkest] == [("night/b", "/rear", 1_000),
                                                                     ("night/b", "/rear", 1_001)]
    assert [(f.bag, f.value) for f in total.most_saturated][0] == ("day/a", 0.5)
    assert [f.value for f in total.least_confident] == pytest.approx([0.3, 0.6])
    assert total.class_shares["road"] == pytest.approx(0.5) and total.class_shares["car"] == pytest.approx(0.5)
    assert [d.bag for d in summary["drives"]] == ["day/a", "night/b"]
    assert summary["failed"] == [{"bag": "broken/c", "reason": "bag 'c' cannot be read: not a database"}]
    assert summary["run"]["frames_per_second"] == 2.0 and summary["run"]["resumed"] == ["day/b"]

    markdown = files.markdown.read_text()
    assert "2 drives, 4 frames" in markdown and "1 frames skipped, 1 drives failed" in markdown
    assert "![exposure histogram](summary_exposure.png)" in markdown
    assert "![share of pixels per class](summary_classes.png)" in markdown
    assert "| 1 | night/b | /rear | 0.000001000 | 0.000000000 | 0.0196 |" in markdown  # 5/255, the darkest
    assert "| 1 | day/a | /front | 0.000001001 | 1.000000000 | 0.5000 |" in markdown  # half white
    assert "| road | 50.00% |" in markdown
    assert "| /front: image of width=8 × height=8 is below the minimum | 1 |" in markdown
    assert "drive_0.mcap: Truncated record at offset 7" in markdown
    assert "| broken/c | bag 'c' cannot be read: not a database |" in markdown
    for chart in (files.exposure_chart, files.class_chart):
        assert chart.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json", "summary.md", "summary_classes.png",
                                                          "summary_exposure.png"], "no temporary file is left"


def test_a_fleet_without_frames_has_a_summary_without_charts(tmp_path):
    files = write_fleet_summary([], [FailedDrive("a", "no image topic")], RUN, tmp_path)
    assert files.exposure_chart is None and files.class_chart is None
    assert "0 drives, 0 frames" in files.markdown.read_text()


def test_an_earlier_summary_is_replaced_but_not_a_file_egnet_did_not_write(tmp_path):
    check_replaceable(tmp_path)  # nothing there
    write_fleet_summary(drives(), [], RUN, tmp_path)
    check_replaceable(tmp_path)  # egnet's own

    (tmp_path / "summary.json").write_text(json.dumps({"notes": "mine"}))
    with pytest.raises(ValueError, match=r"holds \['summary.json', 'summary.md', .*refusing to replace them"):
        check_replaceable(tmp_path)
    (tmp_path / "summary.json").unlink()
    with pytest.raises(ValueError, match="refusing to replace them"):
        check_replaceable(tmp_path)


def test_the_exposure_table_is_the_papers_figure_4_over_all_frames(tmp_path):
    files = write_fleet_summary(drives(), [], RUN, tmp_path)
    total = read_fleet_summary(files.json)["total"]
    assert total.exposure.images == 4
    np.testing.assert_allclose(total.exposure.mean_pixels_per_image.sum(), 64 * 48)
