"""pix2pix (Isola et al. 2017): the paired baseline, a conditional GAN with an L1 term."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pipeline.models.base import GANModel, Net, adam, discriminator_kwargs, make_net, set_requires_grad
from pipeline.models.losses import gan_loss, gradient_penalty, l1
from pipeline.models.pix2pix import SPEC

if TYPE_CHECKING:
    from pipeline.config import Params


class Pix2Pix(GANModel):
    """Conditional GAN + L1 (pix2pix Eq. 4): G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G).
    D sees the input concatenated with the output (conditional PatchGAN)."""

    test_mode = SPEC.test_mode  # "train": Sec. 3.3, dropout and the test batch's statistics at test time

    def __init__(self, G: Net, D: Net, *, lambda_l1: float, gan_mode: str, lambda_gp: float,
                 lr: float, betas: tuple[float, float], device: torch.device, fused_adam: bool = False):
        optimizers = {"G": adam([G.module], lr, betas, fused_adam), "D": adam([D.module], lr, betas, fused_adam)}
        super().__init__({"G": G, "D": D}, optimizers, generators=("G",), device=device)
        self.lambda_l1, self.gan_mode, self.lambda_gp = lambda_l1, gan_mode, lambda_gp

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        real_A, real_B = self.inputs(batch)
        with self.amp():
            fake_B = self.net("G")(real_A)

        # --- D: real pairs (A, B) vs generated pairs (A, G(A)); halved as in the authors' code. Written out
        # rather than through losses.discriminator_loss to keep the authors' order (fake pairs first): with
        # BatchNorm in D the order of the two calls decides its running statistics.
        D = self.net("D")
        set_requires_grad([self.raw("D")], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.amp():
            fake_AB = torch.cat([real_A, fake_B], 1).detach()
            real_AB = torch.cat([real_A, real_B], 1)
            loss_D = (gan_loss(D(fake_AB), False, self.gan_mode) + gan_loss(D(real_AB), True, self.gan_mode)) * 0.5
            if self.gan_mode == "wgangp":
                loss_D = loss_D + gradient_penalty(D, real_AB, fake_AB, self.lambda_gp)
        self.backward(loss_D)
        self.step("D")

        # --- G: fool D (read only, unwrapped), stay close to the ground truth in L1 --------------
        set_requires_grad([self.raw("D")], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.amp():
            loss_G_GAN = gan_loss(self.raw("D")(torch.cat([real_A, fake_B], 1)), True, self.gan_mode)
            loss_G_L1 = l1(fake_B, real_B) * self.lambda_l1
        self.backward(loss_G_GAN + loss_G_L1)
        self.step("G")
        self.end_step()
        losses = {"G_GAN": loss_G_GAN, "G_L1": loss_G_L1, "D": loss_D, "G": loss_G_GAN + loss_G_L1}
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def sample_rows(self, real_A: torch.Tensor, real_B: torch.Tensor) -> tuple[list[str], list[torch.Tensor]]:
        """input | translation | ground truth."""
        fake_B = self.raw("G")(real_A)
        return ["input", "translation", "ground truth"], \
            [torch.stack([a, f, b]) for a, f, b in zip(real_A, fake_B, real_B, strict=True)]


def build_pix2pix(params: Params, device: torch.device, rank: int = 0) -> Pix2Pix:
    """From params.yaml's `pix2pix` section. D sees (input, output) stacked: 6 channels."""
    n, t = params.pix2pix, params.train
    G = make_net("generator", n.generator, n.init_type, n.init_gain, device,
                 in_channels=3, out_channels=3, ngf=n.ngf, norm=n.norm, dropout=n.dropout)
    D = make_net("discriminator", n.discriminator, n.init_type, n.init_gain, device, **discriminator_kwargs(n, 6))
    return Pix2Pix(G, D, lambda_l1=n.lambda_l1, gan_mode=n.gan_mode, lambda_gp=n.lambda_gp, lr=t.lr,
                   betas=(t.beta1, t.beta2), device=device, fused_adam=t.fused_adam)
