"""The comparison of every tracked training: knobs and metrics, per run and over seeds.

    python -m pipeline.studies.report                     # CycleGAN ablations (reads params.yaml's MLflow store)
    python -m pipeline.studies.report --study multimodal  # pix2pix vs pix2pix+noise vs BicycleGAN
    python -m pipeline.studies.report --study multidomain # StarGAN vs CycleGAN per pair of domains
    python -m pipeline.studies.report --study cut         # CycleGAN vs CUT vs FastCUT, with their costs

Writes under reports/: ablation_runs.csv (one row per run), ablation.csv and ablation.md (one row
per configuration: mean +- standard deviation over its seeds and the 95% Student-t interval of the
mean, n = number of seeds, the best mean in bold only where the intervals separate it; and the
paper's Tables 4-5 beside ours), ablation_lambda_cycle.png (metrics against lambda_cycle) and ablation_losses.png
(generator loss curves overlaid). Not a DVC stage: it reads across experiments, which no single
experiment's dependencies can describe.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline import cli
from pipeline.config import knob_columns
from pipeline.domains import AtoB, BtoA, Route
from pipeline.io import atomic_file, write_text
from pipeline.metrics import math, registry
from pipeline.metrics.base import HIGHER, Key
from pipeline.metrics.keys import MetricKey
from pipeline.models.registry import MODELS
from pipeline.studies import cut, multidomain
from pipeline.tracking import tracking_uri

# Zhu et al. 2017 (arXiv 1703.10593v7), FCN-scores on Cityscapes: (per-pixel acc, per-class acc, class IoU)
# of Table 4 (labels -> photo) and Table 5 (photo -> labels), by our configuration name.
PAPER: dict[str, tuple[str, dict[int, tuple[float, float, float]]]] = {
    "cycle_alone": ("Cycle alone", {4: (0.22, 0.07, 0.02), 5: (0.10, 0.05, 0.02)}),
    "gan_alone": ("GAN alone", {4: (0.51, 0.11, 0.08), 5: (0.53, 0.11, 0.07)}),
    "gan_forward_cycle": ("GAN + forward cycle", {4: (0.55, 0.18, 0.12), 5: (0.49, 0.11, 0.07)}),
    "gan_backward_cycle": ("GAN + backward cycle", {4: (0.39, 0.14, 0.06), 5: (0.01, 0.06, 0.01)}),
    "full": ("CycleGAN (ours)", {4: (0.52, 0.17, 0.11), 5: (0.58, 0.22, 0.16)}),
}

KNOBS = list(knob_columns("study"))  # the knobs declared study=<position> (pipeline/knobs.py)
METRIC_COLUMNS = [str(k) for k in registry.HEADLINE]  # the table's metric columns: the registry's headline keys
# The knobs shown beside a study's metrics, with their column titles (a study's runs are those tagged with its
# name; the studies themselves are pipeline/studies/ablations.py STUDIES).
STUDY_COLUMNS = {
    "ablation": {"lambda_cycle": "lambda_cycle", "lambda_identity": "lambda_identity", "pool_size": "pool_size",
                 "cyclegan.adversarial": "adversarial", "cyclegan.cycle_forward": "fwd", "cyclegan.cycle_backward": "bwd"},
    "multimodal": {"model": "model", "bicyclegan.variant": "variant"},
    "multidomain": {"model": "model", "train.pair": "pair"},
    "cut": {"model": "model", "cut.mode": "mode"},
}
# What a multidomain or cut run contributes besides its metrics (pipeline/studies/multidomain.py, cut.py).
COSTS = [*cut.COSTS, "train/seconds"]  # cut.COSTS holds the parameter counts too
BESIDES_HEADLINE = ("multidomain", "cut")  # the studies whose tables read every eval/ metric and the costs


def applies(key: str, model: str) -> bool:
    """A knob of a model's own section (bicyclegan.variant) means nothing for the runs of another model."""
    section = key.split(".")[0]
    return section not in MODELS or section == model


