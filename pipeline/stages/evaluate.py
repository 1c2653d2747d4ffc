"""Stage `evaluate`: translations + reference features + evaluator -> paths.metrics (flat JSON for
`dvc metrics show/diff`), paths.eval_reports/{protocol.json, per_image.csv, grid.png}, and the same
numbers in the training's MLflow run.

The metrics are a registry of small functions (METRICS), each returning Results with stable keys.
Every result carries its protocol (feature extractor or segmenter, resolution, sample counts,
weights); a metric that cannot be computed here is written as "unavailable: <reason>", never as a
number.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from pipeline.config import Params
from pipeline.data.datasets import grid, list_images, load_uint8
from pipeline.io import atomic_dir, save_png, write_json
from pipeline.metrics import inception, math, perceptual
from pipeline.stages import ref_stats
from pipeline.stages.common import StageError, run_stage, stage_main
from pipeline.stages.evaluator import load_evaluator, to_unit
from pipeline.stages.train import check_data, read_manifest, resolve_device
from pipeline.stages.translate import json_info as translate_info
from pipeline.tracking import Tracker, TrackingError, check_reachable, tracking_uri

log = logging.getLogger("pipeline")
UNAVAILABLE = "unavailable: "
KID_DEFAULT_SUBSET = 1000  # torch-fidelity's default kid_subset_size


@dataclass
class Result:
    key: str
    value: float | None
    protocol: dict
    reason: str | None = None
    per_image: dict[str, float] = field(default_factory=dict)


def unavailable(keys: list[str], reason: str, protocol: dict | None = None) -> list[Result]:
    return [Result(k, None, protocol or {}, reason) for k in keys]


class Context:
    """What the metrics read, loaded once: test images, translations, ground truth, evaluator."""

    def __init__(self, params: Params):
        self.params = params
        self.prepared, self.translated = Path(params.paths.prepared), Path(params.paths.translated)
        self.info = translate_info(self.translated)
        self.manifest, _ = read_manifest(self.prepared)
        check_data(params, self.manifest)
        self.size = self.info["size"]
        self.routes = self.info["routes"]  # e.g. {"AtoB": {"input": "testA", ...}}
        self.device = resolve_device(params.evaluate.device)
        self.paired = self.manifest["pairs"]["test"] is not None

    def names(self, folder: str) -> list[str]:
        return [p.name for p in list_images(self.translated / folder)]

    def fake(self, route: str) -> torch.Tensor:
        return self._load(self.translated / route)

    def real(self, domain: str) -> torch.Tensor:
        """Real test images at the translation size (ground truth and inputs)."""
        return self._load(self.prepared / domain)

    def _load(self, folder: Path) -> torch.Tensor:
        key = str(folder)
        cache = self.__dict__.setdefault("_images", {})
        if key not in cache:
            cache[key] = load_uint8(list_images(folder), size=self.size)
        return cache[key]

    @cached_property
    def truth_ids(self) -> np.ndarray | None:
        lab = self.manifest["labels"].get("testB")
        return None if lab is None else load_uint8(list_images(self.prepared / lab), size=self.size, labels=True).numpy()


def _target(route: str) -> str:
    """The real domain a translation should look like: AtoB -> testB, BtoA -> testA."""
    return "test" + route[-1]


def _source(route: str) -> str:
    return "test" + route[0]


# --- the metrics --------------------------------------------------------------------------------

def fid_kid(ctx: Context) -> list[Result]:
    """FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) via torch-fidelity's own math
    (fid_features_to_statistics / fid_statistics_to_metric / kid_features_to_metric) on 2048-d
    pool3 features of inception-v3-compat, translations vs REAL test images of the target domain."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.version import __version__ as tf_version

    e = ctx.params.evaluate
    routes = [r for r in ("AtoB", "BtoA") if r in ctx.routes]
    keys = lambda r: [f"fid_{r}", f"kid_{r}", f"kid_{r}_std"]  # noqa: E731
    refs = {r: ref_stats.load(ctx.params.paths.ref_stats, _target(r)) for r in routes}
    if any("unavailable" in ref for ref in refs.values()):
        reason = next(ref["unavailable"] for ref in refs.values() if "unavailable" in ref)
        return [res for r in routes for res in unavailable(keys(r), reason)]
    weights = inception.resolve_weights(e.inception_weights)
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
                    "n_translated": len(fake), "n_real": len(real), "reference": f"real {_target(r)}"}
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


