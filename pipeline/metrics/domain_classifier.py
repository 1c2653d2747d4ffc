"""The domain classifier behind the classification accuracy of StarGAN (Choi et al. 2018, Sec. 4.4):
a ResNet-18 (He et al. 2016, the paper's choice) trained on REAL images to tell the k domains apart;
a translation into domain Y counts as correct when the classifier assigns it to Y. Its accuracy on
real test images is the upper bound. The `classifier` stage trains it (no pretrained weights: the
network is torchvision's resnet18 architecture, initialised from the seed and trained here)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from pipeline.metrics.fitting import fit

NAME = "resnet18"


def build_classifier(n_domains: int) -> nn.Module:
    return torchvision.models.resnet18(weights=None, num_classes=n_domains)


def train_classifier(images: torch.Tensor, domains: torch.Tensor, *, n_domains: int, epochs: int, batch_size: int,
                     lr: float, seed: int, progress=None) -> nn.Module:
    """Cross-entropy training on images in [-1, 1] (N, 3, H, W) and their domain indices (N,), with flips."""
    return fit(lambda: build_classifier(n_domains), images, domains, loss=F.cross_entropy, epochs=epochs,
               batch_size=batch_size, lr=lr, seed=seed, cosine_lr=False, progress=progress)


@torch.no_grad()
def classify(net: nn.Module, images: torch.Tensor, resolution: int, batch_size: int = 64) -> torch.Tensor:
    """Images in [-1, 1] (N, 3, H, W), resized to the classifier's resolution -> domain indices (N,)."""
    if images.shape[-1] != resolution:
        images = F.interpolate(images, size=resolution, mode="bilinear", align_corners=False, antialias=True)
    return torch.cat([net(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])
