import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torchvision
from helpers import tiny_model, tiny_torchvision_model

from egnet_core.cli import main
from egnet_core.config import ModelConfig
from egnet_core.deploy.inference import Segmenter
from egnet_core.model.checkpoint import (
    CheckpointMismatch,
    check_same_architecture,
    load_checkpoint,
    load_model,
    save_checkpoint,
)


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


@pytest.mark.parametrize("arch", ["deeplabv3", "fcn"])
def test_a_torchvision_network_records_its_arch_and_loads_back(tmp_path, arch):
    model = tiny_torchvision_model(arch, num_classes=5)
    path = save_checkpoint(tmp_path / f"{arch}.pt", model)
    assert load_checkpoint(path)["model_config"]["arch"] == arch
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).logits, model(images).logits)
    with pytest.raises(CheckpointMismatch, match=f"arch='{arch}' \\(expected 'egnet'\\)") as raised:
        Segmenter.from_checkpoint(path, expect=ModelConfig(num_classes=5, backbone="resnet18"))
    assert raised.value.differences == {"arch": (arch, "egnet")}


def test_a_checkpoint_written_before_arch_existed_is_an_egnet(tmp_path, tiny_checkpoint):
    state = load_checkpoint(tiny_checkpoint)
    del state["model_config"]["arch"]
    torch.save(state, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert loaded.config.arch == "egnet"
    torch.testing.assert_close(loaded.state_dict(), load_model(tiny_checkpoint).state_dict())


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


def test_missing_foreign_and_mismatched_checkpoints_are_named(tmp_path, tiny_checkpoint):
    with pytest.raises(FileNotFoundError, match="nowhere.pt' does not exist"):
        load_model(tmp_path / "nowhere.pt")
    torch.save({"state": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt' is not an egnet checkpoint"):
        load_model(tmp_path / "other.pt")
    path = tiny_checkpoint
    mismatch = "another architecture: backbone='resnet18' \\(expected 'resnet101'\\)"
    with pytest.raises(CheckpointMismatch, match=mismatch) as raised:
        check_same_architecture(load_model(path).config, ModelConfig(output_stride=32), path)
    assert raised.value.differences == {"backbone": ("resnet18", "resnet101")}
    state = load_checkpoint(path)
    state["model_config"]["num_classes"] = 7
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="broken.pt' does not fit its own model config"):
        load_model(tmp_path / "broken.pt")


def _rewritten(source, target, change):
    """A copy of checkpoint ``source`` at ``target`` with ``change`` applied to its dict, written as torch.save does."""
    state = load_checkpoint(source)
    change(state)
    torch.save(state, target)
    return target


def _predict_evaluate_export(tmp_path, checkpoint) -> dict[str, list[str]]:
    """Command lines of the commands that load a checkpoint, on a real image and a real data set folder."""
    image = tmp_path / "night.png"
    cv2.imwrite(str(image), np.full((64, 96, 3), 40, np.uint8))
    return {
        "predict": ["predict", str(image), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out")],
        "evaluate": ["evaluate", "--checkpoint", str(checkpoint), "--data", str(tmp_path), "--out",
                     str(tmp_path / "report")],
        "export": ["export", "--checkpoint", str(checkpoint), "--onnx", str(tmp_path / "model.onnx")],
    }


def _refused_by_every_loader(tmp_path, capsys, checkpoint, *messages):
    """``checkpoint`` is refused, with every one of ``messages``, by the Segmenter (the node and bag tool load through
    it) and by predict, evaluate and export (exit status 2, one line, nothing written)."""
    with pytest.raises(ValueError) as refused:
        Segmenter.from_checkpoint(checkpoint)
    for message in messages:
        assert message in str(refused.value)
    for command, arguments in _predict_evaluate_export(tmp_path, checkpoint).items():
        capsys.readouterr()
        assert main(arguments) == 2, command
        error = capsys.readouterr().err
        assert error.startswith(f"egnet {command}: error: checkpoint {str(checkpoint)!r}"), error
        for message in messages:
            assert message in error, (command, error)
    assert [p.name for p in tmp_path.rglob("*.png")] == ["night.png"] and not (tmp_path / "model.onnx").exists()


def test_non_finite_weights_are_refused_at_load_naming_the_tensors(tmp_path, capsys):
    model = tiny_model()
    with torch.no_grad():
        model.segmentation_head.weight[3, 0, 0, 0] = float("nan")
        model.segmentation_head.bias[1] = float("inf")
    path = save_checkpoint(tmp_path / "diverged.pt", model)
    _refused_by_every_loader(tmp_path, capsys, path, "non-finite", "segmentation_head.weight",
                             "segmentation_head.bias")


def test_a_non_finite_config_field_is_refused_at_load(tmp_path, tiny_checkpoint, capsys):
    path = _rewritten(tiny_checkpoint, tmp_path / "nan_w2.pt",
                      lambda state: state["model_config"].update(w2=float("nan")))
    _refused_by_every_loader(tmp_path, capsys, path, "non-finite", "model_config.w2")


def test_a_model_entry_that_is_not_a_state_dict_is_named(tmp_path, tiny_checkpoint, capsys):
    path = _rewritten(tiny_checkpoint, tmp_path / "listed.pt",
                      lambda state: state.update(model=list(state["model"].values())))
    _refused_by_every_loader(tmp_path, capsys, path, "a list under 'model'", "expected a state dict")


def test_an_empty_file_or_a_folder_given_as_a_checkpoint_is_described(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pt' is empty \\(0 bytes\\)"):
        load_model(tmp_path / "empty.pt")
    run = tmp_path / "run"
    save_checkpoint(run / "best.pt", tiny_model())
    with pytest.raises(ValueError, match="run' is a folder, not an egnet checkpoint file; it holds best.pt"):
        Segmenter.from_checkpoint(run)
    (tmp_path / "notes.pt").write_text("iteration 3000: looks good\n")
    with pytest.raises(ValueError, match="notes.pt' is not a readable egnet checkpoint: it is a text file"):
        load_model(tmp_path / "notes.pt")


def test_backbone_weights_that_are_not_a_resnet_state_dict_are_described(tmp_path, tiny_checkpoint):
    (tmp_path / "config.yaml").write_text("model:\n  backbone: resnet18\n")
    with pytest.raises(ValueError, match="config.yaml' is not a readable state dict: it is a text file"):
        tiny_model(backbone_weights=str(tmp_path / "config.yaml"))
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pth' is empty \\(0 bytes\\)"):
        tiny_model(backbone_weights=str(tmp_path / "empty.pth"))
    (tmp_path / "weights.pth").mkdir()
    with pytest.raises(ValueError, match="weights.pth' is a folder"):
        tiny_model(backbone_weights=str(tmp_path / "weights.pth"))
    with pytest.raises(ValueError, match="tiny.pt' is an egnet checkpoint, not backbone weights"):
        tiny_model(backbone_weights=str(tiny_checkpoint))
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(ValueError, match="resnet34.pth' do not fit torchvision's resnet18: unexpected layer1.2"):
        tiny_model(backbone_weights=str(tmp_path / "resnet34.pth"))


_FULL_DISK = """
import os, sys
from egnet_core.model.checkpoint import save_checkpoint
from egnet_core.model.egnet import EGNet
folder = sys.argv[1]
try:
    save_checkpoint(os.path.join(folder, "model.pt"), EGNet(backbone="resnet18", output_stride=32))
except OSError as error:
    print(f"{type(error).__name__}: {error}")
print("left:", sorted(os.listdir(folder)))
"""


@pytest.mark.integration
def test_a_full_disk_is_named_and_leaves_no_temporary_file(tmp_path):
    # A real full disk: a 1 MiB tmpfs, mounted in a mount namespace of its own (unshare maps the caller to root
    # there, so this needs no privileges and leaves nothing mounted), far too small for a ResNet-18 EGNet.
    folder = tmp_path / "small_disk"
    folder.mkdir()
    completed = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         'mount -t tmpfs -o size=1m egnet-test "$1" && exec "$2" -c "$3" "$1"', "sh", str(folder), sys.executable,
         _FULL_DISK],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"OSError: the disk holding {str(folder)!r} is full" in completed.stdout, completed.stdout
    assert "free space there" in completed.stdout
    assert "left: []" in completed.stdout  # neither the checkpoint nor its temporary file
