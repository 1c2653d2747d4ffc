"""The segmenter behind the FCN-score.

Isola et al. (2017) score labels -> photo translations with an FCN-8s (Long et al. 2015) trained on
real Cityscapes photos: a translated photo is good if the segmenter recovers the labels it was made
from. Pretrained Cityscapes FCN weights are not available offline, so the `evaluator` stage trains
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
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = FCN8sMini(n_classes, width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(photos), generator=g)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            x, y = photos[idx], labels[idx].long()
            flip = torch.rand(len(idx), generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            y = torch.where(flip[:, None, None], y.flip(-1), y)
            loss = F.cross_entropy(net(x), y, ignore_index=ignore_index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if progress is not None:
            progress(float(loss.detach()))
    return net.eval()


@torch.no_grad()
def segment(net: nn.Module, photos: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Photos in [-1, 1] (N, 3, H, W) -> predicted class ids (N, H, W) uint8."""
    out = [net(photos[i:i + batch_size]).argmax(1).to(torch.uint8) for i in range(0, len(photos), batch_size)]
    return torch.cat(out)
