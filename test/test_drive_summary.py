"""A drive's counts and frames to look at, on frames whose exposure and confidence are known by construction."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from helpers import count_frame as add
from helpers import gray_frame as gray

from egnet_core.data.labels import IGNORE_INDEX
from egnet_core.reports.drive_summary import (
    TOTAL,
    DriveCounter,
    DriveSummary,
    FrameRef,
    TopFrames,
    merge_drives,
)

HEIGHT, WIDTH = 48, 64  # gray_frame's


def test_a_drive_names_its_darkest_most_saturated_and_least_confident_frames():
    counter = DriveCounter("night/a", k=2)
    add(counter, 0, gray(100), confidence=0.8)
    add(counter, 1, gray(10), confidence=0.95)  # darkest
    add(counter, 2, gray(60, bright_share=0.5), confidence=0.9)  # most saturated
    add(counter, 3, gray(30, bright_share=0.25), confidence=0.4)  # least confident, second most saturated
    add(counter, 4, gray(120), confidence=0.7)

    summary = counter.summary(skipped={"/front: too small": 2}, damage=None, seconds=1.5)

    assert summary.frames == 5 and summary.duration_s == 4.0
    assert [f.stamp_ns for f in summary.darkest] == [1_001, 1_003]
    assert summary.darkest[0] == FrameRef("night/a", "/front", 1_001, 10**9, pytest.approx(10 / 255))
    assert [(f.stamp_ns, f.value) for f in summary.most_saturated] == [(1_002, 0.5), (1_003, 0.25)]
    assert [f.stamp_ns for f in summary.least_confident] == [1_003, 1_004]
    assert summary.least_confident[0].value == pytest.approx(0.4)
    assert summary.skipped == {"/front: too small": 2}
    assert sum(summary.exposure_pixels) == 5 * HEIGHT * WIDTH
    assert summary.exposure_pixels[-1] == HEIGHT * WIDTH * 3 // 4  # the white rows, in the closed last bin


def test_pixels_are_counted_per_class_and_unlabelled_ones_apart():
    counter = DriveCounter("a")
    add(counter, 0, gray(50), label=13)
    labels = np.full((HEIGHT, WIDTH), 0, dtype=np.uint8)
    labels[:12] = IGNORE_INDEX
    counter.add(topic="/front", stamp_ns=1, log_time_ns=1, image=gray(50), labels=labels,
                confidence=np.ones((HEIGHT, WIDTH), np.float32))

    summary = counter.summary(skipped={}, damage=None, seconds=0.0)

    assert summary.class_pixels[13] == HEIGHT * WIDTH and summary.class_pixels[0] == (HEIGHT - 12) * WIDTH
    assert summary.ignored_pixels == 12 * WIDTH
    assert summary.class_shares["car"] == pytest.approx(0.5)
    assert summary.class_shares["road"] == pytest.approx((HEIGHT - 12) / HEIGHT / 2)


def test_top_frames_hold_at_most_twice_k_and_keep_the_k_lowest_whatever_the_order():
    values = list(range(1000))
    random.Random(0).shuffle(values)
    lowest, highest = TopFrames(5), TopFrames(5, largest=True)
    for value in values:
        frame = FrameRef("bag", "/t", value, value, float(value))
        lowest.add(frame)
        highest.add(frame)
        assert len(lowest._frames) < 10 and len(highest._frames) < 10  # bounded, however long the drive
    assert [f.value for f in lowest.frames()] == [0, 1, 2, 3, 4]
    assert [f.value for f in highest.frames()] == [999, 998, 997, 996, 995]


def test_ties_are_broken_by_bag_topic_and_stamp_not_by_arrival():
    frames = [FrameRef(bag, "/t", stamp, 0, 0.5) for bag in ("b", "a") for stamp in (2, 1)]
    first, second = TopFrames(3), TopFrames(3)
    first.extend(frames)
    second.extend(reversed(frames))
    assert first.frames() == second.frames()
    assert [(f.bag, f.stamp_ns) for f in first.frames()] == [("a", 1), ("a", 2), ("b", 1)]


def test_merged_drives_sum_their_counts_and_keep_the_top_k_of_all_frames():
    counters = [DriveCounter(name, k=3) for name in ("a", "b", "c")]
    levels = np.random.default_rng(0).integers(0, 256, 30)
    confidences = np.random.default_rng(1).uniform(0.2, 1.0, 30)
    for index, (level, confidence) in enumerate(zip(levels, confidences)):
        add(counters[index % 3], index, gray(int(level)), confidence=float(confidence))
    drives = [c.summary(skipped={f"{c.bag}: bad": 1, "common": 2}, damage=None, seconds=1.0) for c in counters]

    total = merge_drives(drives, k=3)

    assert total.bag == TOTAL and total.drives == 3 and total.frames == 30
    assert total.skipped == {"a: bad": 1, "b: bad": 1, "c: bad": 1, "common": 6}
    assert total.exposure_pixels == tuple(np.sum([d.exposure_pixels for d in drives], axis=0))
    assert [f.value for f in total.darkest] == pytest.approx(sorted(levels / 255)[:3])
    assert [f.value for f in total.least_confident] == pytest.approx(sorted(confidences)[:3])
    assert total.duration_s == pytest.approx(sum(d.duration_s for d in drives))


def test_a_summary_survives_json():
    counter = DriveCounter("day/a")
    add(counter, 0, gray(40), confidence=0.5)
    summary = counter.summary(skipped={"x": 1}, damage="cut at 70%", seconds=2.0)
    assert DriveSummary.from_json(json.loads(json.dumps(summary.to_json()))) == summary
