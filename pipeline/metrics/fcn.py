"""FCN-score (Isola et al. 2017, Sec. 4.2): translations into a photo domain (one with class-id maps)
are segmented by the segmenter; translations into the label-map domain are read as class ids by nearest
palette colour. One confusion matrix over all test images; the segmenter on REAL test photos is the
upper bound (pooled over the photo domains, and per domain in a multi-domain set: fcn_real_<X>_*)."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from pipeline.artifacts import segmenter as segmenter_file
from pipeline.data.datasets import to_unit
from pipeline.data.labels import nearest_palette
from pipeline.domains import TWO_DOMAIN_ROUTES, Route, test_dir
from pipeline.metrics import math
from pipeline.metrics.base import HIGHER, UNIT, Key, Metric, Resamplable, Result, unavailable
from pipeline.metrics.context import Context
from pipeline.metrics.keys import MetricKey
from pipeline.metrics.segmenter import segment

SCORES = ("pixel_acc", "class_acc", "class_iou")


def scored_by(ctx: Context, route: Route) -> str | None:
    """How a route's translations are scored: "segment" (into a photo domain), "palette" (into the label-map
    domain), None (neither: e.g. day -> dusk photos are segmented, but a dataset without labels has none)."""
    target = route.end
    if test_dir(target) in ctx.manifest["labels"]:
        return "segment"
    return "palette" if target == ctx.manifest.get("label_domain") else None


def fcn_score(ctx: Context) -> list[Result]:
    state, net = segmenter_file.load(ctx.params.paths.segmenter)
    routes = [r for r in ctx.directions() if scored_by(ctx, r)] if ctx.truth_ids is not None else ctx.directions()
    by_domain = state.get("upper_bound_by_domain", {}) if ctx.multi_domain else {}
    keys = [MetricKey("fcn", r, n) for r in routes for n in SCORES] + [MetricKey("fcn_real", None, n) for n in SCORES] + \
        [MetricKey("fcn_real", d, n) for d in by_domain for n in SCORES]
    if net is None or ctx.truth_ids is None:
        return unavailable(keys, state.get("reason", "the test set has no class labels"))
    n_classes = state["n_classes"]
    seg_protocol = {"segmenter": f"{state['name']} trained on {state['trained_on']}",
                    "segmenter_resolution": f"{state['resolution']}px", "translation_resolution": f"{ctx.size}px",
                    "n": len(ctx.truth_ids), "classes": state["classes"]}
    out = []
    for r in routes:
        fake = ctx.fake(r)
        if scored_by(ctx, r) == "segment":  # labels -> photo: segment the translated photos
            x = to_unit(fake)
            if x.shape[-1] != state["resolution"]:
                x = torch.nn.functional.interpolate(x, size=state["resolution"], mode="bilinear", align_corners=False)
            pred = segment(net, x)
            if pred.shape[-1] != ctx.size:
                pred = torch.nn.functional.interpolate(pred[:, None].float(), size=ctx.size, mode="nearest")[:, 0].to(torch.uint8)
            pred = pred.numpy()
            protocol = {**seg_protocol, "method": "segment translated photos"}
        else:  # photo -> labels: read the translated label map by its colours
            palette = np.array(ctx.manifest["palette"], dtype=np.uint8)
            pred = np.stack([nearest_palette(img.permute(1, 2, 0).numpy(), palette) for img in fake])
            protocol = {"method": "nearest palette colour -> class id", "translation_resolution": f"{ctx.size}px",
                        "n": len(fake), "classes": ctx.manifest["classes"]}
        # one confusion matrix per image: their sum is the test set's, and a resample's sum is a bootstrap replicate
        cms = np.stack([math.confusion_matrix(p, t, n_classes) for p, t in zip(pred, ctx.truth_ids, strict=True)])
        scores = math.fcn_scores(cms.sum(0))
        per_image = [math.fcn_scores(c)["pixel_acc"] for c in cms]
        for n in SCORES:
            out.append(Result(MetricKey("fcn", r, n), scores[n], protocol,
                              per_image=dict(zip(ctx.names(r), per_image, strict=True)) if n == "pixel_acc" else {},
                              resamplable=Resamplable(partial(math.resampled_fcn_score, cms, n), (len(cms),))))
    upper = {**seg_protocol, "method": "segment REAL test photos (upper bound)", "n": state["upper_bound_n"]}
    out += [Result(MetricKey("fcn_real", None, n), state["upper_bound"][n], upper) for n in SCORES]
    for d, (scores, n_images) in by_domain.items():
        out += [Result(MetricKey("fcn_real", d, n), scores[n], {**upper, "n": n_images, "photos": f"real {test_dir(d)}"})
                for n in SCORES]
    return out


FCN = Metric(fcn_score, tuple(Key(MetricKey("fcn", r, n), HIGHER, headline=True, summary=n == "class_iou", bounds=UNIT)
                              for r in TWO_DOMAIN_ROUTES for n in SCORES)
             + tuple(Key(MetricKey("fcn_real", None, n), HIGHER, kind="upper_bound", bounds=UNIT) for n in SCORES),
             protocol="labels -> photo segmented by the segmenter (fcn8s-mini trained on REAL photos); photo -> "
                      "labels by nearest palette colour; one confusion matrix over all test images")
