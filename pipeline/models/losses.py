"""Loss terms as small pure functions (CycleGAN Sec. 3, pix2pix Sec. 3.1).

GAN objectives, selected by `gan_mode`:
- "lsgan": least-squares GAN (Mao et al. 2017), CycleGAN's choice: (D(x)-1)^2 and D(G(z))^2.
- "vanilla": the original cross-entropy GAN (on logits), pix2pix's choice.
- "wgangp": Wasserstein GAN with gradient penalty (Gulrajani et al. 2017).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.models.names import GAN_MODES


def gan_loss(prediction: torch.Tensor | list[torch.Tensor], target_is_real: bool, mode: str) -> torch.Tensor:
    """Loss of D's patch predictions against the all-real or all-fake target; a multi-scale D's list of
    predictions gives the sum over its scales (the authors' BicycleGAN GANLoss)."""
    if isinstance(prediction, (list, tuple)):
        return sum((gan_loss(p, target_is_real, mode) for p in prediction), prediction[0].new_zeros(()))
    if mode == "lsgan":
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        return F.mse_loss(prediction, target)
    if mode == "vanilla":
        target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
        return F.binary_cross_entropy_with_logits(prediction, target)
    if mode == "wgangp":
        return -prediction.mean() if target_is_real else prediction.mean()
    raise ValueError(f"unknown gan_mode {mode!r}; valid: {', '.join(GAN_MODES)}")


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, weight: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP: weight * E[(||grad critic(x_hat)||_2 - 1)^2] at random interpolates x_hat; the interpolation
    weights from `generator` (a CPU stream a checkpoint keeps) when given, else from torch's global stream."""
    if generator is None:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    else:
        alpha = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device, real.dtype)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = critic(x_hat)
    total = sum(o.sum() for o in out) if isinstance(out, (list, tuple)) else out.sum()
    (grad,) = torch.autograd.grad(total, x_hat, create_graph=True)
    norm = grad.flatten(1).norm(2, dim=1)
    return weight * ((norm - 1) ** 2).mean()


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute error: the cycle (Eq. 2), identity and pix2pix reconstruction terms."""
    return (a - b).abs().mean()


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the latent dimensions, averaged over the batch
    (BicycleGAN Eq. 4's L_KL; the authors sum over a half-batch of one image, the same per image)."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()


def discriminator_loss(D, real: torch.Tensor, fake: torch.Tensor, gan_mode: str, lambda_gp: float,
                       weight: float) -> torch.Tensor:
    """D's loss on real images vs (detached) generated ones, times `weight`, plus WGAN-GP's penalty."""
    loss = (gan_loss(D(real), True, gan_mode) + gan_loss(D(fake.detach()), False, gan_mode)) * weight
    if gan_mode == "wgangp":
        loss = loss + gradient_penalty(D, real, fake.detach(), lambda_gp)
    return loss
