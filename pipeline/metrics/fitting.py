"""Supervised training of the metrics' own networks on REAL images: the FCN-score's segmenter and the
classification accuracy's domain classifier share it."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def fit(make_net: Callable[[], nn.Module], inputs: torch.Tensor, targets: torch.Tensor, *,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], epochs: int, batch_size: int, lr: float, seed: int,
        cosine_lr: bool, progress=None) -> nn.Module:
    """Adam (its lr annealed by a cosine over the epochs when `cosine_lr`) over `epochs` passes in a
    seeded random order, each image flipped
    left-right with probability 1/2, and its target with it when the target is a map (N, H, W) rather
    than a class per image (N,). The network is built after seeding, so its initialisation is the seed's
    too. Returns the network in eval mode."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = make_net()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs)) if cosine_lr else None
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=g)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            x, y = inputs[idx], targets[idx].long()
            flip = torch.rand(len(idx), generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            if y.dim() == 3:
                y = torch.where(flip[:, None, None], y.flip(-1), y)
            value = loss(net(x), y)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
        if sched is not None:
            sched.step()
        if progress is not None:
            progress(float(value.detach()))
    return net.eval()