def lpips(ctx: Context) -> list[Result]:
    """LPIPS (Zhang et al. 2018; lpips package, AlexNet, v0.1): input vs translation (content kept)
    and, on paired test sets, translation vs ground truth."""
    pairs = []
    for r in (r for r in ("AtoB", "BtoA") if r in ctx.routes):
        pairs.append((f"lpips_{r}_input", r, _source(r)))
        if ctx.paired:
            pairs.append((f"lpips_{r}_truth", r, _target(r)))
    try:
        model, protocol = perceptual.load_lpips(ctx.params.evaluate.lpips_backbone, ctx.device)
    except inception.Unavailable as e:
        return unavailable([k for k, _, _ in pairs], str(e), {"network": "lpips v0.1, AlexNet"})
    out = []
    for key, route, other in pairs:
        fake, ref = to_unit(ctx.fake(route)), to_unit(ctx.real(other))
        d = perceptual.lpips_distances(model, fake, ref, ctx.params.evaluate.batch_size, ctx.device)
        p = {**protocol, "resolution": f"{ctx.size}px", "n": len(d), "compared_with": f"real {other}"}
        out.append(Result(key, float(d.mean()), p, per_image=dict(zip(ctx.names(route), d.tolist()))))
    return out


def fcn_score(ctx: Context) -> list[Result]:
    """FCN-score (Isola et al. 2017): labels -> photo translations segmented by the evaluator;
    photo -> labels translations mapped to class ids by nearest palette colour. One confusion matrix
    over all test images; the evaluator on REAL test photos is the upper bound."""
    state, net = load_evaluator(ctx.params.paths.evaluator)
    names = ("pixel_acc", "class_acc", "class_iou")
    routes = [r for r in ("AtoB", "BtoA") if r in ctx.routes]
    keys = [f"fcn_{r}_{n}" for r in routes for n in names] + [f"fcn_real_{n}" for n in names]
    if net is None or ctx.truth_ids is None:
        return unavailable(keys, state.get("reason", "the test set has no class labels"))
    n_classes = state["n_classes"]
    seg_protocol = {"segmenter": f"{state['name']} trained on {state['trained_on']}",
                    "segmenter_resolution": f"{state['resolution']}px", "translation_resolution": f"{ctx.size}px",
                    "n": len(ctx.truth_ids), "classes": state["classes"]}
    out = []
    for r in routes:
        fake = ctx.fake(r)
        if r == "AtoB":  # labels -> photo: segment the translated photos
            x = to_unit(fake)
            if x.shape[-1] != state["resolution"]:
                x = torch.nn.functional.interpolate(x, size=state["resolution"], mode="bilinear", align_corners=False)
            from pipeline.metrics.segmenter import segment
            pred = segment(net, x)
            if pred.shape[-1] != ctx.size:
                pred = torch.nn.functional.interpolate(pred[:, None].float(), size=ctx.size, mode="nearest")[:, 0].to(torch.uint8)
            pred = pred.numpy()
            protocol = {**seg_protocol, "method": "segment translated photos"}
        else:  # photo -> labels: read the translated label map by its colours
            palette = np.array(ctx.manifest["palette"], dtype=np.uint8)
            pred = np.stack([math.nearest_palette(img.permute(1, 2, 0).numpy(), palette) for img in fake])
            protocol = {"method": "nearest palette colour -> class id", "translation_resolution": f"{ctx.size}px",
                        "n": len(fake), "classes": ctx.manifest["classes"]}
        cm = math.confusion_matrix(pred, ctx.truth_ids, n_classes)
        per_image = [math.fcn_scores(math.confusion_matrix(p, t, n_classes))["pixel_acc"]
                     for p, t in zip(pred, ctx.truth_ids)]
        scores = math.fcn_scores(cm)
        for n in names:
            out.append(Result(f"fcn_{r}_{n}", scores[n], protocol,
                              per_image=dict(zip(ctx.names(r), per_image)) if n == "pixel_acc" else {}))
    upper = {**seg_protocol, "method": "segment REAL test photos (upper bound)", "n": state["upper_bound_n"]}
    out += [Result(f"fcn_real_{n}", state["upper_bound"][n], upper) for n in names]
    return out


