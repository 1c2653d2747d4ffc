"""Metric math against hand-computed cases and independent reference implementations."""

import functools

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from pipeline.data.labels import IGNORE, nearest_palette
from pipeline.metrics import math
from pipeline.metrics.base import Resamplable, Result
from pipeline.metrics.evaluation import Bootstrap


def fid(a, b):
    return fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), False)[
        "frechet_inception_distance"]


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(300, 16)))
    assert abs(fid(x, x)) < 1e-6
    shifts = [fid(x, x + s) for s in (0.1, 0.5, 1.0, 2.0)]
    assert shifts == sorted(shifts) and shifts[0] > 0
    # a pure mean shift s in d dimensions adds exactly d * s^2
    assert shifts[2] == pytest.approx(16 * 1.0, rel=1e-6)


def _kid_numpy(f1, f2, subset, subsets, seed):
    """Direct NumPy KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / d + 1)^3,
    averaged over random subsets drawn as torch-fidelity draws them."""
    rng = np.random.RandomState(seed)
    d = f1.shape[1]
    vals = []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), subset, replace=False)]
        y = f2[rng.choice(len(f2), subset, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        m = subset
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                    - 2 * kxy.mean())
    return float(np.mean(vals)), float(np.std(vals))


def test_kid_matches_a_direct_numpy_implementation():
    rng = np.random.default_rng(1)
    f1, f2 = rng.normal(size=(60, 32)), rng.normal(0.3, 1.2, size=(50, 32))
    ours = kid_features_to_metric(torch.from_numpy(f1), torch.from_numpy(f2), kid_subset_size=20, kid_subsets=30,
                                  verbose=False, rng_seed=2020)
    mean, std = _kid_numpy(f1, f2, 20, 30, 2020)
    assert ours["kernel_inception_distance_mean"] == pytest.approx(mean, rel=1e-9)
    assert ours["kernel_inception_distance_std"] == pytest.approx(std, rel=1e-9)


def test_confusion_matrix_and_fcn_scores_on_a_hand_computed_case():
    truth = np.array([[0, 0, 1, 1], [2, 2, 2, IGNORE]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm = math.confusion_matrix(pred, truth, 4)
    # rows = truth, cols = prediction; the ignored pixel is left out; class 3 never occurs
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    s = math.fcn_scores(cm)
    assert s["pixel_acc"] == pytest.approx(5 / 7)
    assert s["class_acc"] == pytest.approx((1 / 2 + 2 / 2 + 2 / 3) / 3)
    # IoU: class 0: 1 / (2 + 2 - 1), class 1: 2 / (2 + 3 - 2), class 2: 2 / (3 + 2 - 2)
    assert s["class_iou"] == pytest.approx((1 / 3 + 2 / 3 + 2 / 3) / 3)


def test_confusion_matrix_rejects_unknown_ids():
    with pytest.raises(ValueError, match="class ids must be < 2"):
        math.confusion_matrix(np.array([3]), np.array([1]), 2)


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM with scipy's Gaussian filter (truncate 3.5 -> 11 taps), 'valid' region, per channel."""
    c1, c2, pad = 0.01 ** 2, 0.03 ** 2, 5
    vals = []
    for c in range(x.shape[0]):

        def f(a):
            return scipy.ndimage.gaussian_filter(a, 1.5, truncate=3.5)[pad:-pad, pad:-pad]
        a, b = x[c], y[c]
        mx, my = f(a), f(b)
        sxx, syy, sxy = f(a * a) - mx ** 2, f(b * b) - my ** 2, f(a * b) - mx * my
        vals.append((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))).mean())
    return float(np.mean(vals))


def test_ssim_matches_a_scipy_reference_and_is_one_for_identical_images():
    rng = np.random.default_rng(2)
    x = rng.random((3, 32, 32))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    ours = math.ssim_per_image(torch.from_numpy(x)[None], torch.from_numpy(y)[None]).item()
    assert ours == pytest.approx(_ssim_reference(x, y), abs=1e-6)
    assert math.ssim_per_image(torch.from_numpy(x)[None], torch.from_numpy(x)[None]).item() == pytest.approx(1.0)


def test_psnr_and_l1_known_values():
    x = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    y = torch.full_like(x, 0.1)
    assert math.psnr_per_image(x, y).item() == pytest.approx(20.0)  # mse 0.01 -> 20 dB
    assert math.l1_per_image(x, y).item() == pytest.approx(0.1)


def test_nearest_palette_reads_slightly_off_colours():
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], dtype=np.uint8)
    img = np.array([[[10, 5, 3], [240, 20, 10], [5, 5, 200]]], dtype=np.uint8)
    assert nearest_palette(img, palette).tolist() == [[0, 1, 2]]


