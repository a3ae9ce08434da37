"""The labels' pass of the compiled CPU paths (deploy/labels.py): logits enlarged by whole factors take the fused
three-neighbour blend, which must resize as F.interpolate does and keep label_map's labels and tie rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from egnet_core.deploy.labels import LabelMaps, _enlarged, label_map, upsampled_label_map, whole_multiples


@pytest.mark.parametrize(("shape", "size"), [
    ((1, 19, 4, 8), (64, 128)),  # output stride 16
    ((2, 3, 8, 16), (64, 128)),  # output stride 8, a batch
    ((1, 5, 3, 7), (9, 7)),  # enlarged along the height only
    ((1, 4, 1, 1), (4, 8)),  # one logit: every output pixel blends it with itself
    ((1, 5, 3, 7), (3, 7)),  # factor 1: the logits themselves
])
def test_the_whole_factor_blend_resizes_as_f_interpolate(shape, size):
    torch.manual_seed(0)
    logits = torch.randn(*shape) * 4
    enlarged = _enlarged(_enlarged(logits, size[1], dim=3), size[0], dim=2)
    expected = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    assert enlarged.shape == expected.shape
    torch.testing.assert_close(enlarged, expected, rtol=0, atol=1e-5)  # measured: under 2e-6
    if size == shape[-2:]:
        assert torch.equal(enlarged, logits)


def test_upsampled_labels_equal_label_maps_and_take_the_first_of_tied_maxima():
    torch.manual_seed(1)
    logits = torch.randn(2, 19, 8, 16) * 3
    size = (128, 256)
    assert torch.equal(upsampled_label_map(logits, size), label_map(logits, size, size))
    logits[:, 3] = logits.amax(1) + 1
    logits[:, 7] = logits[:, 3]  # tied with class 3 everywhere: the first wins, as with argmax
    labels = upsampled_label_map(logits, size)
    assert labels.dtype == torch.uint8 and labels.shape == (2, *size) and (labels == 3).all()


def test_the_compiled_pass_takes_the_blend_only_for_one_resize_by_whole_factors():
    maps = LabelMaps(compiled=True)
    assert maps.upsamples((32, 64), (512, 1024), (512, 1024))
    assert maps.upsamples((64, 128), (512, 1024), (512, 1024))
    assert not maps.upsamples((32, 64), (512, 1024), (720, 1280))  # two resizes: label_map's
    assert not maps.upsamples((23, 40), (360, 640), (360, 640))  # 360 / 23 is no whole factor
    assert not maps.upsamples((64, 128), (32, 64), (32, 64))  # smaller: label_map's
    assert not LabelMaps(compiled=False).upsamples((32, 64), (512, 1024), (512, 1024))
    assert whole_multiples((1, 1), (5, 7)) and not whole_multiples((2, 3), (5, 9))


def test_compiled_labels_equal_eager_ones_on_either_pass_and_layout():
    torch.manual_seed(2)
    logits = torch.randn(1, 19, 4, 8) * 3
    eager, compiled = LabelMaps(compiled=False), LabelMaps(compiled=True)
    for input_hw, output_hw in (((64, 128), (64, 128)), ((64, 128), (50, 100))):
        expected = eager(logits, input_hw, output_hw)
        assert torch.equal(compiled(logits, input_hw, output_hw), expected)
        channels_last = logits.contiguous(memory_format=torch.channels_last)
        assert torch.equal(compiled(channels_last, input_hw, output_hw), expected)
    bf16 = logits.bfloat16()  # as the bf16 paths return them: resized in fp32
    assert torch.equal(compiled(bf16, (64, 128), (64, 128)), eager(bf16, (64, 128), (64, 128)))


def test_a_size_that_is_no_whole_multiple_is_refused_with_both_lengths():
    with pytest.raises(ValueError, match="whole factors, got 3 to 10"):
        upsampled_label_map(torch.zeros(1, 2, 3, 4), (10, 8))
