"""egnet_core.deploy.fusion: BatchNorm folded into convolutions, the same function with fewer passes."""

import torch
from helpers import tiny_model, with_running_statistics

from egnet_core.deploy.fusion import fuse_conv_bn


def count(model, kind) -> int:
    return sum(isinstance(module, kind) for module in model.modules())


def test_every_batchnorm_of_egnet_is_folded_and_the_outputs_agree():
    model = with_running_statistics(tiny_model())
    fused = fuse_conv_bn(model)
    assert count(model, torch.nn.BatchNorm2d) > 0 and count(fused, torch.nn.BatchNorm2d) == 0
    assert count(fused, torch.nn.Conv2d) == count(model, torch.nn.Conv2d)
    images = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        expected, got = model(images), fused(images)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.exposure, expected.exposure, atol=1e-5, rtol=1e-5)


def test_bottleneck_blocks_fold_too():
    model = with_running_statistics(tiny_model(backbone="resnet50", output_stride=16))
    fused = fuse_conv_bn(model)
    assert count(fused, torch.nn.BatchNorm2d) == 0
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        # Fifty layers of float32 reassociation: agreement to 1e-3 on logits of magnitude ~1.
        torch.testing.assert_close(fused(images).logits, model(images).logits, atol=1e-3, rtol=1e-3)
