"""CycleGAN (Zhu et al. 2017): two generators, two discriminators, cycle consistency.

Names follow the authors' code, mapped to the paper (Sec. 3):
    G_A  = G   : A -> B   (X -> Y)
    G_B  = F   : B -> A   (Y -> X)
    D_A  = D_Y : judges images of domain B (real y vs G(x))
    D_B  = D_X : judges images of domain A (real x vs F(y))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from pipeline.models.base import GANModel, Net, adam, discriminator_kwargs, make_net, set_requires_grad, stream_seed
from pipeline.models.losses import discriminator_loss, gan_loss, l1
from pipeline.models.pool import ImagePool

if TYPE_CHECKING:
    from pipeline.config import Params


class CycleGAN(GANModel):
    """Full objective (Eq. 3): L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda * L_cyc(G, F), plus the
    identity term of Sec. 5.2 weighted lambda_identity * lambda (the authors' convention)."""

    def __init__(self, G_A: Net, G_B: Net, D_A: Net, D_B: Net, *, lambda_cycle: float, lambda_identity: float,
                 cycle_forward: bool, cycle_backward: bool, adversarial: bool, gan_mode: str, lambda_gp: float,
                 pool_size: int, lr: float, betas: tuple[float, float], seed: int, device: torch.device,
                 rank: int = 0, fused_adam: bool = False):
        # Separate pools of generated A and generated B images, seeded apart (and per rank under torchrun).
        pools = {"fake_A": ImagePool(pool_size, stream_seed(seed, 1, rank)),
                 "fake_B": ImagePool(pool_size, stream_seed(seed, 2, rank))}
        optimizers = {"G": adam([G_A.module, G_B.module], lr, betas, fused_adam),
                      "D": adam([D_A.module, D_B.module], lr, betas, fused_adam)}
        super().__init__({"G_A": G_A, "G_B": G_B, "D_A": D_A, "D_B": D_B}, optimizers, generators=("G_A", "G_B"),
                         device=device, pools=pools)
        self.lambda_cycle, self.lambda_identity = lambda_cycle, lambda_identity
        self.cycle_forward, self.cycle_backward, self.adversarial = cycle_forward, cycle_backward, adversarial
        self.gan_mode, self.lambda_gp = gan_mode, lambda_gp

    def translate(self, real_A: torch.Tensor, real_B: torch.Tensor, G: nn.Module | None = None,
                  F: nn.Module | None = None) -> dict[str, torch.Tensor]:
        G, F = G or self.raw("G_A"), F or self.raw("G_B")
        fake_B = G(real_A)
        fake_A = F(real_B)
        return {"fake_B": fake_B, "rec_A": F(fake_B), "fake_A": fake_A, "rec_B": G(fake_A)}

    def _d_loss(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Halved as in the authors' CycleGAN code to slow D relative to G."""
        return discriminator_loss(D, real, fake, self.gan_mode, self.lambda_gp, weight=0.5)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        real_A, real_B = self.inputs(batch)
        G, F = self.net("G_A"), self.net("G_B")
        zero = real_A.new_zeros(())

        # --- G and F: adversarial + cycle + identity -------------------------------------------
        D_Y, D_X = self.raw("D_A"), self.raw("D_B")  # only read here: frozen, unwrapped
        set_requires_grad([D_Y, D_X], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.amp():
            out = self.translate(real_A, real_B, G, F)
            fake_B, rec_A, fake_A, rec_B = out["fake_B"], out["rec_A"], out["fake_A"], out["rec_B"]
            loss_G_A = gan_loss(D_Y(fake_B), True, self.gan_mode) if self.adversarial else zero
            loss_G_B = gan_loss(D_X(fake_A), True, self.gan_mode) if self.adversarial else zero
            # Forward cycle x -> G(x) -> F(G(x)) ~ x and backward cycle y -> F(y) -> G(F(y)) ~ y (Eq. 2).
            loss_cycle_A = l1(rec_A, real_A) * self.lambda_cycle if self.cycle_forward else zero
            loss_cycle_B = l1(rec_B, real_B) * self.lambda_cycle if self.cycle_backward else zero
            # Identity (Sec. 5.2, Taigman et al.): G(y) ~ y and F(x) ~ x, preserves colour composition.
            if self.lambda_identity > 0:
                w = self.lambda_identity * self.lambda_cycle
                loss_idt_A = l1(G(real_B), real_B) * w
                loss_idt_B = l1(F(real_A), real_A) * w
            else:
                loss_idt_A = loss_idt_B = zero
            loss_G = loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B
        self.backward(loss_G)
        self.step("G")

        # --- D_Y and D_X on real images and on the pool of past fakes -----------------------------
        losses = {"G_A": loss_G_A, "G_B": loss_G_B, "cycle_A": loss_cycle_A, "cycle_B": loss_cycle_B,
                  "idt_A": loss_idt_A, "idt_B": loss_idt_B, "G": loss_G}
        if self.adversarial:
            set_requires_grad([D_Y, D_X], True)
            self.optimizers["D"].zero_grad(set_to_none=True)
            with self.amp():
                loss_D_A = self._d_loss(self.net("D_A"), real_B, self.pools["fake_B"].query(fake_B))
                loss_D_B = self._d_loss(self.net("D_B"), real_A, self.pools["fake_A"].query(fake_A))
            self.backward(loss_D_A + loss_D_B)
            self.step("D")
            losses.update(D_A=loss_D_A, D_B=loss_D_B, D=loss_D_A + loss_D_B)
        self.end_step()
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def sample_rows(self, real_A: torch.Tensor, real_B: torch.Tensor) -> tuple[list[str], list[torch.Tensor]]:
        """input | translation | reconstruction: rows A -> B -> A, then rows B -> A -> B."""
        out = self.translate(real_A, real_B)
        rows = [torch.stack([a, fb, ra]) for a, fb, ra in zip(real_A, out["fake_B"], out["rec_A"], strict=True)] + \
               [torch.stack([b, fa, rb]) for b, fa, rb in zip(real_B, out["fake_A"], out["rec_B"], strict=True)]
        return ["input", "translation", "reconstruction"], rows


def build_cyclegan(params: Params, device: torch.device, rank: int = 0) -> CycleGAN:
    """From params.yaml: the `cyclegan` section plus the top-level ablation knobs."""
    n, t = params.cyclegan, params.train
    gen = dict(in_channels=3, out_channels=3, ngf=n.ngf, norm=n.norm, dropout=n.dropout)
    G_A, G_B = (make_net("generator", n.generator, n.init_type, n.init_gain, device, **gen) for _ in range(2))
    D_A, D_B = (make_net("discriminator", n.discriminator, n.init_type, n.init_gain, device,
                         **discriminator_kwargs(n, 3)) for _ in range(2))
    return CycleGAN(G_A, G_B, D_A, D_B, lambda_cycle=params.lambda_cycle, lambda_identity=params.lambda_identity,
                    cycle_forward=n.cycle_forward, cycle_backward=n.cycle_backward, adversarial=n.adversarial,
                    gan_mode=n.gan_mode, lambda_gp=n.lambda_gp, pool_size=params.pool_size, lr=t.lr,
                    betas=(t.beta1, t.beta2), seed=params.seed, device=device, rank=rank, fused_adam=t.fused_adam)