def collect(uri: str, experiment: str, study: str):
    """One row per finished, evaluated training run of `study` (its `study` tag, set by the study
    command), labelled by its `config` tag; and the MLflow client. The multidomain and cut studies keep
    every metric of a run (per-pair keys, every FID protocol) and its costs (parameters, time, memory)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame(), client
    runs = client.search_runs([exp.experiment_id], max_results=50_000, filter_string=(
        f"attributes.status = 'FINISHED' and tags.study = '{study}' and tags.`pipeline.stage` = 'train'"))
    rows = []
    for r in runs:
        if not any(k.startswith("eval/") for k in r.data.metrics) or "config" not in r.data.tags:
            continue
        name = r.data.tags.get("dvc.exp_name") or r.info.run_name
        rows.append({"run": name, "run_id": r.info.run_id, "start": r.info.start_time, "seed": r.data.tags.get("seed"),
                     "config": r.data.tags["config"],
                     **{k: r.data.params.get(k) for k in KNOBS},
                     **{m: r.data.metrics.get(f"eval/{m}") for m in METRIC_COLUMNS}})
        if study in BESIDES_HEADLINE:
            rows[-1].update({k[5:]: v for k, v in r.data.metrics.items() if k.startswith("eval/")})
            rows[-1].update({k: r.data.metrics.get(k) for k in COSTS})
    runs = pd.DataFrame(rows)
    if not runs.empty:  # a configuration re-run with the same seed counts once: its latest run (latest code)
        runs = runs.sort_values("start").drop_duplicates(["config", "seed"], keep="last")
    return runs, client


def aggregate(runs: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; 0 for one seed), the 95% Student-t interval of the mean, cut to the
    metric's declared bounds (_lo, _hi; NaN for one seed) and n (seeds) of each configuration, for `columns` (the
    headline metrics)."""
    metrics = [m for m in (columns or METRIC_COLUMNS) if m in runs and runs[m].notna().any()]
    grouped = runs.groupby(["config", *KNOBS], dropna=False)
    mean, std = grouped[metrics].mean(), grouped[metrics].std(ddof=1).fillna(0.0)
    out = mean.add_suffix("_mean").join(std.add_suffix("_std"))
    for m in metrics:
        bounds = declared(m).bounds if registry.registered(m) else None  # a cost (parameters, seconds) has none
        ci = grouped[m].agg(lambda v, b=bounds: math.mean_confidence_interval(v.astype(float), bounds=b))
        out[f"{m}_lo"], out[f"{m}_hi"] = ci.str[0], ci.str[1]
    out["n"] = grouped.size()
    return out.reset_index()


def declared(column: str) -> Key:
    """The registry's declaration of a metric column (a key of metrics.json, MLflow's eval/<key>)."""
    return registry.key(MetricKey.parse(column))


def arrow(column: str) -> str:
    return registry.arrow(MetricKey.parse(column))


def best_rows(agg: pd.DataFrame, m: str) -> set[int]:
    """The row whose mean of `m` is best, if its 95% interval is clear of every other row's (a
    difference the seeds support); otherwise none."""
    means = agg[f"{m}_mean"]
    if means.notna().sum() < 2:
        return set()
    i = means.idxmax() if declared(m).better == HIGHER else means.idxmin()
    lo, hi = agg.at[i, f"{m}_lo"], agg.at[i, f"{m}_hi"]
    others = agg.drop(index=i)
    others = others[others[f"{m}_mean"].notna()]
    if pd.isna(lo) or others[f"{m}_lo"].isna().any():
        return set()
    clear = (others[f"{m}_hi"] < lo).all() if declared(m).better == HIGHER else (others[f"{m}_lo"] > hi).all()
    return {i} if clear else set()


def cell(r: pd.Series, m: str) -> str:
    mean, std, lo, hi = r[f"{m}_mean"], r[f"{m}_std"], r[f"{m}_lo"], r[f"{m}_hi"]
    if pd.isna(mean):
        return "-"
    return f"{mean:.3f} ± {std:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if pd.notna(lo) else "")


