"""Sanity baselines for the metrics: the trained model beside an untrained one (same constructor,
same seed, no step taken) and the identity mapping (every "translation" is its input).

    python -m pipeline.studies.baselines        # after `dvc repro`; writes reports/baselines.md

A metric that does not rank trained > untrained and trained > identity where it should cannot be
trusted to rank ablations either. Not a DVC stage: it is a check of the metrics, not an experiment.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch

from pipeline.artifacts import manifest as manifest_file
from pipeline.artifacts import model as model_file
from pipeline.artifacts import translations
from pipeline.cli import run_stage, stage_main
from pipeline.config import Params
from pipeline.io import atomic_dir, write_text
from pipeline.metrics import evaluation, registry
from pipeline.metrics.base import HIGHER, Result
from pipeline.metrics.context import Context
from pipeline.metrics.keys import MetricKey
from pipeline.metrics.math import paired_difference_interval
from pipeline.models.registry import MODELS, model_pair
from pipeline.runtime import resolve_device, set_determinism
from pipeline.translate_sets import translate_test_sets


def with_paths(params: Params, **paths: str) -> Params:
    return dataclasses.replace(params, paths=dataclasses.replace(params.paths, **paths))


def untrained_translations(params: Params, folder: Path) -> Path:
    set_determinism(params.seed, params.train.deterministic)
    model = MODELS[params.model].build(params, torch.device("cpu"), 0)
    path = folder / "untrained.pt"
    manifest, _ = manifest_file.read(params.paths.prepared)
    model_file.save(path, model_file.state(params, model, "untrained", 0, domains=manifest["domains"],
                                           pair=model_pair(params, manifest)))
    translate_test_sets(path, params.paths.prepared, folder / "untrained", batch_size=params.translate.batch_size,
                        n_samples=params.translate.n_samples, seed=params.seed, generator_mode=params.translate.generator_mode,
                        device=resolve_device(params.translate.device, "translate.device"), progress=False)
    return folder / "untrained"


def identity_translations(params: Params, folder: Path) -> Path:
    """Every route's output is its input image, unchanged."""
    info = translations.read_info(params.paths.translated)
    prepared = Path(params.paths.prepared)
    with atomic_dir(folder / "identity") as out:
        for route, spec in info["routes"].items():
            shutil.copytree(prepared / spec["input"], out / route)
        translations.write_info(out, {**info, "fingerprint": None, "model": "identity"})
    return folder / "identity"


SOURCES = ("trained", "untrained", "identity")


def run(params: Params) -> pd.DataFrame:
    values, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = {"trained": Path(params.paths.translated), "untrained": untrained_translations(params, tmp),
                   "identity": identity_translations(params, tmp)}
        names = {}
        for name, translated in sources.items():
            ctx = Context(with_paths(params, translated=str(translated)))
            computed = evaluation.compute(ctx)
            values[name] = evaluation.write_reports(ctx, computed, tmp / f"{name}.json", tmp / f"{name}-reports")
            results[name] = {str(r.key): r for r in computed}  # by the table's rows: metrics.json's keys
            names[name] = {route: ctx.names(route) for route in ctx.routes}
    # every source translated the same test images in the same order, so their bootstrap resamples pair up
    paired = all(names[s] == names["trained"] for s in SOURCES)
    table = pd.DataFrame(values)
    table = table[table["trained"].notna()]  # a metric unavailable for the trained model has nothing to compare
    for other in ("untrained", "identity"):
        table[f"beats {other}"] = [verdict(k, results["trained"][k], results[other].get(k), other, paired)
                                   for k in table.index]
    for name in SOURCES:  # the numbers with their 95% intervals over the test images
        table[name] = [cell(r[name], results[name][k].interval if k in results[name] else None)
                       for k, r in table.iterrows()]
    return table


def cell(value: float, interval: tuple[float, float] | None) -> str:
    if pd.isna(value):
        return "-"
    return f"{value:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")


NOT_A_SCORE = {"upper_bound": "n/a: upper bound, model-free", "spread": "n/a: a spread", "reference": "n/a: a reference level"}


def verdict(key: str, trained: Result, other: Result | None, baseline: str, paired: bool) -> str:
    """'yes'/'no' where the 95% interval of the difference trained - baseline excludes 0 (paired
    bootstrap over the same test images, math.paired_difference_interval), 'not separated' where it
    does not; with the difference and its interval. Without paired resamples, disjoint intervals decide,
    and without intervals the point estimates, and the verdict says so. Or why the comparison cannot
    separate them by construction."""
    k = registry.key(MetricKey.parse(key))
    if k.kind != "score":
        return NOT_A_SCORE[k.kind]
    if k.identity_trivial and baseline == "identity":
        return "n/a: 0 for the identity by construction"
    if other is None or other.value is None or pd.isna(other.value):
        return "n/a: no baseline value"
    t, o = trained.value, other.value
    better = t > o if k.better == HIGHER else t < o
    if paired and trained.replicates is not None and other.replicates is not None:
        lo, hi = paired_difference_interval(trained.replicates, other.replicates, t, o)
        shown = f"{t - o:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        return f"{'yes' if better else 'no'}: {shown}" if lo > 0 or hi < 0 else f"not separated: {shown}"
    if trained.interval is None or other.interval is None:
        return ("yes" if better else "no") + " (point estimates; no interval)"
    (t_lo, t_hi), (o_lo, o_hi) = trained.interval, other.interval
    if t_hi < o_lo or o_hi < t_lo:
        return ("yes" if better else "no") + " (disjoint intervals)"
    return "not separated (intervals overlap)"


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    table = run_stage(run, params)
    out = Path(params.paths.metrics).parent / "baselines.md"
    text = ("# Metric sanity check: trained vs untrained vs identity\n\n"
            f"Dataset `{params.data.dataset}`, model `{params.model}`; protocols in "
            f"`{params.paths.eval_reports}/protocol.json`. Made by `python -m pipeline.studies.baselines`.\n\n"
            + table.to_markdown() + "\n\nEach number with its 95% bootstrap interval over the test images "
            "(`evaluate.bootstrap`). A verdict gives the difference trained - baseline and its 95% interval from "
            "the same resamples of the test images for both (a paired bootstrap: variation common to both "
            "cancels), and is yes or no only where that interval excludes 0.\n")
    write_text(out, text)
    print(text)


if __name__ == "__main__":
    main()
