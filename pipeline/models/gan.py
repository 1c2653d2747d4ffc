"""CycleGAN, pix2pix and BicycleGAN training steps, written to read like the papers' objectives.

Names follow the authors' code, mapped to the CycleGAN paper (Zhu et al. 2017, Sec. 3):
    G_A  = G   : A -> B   (X -> Y)
    G_B  = F   : B -> A   (Y -> X)
    D_A  = D_Y : judges images of domain B (real y vs G(x))
    D_B  = D_X : judges images of domain A (real x vs F(y))
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.models.losses import gan_loss, gradient_penalty, kl_to_standard_normal, l1
from pipeline.models.networks import build_net, init_weights
from pipeline.models.pool import ImagePool


@dataclass
class Net:
    """A network with the spec that rebuilds it: {'role', 'name', 'kwargs'}."""

    module: nn.Module
    spec: dict


def make_net(role: str, name: str, init_type: str, init_gain: float, device: torch.device, **kwargs) -> Net:
    module = init_weights(build_net(role, name, **kwargs), init_type, init_gain).to(device)
    return Net(module, {"role": role, "name": name, "kwargs": kwargs})


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    """Freeze D while G is updated (saves computing D's weight gradients)."""
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


class GANModel:
    """What the training loop needs of any model: a step, the lr, and state to checkpoint.

    Execution options (`configure`), none of which changes the objective:
    - precision "bf16"/"fp16": forward passes under torch.autocast (fp16 with a GradScaler);
    - channels_last memory format for inputs and weights; torch.compile of each network;
    - under torchrun, each network wrapped in its own DistributedDataParallel (`net(name)`), while a
      network that a step only reads (D in G's step) is called unwrapped (`raw(name)`): no gradient
      sync is wasted on it and DDP sees the same pattern of calls every iteration (static graph).
    """

    nets: dict[str, Net]
    optimizers: dict[str, torch.optim.Optimizer]
    generators: tuple[str, ...]  # the nets later stages need (kept in the final checkpoint)
    device: torch.device
    amp_dtype: torch.dtype | None = None
    memory_format: torch.memory_format = torch.contiguous_format
    scaler: torch.amp.GradScaler | None = None
    wrapped: dict[str, nn.Module] = {}

    def configure(self, *, precision: str = "fp32", channels_last: bool = False, compile: bool = False,
                  ddp_device_ids: list[int] | None = None, distributed: bool = False) -> None:
        self.amp_dtype = PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        if channels_last:
            self.memory_format = torch.channels_last
            for n in self.nets.values():
                n.module.to(memory_format=torch.channels_last)
        if compile:
            for n in self.nets.values():
                n.module.compile()  # in place: state_dict keys stay those of the plain module
        self.wrapped = {}
        if distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.wrapped = {k: DDP(n.module, device_ids=ddp_device_ids, static_graph=True) for k, n in self.nets.items()}

    def net(self, name: str) -> nn.Module:
        """The network as trained: DDP-wrapped under torchrun, else the module itself."""
        return self.wrapped.get(name) or self.nets[name].module

    def raw(self, name: str) -> nn.Module:
        return self.nets[name].module

    def amp(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(batch[k].to(self.device, memory_format=self.memory_format, non_blocking=True) for k in ("A", "B"))

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, *names: str) -> None:
        for name in names:
            if self.scaler:
                self.scaler.step(self.optimizers[name])
            else:
                self.optimizers[name].step()

    def end_step(self) -> None:
        if self.scaler:
            self.scaler.update()

    def set_lr(self, lr: float) -> None:
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr

    def train(self, mode: bool = True) -> None:
        for net in self.nets.values():
            net.module.train(mode)

    def state_dict(self) -> dict:
        """What every rank shares: weights and optimizer states (identical on all ranks)."""
        return {
            "nets": {k: n.module.state_dict() for k, n in self.nets.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict() if self.scaler else {},
        }

    def load_state_dict(self, state: dict) -> None:
        for k, n in self.nets.items():
            n.module.load_state_dict(state["nets"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def local_state(self) -> dict:
        """What differs per rank: the image pools (and a model's own random generator)."""
        return {"pools": {k: p.state_dict() for k, p in getattr(self, "pools", {}).items()}}

    def load_local_state(self, state: dict) -> None:
        for k, p in getattr(self, "pools", {}).items():
            p.load_state_dict(state["pools"][k], self.device)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def stream_seed(*parts: int) -> int:
    """A seed for one random stream of one rank: distinct streams never share a sequence."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def discriminator_loss(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, gan_mode: str, lambda_gp: float,
                       weight: float) -> torch.Tensor:
    """D's loss on real images vs (detached) generated ones, times `weight`, plus WGAN-GP's penalty."""
    loss = (gan_loss(D(real), True, gan_mode) + gan_loss(D(fake.detach()), False, gan_mode)) * weight
    if gan_mode == "wgangp":
        loss = loss + gradient_penalty(D, real, fake.detach(), lambda_gp)
    return loss


def _adam(nets: list[nn.Module], lr: float, betas: tuple[float, float], fused: bool = False) -> torch.optim.Adam:
    # fused=False leaves torch's default (foreach); fused=True runs one kernel per parameter group
    return torch.optim.Adam(itertools.chain(*(n.parameters() for n in nets)), lr=lr, betas=betas,
                            **({"fused": True} if fused else {}))


class CycleGAN(GANModel):
    """Full objective (Eq. 3): L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda * L_cyc(G, F), plus the
    identity term of Sec. 5.2 weighted lambda_identity * lambda (the authors' convention)."""

    generators = ("G_A", "G_B")

    def __init__(self, G_A: Net, G_B: Net, D_A: Net, D_B: Net, *, lambda_cycle: float, lambda_identity: float,
                 cycle_forward: bool, cycle_backward: bool, adversarial: bool, gan_mode: str, lambda_gp: float,
                 pool_size: int, lr: float, betas: tuple[float, float], seed: int, device: torch.device,
                 rank: int = 0, fused_adam: bool = False):
        self.nets = {"G_A": G_A, "G_B": G_B, "D_A": D_A, "D_B": D_B}
        self.lambda_cycle, self.lambda_identity = lambda_cycle, lambda_identity
        self.cycle_forward, self.cycle_backward, self.adversarial = cycle_forward, cycle_backward, adversarial
        self.gan_mode, self.lambda_gp, self.device = gan_mode, lambda_gp, device
        # Separate pools of generated A and generated B images, seeded apart (and per rank under torchrun).
        self.pools = {"fake_A": ImagePool(pool_size, stream_seed(seed, 1, rank)),
                      "fake_B": ImagePool(pool_size, stream_seed(seed, 2, rank))}
        self.optimizers = {"G": _adam([G_A.module, G_B.module], lr, betas, fused_adam),
                           "D": _adam([D_A.module, D_B.module], lr, betas, fused_adam)}

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
    def sample_rows(self, real_A: torch.Tensor, real_B: torch.Tensor) -> list[torch.Tensor]:
        """Rows of a sample grid: input | translation | reconstruction, for both directions."""
        out = self.translate(real_A, real_B)
        return [torch.stack([a, fb, ra]) for a, fb, ra in zip(real_A, out["fake_B"], out["rec_A"])] + \
               [torch.stack([b, fa, rb]) for b, fa, rb in zip(real_B, out["fake_A"], out["rec_B"])]


class Pix2Pix(GANModel):
    """Conditional GAN + L1 (pix2pix Eq. 4): G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G).
    D sees the input concatenated with the output (conditional PatchGAN)."""

    generators = ("G",)

    def __init__(self, G: Net, D: Net, *, lambda_l1: float, gan_mode: str, lambda_gp: float,
                 lr: float, betas: tuple[float, float], device: torch.device, fused_adam: bool = False):
        self.nets = {"G": G, "D": D}
        self.lambda_l1, self.gan_mode, self.lambda_gp, self.device = lambda_l1, gan_mode, lambda_gp, device
        self.optimizers = {"G": _adam([G.module], lr, betas, fused_adam), "D": _adam([D.module], lr, betas, fused_adam)}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        real_A, real_B = self.inputs(batch)
        with self.amp():
            fake_B = self.net("G")(real_A)

        # --- D: real pairs (A, B) vs generated pairs (A, G(A)); halved as in the authors' code ---
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
    def sample_rows(self, real_A: torch.Tensor, real_B: torch.Tensor) -> list[torch.Tensor]:
        """Rows: input | translation | ground truth."""
        fake_B = self.nets["G"].module(real_A)
        return [torch.stack([a, f, b]) for a, f, b in zip(real_A, fake_B, real_B)]


class BicycleGAN(GANModel):
    """BicycleGAN (Zhu et al. 2017b, "Toward Multimodal Image-to-Image Translation", Eq. 7): two cycles
    through one generator G(A, z) and one encoder E(B) -> q(z|B), each with its own discriminator.

    cVAE-GAN (B -> z -> B):  z ~ E(B) (reparameterised); G(A, z) should be B (L1, lambda_l1) and look real
                             to D (lambda_gan); KL(q(z|B) || N(0, I)) (lambda_kl).
    cLR-GAN  (z -> B -> z):  z ~ N(0, I); G(A, z) should look real to D2 (lambda_gan2), and E should
                             recover z from it (L1 on the mean, lambda_z; updates G only, as the authors do,
                             so E is not pulled towards G's outputs).
    variant "pix2pix_noise": the paper's baseline: G(A, z) with random z, cGAN + L1 to the ground
    truth, no encoder: G learns to ignore z (mode collapse), the reference point for diversity.

    The authors split a batch of 2 into a cVAE half and a cLR half; here both cycles use the whole
    batch (the same A), so batch size 1 works too. D and D2 are unconditional PatchGANs (see B only),
    the authors' default. Net names: G, E, D (cVAE-GAN), D2 (cLR-GAN).
    """

    generators = ("G", "E")

    def __init__(self, G: Net, E: Net | None, D: Net, D2: Net | None, *, variant: str, nz: int,
                 lambda_l1: float, lambda_kl: float, lambda_z: float, lambda_gan: float, lambda_gan2: float,
                 gan_mode: str, lambda_gp: float, lr: float, betas: tuple[float, float], seed: int,
                 device: torch.device, rank: int = 0, fused_adam: bool = False):
        self.nets = {"G": G, "D": D, **({"E": E} if E else {}), **({"D2": D2} if D2 else {})}
        self.generators = tuple(k for k in ("G", "E") if k in self.nets)
        self.variant, self.nz, self.device = variant, nz, device
        self.lambda_l1, self.lambda_kl, self.lambda_z = lambda_l1, lambda_kl, lambda_z
        self.lambda_gan, self.lambda_gan2, self.gan_mode, self.lambda_gp = lambda_gan, lambda_gan2, gan_mode, lambda_gp
        # z and the reparameterisation noise come from a seeded CPU generator kept in the checkpoint,
        # so a resumed run draws the same codes as an uninterrupted one on any device.
        self.rng = torch.Generator().manual_seed(stream_seed(seed, 3, rank))
        self.optimizers = {"G": _adam([G.module], lr, betas, fused_adam),
                           "D": _adam([n.module for n in (D, D2) if n], lr, betas, fused_adam)}
        if E:
            self.optimizers["E"] = _adam([E.module], lr, betas, fused_adam)

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

        # D sees real B against the encoded-z outputs; D2 against the random-z outputs
        set_requires_grad([self.raw(k) for k in fakes], True)
        with self.amp():
            loss_D = sum((self._d_loss(self.net(k), real_B, fake) for k, fake in fakes.items()), zero)
        self.backward(loss_D)
        self.step("D")
        self.end_step()
        losses["D"] = loss_D
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def sample_rows(self, real_A: torch.Tensor, real_B: torch.Tensor) -> list[torch.Tensor]:
        """Rows: input | ground truth | [encoded-z output] | outputs of 3 fixed random codes."""
        G = self.nets["G"].module
        codes = torch.randn(3, self.nz, generator=torch.Generator().manual_seed(0)).to(self.device)
        cols = [real_A, real_B]
        if "E" in self.nets:
            cols.append(G(real_A, self.nets["E"].module(real_B)[0]))
        cols += [G(real_A, z.expand(real_A.shape[0], -1)) for z in codes]
        return [torch.stack(row) for row in zip(*cols)]


def build_cyclegan(params, device: torch.device, rank: int = 0) -> CycleGAN:
    """From params.yaml: the `cyclegan` section plus the top-level ablation knobs."""
    n, t = params.cyclegan, params.train
    gen = dict(in_channels=3, out_channels=3, ngf=n.ngf, norm=n.norm, dropout=n.dropout)
    dis = dict(in_channels=3, ndf=n.ndf, norm=n.norm, **({"n_layers": n.n_layers_d} if n.discriminator == "n_layers" else {}))
    g = lambda: make_net("generator", n.generator, n.init_type, n.init_gain, device, **gen)  # noqa: E731
    d = lambda: make_net("discriminator", n.discriminator, n.init_type, n.init_gain, device, **dis)  # noqa: E731
    return CycleGAN(g(), g(), d(), d(), lambda_cycle=params.lambda_cycle, lambda_identity=params.lambda_identity,
                    cycle_forward=n.cycle_forward, cycle_backward=n.cycle_backward, adversarial=n.adversarial,
                    gan_mode=n.gan_mode, lambda_gp=n.lambda_gp, pool_size=params.pool_size, lr=t.lr,
                    betas=(t.beta1, t.beta2), seed=params.seed, device=device, rank=rank, fused_adam=t.fused_adam)


def build_pix2pix(params, device: torch.device, rank: int = 0) -> Pix2Pix:
    n, t = params.pix2pix, params.train
    dis = dict(in_channels=6, ndf=n.ndf, norm=n.norm, **({"n_layers": n.n_layers_d} if n.discriminator == "n_layers" else {}))
    G = make_net("generator", n.generator, n.init_type, n.init_gain, device,
                 in_channels=3, out_channels=3, ngf=n.ngf, norm=n.norm, dropout=n.dropout)
    D = make_net("discriminator", n.discriminator, n.init_type, n.init_gain, device, **dis)
    return Pix2Pix(G, D, lambda_l1=n.lambda_l1, gan_mode=n.gan_mode, lambda_gp=n.lambda_gp, lr=t.lr,
                   betas=(t.beta1, t.beta2), device=device, fused_adam=t.fused_adam)


def build_bicyclegan(params, device: torch.device, rank: int = 0) -> BicycleGAN:
    n, t = params.bicyclegan, params.train
    dis = dict(in_channels=3, ndf=n.ndf, norm=n.norm, **({"n_layers": n.n_layers_d} if n.discriminator == "n_layers" else {}))
    G = make_net("latent_generator", n.generator, n.init_type, n.init_gain, device, in_channels=3, out_channels=3,
                 ngf=n.ngf, norm=n.norm, dropout=n.dropout, nz=n.nz, where_add=n.where_add)
    full = n.variant == "bicyclegan"
    E = make_net("encoder", n.encoder, n.init_type, n.init_gain, device, in_channels=3, nz=n.nz, nef=n.nef,
                 norm=n.norm) if full else None
    D = make_net("discriminator", n.discriminator, n.init_type, n.init_gain, device, **dis)
    D2 = make_net("discriminator", n.discriminator, n.init_type, n.init_gain, device, **dis) if full else None
    return BicycleGAN(G, E, D, D2, variant=n.variant, nz=n.nz, lambda_l1=n.lambda_l1, lambda_kl=n.lambda_kl,
                      lambda_z=n.lambda_z, lambda_gan=n.lambda_gan, lambda_gan2=n.lambda_gan2, gan_mode=n.gan_mode,
                      lambda_gp=n.lambda_gp, lr=t.lr, betas=(t.beta1, t.beta2), seed=params.seed, device=device,
                      rank=rank, fused_adam=t.fused_adam)


MODEL_BUILDERS = {"cyclegan": build_cyclegan, "pix2pix": build_pix2pix, "bicyclegan": build_bicyclegan}
