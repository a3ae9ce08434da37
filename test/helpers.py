"""Builders shared by the tests: small real models, checkpoints and frames."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from egnet_core.data.imageio import write_rgb
from egnet_core.data.synthetic import NightScene, render_night_frames, render_night_scene
from egnet_core.model.baselines import TorchvisionSegmentation
from egnet_core.model.egnet import EGNet


def tiny_model(**overrides) -> EGNet:
    """The cheapest real EGNet: ResNet-18 at output stride 32, seeded."""
    torch.manual_seed(0)
    options = {"backbone": "resnet18", "output_stride": 32} | overrides
    return EGNet(**options).eval()


def tiny_torchvision_model(arch: str = "deeplabv3", **overrides) -> TorchvisionSegmentation:
    """The cheapest real DeepLabV3 (or FCN): torchvision's classes on a ResNet-18 at output stride 8, seeded."""
    torch.manual_seed(0)
    return TorchvisionSegmentation(arch=arch, backbone="resnet18", **overrides).eval()


def with_egl_attention(model: EGNet, stage2: float, stage3: float) -> EGNet:
    """``model`` with EGLs that ignore their features: W_r is ``stage2`` everywhere after stage 2 and ``stage3``
    everywhere after stage 3 (biases of sigmoid^-1 of those values, zero weights)."""
    with torch.no_grad():
        for egl, value in zip(model.guidance, (stage2, stage3)):
            egl.attention.weight.zero_()
            egl.attention.bias.fill_(float(torch.logit(torch.tensor(value))))
    return model


def with_running_statistics(model: EGNet) -> EGNet:
    """Non-trivial BatchNorm statistics, as a trained model has, so that folding them is put to the test."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model


def constant_model(class_id: int, num_classes: int = 19) -> EGNet:
    """A real EGNet whose segmentation head ignores its features and always prefers ``class_id``."""
    model = tiny_model()
    with torch.no_grad():
        model.segmentation_head.weight.zero_()
        model.segmentation_head.bias.copy_(F.one_hot(torch.tensor(class_id), num_classes).float() * 10)
    return model


def snapshot(root: Path) -> dict[Path, tuple[int, bytes]]:
    """Every file under ``root`` with its mtime and bytes, to prove that reading left the files untouched."""
    return {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in sorted(root.rglob("*")) if path.is_file()}


def night_frames(count: int, *, width: int = 128, height: int = 64, seed: int = 0) -> list[np.ndarray]:
    """``count`` generated night street frames (H×W×3 uint8 RGB), the library's scenes at a test's small size."""
    return render_night_frames(seed, count, width=width, height=height)


def random_frames(count: int, *, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` frames (H×W×3 uint8 RGB) of uniform noise, frame ``i`` from seed ``seed + i``: any bytes are pixels."""
    return [np.random.default_rng(seed + index).integers(0, 256, (height, width, 3), dtype=np.uint8)
            for index in range(count)]


def write_cityscapes(root: Path, cities: dict[str, tuple[str, ...]], *, width: int = 128, height: int = 64,
                     seed: int = 0) -> dict[str, NightScene]:
    """Cityscapes' layout (leftImg8bit/ and gtFine/ by split and city, the gtFine siblings too) with one generated
    scene per city, ``{split: (city, ...)}``; returns the scenes by sample name."""
    scenes, rng = {}, np.random.default_rng(seed)
    for split, names in cities.items():
        for city in names:
            name = f"{city}_000000_000019"
            scene = scenes[name] = render_night_scene(rng, width=width, height=height)
            write_rgb(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", scene.image)
            labels = root / "gtFine" / split / city
            labels.mkdir(parents=True)
            cv2.imwrite(str(labels / f"{name}_gtFine_labelIds.png"), scene.label_ids)
            cv2.imwrite(str(labels / f"{name}_gtFine_instanceIds.png"), scene.label_ids.astype(np.uint16))
            (labels / f"{name}_gtFine_polygons.json").write_text("{}")
    return scenes


def gray_frame(level: int, *, bright_share: float = 0.0, width: int = 64, height: int = 48) -> np.ndarray:
    """An H×W×3 uint8 frame of one grey ``level`` whose first ``bright_share`` of rows are white (V = 1): its mean
    exposure and its share of saturated pixels are known."""
    image = np.full((height, width, 3), level, dtype=np.uint8)
    image[: round(height * bright_share)] = 255
    return image


def count_frame(counter, index: int, image: np.ndarray, *, confidence: float = 0.9, label: int = 0,
                topic: str = "/front") -> None:
    """Add ``image`` to a DriveCounter as frame ``index`` (stamp 1000 + index ns, logged at ``index`` s), every
    pixel labelled ``label`` with the top softmax probability ``confidence``."""
    height, width = image.shape[:2]
    counter.add(topic=topic, stamp_ns=1_000 + index, log_time_ns=10**9 * index, image=image,
                labels=np.full((height, width), label, dtype=np.uint8),
                confidence=np.full((height, width), confidence, dtype=np.float32))


def calibration_peak_mib(quantize: str, count: int, *, size: tuple[int, int] = (256, 128)) -> float:
    """Peak resident memory growth (MiB) over the pass that calibrates on ``count`` generated frames of ``size``, in
    a fresh process: ``quantize`` is Python source that quantizes ``frames`` (after the imports it needs).

    ``frames`` is a list that marks each full pass over it: the kernel's peak (VmHWM) is reset where a pass starts
    (``/proc/self/clear_refs``) and read where it ends, so the export and set-up around calibration, whose transient
    allocations vary from run to run by ~100 MiB, are not counted. The largest full pass is returned."""
    program = f"""
import torch
from egnet_core.data.synthetic import render_night_frames
torch.set_num_threads(1)
def status(field):
    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith(field)) / 1024
class Frames(list):
    passes = []
    def __iter__(self):
        with open('/proc/self/clear_refs', 'w') as clear:
            clear.write('5')  # VmHWM := VmRSS
        start = status('VmRSS')
        yield from list.__iter__(self)
        self.passes.append(status('VmHWM') - start)
frames = Frames(render_night_frames(1, {count}, width={size[0]}, height={size[1]}))
{quantize}
if not Frames.passes:
    raise SystemExit("the quantization never iterated over all the frames")
print(max(Frames.passes))
"""
    # A fixed mmap threshold: glibc maps each block of 64 KiB or more on its own and unmaps it when freed, so the
    # resident size follows the live tensors instead of the allocator's adaptive caching.
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=600,
                          env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    return float(done.stdout.split()[-1])


def with_sigint_default(command: list[str]) -> list[str]:
    """``command`` started with SIGINT at its default action, as a terminal's foreground job has it. A test runner
    started in the background by a non-interactive shell (``bash .ci/run &``) inherits SIGINT ignored, and so would
    every process it starts: Python then installs no KeyboardInterrupt handler, and a Ctrl-C sent to the command is
    lost. The wrapper resets it and execs the command (exec keeps a default action; no preexec_fn in a process that
    may hold threads)."""
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", reset, *command]
