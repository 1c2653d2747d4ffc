"""BicycleGAN (Zhu et al. 2017b, "Toward Multimodal Image-to-Image Translation")."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from pipeline.models.base import GANModel, Net, adam, discriminator_kwargs, make_net, set_requires_grad, stream_seed
from pipeline.models.losses import discriminator_loss, gan_loss, kl_to_standard_normal, l1

if TYPE_CHECKING:
    from pipeline.config import Params


class BicycleGAN(GANModel):
    """Eq. 7 of the paper: two cycles through one generator G(A, z) and one encoder E(B) -> q(z|B),
    each with its own discriminator.

    cVAE-GAN (B -> z -> B):  z ~ E(B) (reparameterised); G(A, z) should be B (L1, lambda_l1) and look real
                             to D (lambda_gan); KL(q(z|B) || N(0, I)) (lambda_kl).
    cLR-GAN  (z -> B -> z):  z ~ N(0, I); G(A, z) should look real to D2 (lambda_gan2), and E should
                             recover z from it (L1 on the mean, lambda_z; updates G only, as the authors do,
                             so E is not pulled towards G's outputs).
    variant "pix2pix_noise": the paper's baseline: G(A, z) with random z, cGAN + L1 to the ground
    truth, no encoder: G learns to ignore z (mode collapse), the reference point for diversity.

    batch_split (the authors' default, batch of 2): the first half of the batch is the cVAE-GAN cycle's
    (A, B); the cLR-GAN cycle generates from the same first-half A with random z, and the second half
    gives only the real B that D2 compares with (the authors' real_data_random; their real_A_random is
    unused without a conditional D). Without it both cycles use the whole batch, so batch size 1 works.
    D and D2 are unconditional (see B only) two-scale PatchGANs by default, as the authors'
    basic_256_multi. Net names: G, E, D (cVAE-GAN), D2 (cLR-GAN).
    """

    def __init__(self, G: Net, E: Net | None, D: Net, D2: Net | None, *, variant: str, nz: int, batch_split: bool,
                 lambda_l1: float, lambda_kl: float, lambda_z: float, lambda_gan: float, lambda_gan2: float,
                 gan_mode: str, lambda_gp: float, lr: float, betas: tuple[float, float], seed: int,
                 device: torch.device, rank: int = 0, fused_adam: bool = False):
        nets = {"G": G, "D": D, **({"E": E} if E else {}), **({"D2": D2} if D2 else {})}
        optimizers = {"G": adam([G.module], lr, betas, fused_adam),
                      "D": adam([n.module for n in (D, D2) if n], lr, betas, fused_adam)}
        if E:
            optimizers["E"] = adam([E.module], lr, betas, fused_adam)
        super().__init__(nets, optimizers, generators=("G", "E") if E else ("G",), device=device)
        self.variant, self.nz, self.batch_split = variant, nz, batch_split
        self.lambda_l1, self.lambda_kl, self.lambda_z = lambda_l1, lambda_kl, lambda_z
        self.lambda_gan, self.lambda_gan2, self.gan_mode, self.lambda_gp = lambda_gan, lambda_gan2, gan_mode, lambda_gp
        # z and the reparameterisation noise come from a seeded CPU generator kept in the checkpoint,
        # so a resumed run draws the same codes as an uninterrupted one on any device.
        self.rng = torch.Generator().manual_seed(stream_seed(seed, 3, rank))

    def randn(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.nz, generator=self.rng).to(self.device)

    def local_state(self) -> dict:
        return {**super().local_state(), "rng": self.rng.get_state()}

    def load_local_state(self, state: dict) -> None:
        super().load_local_state(state)
        self.rng.set_state(state["rng"])

    def _d_loss(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Not halved: the authors' BicycleGAN code sums the real and fake terms."""
        return discriminator_loss(D, real, fake, self.gan_mode, self.lambda_gp, weight=1.0)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        real_A, real_B = self.inputs(batch)
        G = self.net("G")
        # B_enc: the cVAE-GAN cycle's targets; B_rand: the real images D2 sees
        if self.batch_split and self.variant == "bicyclegan":
            half = real_A.shape[0] // 2
            real_A, real_B, real_B_random = real_A[:half], real_B[:half], real_B[half:]
        else:
            real_B_random = real_B
        n = real_A.shape[0]
        z_random = self.randn(n)
        zero = real_A.new_zeros(())
        discriminators = [k for k in self.nets if k.startswith("D")]
        set_requires_grad([self.raw(k) for k in discriminators], False)  # only read in G's step
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

        with self.amp():
            if self.variant == "pix2pix_noise":
                fake = G(real_A, z_random)
                loss_G_GAN = gan_loss(self.raw("D")(fake), True, self.gan_mode) * self.lambda_gan
                loss_G_L1 = l1(fake, real_B) * self.lambda_l1
                losses = {"G_GAN": loss_G_GAN, "G_L1": loss_G_L1, "G": loss_G_GAN + loss_G_L1}
                fakes = {"D": fake}
            else:
                E = self.net("E")
                # cVAE-GAN: B -> z -> B
                mu, logvar = E(real_B)
                z_encoded = mu + torch.exp(0.5 * logvar) * self.randn(n)
                fake_encoded = G(real_A, z_encoded)
                # cLR-GAN: z -> B -> z
                fake_random = G(real_A, z_random)
                loss_G_GAN = gan_loss(self.raw("D")(fake_encoded), True, self.gan_mode) * self.lambda_gan
                loss_G_GAN2 = gan_loss(self.raw("D2")(fake_random), True, self.gan_mode) * self.lambda_gan2
                loss_G_L1 = l1(fake_encoded, real_B) * self.lambda_l1
                loss_kl = kl_to_standard_normal(mu, logvar) * self.lambda_kl
                # Latent regression trains G alone: E runs with detached weights for this term (the
                # authors freeze E for a second backward pass; one pass here, as DDP needs).
                frozen_E = {k: v.detach() for k, v in self.raw("E").named_parameters()}
                mu_recovered, _ = torch.func.functional_call(self.raw("E"), frozen_E, (fake_random,))
                loss_z_L1 = l1(mu_recovered, z_random) * self.lambda_z
                losses = {"G_GAN": loss_G_GAN, "G_GAN2": loss_G_GAN2, "G_L1": loss_G_L1, "kl": loss_kl, "z_L1": loss_z_L1,
                          "G": loss_G_GAN + loss_G_GAN2 + loss_G_L1 + loss_kl + loss_z_L1}
                fakes = {"D": fake_encoded, "D2": fake_random}
        self.backward(losses["G"])
        self.step(*(k for k in ("G", "E") if k in self.optimizers))

        # D sees real B against the encoded-z outputs; D2 real B (the second half, when split) against the random-z ones
        set_requires_grad([self.raw(k) for k in fakes], True)
        reals = {"D": real_B, "D2": real_B_random}
        with self.amp():
            loss_D = sum((self._d_loss(self.net(k), reals[k], fake) for k, fake in fakes.items()), zero)
        self.backward(loss_D)
        self.step("D")
        self.end_step()
        losses["D"] = loss_D
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def sample_rows(self, real_A: torch.Tensor, real_B: torch.Tensor) -> tuple[list[str], list[torch.Tensor]]:
        """input | ground truth | [output with z = E(ground truth)] | outputs of 3 fixed random codes."""
        G = self.raw("G")
        codes = torch.randn(3, self.nz, generator=torch.Generator().manual_seed(0)).to(self.device)
        titles, cols = ["input", "ground truth"], [real_A, real_B]
        if "E" in self.nets:
            titles.append("z = E(truth)")
            cols.append(G(real_A, self.raw("E")(real_B)[0]))
        titles += [f"random z{i + 1}" for i in range(len(codes))]
        cols += [G(real_A, z.expand(real_A.shape[0], -1)) for z in codes]
        return titles, [torch.stack(row) for row in zip(*cols, strict=True)]


def build_bicyclegan(params: Params, device: torch.device, rank: int = 0) -> BicycleGAN:
    """From params.yaml's `bicyclegan` section; the pix2pix_noise variant has no E and no D2."""
    n, t = params.bicyclegan, params.train
    G = make_net("latent_generator", n.generator, n.init_type, n.init_gain, device, in_channels=3, out_channels=3,
                 ngf=n.ngf, norm=n.norm, dropout=n.dropout, nz=n.nz, where_add=n.where_add)
    full = n.variant == "bicyclegan"
    E = make_net("encoder", n.encoder, n.init_type, n.init_gain, device, in_channels=3, nz=n.nz, nef=n.nef,
                 norm=n.norm) if full else None
    D = make_net("discriminator", n.discriminator, n.init_type, n.init_gain, device, **discriminator_kwargs(n, 3))
    D2 = make_net("discriminator", n.discriminator, n.init_type, n.init_gain, device,
                  **discriminator_kwargs(n, 3)) if full else None
    return BicycleGAN(G, E, D, D2, variant=n.variant, nz=n.nz, batch_split=n.batch_split, lambda_l1=n.lambda_l1,
                      lambda_kl=n.lambda_kl,
                      lambda_z=n.lambda_z, lambda_gan=n.lambda_gan, lambda_gan2=n.lambda_gan2, gan_mode=n.gan_mode,
                      lambda_gp=n.lambda_gp, lr=t.lr, betas=(t.beta1, t.beta2), seed=params.seed, device=device,
                      rank=rank, fused_adam=t.fused_adam)
