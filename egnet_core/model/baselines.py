"""DeepLabV3 and FCN, two of the networks EGNet is compared with in Table 1, as torchvision implements them.

They are trained and deployed as EGNet is: the same backbone weights file, the same input (B×3×H×W RGB in
[0, 1], ImageNet normalisation inside) and the same output type. They have no exposure stream: their
``exposure`` is the input's measured exposure map (its V channel, the map the exposure stream learns to
predict), as for EGNet's variants without the stream, so that every consumer of exposure maps works unchanged.

ResNet-50 and ResNet-101 networks come from torchvision's own builders (``deeplabv3_resnet101`` ...).
torchvision has none on ResNet-18/34; those are assembled from its classes the way its builders assemble the
others: ``IntermediateLayerGetter`` over the ResNet dilated to output stride 8, then ``DeepLabHead`` or
``FCNHead`` on layer4's 512 channels.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import segmentation
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
from torchvision.models.segmentation.fcn import FCN, FCNHead

from egnet_core.config import ModelConfig
from egnet_core.model.backbone import build_resnet, load_backbone_weights, stage_channels
from egnet_core.model.egnet import IMAGENET_MEAN, IMAGENET_STD, EGNetOutput, check_images

_BUILDERS = {
    ("deeplabv3", "resnet50"): segmentation.deeplabv3_resnet50,
    ("deeplabv3", "resnet101"): segmentation.deeplabv3_resnet101,
    ("fcn", "resnet50"): segmentation.fcn_resnet50,
    ("fcn", "resnet101"): segmentation.fcn_resnet101,
}
_CLASSES = {"deeplabv3": (DeepLabV3, DeepLabHead), "fcn": (FCN, FCNHead)}


class TorchvisionSegmentation(nn.Module):
    """torchvision's DeepLabV3 or FCN (``arch``) called like EGNet: ``forward`` takes B×3×H×W float RGB in
    [0, 1] and returns an ``EGNetOutput`` at the input's size. The auxiliary head is left out (``aux_loss``
    off): the objective is EGNet's cross-entropy, without its exposure term."""

    def __init__(
        self, arch: str = "deeplabv3", num_classes: int = 19, backbone: str = "resnet101",
        backbone_weights: str | None = None,
    ) -> None:
        super().__init__()
        self.config = ModelConfig(arch=arch, num_classes=num_classes, backbone=backbone,
                                  backbone_weights=backbone_weights)
        self.network = _torchvision_network(arch, backbone, num_classes)
        if backbone_weights is not None:
            load_backbone_weights(self.network.backbone, backbone, backbone_weights)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> EGNetOutput:
        if not torch.jit.is_tracing():
            check_images(images)
        logits = self.network((images - self.mean) / self.std)["out"]  # B×C×H×W: torchvision upsamples
        return EGNetOutput(logits=logits, exposure=images.amax(dim=1, keepdim=True))  # measured: the V channel


def _torchvision_network(arch: str, backbone: str, num_classes: int) -> nn.Module:
    builder = _BUILDERS.get((arch, backbone))
    if builder is not None:
        return builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    network, head = _CLASSES[arch]
    resnet = build_resnet(backbone, output_stride=8)
    features = IntermediateLayerGetter(resnet, return_layers={"layer4": "out"})
    return network(features, head(stage_channels(resnet)[-1], num_classes), None)
