import json

import cv2
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from helpers import constant_model, tiny_model, tiny_torchvision_model, with_egl_attention

from egnet_core.data.labels import CLASS_NAMES
from egnet_core.data.sample import RawSample
from egnet_core.data.synthetic import write_nightcity
from egnet_core.deploy.inference import Segmenter
from egnet_core.engine.evaluation import evaluate

ROAD, VEGETATION = CLASS_NAMES.index("road"), CLASS_NAMES.index("vegetation")


@pytest.fixture(scope="module")
def model():
    """One tiny EGNet for the tests that only read it: building one costs more than most tests here."""
    return tiny_model()


def _half_dark_scene(name, size=64):
    """Left half dark (V = 12/255, bin [0.0, 0.1)), right half bright (V = 240/255, bin [0.9, 1.0]).

    Road everywhere except vegetation in columns 16..31, the right half of the dark side; the top row is
    unlabelled.
    """
    image = np.full((size, size, 3), 12, np.uint8)
    image[:, size // 2 :] = (240, 200, 10)
    label = np.full((size, size), ROAD, np.uint8)
    label[:, size // 4 : size // 2] = VEGETATION
    label[0] = 255
    return RawSample(image=image, label=label, name=name)


def _random_samples(count, seed=0, sizes=((48, 64),)):
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(count):
        height, width = sizes[index % len(sizes)]
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        label = rng.integers(0, 19, (height, width), dtype=np.uint8)
        samples.append(RawSample(image=image, label=label, name=f"Chicago_{index:04d}"))
    return samples


def test_a_constant_prediction_scores_exactly_as_counted_by_hand():
    dataset = [_half_dark_scene("a"), _half_dark_scene("b")]
    result = evaluate(Segmenter(constant_model(ROAD)), dataset)
    scores = result.scores
    # Every labelled row: 48 road pixels (all right), 16 vegetation pixels predicted as road.
    assert scores.iou[ROAD] == pytest.approx(48 / 64)
    assert scores.iou[VEGETATION] == 0.0
    assert np.isnan(np.delete(scores.iou, [ROAD, VEGETATION])).all()
    assert scores.miou == pytest.approx((48 / 64 + 0.0) / 2)
    assert scores.pixel_accuracy == pytest.approx(48 / 64)
    # The dark bin holds half road, half vegetation; the bright bin only road.
    assert scores.ef1[0] == pytest.approx(0.5) and scores.ef1[9] == pytest.approx(1.0)
    assert scores.empty_bins == tuple(range(1, 9))
    assert scores.mef1 == pytest.approx(0.75)
    assert result.images == 2 and result.seconds > 0


def test_bins_come_from_the_input_image_not_from_the_predicted_exposure():
    model = constant_model(ROAD)
    with torch.no_grad():
        # Push the exposure stream's prediction to ~1 everywhere; the dark half must still be scored as dark.
        model.exposure_head.weight.zero_()
        model.exposure_head.bias.fill_(20.0)
    scores = evaluate(Segmenter(model), [_half_dark_scene("a")]).scores
    assert scores.ef1[0] == pytest.approx(0.5) and scores.ef1[9] == pytest.approx(1.0)


def test_labels_larger_than_images_are_scored_at_the_labels_resolution():
    small = _half_dark_scene("a", size=64)
    large = _half_dark_scene("a", size=128)  # NightCity+: labels at twice the image size
    result = evaluate(Segmenter(constant_model(ROAD)), [RawSample(small.image, large.label, "a")])
    assert result.examples[0].prediction.shape == result.examples[0].exposure.shape == (128, 128)
    assert result.scores.pixel_accuracy == pytest.approx(96 / 128)
    # Resized bilinearly, the dark/bright edge between image columns 31 and 32 lands in label columns 63
    # (V = 69/255, vegetation) and 64 (V = 183/255, road); columns 0..62 stay dark: 32 road, 31 vegetation.
    assert result.scores.ef1[0] == pytest.approx(32 / 63)
    assert result.scores.ef1[2] == 0.0 and result.scores.ef1[7] == 1.0 and result.scores.ef1[9] == 1.0


def test_iou_is_a_total_over_the_split_not_a_mean_over_images():
    # Everything is predicted road. Image 1: vegetation but for one road pixel (mIoU ~0); image 2: all road
    # (mIoU 1). A mean over images would give ~0.5. Over the split, road has 4097 true and 4095 false
    # positives and vegetation no true positive, so the mIoU is ~0.25.
    first, second = _half_dark_scene("a"), _half_dark_scene("b")
    first.label[:] = VEGETATION
    first.label[5, 5] = ROAD
    second.label[:] = ROAD
    scores = evaluate(Segmenter(constant_model(ROAD)), [first, second]).scores
    assert scores.iou[ROAD] == pytest.approx(4097 / (4097 + 4095))
    assert scores.miou == pytest.approx(4097 / (4097 + 4095) / 2)


def test_batches_group_frames_of_one_size_and_score_as_single_frames(model):
    dataset = _random_samples(5, sizes=((48, 64), (48, 64), (32, 96)))
    segmenter = Segmenter(model)
    one = evaluate(segmenter, dataset, batch_size=1).scores
    batched = evaluate(segmenter, dataset, batch_size=3).scores
    assert batched.miou == pytest.approx(one.miou, abs=1e-3)
    assert batched.pixel_accuracy == pytest.approx(one.pixel_accuracy, abs=1e-3)


def test_limit_examples_and_average(model):
    dataset = _random_samples(6)
    result = evaluate(Segmenter(model), dataset, limit=5, average="macro", progress=True)
    assert result.images == 5
    assert result.scores.average == "macro"
    assert [example.name for example in result.examples] == [f"Chicago_{i:04d}" for i in range(4)]
    example = result.examples[0]
    assert example.image.shape == (48, 64, 3)
    assert example.label.shape == example.prediction.shape == example.exposure.shape == (48, 64)
    assert evaluate(Segmenter(model), dataset, limit=1, num_examples=0).examples == ()


def test_shards_partition_the_split(model):
    dataset = _random_samples(5)
    segmenter = Segmenter(model)
    shards = [evaluate(segmenter, dataset, shard=(rank, 2), num_examples=5) for rank in range(2)]
    assert [result.images for result in shards] == [3, 2]
    names = sorted(example.name for result in shards for example in result.examples)
    assert names == [sample.name for sample in dataset]


def _distributed_worker(rank, world_size, init_file, out_dir):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        result = evaluate(Segmenter(tiny_model()), _random_samples(5))
        (out_dir / f"rank{rank}.json").write_text(json.dumps({"images": result.images, **result.scores.to_dict()}))
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_each_scoring_a_shard_equal_one_pass_over_the_split(tmp_path):
    # fork rather than spawn: the children need not import torch again, which takes most of a spawn's time.
    mp.start_processes(_distributed_worker, args=(2, tmp_path / "init", tmp_path), nprocs=2, start_method="fork")
    single = evaluate(Segmenter(tiny_model()), _random_samples(5))
    expected = {"images": 5, **single.scores.to_dict()}
    for rank in range(2):
        found = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert found.keys() == expected.keys()
        assert found["images"] == 5
        assert found["miou"] == pytest.approx(expected["miou"], abs=1e-6)
        assert found["iou"] == pytest.approx(expected["iou"], abs=1e-6, nan_ok=True)
        assert [v for v in found["ef1"].values() if v is not None] == pytest.approx(
            [v for v in expected["ef1"].values() if v is not None], abs=1e-6
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
        ({"average": "mean"}, "average must be one of micro, macro, weighted, got 'mean'"),
        ({"limit": -1}, "limit must be .* got -1"),
        ({"shard": (2, 2)}, r"shard must be \(rank, world_size\) .* got \(2, 2\)"),
    ],
)
def test_bad_options_are_named(model, options, message):
    with pytest.raises(ValueError, match=message):
        evaluate(Segmenter(model), _random_samples(1), **options)


def test_a_data_set_with_a_transform_is_refused_by_name(model):
    with pytest.raises(ValueError, match="RawSamples .* item 0 is a tuple"):
        evaluate(Segmenter(model), [(np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8))])


