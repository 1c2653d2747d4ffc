"""StarGAN (Choi et al. 2018, "StarGAN: Unified Generative Adversarial Networks for Multi-Domain
Image-to-Image Translation"): one generator G(x, c) for every pair of k domains.

Names follow the paper (Sec. 3) and the authors' code (yunjey/stargan, solver.py):
    G(x, c)   translates image x into the domain of the one-hot label c
    D(x)      -> (D_src(x), D_cls(x)): a PatchGAN map of real/fake scores and the k domain logits
    c' = c_org, the source domain of x; c = c_trg, the target domain

D's loss (Eq. 6 and the WGAN-GP form of Eq. 8):  L_D = -L_adv + lambda_cls * L_cls^r
    L_adv  = E[D_src(x)] - E[D_src(G(x, c))] - lambda_gp * E[(||grad D_src(x_hat)||_2 - 1)^2]
    L_cls^r = E[-log D_cls(c' | x)]          real images classified into their own domain
G's loss (Eq. 6): L_G = L_adv + lambda_cls * L_cls^f + lambda_rec * L_rec, G updated once every n_critic D steps
    L_cls^f = E[-log D_cls(c | G(x, c))]     translations classified into their target domain
    L_rec   = E[||x - G(G(x, c), c')||_1]    reconstruction (cycle) back to the source domain (Eq. 4)

Domains are mutually exclusive here (one label per image, as the paper's RaFD experiment), so D_cls is
a softmax cross-entropy over the k domains. The target label is drawn uniformly over the k domains for
each image from a seeded stream kept in the checkpoint: the authors permute the batch's labels, which
draws the same distribution over balanced domains but at batch size 1 would always give c = c'. The
same stream gives the gradient penalty's interpolation weights, so a resumed run repeats them exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pipeline.data.synthetic import domain_count
from pipeline.domains import LETTERS, one_hot, target_label
from pipeline.models.base import GANModel, Net, adam, make_net, set_requires_grad, stream_seed
from pipeline.models.losses import gan_loss, gradient_penalty, l1

if TYPE_CHECKING:
    from pipeline.config import Params


def classification_loss(logits: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """L_cls: cross-entropy of D_cls's logits (N, k) against the domain indices (N,) (the authors' RaFD loss)."""
    return F.cross_entropy(logits, domains.long())


def is_generator_step(iteration: int, n_critic: int) -> bool:
    """G is updated after every n_critic-th D update (the authors' `(i + 1) % n_critic == 0`)."""
    return (iteration + 1) % n_critic == 0


class StarGAN(GANModel):
    """Nets: G (the generator, in the model file) and D. A train_step is one D update, and every
    n_critic-th step also one G update; the iteration count lives in the checkpoint."""

    def __init__(self, G: Net, D: Net, *, n_domains: int, lambda_cls: float, lambda_rec: float, lambda_gp: float,
                 n_critic: int, g_lr: float, d_lr: float, betas: tuple[float, float], seed: int,
                 device: torch.device, rank: int = 0, fused_adam: bool = False):
        optimizers = {"G": adam([G.module], g_lr, betas, fused_adam), "D": adam([D.module], d_lr, betas, fused_adam)}
        super().__init__({"G": G, "D": D}, optimizers, generators=("G",), device=device,
                         rng=torch.Generator().manual_seed(stream_seed(seed, 4, rank)))  # target labels, GP mixing
        self.k, self.lambda_cls, self.lambda_rec, self.lambda_gp = n_domains, lambda_cls, lambda_rec, lambda_gp
        self.n_critic = n_critic
        self.iteration = 0

    def target_domains(self, n: int) -> torch.Tensor:
        return torch.randint(self.k, (n,), generator=self.rng).to(self.device)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        x = batch["image"].to(self.device, memory_format=self.memory_format, non_blocking=True)
        c_org = batch["domain"].to(self.device)
        c_trg = self.target_domains(len(x))
        label_org, label_trg = one_hot(c_org, self.k), one_hot(c_trg, self.k)

        # --- D: real images as real and as their own domain, translations as fake, gradient penalty -------
        D = self.net("D")
        set_requires_grad([self.raw("D")], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.amp():
            with torch.no_grad():
                fake = self.raw("G")(x, label_trg)
            src_real, cls_real = D(x)
            src_fake, _ = D(fake)
            loss_D_real = gan_loss(src_real, True, "wgangp")      # -E[D_src(x)]
            loss_D_fake = gan_loss(src_fake, False, "wgangp")     # E[D_src(G(x, c))]
            loss_D_cls = classification_loss(cls_real, c_org)
            # the penalty's inner torch.autograd.grad runs through the unwrapped D: through the DDP wrapper the
            # ranks' weights drift apart (tests/test_distributed.py); its weight gradients join the same backward
            loss_D_gp = gradient_penalty(lambda h: self.raw("D")(h)[0], x, fake, self.lambda_gp, self.rng)
            loss_D = loss_D_real + loss_D_fake + self.lambda_cls * loss_D_cls + loss_D_gp
        self.backward(loss_D)
        self.step("D")
        losses = {"D_real": loss_D_real, "D_fake": loss_D_fake, "D_cls": loss_D_cls, "D_gp": loss_D_gp, "D": loss_D}

        # --- G, every n_critic-th iteration: fool D_src, land in the target domain, reconstruct x ----------
        if is_generator_step(self.iteration, self.n_critic):
            G, D_read = self.net("G"), self.raw("D")
            set_requires_grad([D_read], False)
            self.optimizers["G"].zero_grad(set_to_none=True)
            with self.amp():
                fake = G(x, label_trg)
                src_fake, cls_fake = D_read(fake)
                loss_G_fake = gan_loss(src_fake, True, "wgangp")  # -E[D_src(G(x, c))]
                loss_G_cls = classification_loss(cls_fake, c_trg)
                loss_G_rec = l1(G(fake, label_org), x)
                loss_G = loss_G_fake + self.lambda_rec * loss_G_rec + self.lambda_cls * loss_G_cls
            self.backward(loss_G)
            self.step("G")
            losses.update(G_fake=loss_G_fake, G_cls=loss_G_cls, G_rec=loss_G_rec, G=loss_G)
        self.end_step()
        self.iteration += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def sample_rows(self, *reals: torch.Tensor) -> tuple[list[str], list[torch.Tensor]]:
        """input | its translation into each domain, for test images of every domain."""
        G, rows = self.raw("G"), []
        for x in reals:
            outs = [G(x, target_label(d, len(x), self.k, x.device)) for d in range(self.k)]
            rows += [torch.stack(row) for row in zip(x, *outs, strict=True)]
        return ["input", *(f"to {LETTERS[d]}" for d in range(self.k))], rows

    def state_dict(self) -> dict:
        return {**super().state_dict(), "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.iteration = state["iteration"]


def build_stargan(params: Params, device: torch.device, rank: int = 0) -> StarGAN:
    """From params.yaml's `stargan` section; k = the number of prepared domains."""
    n, t = params.stargan, params.train
    k = domain_count(params.data)
    G = make_net("conditional_generator", n.generator, n.init_type, n.init_gain, device, in_channels=3,
                 out_channels=3, n_domains=k, ngf=n.ngf)
    D = make_net("classifying_discriminator", n.discriminator, n.init_type, n.init_gain, device, in_channels=3,
                 n_domains=k, ndf=n.ndf, n_layers=n.n_layers_d, image_size=t.crop_size)
    return StarGAN(G, D, n_domains=k, lambda_cls=n.lambda_cls, lambda_rec=n.lambda_rec, lambda_gp=n.lambda_gp,
                   n_critic=n.n_critic, g_lr=n.g_lr, d_lr=n.d_lr, betas=(n.beta1, n.beta2), seed=params.seed,
                   device=device, rank=rank, fused_adam=t.fused_adam)
