import copy

import numpy as np
import torch
from helpers import random_frames, tiny_model, with_running_statistics
from torchvision.models.resnet import BasicBlock, Bottleneck

from egnet_core.deploy.bf16_stages import with_bf16_stages
from egnet_core.deploy.inference import Segmenter


def _block_parameters(model: torch.nn.Module) -> set[str]:
    return {f"{name}.{p}" for name, module in model.named_modules() if isinstance(module, (BasicBlock, Bottleneck))
            for p, _ in module.named_parameters()}


def test_the_stages_compute_in_bf16_and_hand_fp32_to_the_rest_which_stays_fp32():
    model = with_bf16_stages(copy.deepcopy(tiny_model()))
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


def test_a_stage_computes_its_residual_sums_in_bf16_and_returns_fp32():
    """Within a stage the stream is bf16, as whole-network bf16 computes it; only the stage's ends are fp32."""
    torch.manual_seed(0)
    stage = torch.nn.Sequential(Bottleneck(64, 16), Bottleneck(64, 16)).eval()
    stream = 4.0 + torch.rand(1, 64, 16, 16)
    with torch.no_grad():
        whole_bf16 = copy.deepcopy(stage).to(torch.bfloat16)(stream.bfloat16())
        swapped = with_bf16_stages(copy.deepcopy(stage))
        output = swapped(stream)
    assert swapped[1].conv3.weight.dtype == torch.bfloat16 and output.dtype == torch.float32
    assert torch.equal(output, whole_bf16.float())
    assert [name for name, _ in swapped.named_parameters()] == [name for name, _ in stage.named_parameters()]


def test_a_sequential_of_other_modules_is_left_in_fp32():
    model = with_bf16_stages(copy.deepcopy(tiny_model()))
    assert model.encoder[0].weight.dtype == torch.float32  # the stem's Sequential holds more than blocks
    assert model.encoder[4][0].conv1.weight.dtype == torch.bfloat16  # its stage of blocks


def test_the_segmenters_bf16_path_keeps_the_rest_in_fp32_and_gives_attention_maps():
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
    model = with_bf16_stages(copy.deepcopy(tiny_model())).float()
    assert model.segmentation_stages[0][0].conv1.weight.dtype == torch.float32
    with_bf16_stages(model)
    assert {p.dtype for name, p in model.named_parameters() if name in _block_parameters(model)} == {torch.bfloat16}