def paired(ctx: Context) -> list[Result]:
    """L1, PSNR and SSIM of each translation against its ground truth (paired test sets only)."""
    routes = [r for r in ("AtoB", "BtoA") if r in ctx.routes]
    keys = [f"{m}_{r}" for r in routes for m in ("l1", "psnr", "ssim")]
    if not ctx.paired:
        return unavailable(keys, f"the test set of {ctx.manifest['dataset']} is unpaired: no ground truth")
    out = []
    for r in routes:
        x, y = ctx.fake(r).double() / 255, ctx.real(_target(r)).double() / 255
        protocol = {"resolution": f"{ctx.size}px", "n": len(x), "range": "[0, 1] RGB", "ground_truth": f"real {_target(r)}"}
        for name, fn, extra in (("l1", math.l1_per_image, {}), ("psnr", math.psnr_per_image, {"unit": "dB"}),
                                ("ssim", math.ssim_per_image, {"window": "gaussian 11, sigma 1.5"})):
            v = fn(x, y)
            finite = v[torch.isfinite(v)]
            out.append(Result(f"{name}_{r}", float(finite.mean()) if len(finite) else float("inf"), {**protocol, **extra},
                              per_image=dict(zip(ctx.names(r), v.tolist()))))
    return out


def cycle(ctx: Context) -> list[Result]:
    """Cycle reconstruction error L1(F(G(x)), x) and L1(G(F(y)), y), CycleGAN only."""
    out = []
    for route, domain, key in (("AtoBtoA", "testA", "cycle_l1_A"), ("BtoAtoB", "testB", "cycle_l1_B")):
        if route in ctx.routes:
            v = math.l1_per_image(ctx.fake(route).double() / 255, ctx.real(domain).double() / 255)
            out.append(Result(key, float(v.mean()), {"resolution": f"{ctx.size}px", "n": len(v), "range": "[0, 1] RGB"},
                              per_image=dict(zip(ctx.names(route), v.tolist()))))
    return out


def diversity(ctx: Context) -> list[Result]:
    """Diversity of a multimodal model (BicycleGAN, Zhu et al. 2017b, Sec. 5.1): the mean LPIPS distance
    between outputs of the same input under different random codes. The paper averages 19 random pairs
    for each of 100 inputs; here every pair of the translate.n_samples outputs of every test input.
    Beside it the same average in pixel space (L1 in [0, 1]), which needs no network weights.
    Models with one output per input (CycleGAN, pix2pix: deterministic at test time) have no such keys."""
    spec = ctx.info.get("samples")
    if spec is None:
        return []
    k = spec["n_samples"]
    samples = [ctx.fake(f"{spec['folder']}/{i:02d}") for i in range(k)]
    pairs = math.sample_pairs(k)
    protocol = {"resolution": f"{ctx.size}px", "n_inputs": len(samples[0]), "pairs_per_input": len(pairs),
                "n_pairs": len(pairs) * len(samples[0]), "codes": f"z ~ N(0, I), nz={spec['nz']}, seed {spec['seed']}",
                "input": "testA"}
    names = ctx.names(f"{spec['folder']}/00")
    l1 = torch.stack([math.l1_per_image(samples[i].double() / 255, samples[j].double() / 255) for i, j in pairs]).mean(0)
    out = [Result("diversity_l1_AtoB", float(l1.mean()), {**protocol, "distance": "mean |a - b|, [0, 1] RGB"},
                  per_image=dict(zip(names, l1.tolist())))]
    try:
        model, net_protocol = perceptual.load_lpips(ctx.params.evaluate.lpips_backbone, ctx.device)
    except inception.Unavailable as e:
        return out + unavailable(["diversity_lpips_AtoB"], str(e), {**protocol, "network": "lpips v0.1, AlexNet"})
    bs = ctx.params.evaluate.batch_size
    d = torch.stack([perceptual.lpips_distances(model, to_unit(samples[i]), to_unit(samples[j]), bs, ctx.device)
                     for i, j in pairs]).mean(0)
    return out + [Result("diversity_lpips_AtoB", float(d.mean()), {**protocol, **net_protocol},
                         per_image=dict(zip(names, d.tolist())))]


def latent(ctx: Context) -> list[Result]:
    """BicycleGAN's latent regression at test time (cLR-GAN cycle z -> G(A, z) -> E -> z): mean L1
    between the codes and the encoder's means, measured by the translate stage where G and E are
    loaded. Chance: the same recovered codes against another input's code (no relation to the image);
    also reported, sqrt(2/pi) = 0.798, the error of guessing 0 for every code."""
    rec = ctx.info.get("latent_recovery")
    if rec is None:
        return []
    protocol = {k: rec[k] for k in ("method", "n", "chance_l1", "zero_guess_l1")} | {"resolution": f"{ctx.size}px"}
    return [Result("latent_l1_AtoB", rec["l1"], protocol), Result("latent_chance_l1", rec["chance_l1"], protocol)]


