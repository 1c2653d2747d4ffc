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


def resampled_fcn_score(cms: np.ndarray, name: str, indices: np.ndarray) -> np.ndarray:
    """fcn_scores(...)[name] of every resample (a row of `indices`) of the test images whose confusion
    matrices are `cms` (N, k, k): a resample's matrix is the count-weighted sum of its images'."""
    n, k = len(cms), cms.shape[-1]
    summed = (draw_counts(indices, n) @ cms.reshape(n, k * k)).reshape(-1, k, k)
    return np.array([fcn_scores(cm)[name] for cm in summed])


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

def resample_indices(sizes: tuple[int, ...], n_boot: int, seed: int) -> tuple[np.ndarray, ...]:
    """`n_boot` resamples of samples of `sizes` (test images, or a set of features): per sample an
    (n_boot, size) array whose row b holds resample b's indices, each sample resampled with replacement,
    independently, with generator `seed` (drawn resample by resample, sample by sample). The same sizes
    and seed give the same indices, so the bootstrap values of two evaluations of the same test images pair
    up resample by resample (paired_difference_interval)."""
    rng = np.random.default_rng(seed)
    draws = [[rng.integers(0, n, n) for n in sizes] for _ in range(n_boot)]
    return tuple(np.stack([d[k] for d in draws]) if n_boot else np.zeros((0, n), np.int64)
                 for k, n in enumerate(sizes))


def draw_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(B, m) resample indices into a sample of n -> (B, n) float: how often each item is drawn. A
    statistic that is a sum over the drawn items (with repeats) is a product with these counts."""
    b = len(indices)
    flat = (indices + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def resampled_finite_means(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Per resample (a row of `indices`), the mean of the finite ones of values[row], NaN when none is:
    a resample's mean of per-image values, whose non-finite values (an infinite PSNR) are drawn like the
    others, so that every evaluation of the same test images draws the same indices."""
    finite = np.isfinite(values)
    drawn, kept = np.where(finite, values, 0.0)[indices], finite[indices].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(kept > 0, drawn.sum(1) / kept, np.nan)


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


def quadratic_forms(counts: np.ndarray, matrix: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """counts[b] @ matrix @ other[b] for every row b (other defaults to counts): the sum of matrix[p, q]
    over the pairs of drawn items of one resample, repeats included."""
    return ((counts @ matrix) * (counts if other is None else other)).sum(1)


def mmd2_resampled(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """mmd2_unbiased of the x-samples at each row of indices i (B, m) and the y-samples at the row of j
    (B, n): every bootstrap resample at once, from the kernel matrices of all the samples. The sums over
    a resample's pairs are quadratic forms of its draw counts; its "diagonal" (a pair of one drawn image
    with itself) is the counts times the kernel's diagonal, as np.trace of the gathered block counts it."""
    m, n = i.shape[1], j.shape[1]
    cx, cy = draw_counts(i, len(kxx)), draw_counts(j, len(kyy))
    xx = quadratic_forms(cx, kxx) - cx @ np.diag(kxx)
    yy = quadratic_forms(cy, kyy) - cy @ np.diag(kyy)
    return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * quadratic_forms(cx, kxy, cy) / (m * n)


def frechet_distance_resampled(f1: np.ndarray, f2: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """frechet_distance_features(f1[i[b]], f2[j[b]]) for every resample b (rows of i (B, m), j (B, n)),
    from the Gram matrices of the features, computed once. A resample's means and covariance traces are
    quadratic forms of its draw counts c1, c2; its cross term tr sqrt(S1 S2) is the nuclear norm of the
    doubly centred cross-Gram block of the distinct images it draws, each row and column scaled by the
    square root of its count (a row repeated c times has the singular values of one row scaled by sqrt c).
    So a resample costs an SVD of about 0.63 n x 0.63 n (its distinct images) and no product with the
    2048-d features."""
    m, n = i.shape[1], j.shape[1]
    c1, c2 = draw_counts(i, len(f1)), draw_counts(j, len(f2))
    g11, g22, g12 = f1 @ f1.T, f2 @ f2.T, f1 @ f2.T
    sq1, sq2 = quadratic_forms(c1, g11) / m**2, quadratic_forms(c2, g22) / n**2  # |mu1|^2, |mu2|^2
    dot = quadratic_forms(c1, g12, c2) / (m * n)  # mu1 . mu2
    tr1 = (c1 @ np.diag(g11) - m * sq1) / (m - 1)
    tr2 = (c2 @ np.diag(g22) - n * sq2) / (n - 1)
    row_dot, col_dot = c2 @ g12.T / n, c1 @ g12 / m  # f1[p] . mu2 and mu1 . f2[q]
    cross = np.empty(len(i))
    for b in range(len(i)):
        p, q = np.flatnonzero(c1[b]), np.flatnonzero(c2[b])
        centred = g12[np.ix_(p, q)] - row_dot[b][p][:, None] - col_dot[b][q][None, :] + dot[b]
        weighted = np.sqrt(c1[b, p])[:, None] * centred * np.sqrt(c2[b, q])[None, :]
        cross[b] = np.linalg.svd(weighted, compute_uv=False).sum() / np.sqrt((m - 1) * (n - 1))
    return sq1 + sq2 - 2 * dot + tr1 + tr2 - 2 * cross


def mean_confidence_interval(values, level: float = 0.95,
                             bounds: tuple[float, float] | None = None) -> tuple[float, float]:
    """Student-t interval of the mean of a few independent values (seeds of one configuration):
    mean +- t_{(1+level)/2, n-1} sd / sqrt(n), cut to `bounds`, the range the values cannot leave (a score in [0, 1]).
    The cut keeps the coverage: the true mean lies in the bounds, so it is inside the cut interval exactly when it is
    inside the whole one (docs/evaluation.md, "Intervals over seeds"). NaN for fewer than two values."""
    from scipy import stats

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if len(v) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    lo, hi = bounds or (-np.inf, np.inf)
    return float(max(v.mean() - half, lo)), float(min(v.mean() + half, hi))
