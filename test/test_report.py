import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from egnet_core.criteria.metrics import SegmentationEvaluator
from egnet_core.data.exposure import bin_names
from egnet_core.data.labels import CLASS_NAMES
from egnet_core.deploy.inference import AttentionMaps
from egnet_core.engine.evaluation import EvaluationResult, Example
from egnet_core.reports.report import write_report
from egnet_core.reports.visualize import exposure_picture


def _example(name, seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 19, (40, 80), dtype=np.uint8)
    return Example(
        name=name,
        image=rng.integers(0, 256, (40, 80, 3), dtype=np.uint8),
        label=label,
        prediction=np.where(rng.random((40, 80)) < 0.7, label, 0).astype(np.uint8),
        exposure=rng.random((40, 80), dtype=np.float32) * 0.5,  # bins [0.5, 1.0] stay empty
    )


def _result():
    examples = (_example("Chicago_0000", 0), _example("Tokyo/0001", 1))
    evaluator = SegmentationEvaluator()
    for example in examples:
        evaluator.update(example.prediction, example.label, example.exposure)
    return EvaluationResult(scores=evaluator.compute(), images=len(examples), seconds=1.5, examples=tuple(examples))


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def test_metrics_json_holds_the_scores_by_class_and_bin_name(tmp_path):
    result = _result()
    files = write_report(result, tmp_path / "report", title="EGNet on NightCity val", config={"checkpoint": tmp_path})
    metrics = _strict_json(files.metrics)
    assert metrics["miou"] == pytest.approx(result.scores.miou)
    assert metrics["mef1"] == pytest.approx(result.scores.mef1)
    assert metrics["pixel_accuracy"] == pytest.approx(result.scores.pixel_accuracy)
    assert list(metrics["iou"]) == list(CLASS_NAMES)
    assert list(metrics["ef1"]) == bin_names()
    assert metrics["ef1"]["[0.9, 1.0]"] is None and "[0.9, 1.0]" in metrics["empty_bins"]
    assert metrics["average"] == "micro" and metrics["images"] == 2
    assert metrics["config"] == {"checkpoint": str(tmp_path)}


def test_markdown_has_the_class_table_and_the_table_2_layout(tmp_path):
    result = _result()
    files = write_report(result, tmp_path, title="EGNet on NightCity val", config=None)
    text = files.markdown.read_text()
    assert text.startswith("# EGNet on NightCity val")
    assert "| | " + " | ".join(bin_names()) + " | mEF1 |" in text
    assert f"| mIoU (%) | {100 * result.scores.miou:.1f} |" in text
    assert "| road |" in text and "| bicycle |" in text
    assert "**micro**" in text and "pixel accuracy" in text
    assert "](ef1_by_bin.png)" in text
    for path in files.examples:
        assert f"]({path.relative_to(tmp_path).as_posix()})" in text


def test_pictures_are_written_and_readable(tmp_path):
    files = write_report(_result(), tmp_path, title="t", config=None)
    assert files.ef1_chart == tmp_path / "ef1_by_bin.png"
    assert [path.name for path in files.examples] == ["00_Chicago_0000.png", "01_Tokyo_0001.png"]
    for path in (files.ef1_chart, *files.examples):
        picture = cv2.imread(str(path))
        assert picture is not None and picture.size > 0
    # Four 2:1 panels side by side: input, ground truth, prediction, exposure.
    height, width = cv2.imread(str(files.examples[0])).shape[:2]
    assert width == 4 * 2 * height


def test_a_report_without_examples_has_no_example_section(tmp_path):
    evaluator = SegmentationEvaluator()
    example = _example("a", 0)
    evaluator.update(example.prediction, example.label, example.exposure)
    result = EvaluationResult(scores=evaluator.compute("weighted"), images=1, seconds=0.1, examples=())
    files = write_report(result, tmp_path, title="t", config={"scales": (1.0,)})
    assert files.examples == ()
    assert "## Examples" not in files.markdown.read_text()
    assert "**weighted**" in files.markdown.read_text()
    assert _strict_json(files.metrics)["config"] == {"scales": [1.0]}


def test_examples_of_an_egnet_with_egls_show_both_attention_maps(tmp_path):
    stage2 = np.tile(np.linspace(0, 1, 80, dtype=np.float32), (40, 1))
    stage3 = np.full((40, 80), 0.8, np.float32)
    example = dataclasses.replace(_example("Chicago_0000", 0), attention=AttentionMaps(stage2=stage2, stage3=stage3))
    evaluator = SegmentationEvaluator()
    evaluator.update(example.prediction, example.label, example.exposure)
    result = EvaluationResult(scores=evaluator.compute(), images=1, seconds=0.1, examples=(example,))
    files = write_report(result, tmp_path, title="t", config=None)
    picture = cv2.cvtColor(cv2.imread(str(files.examples[0])), cv2.COLOR_BGR2RGB)
    height, width = picture.shape[:2]
    assert width == 6 * 2 * height  # input, ground truth, prediction, exposure, then W_r after S2 and after S3
    panel = 2 * height
    # Below the panel titles, each map is drawn in the exposure map's colours.
    expected = cv2.resize(exposure_picture(stage3), (panel, height), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(picture[40:, 5 * panel :], expected[40:])
    column = panel // 2  # the middle of the stage-2 ramp
    expected = cv2.resize(exposure_picture(stage2), (panel, height), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(picture[40:, 4 * panel + column], expected[40:, column])
    text = files.markdown.read_text()
    assert "attention maps W_r of the Exposure Guidance Layers after stages 2 and 3" in text
    assert "Figure 9" in text
    plain = write_report(_result(), tmp_path / "plain", title="t", config=None).markdown.read_text()
    assert "attention" not in plain