def markdown(agg: pd.DataFrame, study: str = "ablation") -> str:
    metrics = [c[:-5] for c in agg.columns if c.endswith("_mean")]
    # only scores have a best; a reference level (e.g. latent recovery's chance) is shown, never marked
    best = {m: best_rows(agg, m) for m in metrics if declared(m).kind == "score"}
    columns = STUDY_COLUMNS[study]
    header = ["config", *columns.values(), "n", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, r in agg.iterrows():
        cells = [r["config"], *(r[k] if applies(k, r["model"]) else "-" for k in columns),
                 str(r["n"])]
        cells += [f"**{cell(r, m)}**" if i in best.get(m, ()) else cell(r, m) for m in metrics]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    arrows = ", ".join(f"{m} {arrow(m)}" if arrow(m) else f"{m} (reference)" for m in metrics)
    return "\n".join(lines) + (
        f"\n\nmean ± standard deviation over n seeds [95% interval of the mean, Student t with n - 1 degrees of "
        f"freedom, cut to the score's range where it has one]; bold: the best mean, only where its interval is clear of "
        f"every other row's (otherwise the seeds "
        f"do not tell the rows apart); {arrows}\n")


PAPER_TABLES = ((AtoB, 4), (BtoA, 5))  # the route each of the paper's Tables 4 and 5 scores


def fcn_column(route: Route, score: str) -> str:
    """The aggregate table's column of an FCN-score's mean over seeds: fcn_AtoB_class_iou_mean."""
    return f"{MetricKey('fcn', route, score)}_mean"


def paper_comparison(agg: pd.DataFrame) -> str:
    """Our FCN-scores beside Zhu et al. 2017's Tables 4 (labels -> photo) and 5 (photo -> labels), with
    the rank of each row by class IoU in both. The paper's numbers are on real Cityscapes, trained at 128x128
    (its Appendix 7.1), with an FCN-8s; ours on the embedded world with a small segmenter: only the ordering compares."""
    rows = agg.set_index("config")
    lines = ["| config | paper row | ours labels→photo (pixel / class / IoU) | Table 4 | IoU rank ours / paper "
             "| ours photo→labels (pixel / class / IoU) | Table 5 | IoU rank ours / paper |", "|" + "---|" * 8]
    ranks = {}
    for route, table in PAPER_TABLES:
        have = [c for c in PAPER if c in rows.index and fcn_column(route, "class_iou") in rows]
        ours = rows.loc[have, fcn_column(route, "class_iou")].rank(ascending=False, method="min")
        paper = pd.Series({c: PAPER[c][1][table][2] for c in have}).rank(ascending=False, method="min")
        ranks[route] = (ours, paper)
    for config, (name, tables) in PAPER.items():
        if config not in rows.index:
            continue
        r = rows.loc[config]
        cells = [config, name]
        for route, table in PAPER_TABLES:
            ours = " / ".join(f"{r[fcn_column(route, n)]:.2f}" if fcn_column(route, n) in r else "-"
                              for n in ("pixel_acc", "class_acc", "class_iou"))
            o, p = ranks[route]
            rank = f"{int(o[config])} / {int(p[config])}" if config in o and pd.notna(o[config]) else "-"
            cells += [ours, " / ".join(f"{v:.2f}" for v in tables[table]), rank]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + (
        "\n\nThe paper's numbers: Cityscapes (2975 training pairs, 500 val images) at 128x128 (its Appendix 7.1), an "
        "FCN-8s trained on Cityscapes, one training run each. Ours: the embedded synthetic world at 64px, fcn8s-mini, means over "
        "seeds. The scales do not compare; the ordering of the rows does. Rank 1 = highest class IoU.\n")


def terminal_table(agg: pd.DataFrame) -> str:
    """The table for a terminal: configuration, seeds and the summary metrics (those of `dvc metrics
    show`), mean ± sd, aligned; the knobs and every headline metric are in the markdown file."""
    metrics = [str(k) for k in registry.SUMMARY if f"{k}_mean" in agg]
    table = pd.DataFrame({"config": agg["config"], "n": agg["n"],
                          **{f"{m} {arrow(m)}": [cell(r, m) for _, r in agg.iterrows()] for m in metrics}})
    return table.to_string(index=False)


def plot_knob(runs: pd.DataFrame, folder: Path) -> Path:
    """ablation_lambda_cycle.png: the headline metrics of every run against lambda_cycle."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plotted = (MetricKey("fcn", AtoB, "class_iou"), MetricKey("fcn", BtoA, "class_iou"), MetricKey("fid", AtoB),
               MetricKey("cycle_l1", "A"))
    metrics = [m for m in map(str, plotted) if runs[m].notna().any()]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    lc = runs["lambda_cycle"].astype(float)
    for ax, m in zip(axes[0], metrics, strict=True):
        ax.scatter(lc, runs[m], alpha=0.7)
        ax.set_xlabel("lambda_cycle")
        ax.set_title(m)
    fig.tight_layout()
    out = _save(fig, folder / "ablation_lambda_cycle.png")
    plt.close(fig)
    return out


def plot_losses(runs: pd.DataFrame, client, folder: Path) -> Path:
    """ablation_losses.png: every run's generator loss curve, from MLflow."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for _, r in runs.iterrows():
        hist = client.get_metric_history(r["run_id"], "train/G")
        ax.plot([h.step for h in hist], [h.value for h in hist], label=r["run"], linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("generator loss (train/G)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    out = _save(fig, folder / "ablation_losses.png")
    plt.close(fig)
    return out


def _save(fig, path: Path) -> Path:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def read_runs(path: Path) -> pd.DataFrame:
    """A study's runs as an earlier report wrote them (<study>_runs.csv); a knob column the report reads now but
    that file predates is empty."""
    runs = pd.read_csv(path, dtype={"seed": str, **dict.fromkeys(KNOBS, str)}, keep_default_na=False, na_values=[""])
    for knob in KNOBS:
        if knob not in runs:
            runs[knob] = None
    return runs


def made_by(report: Path, study: str, runs_csv: Path | None) -> str:
    """The report's provenance line. From the store: the command, and where its runs are listed (no machine path).
    From an earlier report's runs: that report's line (the study command and protocol that trained the runs), and
    the command that remade its tables."""
    remade = f"`python -m pipeline.studies.report --study {study}" + (f" --runs {runs_csv.name}`" if runs_csv else "`")
    if runs_csv is None:
        return f"Made by {remade} from the runs in `{study}_runs.csv` (one row per run: its knobs and metrics)."
    earlier = next((line for line in report.read_text().splitlines() if line.startswith("Made by")), "") \
        if report.is_file() else ""
    kept = earlier.split(" Its tables remade by ")[0]
    return f"{kept} Its tables remade by {remade}.".strip()


def build(uri: str, experiment: str, folder: Path, study: str = "ablation", runs_csv: Path | None = None) -> pd.DataFrame:
    """The study's tables and plots from the runs in the MLflow store, or from an earlier report's runs (`runs_csv`:
    the same tables; the loss-curve plot needs the store and is kept as it is)."""
    runs, client = (read_runs(runs_csv), None) if runs_csv else collect(uri, experiment, study)
    if runs.empty:
        raise SystemExit(f"no finished, evaluated training runs tagged study={study} in experiment {experiment!r} "
                         f"of {uri}; run `python -m pipeline.studies.ablations --study {study}` first")
    folder.mkdir(parents=True, exist_ok=True)
    header = made_by(folder / f"{study}.md", study, runs_csv)
    if study == "multidomain":
        text, long = multidomain.markdown(runs)
        if not runs_csv:
            write_text(folder / f"{study}_runs.csv", runs.to_csv(index=False))
        write_text(folder / f"{study}.csv", long.to_csv(index=False))
        write_text(folder / f"{study}.md", f"# StarGAN against CycleGAN per pair of domains\n\n{header}\n\n{text}")
        return aggregate(runs)
    agg = aggregate(runs, cut.QUALITY_COLUMNS if study == "cut" else None)
    if not runs_csv:
        write_text(folder / f"{study}_runs.csv", runs.to_csv(index=False))
    write_text(folder / f"{study}.csv", agg.to_csv(index=False))
    title = {"ablation": "Ablations", "multimodal": "Multimodal translation: realism and diversity",
             "cut": "CycleGAN, CUT and FastCUT under one protocol"}[study]
    text = f"# {title}\n\n{header}\n\n" + markdown(agg, study)
    if study == "ablation":
        text += "\n## Against the paper (Tables 4-5)\n\n" + paper_comparison(agg)
    if study == "cut":
        costs = aggregate(runs, list(cut.COSTS))
        text += ("\n## Costs, measured by each training\n\n" + cut.costs_table(costs)
                 + "\n## Against the paper (Table 1)\n\n" + cut.paper_comparison(agg, costs))
    write_text(folder / f"{study}.md", text)
    if study == "ablation":
        plot_knob(runs, folder)
        if client is not None:
            plot_losses(runs, client, folder)
    return agg


def main(argv: list[str] | None = None) -> None:
    ap = cli.parser(__spec__.name, __doc__)
    ap.add_argument("--study", choices=list(STUDY_COLUMNS), default="ablation")
    ap.add_argument("--runs", type=Path, metavar="CSV",
                    help="make the tables from an earlier report's <study>_runs.csv instead of the MLflow store")
    args = ap.parse_args(argv)
    params = cli.load(__spec__.name, args)
    folder = Path(params.paths.metrics).parent
    s = args.study
    agg = build(tracking_uri(params.mlflow.tracking_uri), params.mlflow.experiment, folder, s, args.runs)
    if s == "multidomain":
        print((folder / f"{s}.md").read_text())
    else:
        print(terminal_table(agg) + "\n\nmean ± standard deviation over n seeds [95% interval of the mean]\n")
    plots = ", ablation_*.png" if s == "ablation" else ""
    print(f"{len(agg)} configurations -> {folder}/{s}.md, {s}.csv, {s}_runs.csv{plots}")


if __name__ == "__main__":
    main()
