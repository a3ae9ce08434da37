import pytest
import torch
import torchvision
from helpers import tiny_model, with_egl_attention

from egnet_core.config import VARIANTS, ModelConfig
from egnet_core.model.egnet import EGNet
from egnet_core.model.networks import build_model


def _forward(model: EGNet, batch=2, height=64, width=96):
    torch.manual_seed(1)
    return model(torch.rand(batch, 3, height, width))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_gives_logits_and_an_exposure_map_at_input_size(variant):
    output = _forward(tiny_model(variant=variant))
    assert output.logits.shape == (2, 19, 64, 96)
    assert output.exposure.shape == (2, 1, 64, 96)
    assert torch.isfinite(output.logits).all()
    assert 0.0 <= output.exposure.min() and output.exposure.max() <= 1.0


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50", "resnet101"])
def test_every_backbone_at_output_stride_8(backbone):
    model = EGNet(num_classes=5, backbone=backbone, output_stride=8).eval()
    seen = []
    model.segmentation_stages[-1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        output = _forward(model, batch=1, height=64, width=128)
    assert output.logits.shape == (1, 5, 64, 128)
    assert seen[0][-2:] == (8, 16)  # H/8 × W/8


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
@pytest.mark.parametrize("stride", [8, 16, 32])
def test_output_stride_sets_the_feature_resolution(backbone, stride):
    model = EGNet(backbone=backbone, output_stride=stride).eval()
    seen = []
    model.segmentation_stages[-1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model.exposure_stages[-1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        _forward(model, batch=1, height=128, width=256)
    assert seen[0][-2:] == seen[1][-2:] == (128 // stride, 256 // stride)


def test_exposure_output_is_the_input_v_channel_for_variants_without_a_stream():
    images = torch.rand(1, 3, 64, 64)
    for variant in ("no_exposure_stream", "extra_input", "exposure_attention"):
        model = tiny_model(variant=variant)
        assert model.exposure_stages is None
        torch.testing.assert_close(model(images).exposure, images.amax(dim=1, keepdim=True))


def test_two_independent_copies_of_stages_2_to_4_by_hand_count():
    model = EGNet(backbone="resnet18")
    # torchvision's ResNet-18 without its classifier: conv1 3·64·7·7, bn1 2·64, layer1 2 blocks of two
    # 64→64 3×3 convs and two batch norms; layers 2-4 are the rest of its 11,176,512 parameters.
    stage1 = 3 * 64 * 7 * 7 + 2 * 64 + 2 * (2 * 64 * 64 * 9 + 2 * 2 * 64)
    stages_2_to_4 = 11_176_512 - stage1
    egls = (128 * 9 + 1) + (256 * 9 + 1)  # one 3×3 conv to one attention channel after S2 and S3
    heads = (512 * 19 + 19) + (512 + 1)
    assert sum(p.numel() for p in model.parameters()) == stage1 + 2 * stages_2_to_4 + egls + heads
    for seg, exp in zip(model.segmentation_stages.parameters(), model.exposure_stages.parameters()):
        assert seg.data_ptr() != exp.data_ptr()


def test_segmentation_loss_reaches_the_exposure_stream_only_through_the_egls():
    images = torch.rand(2, 3, 64, 64)
    for variant, reaches in (("egnet", True), ("concat", True), ("sum", True), ("no_egl", False)):
        model = tiny_model(variant=variant).train()
        model(images).logits.sum().backward()
        stage2_grad = model.exposure_stages[0][0].conv1.weight.grad
        assert (stage2_grad is not None and stage2_grad.abs().sum() > 0) == reaches, variant
        assert model.exposure_stages[2][0].conv1.weight.grad is None  # S4 of the exposure stream feeds no EGL


def test_exposure_loss_trains_the_shared_encoder_and_the_exposure_stream():
    model = tiny_model().train()
    model(torch.rand(2, 3, 64, 64)).exposure.mean().backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.exposure_stages[2][0].conv1.weight.grad.abs().sum() > 0
    assert model.segmentation_head.weight.grad is None


def test_backbone_weights_from_a_local_file_initialise_both_streams(tmp_path):
    torch.manual_seed(3)
    resnet = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.state_dict(), path)
    model = EGNet(backbone="resnet18", output_stride=8, backbone_weights=str(path))
    torch.testing.assert_close(model.encoder[0].weight, resnet.conv1.weight)
    for stream in (model.segmentation_stages, model.exposure_stages):
        torch.testing.assert_close(stream[1].state_dict(), resnet.layer3.state_dict())
    wide = EGNet(backbone="resnet18", variant="extra_input", backbone_weights=str(path))
    torch.testing.assert_close(wide.encoder[0].weight[:, :3], resnet.conv1.weight)
    assert wide.encoder[0].weight[:, 3].abs().sum() == 0


def test_torchvision_weights_name_is_read_from_the_cache_and_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(FileNotFoundError, match=str(cached)):
        EGNet(backbone="resnet18", backbone_weights="IMAGENET1K_V1")
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    EGNet(backbone="resnet18", backbone_weights="ResNet18_Weights.IMAGENET1K_V1")


def test_bad_weights_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth' does not exist"):
        EGNet(backbone="resnet18", backbone_weights=str(tmp_path / "missing.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="garbage.pth' is not a readable state dict"):
        EGNet(backbone="resnet18", backbone_weights=str(garbage))
    with pytest.raises(ValueError, match="IMAGENET9K"):
        EGNet(backbone="resnet18", backbone_weights="IMAGENET9K")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backbone": "resnet152"}, "model.backbone must be one of .* got 'resnet152'"),
        ({"output_stride": 4}, "model.output_stride must be one of 8, 16, 32, got 4"),
        ({"variant": "attention"}, "model.variant must be one of .* got 'attention'"),
        ({"num_classes": 0}, "model.num_classes must be a positive integer, got 0"),
    ],
)
def test_impossible_configurations_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        EGNet(**options)


def test_config_round_trip_and_unknown_fields():
    config = ModelConfig(backbone="resnet18", variant="sum", w2=0.5)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert build_model(config).config == config
    with pytest.raises(ValueError, match="unknown model config field.*depth"):
        ModelConfig.from_dict({"depth": 50})


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(1, 4, 64, 64), r"B×3×H×W RGB images, got shape \(1, 4, 64, 64\)"),
        (torch.rand(3, 64, 64), r"got shape \(3, 64, 64\)"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "floating-point images in \\[0, 1\\], got dtype torch.uint8"),
        (torch.rand(1, 3, 16, 64), "at least 32×32, got 16×64"),
    ],
)
def test_bad_input_is_a_clear_error(images, message):
    with pytest.raises(ValueError, match=message):
        tiny_model()(images)


def test_attention_maps_are_each_egls_w_r_at_its_stages_resolution():
    model = with_egl_attention(tiny_model(), stage2=0.2, stage3=0.7)  # ResNet-18 at output stride 32
    images = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        logits = model(images).logits
        stage2, stage3 = model.attention_maps(images)
    assert stage2.shape == (2, 1, 8, 16) and stage3.shape == (2, 1, 4, 8)  # after S2 (H/8) and S3 (H/16)
    torch.testing.assert_close(stage2, torch.full_like(stage2, 0.2))
    torch.testing.assert_close(stage3, torch.full_like(stage3, 0.7))
    assert all(not egl._forward_hooks for egl in model.guidance), "the hooks are removed"
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, logits)


@pytest.mark.parametrize("variant", ["no_egl", "concat", "exposure_attention"])
def test_variants_without_an_egl_have_no_attention_maps(variant):
    with pytest.raises(ValueError, match=f"variant '{variant}' has no Exposure Guidance Layer"):
        tiny_model(variant=variant).attention_maps(torch.rand(1, 3, 64, 64))