@pytest.mark.parametrize("n1,n2,d", [(40, 40, 64), (30, 55, 128), (120, 90, 16)])
def test_closed_form_fid_equals_torch_fidelity(n1, n2, d):
    """The bootstrap's FID (an n1 x n2 SVD, no d x d square root) is torch-fidelity's FID, with fewer
    samples than dimensions (the test-set case) and with more."""
    rng = np.random.default_rng(n1 + d)
    a = rng.normal(size=(n1, d))
    b = rng.normal(size=(n2, d)) * rng.uniform(0.5, 1.5, d) + rng.normal(0, 0.3, d)
    assert math.frechet_distance_features(a, b) == pytest.approx(fid(torch.from_numpy(a), torch.from_numpy(b)), rel=1e-6)
    assert math.frechet_distance_features(a, a) == pytest.approx(0.0, abs=1e-8)


def interval(stat, sizes, n_boot, seed, point=None):
    """The evaluation's bootstrap interval of `stat(*indices)` (vectorised: one (n_boot, size) index array
    per sample) over `n_boot` resamples of samples of `sizes`."""
    return Bootstrap(n_boot, seed).resample(Resamplable(stat, sizes, point))[0]


def test_bootstrap_interval_of_a_mean_covers_it_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    v = rng.normal(2.0, 1.0, 400)
    lo, hi = interval(lambda i: v[i].mean(1), (len(v),), 1000, seed=0)
    assert lo < v.mean() < hi
    # the textbook standard error: the 95% interval is about +-1.96 sd / sqrt(n) around the mean
    assert hi - lo == pytest.approx(2 * 1.96 * v.std() / np.sqrt(len(v)), rel=0.15)
    lo4, hi4 = interval(lambda i: v[:100][i].mean(1), (100,), 1000, seed=0)
    assert (hi4 - lo4) > 1.6 * (hi - lo)  # a quarter of the images: about twice as wide
    assert interval(lambda i: v[i].mean(1), (len(v),), 200, seed=3) == \
        interval(lambda i: v[i].mean(1), (len(v),), 200, seed=3)  # a seed gives one interval


def test_bootstrap_resamples_each_sample_independently():
    seen = []
    interval(lambda i, j: seen.append((i.shape, j.shape, i.max(), j.max())) or np.zeros(len(i)), (5, 9), 50, seed=1)
    assert seen == [((50, 5), (50, 9), 4, 8)]


def test_seed_interval_is_students_t():
    lo, hi = math.mean_confidence_interval([1.0, 2.0, 3.0])
    # mean 2, sd 1, n 3: t_{0.975, 2} = 4.302653
    assert (lo, hi) == pytest.approx((2 - 4.302653 / np.sqrt(3), 2 + 4.302653 / np.sqrt(3)), rel=1e-6)
    assert all(np.isnan(math.mean_confidence_interval([1.0])))


