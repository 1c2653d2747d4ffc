"""FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) of translations against REAL test images
of the target domain: torch-fidelity's math on pool3 features of the 2015-12-05 Inception, under each
resize protocol of pipeline/metrics/inception.py (keys fid_<route> for "tf", fid_clean_<route>,
fid_legacy_pytorch_<route>; likewise kid_*)."""

from __future__ import annotations

from functools import partial

import numpy as np

from pipeline.artifacts import features as reference_features
from pipeline.domains import TWO_DOMAIN_ROUTES, Route
from pipeline.errors import Unavailable
from pipeline.metrics import inception, math
from pipeline.metrics.base import LOWER, Key, Metric, Resamplable, Result, unavailable
from pipeline.metrics.context import Context, target_domain
from pipeline.metrics.keys import MetricKey

KID_DEFAULT_SUBSET = 1000  # torch-fidelity's default kid_subset_size


def kid_subset(n_fake: int, n_real: int) -> int:
    """evaluate.kid_subset_size null: torch-fidelity's 1000, or half the smaller set below 2000 images, so
    that the subsets differ and their standard deviation (kid_*_std) is a spread."""
    return max(2, min(KID_DEFAULT_SUBSET, min(n_fake, n_real) // 2))


def keys(protocol: str, route: Route) -> list[MetricKey]:
    """FID, KID and KID's standard deviation over subsets of a route under a protocol (fid_clean_AtoB, ...)."""
    fid, kid = (f"{m}_{inception.PROTOCOLS[protocol][0]}".rstrip("_") for m in ("fid", "kid"))
    return [MetricKey(fid, route), MetricKey(kid, route), MetricKey(kid, route, "std")]


def fid_kid(ctx: Context) -> list[Result]:
    """fid_features_to_statistics / fid_statistics_to_metric / kid_features_to_metric of torch-fidelity;
    the real side comes from the ref_stats stage, computed with the same protocol."""
    out = []
    for protocol in inception.PROTOCOLS:
        out += fid_kid_under(ctx, protocol)
    return out


def fid_kid_under(ctx: Context, protocol: str) -> list[Result]:
    """FID, KID and KID's spread of every route under one resize protocol."""
    e = ctx.params.evaluate
    routes = ctx.directions()
    refs = {r: reference_features.load(ctx.params.paths.ref_stats, protocol, target_domain(r)) for r in routes}
    reason = next((ref["unavailable"] for ref in refs.values() if "unavailable" in ref), None)
    if reason is None:
        try:
            features, source = inception.protocol_extractor(protocol, e.inception_weights, ctx.device)
        except Unavailable as err:
            reason = str(err)
    if reason is not None:
        return [res for r in routes for res in unavailable(keys(protocol, r), reason, {"fid_protocol": protocol})]
    return [res for r in routes
            for res in route_fid_kid(ctx, protocol, r, refs[r], features(ctx.fake(r), e.batch_size), source)]


def resamplables(fake: np.ndarray, real: np.ndarray) -> tuple[Resamplable, Resamplable]:
    """FID and KID as statistics of resampled translations and real images (evaluation.Bootstrap), every
    resample at once from matrices computed once: FID by the closed form on the features' Gram matrices,
    KID as the unbiased MMD^2 of all the images (what KID's subset mean estimates) from the kernel
    matrices."""
    resampled = (" of the translations and of the real images, independently; the percentile interval moved "
                 "by the bootstrap's bias estimate (duplicated images raise a resample's value); ")
    fid = Resamplable(partial(math.frechet_distance_resampled, fake, real), (len(fake), len(real)),
                      point=math.frechet_distance_features(fake, real),
                      method=resampled + "FID by the closed form of pipeline/metrics/math.py "
                                         "(torch-fidelity's value to 1e-6)")
    kernels = (math.polynomial_kernel(fake, fake), math.polynomial_kernel(real, real),
               math.polynomial_kernel(fake, real))
    kid = Resamplable(partial(math.mmd2_resampled, *kernels), (len(fake), len(real)),
                      point=math.mmd2_unbiased(*kernels),
                      method=resampled + "each resample's value is the unbiased MMD^2 of all its images "
                                         "(math.mmd2_unbiased), whose mean over subsets KID is")
    return fid, kid


def route_fid_kid(ctx: Context, protocol: str, r: Route, ref: dict, fake, source: str) -> list[Result]:
    """torch-fidelity's FID and KID of one route's translations (features `fake`) against the real images'."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.version import __version__ as tf_version

    e, real = ctx.params.evaluate, ref["features"]
    # null: torch-fidelity's default subset size, adapted to small sets; an explicit size above the
    # set size was refused before any work (Params.check_test_set_size)
    subset = e.kid_subset_size or kid_subset(len(fake), len(real))
    protocol_info = {
        "feature_extractor": f"{inception.EXTRACTOR} (TF Inception 2015-12-05, pool3 2048-d), "
                             f"torch-fidelity {tf_version} math",
        "weights": source, "fid_protocol": protocol, "resize": inception.PROTOCOLS[protocol][1],
        "resolution": f"{ctx.size}px (real: {ref['resolution']}px), resized to 299",
        "n_translated": len(fake), "n_real": len(real), "reference": f"real {target_domain(r)}"}
    fid_key, kid_key, std_key = keys(protocol, r)
    fid = fid_statistics_to_metric(fid_features_to_statistics(fake), fid_features_to_statistics(real), False)
    kid = kid_features_to_metric(fake, real, kid_subset_size=subset, kid_subsets=e.kid_subsets, verbose=False,
                                 rng_seed=2020)
    kid_protocol = {**protocol_info, "kid_subset_size": subset, "kid_subsets": e.kid_subsets,
                    "kid_kernel": "polynomial, degree 3, coef0 1, gamma 1/d"}
    fid_resample, kid_resample = resamplables(fake.double().numpy(), real.double().numpy())
    out = [Result(fid_key, fid["frechet_inception_distance"], protocol_info, resamplable=fid_resample),
           Result(kid_key, kid["kernel_inception_distance_mean"], kid_protocol, resamplable=kid_resample)]
    if subset == len(fake) == len(real):  # every "random" subset is the whole set: no spread to report
        return out + unavailable([std_key], f"one subset only: the subset size equals the sample count ({subset}); "
                                            f"more test images give a spread", kid_protocol)
    return out + [Result(std_key, kid["kernel_inception_distance_std"], kid_protocol)]


def _keys_of(protocol: str, route: Route) -> tuple[Key, ...]:
    fid, kid, std = keys(protocol, route)
    tf = protocol == "tf"  # the study tables and the summary show the TF-exact protocol
    return (Key(fid, LOWER, headline=tf, summary=tf), Key(kid, LOWER, headline=tf, summary=tf),
            Key(std, None, kind="spread"))


FID_KID = Metric(fid_kid, tuple(k for p in inception.PROTOCOLS for r in TWO_DOMAIN_ROUTES for k in _keys_of(p, r)),
                 protocol="translations vs REAL target-domain test images, Inception 2015-12-05 pool3, under the "
                          "resize protocols tf (torch-fidelity), clean and legacy_pytorch (clean-fid's resizers)")
