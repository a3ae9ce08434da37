import os

import pytest
import torch
import torchvision

from egnet_core.model.checkpoint import check_same_architecture, load_checkpoint, load_model, save_checkpoint
from egnet_core.config import ModelConfig
from helpers import tiny_model


def test_a_checkpoint_is_loaded_by_path_alone(tmp_path):
    model = tiny_model(variant="sum", w2=0.7)
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, iteration=12)
    loaded = load_model(path)
    assert loaded.config == model.config
    assert not loaded.training
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).logits, model(images).logits)
    assert load_checkpoint(path)["iteration"] == 12
    assert os.listdir(tmp_path / "sub") == ["model.pt"]  # the temporary file was renamed, not left behind


def test_backbone_weights_are_not_needed_again_to_load(tmp_path):
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    model = tiny_model(backbone_weights=str(weights))
    path = save_checkpoint(tmp_path / "model.pt", model)
    weights.unlink()
    torch.testing.assert_close(load_model(path).state_dict(), model.state_dict())


def test_pickled_code_is_never_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "egnet-checkpoint", "payload": ModelConfig()}, path)  # an arbitrary Python object
    with pytest.raises(ValueError, match="evil.pt' is not a readable egnet checkpoint"):
        load_model(path)


def test_missing_foreign_and_mismatched_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt' does not exist"):
        load_model(tmp_path / "nowhere.pt")
    torch.save({"state": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt' is not an egnet checkpoint"):
        load_model(tmp_path / "other.pt")
    path = save_checkpoint(tmp_path / "r18.pt", tiny_model())
    with pytest.raises(ValueError, match="another architecture: backbone='resnet18' \\(expected 'resnet101'\\)"):
        check_same_architecture(load_model(path).config, ModelConfig(output_stride=32), path)
    state = load_checkpoint(path)
    state["model_config"]["num_classes"] = 7
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="broken.pt' does not fit its own model config"):
        load_model(tmp_path / "broken.pt")