@pytest.mark.parametrize("values, bounds, want", [
    ([1.0, 1.0, 1.0], (0.0, 1.0), (1.0, 1.0)),                 # degenerate at the top: no spread, no interval width
    ([0.0, 0.0, 0.3], (0.0, 1.0), (0.0, 0.1 + 4.302653 * np.sqrt(0.03) / np.sqrt(3))),  # the t-interval leaves [0, 1]
    ([0.2, 0.9], (0.0, 1.0), (0.0, 1.0)),                      # two seeds: t_{0.975, 1} = 12.7, cut on both sides
    ([0.55 + 0.01 * i for i in range(10)], (0.0, 1.0),         # ten seeds far from the bounds: the plain t-interval
     (0.595 - 2.262157 * np.std([0.55 + 0.01 * i for i in range(10)], ddof=1) / np.sqrt(10),
      0.595 + 2.262157 * np.std([0.55 + 0.01 * i for i in range(10)], ddof=1) / np.sqrt(10))),
    ([-0.9, 0.9, 0.95], (-1.0, 1.0), (-1.0, 1.0)),              # SSIM's range
])
def test_a_bounded_scores_seed_interval_stays_in_its_range(values, bounds, want):
    lo, hi = math.mean_confidence_interval(values, bounds=bounds)
    assert (lo, hi) == pytest.approx(want, rel=1e-6, abs=1e-12)
    assert bounds[0] <= lo <= np.mean(values) <= hi <= bounds[1]
    # unbounded (FID, LPIPS): the plain t-interval, whatever side of 0 it reaches
    free = math.mean_confidence_interval(values)
    assert free[0] <= lo and hi <= free[1]


def test_bias_corrected_interval_is_the_percentile_one_moved_to_the_point():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(60, 32)), rng.normal(size=(60, 32)) + 0.3
    stat = functools.partial(math.frechet_distance_resampled, a, b)
    point = math.frechet_distance_features(a, b)
    plo, phi = interval(stat, (60, 60), 200, seed=0)
    lo, hi = interval(stat, (60, 60), 200, seed=0, point=point)
    # resampling duplicates images, which raises FID: the plain percentile interval lies above the point
    assert point < plo
    assert hi - lo == pytest.approx(phi - plo) and lo < point < hi


def test_full_set_mmd2_is_torch_fidelitys_kid_on_one_subset_of_every_image():
    """KID's bootstrap statistic (math.mmd2_unbiased on all the images) is what KID's subset mean
    estimates: torch-fidelity's KID with a single subset of the whole set."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(40, 64)), rng.normal(size=(40, 64)) + 0.2
    ours = math.mmd2_unbiased(math.polynomial_kernel(a, a), math.polynomial_kernel(b, b), math.polynomial_kernel(a, b))
    theirs = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subset_size=40, kid_subsets=1,
                                    verbose=False)["kernel_inception_distance_mean"]
    assert ours == pytest.approx(theirs, rel=1e-9)
    k = math.polynomial_kernel
    every = np.arange(40)  # a "resample" that holds every image once is the full sample
    assert math.mmd2_resampled(k(a, a), k(b, b), k(a, b), every[None], every[None]) == pytest.approx([ours], rel=1e-12)
    c = rng.normal(size=(40, 64))  # another sample of a's distribution: near 0 (unbiased, so either sign)
    assert abs(math.mmd2_unbiased(k(a, a), k(c, c), k(a, c))) < ours / 5


def test_paired_difference_interval_cancels_what_both_share():
    """Two statistics of the same resamples: their difference's interval is far narrower than either
    interval when the resample-to-resample variation is common to both, and it is centred on the
    difference of the points."""
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 5, 2000)
    a, b = 10 + shared + rng.normal(0, 0.2, 2000), 9 + shared + rng.normal(0, 0.2, 2000)
    lo, hi = math.paired_difference_interval(a, b, 10.0, 9.0)
    a_lo, a_hi = math.percentile_interval(a)
    assert 0 < lo < 1 < hi and (hi - lo) < (a_hi - a_lo) / 10
    with pytest.raises(ValueError, match="do not pair up"):
        math.paired_difference_interval(a, b[:10], 10.0, 9.0)


def test_same_seed_and_sizes_draw_the_same_resamples():
    """What makes two evaluations' bootstrap values pair up: the indices depend on seed and sizes only."""
    first, second = math.resample_indices((7, 5), 20, seed=4), math.resample_indices((7, 5), 20, seed=4)
    assert [x.shape for x in first] == [(20, 7), (20, 5)]
    assert all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))


