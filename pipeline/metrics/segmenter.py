"""The segmenter behind the FCN-score.

Isola et al. (2017) score labels -> photo translations with an FCN-8s (Long et al. 2015) trained on
real Cityscapes photos: a translated photo is good if the segmenter recovers the labels it was made
from. Pretrained Cityscapes FCN weights are not available offline, so the `segmenter` stage trains
this one on the REAL training photos of the target domain and their labels, and every report shows
its score on real test photos as the upper bound.

FCN8sMini: an FCN-8s in miniature: a VGG-style encoder (two 3x3 convs per stage, three 2x2 pools),
per-stage 1x1 class-score heads, and coarse-to-fine fusion of the scores by 2x upsampling and
addition, as FCN-8s fuses pool5/pool4/pool3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.metrics.fitting import fit

NAME = "fcn8s-mini"


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class FCN8sMini(nn.Module):
    def __init__(self, n_classes: int, width: int):
        super().__init__()
        w = width
        self.stage1, self.stage2 = _stage(3, w), _stage(w, 2 * w)
        self.stage3, self.stage4 = _stage(2 * w, 4 * w), _stage(4 * w, 8 * w)
        self.score2 = nn.Conv2d(2 * w, n_classes, 1)
        self.score4 = nn.Conv2d(4 * w, n_classes, 1)
        self.score8 = nn.Conv2d(8 * w, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.stage1(x)
        f2 = self.stage2(F.max_pool2d(f1, 2))   # 1/2
        f4 = self.stage3(F.max_pool2d(f2, 2))   # 1/4
        f8 = self.stage4(F.max_pool2d(f4, 2))   # 1/8
        s = self.score8(f8)
        s = F.interpolate(s, size=f4.shape[-2:], mode="bilinear", align_corners=False) + self.score4(f4)
        s = F.interpolate(s, size=f2.shape[-2:], mode="bilinear", align_corners=False) + self.score2(f2)
        return F.interpolate(s, size=x.shape[-2:], mode="bilinear", align_corners=False)


def train_segmenter(photos: torch.Tensor, labels: torch.Tensor, *, n_classes: int, width: int, epochs: int,
                    batch_size: int, lr: float, seed: int, ignore_index: int, progress=None) -> FCN8sMini:
    """Cross-entropy training on (photos in [-1, 1] (N, 3, H, W), class ids (N, H, W)), with flips."""
    return fit(lambda: FCN8sMini(n_classes, width), photos, labels,
               loss=lambda out, y: F.cross_entropy(out, y, ignore_index=ignore_index), epochs=epochs,
               batch_size=batch_size, lr=lr, seed=seed, cosine_lr=True, progress=progress)


@torch.no_grad()
def segment(net: nn.Module, photos: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Photos in [-1, 1] (N, 3, H, W) -> predicted class ids (N, H, W) uint8."""
    out = [net(photos[i:i + batch_size]).argmax(1).to(torch.uint8) for i in range(0, len(photos), batch_size)]
    return torch.cat(out)
