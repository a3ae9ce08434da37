import copy

import numpy as np
import torch
from helpers import random_frames, tiny_model, with_running_statistics
from torchvision.models.resnet import BasicBlock, Bottleneck

from egnet_core.deploy.float_stream import with_float_stream
from egnet_core.deploy.inference import Segmenter


def _block_parameters(model: torch.nn.Module) -> set[str]:
    return {f"{name}.{p}" for name, module in model.named_modules() if isinstance(module, (BasicBlock, Bottleneck))
            for p, _ in module.named_parameters()}


def test_the_blocks_compute_in_bf16_and_the_stream_and_the_rest_stay_fp32():
    model = with_float_stream(copy.deepcopy(tiny_model()))
    in_blocks = _block_parameters(model)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert in_blocks and {dtypes[name] for name in in_blocks} == {torch.bfloat16}
    assert {dtype for name, dtype in dtypes.items() if name not in in_blocks} == {torch.float32}  # stem, EGLs, heads
    streams = []
    for stage in model.segmentation_stages:
        stage.register_forward_hook(lambda module, inputs, output: streams.append(output.dtype))
    with torch.no_grad():
        output = model(torch.rand(1, 3, 64, 96))
    assert streams == [torch.float32] * 3
    assert output.logits.dtype == output.exposure.dtype == torch.float32


def test_a_branch_much_smaller_than_the_stream_survives_in_the_fp32_stream():
    # A block that adds a small correction to a large stream, as the blocks of a network trained from zero-initialised
    # residual branches do: bf16 rounds the sum to 8 significant bits, the fp32 stream keeps the correction.
    torch.manual_seed(0)
    block = Bottleneck(64, 16).eval()
    with torch.no_grad():
        block.bn3.weight.fill_(0.01)
        for bn in (block.bn1, block.bn2, block.bn3):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
    stream = 4.0 + torch.rand(1, 64, 16, 16)
    with torch.no_grad():
        exact = block(stream)
        branch = exact - stream  # what the block adds
        whole_bf16 = copy.deepcopy(block).to(torch.bfloat16)(stream.bfloat16()).float()
        swapped = with_float_stream(copy.deepcopy(block))
        float_stream = swapped(stream)
    assert swapped.conv1.weight.dtype == swapped.conv3.weight.dtype == torch.bfloat16
    assert float_stream.dtype == torch.float32
    error_bf16 = (whole_bf16 - exact).abs().mean() / branch.abs().mean()
    error_float_stream = (float_stream - exact).abs().mean() / branch.abs().mean()
    assert error_float_stream < 0.05 < error_bf16, (error_float_stream, error_bf16)


def test_the_segmenters_bf16_path_keeps_the_stream_in_fp32_and_gives_attention_maps():
    model = with_running_statistics(tiny_model())
    frames = random_frames(2, width=128, height=96)
    segmenter = Segmenter(model, precision="bf16")
    assert segmenter.model.segmentation_stages[1][0].conv1.weight.dtype == torch.bfloat16
    assert segmenter.model.encoder[0].weight.dtype == segmenter.model.segmentation_head.weight.dtype == torch.float32
    fp32 = Segmenter(model).predict_batch(frames)
    for a, b in zip(fp32, segmenter.predict_batch(frames)):
        assert np.abs(a.exposure - b.exposure).mean() < 1e-2
        assert (a.labels == b.labels).mean() >= 0.95
    maps = segmenter.attention_maps(frames)
    assert maps[0].stage2.shape == (96, 128) and np.isfinite(maps[0].stage3).all()


def test_a_network_swapped_before_and_placed_in_fp32_again_gets_bf16_blocks_again():
    model = with_float_stream(copy.deepcopy(tiny_model())).float()
    assert model.segmentation_stages[0][0].conv1.weight.dtype == torch.float32
    with_float_stream(model)
    assert {p.dtype for name, p in model.named_parameters() if name in _block_parameters(model)} == {torch.bfloat16}
