"""FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) of translations against REAL test images
of the target domain, with torch-fidelity's own math on inception-v3-compat pool3 features."""

from __future__ import annotations

from pipeline.artifacts import features as reference_features
from pipeline.errors import Unavailable
from pipeline.metrics import inception
from pipeline.metrics.base import LOWER, ROUTES, Key, Metric, Result, unavailable
from pipeline.metrics.context import Context, target_domain

KID_DEFAULT_SUBSET = 1000  # torch-fidelity's default kid_subset_size


def fid_kid(ctx: Context) -> list[Result]:
    """fid_features_to_statistics / fid_statistics_to_metric / kid_features_to_metric of torch-fidelity
    on 2048-d pool3 features of inception-v3-compat; the real side comes from the ref_stats stage."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.version import __version__ as tf_version

    e = ctx.params.evaluate
    routes = ctx.directions()
    keys = lambda r: [f"fid_{r}", f"kid_{r}", f"kid_{r}_std"]  # noqa: E731
    refs = {r: reference_features.load(ctx.params.paths.ref_stats, target_domain(r)) for r in routes}
    if any("unavailable" in ref for ref in refs.values()):
        reason = next(ref["unavailable"] for ref in refs.values() if "unavailable" in ref)
        return [res for r in routes for res in unavailable(keys(r), reason)]
    try:
        weights = inception.resolve_weights(e.inception_weights)
    except Unavailable as err:
        return [res for r in routes for res in unavailable(keys(r), str(err))]
    fe = inception.feature_extractor(weights, ctx.device)
    out = []
    for r in routes:
        ref = refs[r]
        fake = inception.extract_features(fe, ctx.fake(r), e.batch_size, ctx.device)
        real = ref["features"]
        # null: torch-fidelity's default subset size, adapted to small sets; an explicit size above the
        # set size was refused before any work (Params.check_test_set_size)
        subset = e.kid_subset_size or min(KID_DEFAULT_SUBSET, len(fake), len(real))
        protocol = {"feature_extractor": f"{inception.EXTRACTOR} (TF Inception 2015-12-05, pool3 2048-d), "
                                         f"torch-fidelity {tf_version}",
                    "weights": weights.source, "resolution": f"{ctx.size}px (real: {ref['resolution']}px), resized to 299",
                    "n_translated": len(fake), "n_real": len(real), "reference": f"real {target_domain(r)}"}
        fid = fid_statistics_to_metric(fid_features_to_statistics(fake), fid_features_to_statistics(real), False)
        kid = kid_features_to_metric(fake, real, kid_subset_size=subset, kid_subsets=e.kid_subsets, verbose=False,
                                     rng_seed=2020)
        kid_protocol = {**protocol, "kid_subset_size": subset, "kid_subsets": e.kid_subsets,
                        "kid_kernel": "polynomial, degree 3, coef0 1, gamma 1/d"}
        out += [Result(f"fid_{r}", fid["frechet_inception_distance"], protocol),
                Result(f"kid_{r}", kid["kernel_inception_distance_mean"], kid_protocol)]
        if subset == len(fake) == len(real):  # every "random" subset is the whole set: no spread to report
            out += unavailable([f"kid_{r}_std"], f"one subset only: the subset size equals the sample count ({subset}); "
                                                 f"more test images give a spread", kid_protocol)
        else:
            out.append(Result(f"kid_{r}_std", kid["kernel_inception_distance_std"], kid_protocol))
    return out


FID_KID = Metric(fid_kid, tuple(
    k for r in ROUTES for k in (Key(f"fid_{r}", LOWER, headline=True), Key(f"kid_{r}", LOWER, headline=True),
                                Key(f"kid_{r}_std", None, kind="spread"))),
    protocol="translations vs REAL target-domain test images, inception-v3-compat pool3 (TF 2015-12-05)")
