"""Metric math as small pure functions, separate from feature extraction and I/O.

Images are float tensors (N, 3, H, W) in [0, 1] unless stated; label maps are int arrays of class
ids with IGNORE for "no label".
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.labels import IGNORE

# --- paired pixel metrics ----------------------------------------------------------------------

def l1_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image, images in [0, 1]."""
    return (x - y).abs().flatten(1).mean(1)


def psnr_per_image(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, data range 1; identical images give +inf."""
    mse = ((x - y) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)


def _gaussian_window(size: int, sigma: float, channels: int, dtype, device) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004): Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03,
    data range 1, computed per channel over 'valid' windows and averaged. Matches
    skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1, channel_axis=...) up to its border handling (skimage crops, as here)."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    n, ch, h, w = x.shape
    win = min(window, h, w)
    k = _gaussian_window(win, sigma, ch, x.dtype, x.device)
    mu_x, mu_y = F.conv2d(x, k, groups=ch), F.conv2d(y, k, groups=ch)
    sxx = F.conv2d(x * x, k, groups=ch) - mu_x ** 2
    syy = F.conv2d(y * y, k, groups=ch) - mu_y ** 2
    sxy = F.conv2d(x * y, k, groups=ch) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return ssim_map.flatten(1).mean(1)


# --- FCN-score (Isola et al. 2017, Sec. 4.2; the pix2pix Cityscapes evaluation script) ----------

def confusion_matrix(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class; IGNORE pixels of `truth` are left out."""
    keep = truth != IGNORE
    t, p = truth[keep].astype(np.int64), pred[keep].astype(np.int64)
    if (p >= n_classes).any() or (t >= n_classes).any():
        raise ValueError(f"class ids must be < {n_classes} (or {IGNORE} = ignore)")
    return np.bincount(t * n_classes + p, minlength=n_classes ** 2).reshape(n_classes, n_classes)


def fcn_scores(cm: np.ndarray) -> dict[str, float]:
    """Per-pixel accuracy, mean per-class accuracy and mean class IoU from ONE confusion matrix
    accumulated over all test images. Classes absent from the ground truth do not enter the means
    (as in the reference script's nanmean)."""
    cm = cm.astype(np.float64)
    tp, gt, pr = np.diag(cm), cm.sum(1), cm.sum(0)
    present = gt > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        class_acc = tp[present] / gt[present]
        iou = tp[present] / (gt + pr - tp)[present]
    return {"pixel_acc": float(tp.sum() / cm.sum()) if cm.sum() else float("nan"),
            "class_acc": float(class_acc.mean()) if present.any() else float("nan"),
            "class_iou": float(iou.mean()) if present.any() else float("nan")}


def sample_pairs(k: int) -> list[tuple[int, int]]:
    """Every unordered pair (i, j), i < j, of k samples: the pairs a diversity score averages over."""
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


# --- latent recovery of a multimodal model (BicycleGAN's cLR-GAN cycle at test time) -------------

ZERO_GUESS_L1 = (2 / np.pi) ** 0.5  # E|z| for z ~ N(0, 1): the error of guessing 0 for every code


def latent_l1(recovered: torch.Tensor, codes: torch.Tensor) -> float:
    """Mean |recovered - codes| over every sample, input and latent dimension."""
    return float((recovered - codes).abs().mean())


def other_inputs(codes: torch.Tensor) -> torch.Tensor:
    """Codes (k, N, nz) re-assigned to other inputs by a fixed derangement (input i gets i-1's): the
    chance level of latent recovery compares recovered codes with these."""
    return codes[:, torch.roll(torch.arange(codes.shape[1]), 1)]