def test_the_evaluations_bootstrap_of_a_per_image_mean_resamples_every_image_and_averages_the_finite_ones():
    """Bootstrap.apply on per-image values (Resamplable.mean) gives what resampling them by hand gives: one
    generator seeded with evaluate.bootstrap_seed draws each resample's indices over every image, and a
    resample's value is the mean of its finite values (an infinite PSNR is drawn but not averaged)."""
    v = np.random.default_rng(2).normal(size=30)
    v[[3, 7]] = np.inf
    rng, by_hand = np.random.default_rng(5), []
    for _ in range(200):
        w = v[rng.integers(0, 30, 30)]
        by_hand.append(w[np.isfinite(w)].mean())
    boot = Bootstrap(200, 5)
    r = boot.apply(Result("psnr_AtoB", 1.0, {"n": 30}, resamplable=Resamplable.mean(v)))
    np.testing.assert_allclose(r.replicates, by_hand, rtol=1e-13)
    assert r.interval == pytest.approx(tuple(np.percentile(by_hand, [2.5, 97.5])), rel=1e-13)
    assert r.protocol == {"n": 30, "interval": "95% percentile bootstrap over test images, 200 resamples, seed 5"}
    # drawn once per evaluation: every statistic of 30 images resamples the same indices
    assert boot.indices((30,)) is boot.indices((30,))
    # no interval where the bootstrap is off, or where no value is finite
    assert Bootstrap(0, 5).apply(Result("k", 1.0, {}, resamplable=Resamplable.mean(v))).interval is None
    assert Resamplable.mean([np.inf, np.nan]) is None


def by_hand_resamples(sizes, n_boot, seed):
    """The resamples as a loop draws them: per resample, per sample, rng.integers(0, n, n)."""
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, n, n) for n in sizes] for _ in range(n_boot)]


def test_vectorised_resamples_are_the_loops_draws():
    rows = math.resample_indices((9, 4), 30, seed=7)
    for b, (i, j) in enumerate(by_hand_resamples((9, 4), 30, seed=7)):
        assert np.array_equal(rows[0][b], i) and np.array_equal(rows[1][b], j)
    assert math.draw_counts(np.array([[0, 2, 2], [1, 1, 1]]), 4).tolist() == [[1, 0, 2, 0], [0, 3, 0, 0]]


@pytest.mark.parametrize("n1,n2,d", [(50, 40, 64), (30, 70, 8)])
def test_vectorised_fid_and_kid_bootstraps_equal_recomputing_each_resample(n1, n2, d):
    """The evaluation's FID and KID replicates (every resample at once, from Gram and kernel matrices and
    draw counts) equal computing each resample from its gathered features: FID with the closed form on
    f1[i], f2[j], KID with the unbiased MMD^2 of the gathered kernel blocks; so the intervals are those of
    the per-resample computation, for the same seed."""
    rng = np.random.default_rng(d)
    a = rng.normal(size=(n1, d)) + 1.0
    b = rng.normal(size=(n2, d)) * rng.uniform(0.5, 1.5, d) + 1.2
    i, j = math.resample_indices((n1, n2), 40, seed=3)
    fid = [math.frechet_distance_features(a[r], b[s]) for r, s in zip(i, j, strict=True)]
    np.testing.assert_allclose(math.frechet_distance_resampled(a, b, i, j), fid, rtol=1e-9)
    k = math.polynomial_kernel
    kxx, kyy, kxy = k(a, a), k(b, b), k(a, b)
    kid = [math.mmd2_unbiased(kxx[np.ix_(r, r)], kyy[np.ix_(s, s)], kxy[np.ix_(r, s)]) for r, s in zip(i, j, strict=True)]
    np.testing.assert_allclose(math.mmd2_resampled(kxx, kyy, kxy, i, j), kid, rtol=1e-9, atol=1e-12)


def test_vectorised_fcn_score_bootstrap_sums_each_resamples_confusion_matrices():
    rng = np.random.default_rng(4)
    cms = rng.integers(0, 20, size=(12, 3, 3))
    (i,) = math.resample_indices((12,), 25, seed=1)
    for name in ("pixel_acc", "class_acc", "class_iou"):
        by_hand = [math.fcn_scores(cms[r].sum(0))[name] for r in i]
        np.testing.assert_allclose(math.resampled_fcn_score(cms, name, i), by_hand, rtol=1e-12)
