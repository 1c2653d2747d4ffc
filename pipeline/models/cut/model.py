"""CUT and FastCUT (Park et al. 2020): one generator G: X -> Y, one discriminator D on Y, and PatchNCE between
patches of the input and of the output in G's own encoder; no inverse network, no cycle, no image pool.

Names follow the authors' code (models/cut_model.py), mapped to the paper (Sec. 3):
    G = netG (its first layers are G_enc), F = netF (the projection heads H_l), D = netD.
Full objective (Eq. 5): L_GAN(G, D, X, Y) + lambda_X L_PatchNCE(G, H, X) + lambda_Y L_PatchNCE(G, H, Y), the
last term (identity NCE: G(y) should keep y's patches) in CUT only, where the two NCE terms are averaged.
One step, in the authors' order: G on the batch (x, and y with the identity term), D's update, then G's and
F's update together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pipeline.models.base import GANModel, Net, adam, make_net, set_requires_grad, stream_seed
from pipeline.models.cut import setting
from pipeline.models.cut.networks import patch_ids, patch_nce
from pipeline.models.losses import gan_loss

if TYPE_CHECKING:
    from pipeline.config import Params


class CUT(GANModel):
    def __init__(self, G: Net, F: Net, D: Net, *, lambda_gan: float, lambda_nce: float, nce_idt: bool,
                 flip_equivariance: bool, nce_layers: tuple[int, ...], num_patches: int, tau: float, gan_mode: str,
                 lr: float, betas: tuple[float, float], seed: int, device: torch.device, rank: int = 0,
                 fused_adam: bool = False):
        optimizers = {"G": adam([G.module], lr, betas, fused_adam), "D": adam([D.module], lr, betas, fused_adam),
                      "F": adam([F.module], lr, betas, fused_adam)}
        # the patch positions and FastCUT's flips: a stream of this model's (per rank), saved for resuming
        super().__init__({"G": G, "F": F, "D": D}, optimizers, generators=("G",), device=device,
                         rng=torch.Generator().manual_seed(stream_seed(seed, 3, rank)))
        self.lambda_gan, self.lambda_nce, self.nce_idt = lambda_gan, lambda_nce, nce_idt
        self.flip_equivariance, self.nce_layers, self.num_patches, self.tau = flip_equivariance, nce_layers, num_patches, tau
        self.gan_mode = gan_mode

    def nce(self, src: torch.Tensor, tgt: torch.Tensor, flipped: bool) -> torch.Tensor:
        """L_PatchNCE (Eq. 4) averaged over the tapped layers: queries from G_enc(tgt), keys from G_enc(src) at
        the same positions; each layer's loss is the mean over its patches, times lambda_NCE."""
        G, H = self.raw("G"), self.net("F")
        feat_q = G.encode(tgt, self.nce_layers)
        if flipped:  # tgt came from the flipped input: flip its features back onto src's positions
            feat_q = [torch.flip(f, [3]) for f in feat_q]
        feat_k = G.encode(src, self.nce_layers)
        ids = self.sample_ids(feat_k)
        k, q = H(feat_k, ids), H(feat_q, ids)
        per_layer = [(patch_nce(qi, ki, src.shape[0], self.tau) * self.lambda_nce).mean() for qi, ki in zip(q, k, strict=True)]
        return sum(per_layer) / len(per_layer)  # summed in the authors' order

    def sample_ids(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """The patch positions of one PatchNCE term, per tapped layer (the same for queries and keys)."""
        return patch_ids(feats, self.num_patches, self.rng)

    def draw_flip(self) -> bool:
        """FastCUT's flip equivariance: this step's input is flipped with probability 1/2."""
        return self.flip_equivariance and bool(torch.rand((), generator=self.rng) < 0.5)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        real_A, real_B = self.inputs(batch)
        n = real_A.shape[0]
        real = torch.cat([real_A, real_B]) if self.nce_idt else real_A
        flipped = self.draw_flip()
        if flipped:
            real = torch.flip(real, [3])
        with self.amp():
            fake = self.net("G")(real)
        fake_B, idt_B = fake[:n], fake[n:]

        # --- D: real y against G(x) ----------------------------------------------------------------
        D = self.net("D")
        set_requires_grad([self.raw("D")], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.amp():
            loss_D_fake = gan_loss(D(fake_B.detach()), False, self.gan_mode)
            loss_D_real = gan_loss(D(real_B), True, self.gan_mode)
            loss_D = (loss_D_fake + loss_D_real) * 0.5
        self.backward(loss_D)
        self.step("D")

        # --- G and the heads H: adversarial + PatchNCE (+ identity PatchNCE) ----------------------------
        set_requires_grad([self.raw("D")], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        self.optimizers["F"].zero_grad(set_to_none=True)
        with self.amp():
            loss_G_GAN = gan_loss(self.raw("D")(fake_B), True, self.gan_mode) * self.lambda_gan
            loss_NCE = self.nce(real_A, fake_B, flipped)
            loss_NCE_Y = self.nce(real_B, idt_B, flipped) if self.nce_idt else None
            nce_both = (loss_NCE + loss_NCE_Y) * 0.5 if loss_NCE_Y is not None else loss_NCE
            loss_G = loss_G_GAN + nce_both
        self.backward(loss_G)
        self.step("G", "F")
        self.end_step()
        losses = {"G_GAN": loss_G_GAN, "NCE": loss_NCE, "G": loss_G, "D_real": loss_D_real, "D_fake": loss_D_fake,
                  "D": loss_D, **({"NCE_Y": loss_NCE_Y} if loss_NCE_Y is not None else {})}
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def sample_rows(self, real_A: torch.Tensor, real_B: torch.Tensor) -> tuple[list[str], list[torch.Tensor]]:
        """input | translation, one row per test image of A (the model translates one way)."""
        fake_B = self.raw("G")(real_A)
        return ["input", "translation"], [torch.stack([a, b]) for a, b in zip(real_A, fake_B, strict=True)]


def build_cut(params: Params, device: torch.device, rank: int = 0) -> CUT:
    """From params.yaml's `cut` section (the mode's settings where a knob is null)."""
    c, t = params.cut, params.train
    G = make_net("cut_generator", "resnet_antialiased", c.init_type, c.init_gain, device, in_channels=3,
                 out_channels=3, ngf=c.ngf, norm=c.norm, n_blocks=c.n_blocks)
    with torch.no_grad():  # the taps' channel counts, from one small forward pass
        channels = [f.shape[1] for f in G.module.encode(torch.zeros(1, 3, 32, 32, device=device), c.nce_layers)]
    F = make_net("patch_sampler", "mlp_sample", c.init_type, c.init_gain, device, channels=channels, nc=c.netf_nc)
    D = make_net("cut_discriminator", "basic_antialiased", c.init_type, c.init_gain, device, in_channels=3, ndf=c.ndf,
                 norm=c.norm)
    return CUT(G, F, D, lambda_gan=c.lambda_gan, lambda_nce=setting(c, "lambda_nce"), nce_idt=setting(c, "nce_idt"),
               flip_equivariance=setting(c, "flip_equivariance"), nce_layers=tuple(c.nce_layers),
               num_patches=c.num_patches, tau=c.nce_t, gan_mode=c.gan_mode, lr=t.lr, betas=(t.beta1, t.beta2),
               seed=params.seed, device=device, rank=rank, fused_adam=t.fused_adam)