def test_images_without_a_labelled_pixel_are_an_error_never_a_nan_miou(model):
    unlabelled = _half_dark_scene("unlabelled")._replace(label=np.full((64, 64), 255, np.uint8))
    with pytest.raises(ValueError, match="none of the 1 evaluated images has a labelled pixel"):
        evaluate(Segmenter(model), [unlabelled, _half_dark_scene("labelled")], limit=1)
    scores = evaluate(Segmenter(model), [unlabelled, _half_dark_scene("labelled")]).scores
    assert not np.isnan(scores.miou)


def test_egnet_evaluate_on_a_split_without_a_valid_label_is_a_one_line_error(tmp_path, tiny_checkpoint, capsys):
    from egnet_core.cli import main

    root = write_nightcity(tmp_path / "data", train=1, val=2, width=64, height=32, seed=0).root
    for label_file in (root / "NightCity-label" / "label" / "val").glob("*_labelIds.png"):
        cv2.imwrite(str(label_file), np.full((32, 64), 200, np.uint8))
    arguments = ["evaluate", "--checkpoint", tiny_checkpoint, "--data", root, "--out", tmp_path / "report",
                 "--device", "cpu", "--eval-size", "64x32"]
    assert main([str(argument) for argument in arguments]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("egnet evaluate: error: nightcity val: none of the 2 label maps")
    # The report folder was checked to be writable before the work (so it exists), and nothing was written in it.
    assert captured.err.count("\n") == 1 and "mIoU" not in captured.out and not any((tmp_path / "report").iterdir())


def test_examples_of_an_egnet_with_egls_carry_its_attention_maps_at_the_labels_size():
    small = _half_dark_scene("a", size=64)
    large = _half_dark_scene("a", size=128)
    dataset = [RawSample(small.image, large.label, "a"), RawSample(small.image, large.label, "b")]
    model = with_egl_attention(tiny_model(), stage2=0.3, stage3=0.6)
    result = evaluate(Segmenter(model), dataset, num_examples=1)
    (example,) = result.examples
    assert example.attention.stage2.shape == example.attention.stage3.shape == (128, 128)
    np.testing.assert_allclose(example.attention.stage2, 0.3, atol=1e-5)
    np.testing.assert_allclose(example.attention.stage3, 0.6, atol=1e-5)
    for without in (tiny_model(variant="no_egl"), tiny_torchvision_model()):
        assert all(e.attention is None for e in evaluate(Segmenter(without), dataset).examples)