METRICS: dict[str, Callable[[Context], list[Result]]] = {
    "fid_kid": fid_kid,
    "lpips": lpips,
    "fcn": fcn_score,
    "paired": paired,
    "cycle": cycle,
    "diversity": diversity,
    "latent": latent,
}


# --- outputs ------------------------------------------------------------------------------------

# metric family (key prefix) -> whether a higher value is better
HIGHER_IS_BETTER = {"fid": False, "kid": False, "lpips": False, "fcn": True, "l1": False, "psnr": True, "ssim": True,
                    "cycle": False, "diversity": True, "latent": False}


def higher_is_better(key: str) -> bool:
    return HIGHER_IS_BETTER[key.split("_")[0]]


def flat_metrics(results: list[Result]) -> dict:
    return {r.key: (r.value if r.reason is None else UNAVAILABLE + r.reason) for r in results}


def per_image_csv(results: list[Result]) -> str:
    columns = [r.key for r in results if r.per_image]
    names = sorted({n for r in results for n in r.per_image})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", *columns])
    for n in names:
        w.writerow([n, *(next(r.per_image.get(n, "") for r in results if r.key == c) for c in columns)])
    return buf.getvalue()


def sample_grid(ctx: Context, k: int = 6) -> np.ndarray:
    """Rows: input | translation | ground truth (or the real target domain) per direction."""
    rows = []
    for r in (r for r in ("AtoB", "BtoA") if r in ctx.routes):
        src, fake, tgt = (to_unit(t[:k]) for t in (ctx.real(_source(r)), ctx.fake(r), ctx.real(_target(r))))
        rows += [torch.stack(triple) for triple in zip(src, fake, tgt)]
    return grid(rows)


def evaluate(params: Params, *, progress: bool = True, track: bool = True) -> dict:
    ctx = Context(params)
    if track and ctx.info["mlflow_run_id"]:
        check_reachable(tracking_uri(params.mlflow.tracking_uri))  # fail now, not after the metrics
    results: list[Result] = []
    for name, fn in METRICS.items():
        log.info("metric %s", name)
        results += fn(ctx)
    metrics = flat_metrics(results)
    protocol = {r.key: {**r.protocol, **({"unavailable": r.reason} if r.reason else {})} for r in results}
    reasons: dict[str, list[str]] = {}
    for r in results:
        if r.reason:
            reasons.setdefault(r.reason, []).append(r.key)
    for reason, keys in reasons.items():
        log.warning("unavailable: %s: %s", ", ".join(keys), reason)
    write_json(params.paths.metrics, metrics)
    with atomic_dir(params.paths.eval_reports) as tmp:
        write_json(tmp / "protocol.json", protocol)
        (tmp / "per_image.csv").write_text(per_image_csv(results))
        save_png(tmp / "grid.png", sample_grid(ctx))
    if track and ctx.info["mlflow_run_id"]:
        log_to_mlflow(params, ctx.info["mlflow_run_id"], results)
    return metrics


def log_to_mlflow(params: Params, run_id: str, results: list[Result]) -> None:
    try:
        tracker = Tracker(tracking_uri(params.mlflow.tracking_uri), params.mlflow.experiment, run_id=run_id)
    except TrackingError as e:
        raise StageError(f"{e}; the metrics were written to {params.paths.metrics}") from None
    tracker.log_metrics({f"eval/{r.key}": r.value for r in results if r.reason is None and np.isfinite(r.value)})
    tracker.set_tags({f"eval.unavailable.{r.key}": r.reason[:4000] for r in results if r.reason})
    tracker.log_artifact(params.paths.metrics, "eval")
    for name in ("protocol.json", "per_image.csv", "grid.png"):
        tracker.log_artifact(Path(params.paths.eval_reports) / name, "eval")
    tracker.finish()


def format_table(metrics: dict) -> str:
    return "\n".join(f"  {k:24s} {v:.4f}" if isinstance(v, float) else f"  {k:24s} {v}" for k, v in metrics.items())


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main("evaluate", argv)
    metrics = run_stage(evaluate, params)
    print(f"metrics -> {params.paths.metrics} (protocols: {params.paths.eval_reports}/protocol.json)\n{format_table(metrics)}")


if __name__ == "__main__":
    main()
