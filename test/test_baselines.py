"""torchvision's DeepLabV3 and FCN (Table 1's comparisons), trained, evaluated, run and exported as EGNet is."""

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision
from helpers import night_frames, tiny_torchvision_model
from torchvision.models import segmentation
from torchvision.models.segmentation.deeplabv3 import DeepLabV3
from torchvision.models.segmentation.fcn import FCN

from egnet_core.cli import main
from egnet_core.config import ModelConfig, load_train_config
from egnet_core.data.exposure import exposure_map
from egnet_core.data.synthetic import write_nightcity
from egnet_core.deploy.inference import Segmenter
from egnet_core.model.baselines import TorchvisionSegmentation
from egnet_core.model.checkpoint import load_checkpoint, load_model
from egnet_core.model.egnet import IMAGENET_MEAN, IMAGENET_STD
from egnet_core.model.networks import build_model

CONFIGS = Path(__file__).resolve().parent.parent / "config"
NETWORKS = {"deeplabv3": DeepLabV3, "fcn": FCN}


@pytest.mark.parametrize("arch", ["deeplabv3", "fcn"])
def test_resnet50_networks_are_torchvisions_own(arch):
    torch.manual_seed(0)
    model = TorchvisionSegmentation(arch=arch, num_classes=5, backbone="resnet50").eval()
    builder = getattr(segmentation, f"{arch}_resnet50")
    reference = builder(weights=None, weights_backbone=None, num_classes=5, aux_loss=False).eval()
    assert {k: v.shape for k, v in model.network.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}
    reference.load_state_dict(model.network.state_dict())
    images = torch.rand(1, 3, 64, 96)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(images).logits, reference((images - mean) / std)["out"])


@pytest.mark.parametrize("arch", ["deeplabv3", "fcn"])
def test_resnet18_networks_are_torchvisions_classes_on_the_backbone_dilated_to_stride_8(arch):
    model = tiny_torchvision_model(arch, num_classes=7)
    assert isinstance(model.network, NETWORKS[arch]) and model.network.aux_classifier is None
    features = []
    model.network.backbone.layer4.register_forward_hook(lambda module, inputs, output: features.append(output))
    images = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        output = model(images)
    assert features[0].shape == (2, 512, 8, 16)  # H/8 × W/8, ResNet-18's 512 channels
    assert output.logits.shape == (2, 7, 64, 128)
    # No exposure stream: the exposure output is the input's measured exposure, its V channel.
    torch.testing.assert_close(output.exposure, images.amax(dim=1, keepdim=True))
    assert build_model(model.config).config == model.config == ModelConfig(arch=arch, num_classes=7,
                                                                           backbone="resnet18")


def test_backbone_weights_come_from_the_same_file_as_egnets(tmp_path):
    torch.manual_seed(3)
    resnet = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.state_dict(), path)
    for arch in ("deeplabv3", "fcn"):
        model = TorchvisionSegmentation(arch=arch, backbone="resnet18", backbone_weights=str(path))
        torch.testing.assert_close(model.network.backbone.conv1.weight, resnet.conv1.weight)
        torch.testing.assert_close(model.network.backbone.layer4.state_dict(), resnet.layer4.state_dict())
    with pytest.raises(FileNotFoundError, match="missing.pth' does not exist"):
        TorchvisionSegmentation(backbone="resnet18", backbone_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="do not fit torchvision's resnet34"):
        TorchvisionSegmentation(backbone="resnet34", backbone_weights=str(path))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.arch=pspnet"], "model.arch must be one of egnet, deeplabv3, fcn, got 'pspnet'"),
        (["model.arch=deeplabv3", "model.variant=no_egl"], "model.variant='no_egl': EGNet's own, not deeplabv3's"),
        (["model.arch=fcn", "model.w2=0.5"], "model.w2=0.5: EGNet's own, not fcn's"),
        (["model.arch=fcn", "model.output_stride=16"], "model.output_stride must be 8 for model.arch fcn"),
        (["model.arch=deeplabv3", "optim.batch_size=1"], "optim.batch_size must be at least 2 for model.arch "
                                                         "deeplabv3"),
    ],
)
def test_settings_a_torchvision_network_cannot_have_are_refused_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_train_config(None, overrides)


def test_the_table_1_configs_train_torchvisions_networks_like_egnet():
    egnet = load_train_config(str(CONFIGS / "train_nightcity_lr1e-2.yaml"))
    for arch in ("deeplabv3", "fcn"):
        config = load_train_config(str(CONFIGS / "comparisons" / f"{arch}.yaml"))
        assert config.model.arch == arch and not config.model.predicts_exposure
        assert config.model.backbone_weights == egnet.model.backbone_weights
        assert (config.data, config.optim) == (egnet.data, egnet.optim)


@pytest.fixture(scope="module")
def night_data(tmp_path_factory):
    return write_nightcity(tmp_path_factory.mktemp("nightcity"), train=4, val=2, width=128, height=64, seed=1).root


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["deeplabv3", "fcn"])
def test_train_evaluate_predict_and_export_a_torchvision_network(tmp_path, night_data, arch, capsys):
    run = tmp_path / "run"
    assert main(["train", "--set", f"model.arch={arch}", "--set", "model.backbone=resnet18",
                 "--set", f"data.root={night_data}", "--set", f"run.out_dir={run}", "--set", "data.crop_size=64",
                 "--set", "data.workers=0", "--set", "data.eval_size=null", "--set", "optim.batch_size=2",
                 "--set", "optim.iterations=2", "--set", "optim.lr=0.01", "--set", "run.log_every=1",
                 "--set", "run.device=cpu"]) == 0
    scalars = [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines()]
    losses = [row for row in scalars if "total" in row]
    assert len(losses) == 2
    assert all(row["l1"] == 0.0 and row["total"] == pytest.approx(row["ce"]) for row in losses)  # CE alone
    checkpoint = run / "checkpoints" / "iter_0000002.pt"
    assert load_checkpoint(checkpoint)["model_config"]["arch"] == arch
    assert load_model(checkpoint).config == ModelConfig(arch=arch, backbone="resnet18")

    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(night_data), "--out",
                 str(tmp_path / "report"), "--native-size", "--device", "cpu"]) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0 and 0.0 <= metrics["mef1"] <= 1.0
    example = cv2.imread(str(next((tmp_path / "report" / "examples").glob("*.png"))))
    assert example.shape[1] == 4 * 2 * example.shape[0]  # no attention panels: no EGL

    (frame,) = night_frames(1, width=96, height=64)
    cv2.imwrite(str(tmp_path / "night.png"), frame[..., ::-1])
    assert main(["predict", str(tmp_path / "night.png"), "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "predicted"), "--device", "cpu", "--precision", "fp32"]) == 0  # the reference's
    train_ids = cv2.imread(str(tmp_path / "predicted" / "night_trainIds.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(train_ids, Segmenter.from_checkpoint(checkpoint).predict(frame).labels)

    capsys.readouterr()
    assert main(["export", "--checkpoint", str(checkpoint), "--onnx", str(tmp_path / "model.onnx"), "--size",
                 "96x64"]) == 0
    agreement = re.search(r"([\d.]+)% of labels equal", capsys.readouterr().out)
    assert float(agreement.group(1)) >= 99.9
    exported = Segmenter.from_checkpoint(tmp_path / "model.onnx", input_size=(96, 64))
    assert exported.config == ModelConfig(arch=arch, backbone="resnet18")
    np.testing.assert_allclose(exported.predict(frame).exposure, exposure_map(frame), atol=1e-6)
