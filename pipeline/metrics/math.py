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


# --- uncertainty: bootstrap over test images ------------------------------------------------------

def resample_indices(sizes: tuple[int, ...], n_boot: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """`n_boot` resamples of samples of `sizes` (test images, or a set of features), one index array per
    sample: each sample resampled with replacement, independently, with generator `seed`. The same sizes
    and seed give the same indices, so the bootstrap values of two evaluations of the same test images pair
    up resample by resample (paired_difference_interval)."""
    rng = np.random.default_rng(seed)
    return [tuple(rng.integers(0, n, n) for n in sizes) for _ in range(n_boot)]


def bootstrap_values(stat, indices: list[tuple[np.ndarray, ...]]) -> np.ndarray:
    """`stat(*i)` on every resample `i` of `indices` (resample_indices): the bootstrap values."""
    return np.array([stat(*i) for i in indices], dtype=np.float64)


def finite_mean(values: np.ndarray, finite: np.ndarray, i: np.ndarray) -> float:
    """The mean of the finite ones of values[i] (`finite`: np.isfinite(values)), NaN when none is: a
    resample's mean of per-image values, whose non-finite values (an infinite PSNR) are resampled like the
    others, so that every evaluation of the same test images draws the same indices."""
    return values[i][finite[i]].mean() if finite[i].any() else np.nan


def percentile_interval(values: np.ndarray, level: float = 0.95, point: float | None = None) -> tuple[float, float]:
    """Without `point`: the percentile interval (Efron & Tibshirani 1993, ch. 13), the central `level`
    of the bootstrap values. With `point` (the statistic on the full sample): the same interval moved by
    the bootstrap's estimate of its bias, mean(values) - point (Efron & Tibshirani 1993, ch. 10), for a
    statistic that resampling itself shifts: duplicated images raise a resample's FID and KID by more
    than their spread at a few hundred images, so the plain percentile interval can miss the point.
    Non-finite values (e.g. an infinite PSNR) are left out."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    if point is not None:
        bias = values.mean() - point
        lo, hi = lo - bias, hi - bias
    return float(lo), float(hi)


def paired_difference_interval(a: np.ndarray, b: np.ndarray, point_a: float, point_b: float,
                               level: float = 0.95) -> tuple[float, float]:
    """Interval of the difference a - b of one statistic on two sets of outputs made from the SAME test
    images (a model and a baseline), from bootstrap values drawn with the same indices: the percentile
    interval of the per-resample differences, moved by their bias estimate. Image-to-image variation
    common to both cancels, so this interval is narrower than what two separate intervals suggest, and
    it is the interval that says whether a and b differ. Resamples where either value is not finite are
    left out."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"bootstrap values do not pair up: {a.shape} vs {b.shape} (same resamples needed)")
    return percentile_interval(a - b, level, point=point_a - point_b)


def frechet_distance_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID from two feature sets (n1, d), (n2, d), exactly as ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)
    with unbiased covariances, computed without a d x d matrix square root: the nonzero eigenvalues of
    S1 S2 = X1'X1 X2'X2 / ((n1-1)(n2-1)) (Xi centred) are those of (X1 X2')(X1 X2')' / ((n1-1)(n2-1)),
    so tr sqrt(S1 S2) is the sum of the singular values of X1 X2' / sqrt((n1-1)(n2-1)). With n << d
    (a few hundred test images, d = 2048) that is an n1 x n2 SVD instead of scipy's 2048 x 2048 sqrtm,
    fast enough to bootstrap; the point value agrees with torch-fidelity's (tests/test_metrics_math.py)."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    x1, x2 = f1 - f1.mean(0), f2 - f2.mean(0)
    n1, n2 = len(f1) - 1, len(f2) - 1
    cross = np.linalg.svd(x1 @ x2.T, compute_uv=False).sum() / np.sqrt(n1 * n2)
    diff = f1.mean(0) - f2.mean(0)
    return float(diff @ diff + (x1 * x1).sum() / n1 + (x2 * x2).sum() / n2 - 2 * cross)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel (Binkowski et al. 2018; torch-fidelity's default): (x.y / d + 1)^3."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased squared MMD from kernel matrices of m x-samples and n y-samples: the means of k(x, x')
    and k(y, y') over distinct pairs, minus twice the mean of k(x, y). KID is its mean over random
    subsets; on one subset of all the images it is this (torch-fidelity's mmd2, mmd_est="unbiased")."""
    m, n = len(kxx), len(kyy)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def mmd2_resampled(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray, i: np.ndarray, j: np.ndarray) -> float:
    """mmd2_unbiased of the x-samples at indices i and the y-samples at j (a bootstrap resample), read from
    the kernel matrices of all the samples."""
    return mmd2_unbiased(kxx[np.ix_(i, i)], kyy[np.ix_(j, j)], kxy[np.ix_(i, j)])


def mean_confidence_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of a few independent values (seeds of one configuration):
    mean +- t_{(1+level)/2, n-1} sd / sqrt(n). NaN for fewer than two values."""
    from scipy import stats

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if len(v) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)
