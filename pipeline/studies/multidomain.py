"""The multidomain study's tables (StarGAN, Choi et al. 2018, Sec. 4): one multi-domain model against a
two-domain model per pair of domains, compared per directed pair and on average over the pairs, with the
models' parameter counts and training time. Pure functions of the runs that report.py collects.

A run's routes are letters of its prepared domains (params data.domains: A = the first, ...); a CycleGAN
of the pair [day, fog] translates AtoC and CtoA of the same three-domain set that StarGAN translates,
so each (source, target) pair has one number per family and seed.
"""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd

from pipeline.domains import AtoB, Route, index, letters, ordered_routes
from pipeline.metrics import math, registry
from pipeline.metrics.keys import MetricKey
from pipeline.models.registry import MODELS

# The per-pair scores, by the metric's name: (its key at route AtoB, which each route's key is `at`, column title).
PAIR_METRICS: dict[str, tuple[MetricKey, str]] = {
    "fid": (MetricKey("fid", AtoB), "FID"),
    "kid": (MetricKey("kid", AtoB), "KID"),
    "domain_acc": (MetricKey("domain_acc", AtoB), "classification acc."),
    "fcn": (MetricKey("fcn", AtoB, "class_iou"), "FCN class IoU"),
    "l1": (MetricKey("l1", AtoB), "L1 to truth"),
}
STARGAN, CYCLEGAN = "StarGAN (one model)", "CycleGAN (a model per pair)"


def domain_names(value: object) -> list[str]:
    """data.domains as MLflow holds it (the tuple's text, e.g. "('day', 'dusk', 'fog')") -> names."""
    return list(ast.literal_eval(value) if isinstance(value, str) else value)


def pair_label(names: list[str], route: Route) -> str:
    """AtoC with domains [day, dusk, fog] -> day → fog."""
    return f"{names[index(route.source)]} → {names[index(route.target)]}"


def family(model: str) -> str:
    return STARGAN if MODELS[model].multi_domain else CYCLEGAN


def long_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (family, config, seed, pair, metric) with the run's value."""
    rows = []
    for _, r in runs.iterrows():
        names = domain_names(r["data.domains"])
        for route in ordered_routes(letters(len(names))):
            for metric, (declared, _) in PAIR_METRICS.items():
                key = str(declared.at(route))  # the run's column: its MLflow metric eval/<key>
                if key in r and pd.notna(r[key]):
                    rows.append({"family": family(r["model"]), "config": r["config"], "seed": r["seed"],
                                 "pair": pair_label(names, route), "metric": metric, "value": float(r[key])})
    return pd.DataFrame(rows)


def per_seed(long: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per family and seed: each metric's mean over every directed pair, and the family's parameters and
    training time (a CycleGAN family's sum over its pair models of that seed). A family missing a pair
    for a seed is left out for that seed: its mean would be over other pairs."""
    pairs = long["pair"].nunique()
    means = long.groupby(["family", "seed", "metric"])["value"].agg(["mean", "count"]).reset_index()
    means = means[means["count"] == pairs].pivot(index=["family", "seed"], columns="metric", values="mean")
    cost = runs.assign(family=runs["model"].map(family)).groupby(["family", "seed"])[
        ["model/parameters", "model/generator_parameters", "train/seconds"]].sum(min_count=1)
    return means.join(cost, how="left").reset_index()


def cell(values: pd.Series, digits: int = 3, bounds: tuple[float, float] | None = None) -> str:
    """mean ± sd [95% interval of the mean, cut to the score's `bounds`] over seeds."""
    v = values.dropna().astype(float)
    if v.empty:
        return "-"
    if v.nunique() == 1:  # the same for every seed (parameter counts): no spread to show
        return f"{v.iloc[0]:.{digits}f}"
    lo, hi = math.mean_confidence_interval(v, bounds=bounds)
    spread = f" ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else ""
    ci = f" [{lo:.{digits}f}, {hi:.{digits}f}]" if np.isfinite(lo) else ""
    return f"{v.mean():.{digits}f}{spread}{ci}"


def arrow(metric: str) -> str:
    return registry.arrow(PAIR_METRICS[metric][0])


def summary_markdown(seeds: pd.DataFrame) -> str:
    """Rows: each metric's mean over the pairs, then parameters and training time; a column per family."""
    families = [f for f in (STARGAN, CYCLEGAN) if f in set(seeds["family"])]
    lines = ["| | " + " | ".join(families) + " |", "|---|" + "---|" * len(families)]
    n = {f: len(seeds[seeds["family"] == f]) for f in families}
    for metric, (_, title) in PAIR_METRICS.items():
        if metric in seeds:
            lines.append(f"| {title} {arrow(metric)}, mean over the pairs | " + " | ".join(
                cell(seeds.loc[seeds["family"] == f, metric], bounds=registry.key(PAIR_METRICS[metric][0]).bounds)
                for f in families) + " |")
    for column, title, digits in (("model/generator_parameters", "generator parameters", 0),
                                  ("model/parameters", "parameters (generators + discriminators)", 0),
                                  ("train/seconds", "training time, s", 0)):
        lines.append(f"| {title} | " + " | ".join(cell(seeds.loc[seeds["family"] == f, column], digits)
                                                  for f in families) + " |")
    lines.append("| seeds | " + " | ".join(str(n[f]) for f in families) + " |")
    return "\n".join(lines)


def pairs_markdown(long: pd.DataFrame) -> str:
    """Rows: directed pairs; per metric, StarGAN / CycleGAN, mean ± sd over the seeds."""
    metrics = [m for m in PAIR_METRICS if m in set(long["metric"])]
    header = ["pair", *(f"{PAIR_METRICS[m][1]} {arrow(m)} StarGAN / CycleGAN" for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    stats = long.groupby(["pair", "metric", "family"])["value"].agg(["mean", "std"])
    for pair in sorted(long["pair"].unique()):
        cells = [pair]
        for m in metrics:
            parts = []
            for f in (STARGAN, CYCLEGAN):
                if (pair, m, f) in stats.index:
                    mean, std = stats.loc[(pair, m, f)]
                    parts.append(f"{mean:.3f}" + (f" ± {std:.3f}" if pd.notna(std) else ""))
                else:
                    parts.append("-")
            cells.append(" / ".join(parts))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(runs: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The study's markdown and its long table (one value per family, config, seed, pair, metric)."""
    long = long_table(runs)
    if long.empty:
        raise SystemExit("the multidomain study's runs hold no per-pair metrics; re-run its evaluate stages")
    seeds = per_seed(long, runs)
    text = ("## Averaged over the directed pairs\n\n" + summary_markdown(seeds) +
            "\n\nmean ± standard deviation over the seeds [95% Student-t interval of the mean]; per seed, the mean "
            "over every directed pair (a CycleGAN seed: its three pair models); parameters and training time: one "
            "StarGAN against the sum of the three CycleGANs\n\n## Per directed pair\n\n" + pairs_markdown(long) +
            "\n\nmean ± standard deviation over the seeds\n")
    return text, long
