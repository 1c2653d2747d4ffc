"""The cut study's tables (Park et al. 2020, Table 1): CycleGAN, CUT and FastCUT trained on the same data
for the same steps, their scores beside their costs, and the CUT paper's published numbers beside ours.
Pure functions of the runs and aggregates that report.py makes.

CUT translates one way, A -> B (labels -> photo on the embedded world); its B -> A columns are empty. The
costs are measured by the training itself (pipeline/stages/train.py `costs`): parameter counts, wall-clock
seconds per step, checkpoints and sample grids included, and the process's peak memory, whose kind
(runtime.PEAK_KINDS) is in its key.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipeline.domains import AtoB, BtoA
from pipeline.metrics.keys import MetricKey
from pipeline.runtime import PEAK_KINDS

# The quality columns, in the table's order: CUT's FID protocol (pytorch-fid's resize, clean-fid's
# legacy_pytorch) first, torch-fidelity's beside it, then content (FCN-score of the labels -> photo
# translations, LPIPS to the paired ground truth) and CycleGAN's other direction.
QUALITY: list[MetricKey] = [
    MetricKey("fid_legacy_pytorch", AtoB), MetricKey("kid_legacy_pytorch", AtoB),
    MetricKey("fid", AtoB), MetricKey("kid", AtoB),
    MetricKey("fcn", AtoB, "class_iou"), MetricKey("fcn", AtoB, "pixel_acc"), MetricKey("fcn", AtoB, "class_acc"),
    MetricKey("lpips", AtoB, "truth"),
    MetricKey("fid_legacy_pytorch", BtoA), MetricKey("fcn", BtoA, "class_iou"),
]
QUALITY_COLUMNS = [str(k) for k in QUALITY]
# The costs (MLflow metrics of the training run) -> (column title, decimals).
COSTS: dict[str, tuple[str, int]] = {
    "model/generator_parameters": ("generator parameters", 0),
    "model/parameters": ("parameters, all networks", 0),
    "train/seconds_per_step": ("seconds per step", 3),
    **{f"train/peak_{kind}_mb": (f"peak memory, MiB ({what})", 0) for kind, what in PEAK_KINDS.items()},
}
LABELS = {"cyclegan": "CycleGAN", "cut": "CUT", "fastcut": "FastCUT"}  # our configurations -> the paper's rows

# Park et al. 2020 (arXiv 2007.15651), Table 1: Cityscapes labels -> photo (DRN segmentation of the outputs:
# mAP, pixel accuracy, class accuracy; FID), Horse -> Zebra FID, training seconds per iteration and GPU
# memory (GB). FID with pytorch-fid; users of the authors' code find these at the best epoch (their tracker's issue #65).
# Each value names the second copy that confirms it (a SOURCES key), or None: transcribed from Table 1 of
# arXiv 2007.15651v3 with no second copy found (the authors' repository and every version of the clean-fid
# README hold none), unverified, and the tables mark it with UNVERIFIED.
SOURCES = {
    "clean-fid": "the clean-fid README's Horse2Zebra leaderboard (GaParmar/clean-fid), which lists the FIDs that "
                 "Park et al. report",
}
UNVERIFIED = "†"


@dataclass(frozen=True)
class PaperValue:
    """One number of the paper's table and the second copy that confirms it (a SOURCES key; None: unverified)."""
    value: float
    source: str | None = None

    @property
    def mark(self) -> str:
        return "" if self.source else UNVERIFIED


_V, _CF = PaperValue, "clean-fid"
PAPER: dict[str, dict[str, PaperValue]] = {
    "CycleGAN": {"mAP": _V(20.4), "pixAcc": _V(55.9), "classAcc": _V(25.4), "FID": _V(76.3), "h2z FID": _V(77.2, _CF),
                 "sec/iter": _V(0.40), "Mem GB": _V(4.81)},
    "CUT": {"mAP": _V(24.7), "pixAcc": _V(68.8), "classAcc": _V(30.7), "FID": _V(56.4), "h2z FID": _V(45.5, _CF),
            "sec/iter": _V(0.24), "Mem GB": _V(3.33)},
    "FastCUT": {"mAP": _V(19.1), "pixAcc": _V(59.9), "classAcc": _V(24.3), "FID": _V(68.8), "h2z FID": _V(73.4, _CF),
                "sec/iter": _V(0.15), "Mem GB": _V(2.25)},
}


def cost_cell(r: pd.Series, column: str, digits: int) -> str:
    mean, std = r.get(f"{column}_mean"), r.get(f"{column}_std")
    if mean is None or pd.isna(mean):
        return "-"
    return f"{mean:,.{digits}f}" + (f" ± {std:,.{digits}f}" if digits and std else "")


def costs_table(agg: pd.DataFrame) -> str:
    """One row per configuration: its costs, mean ± standard deviation over seeds where they vary."""
    columns = [(c, title, d) for c, (title, d) in COSTS.items() if f"{c}_mean" in agg and agg[f"{c}_mean"].notna().any()]
    lines = ["| config | n | " + " | ".join(t for _, t, _ in columns) + " |", "|" + "---|" * (len(columns) + 2)]
    for _, r in agg.iterrows():
        lines.append(f"| {r['config']} | {r['n']} | " + " | ".join(cost_cell(r, c, d) for c, _, d in columns) + " |")
    return "\n".join(lines) + "\n"


def ranks(values: dict[str, float], lower_better: bool) -> dict[str, int]:
    """1 = best; ties share the better rank."""
    s = pd.Series(values).dropna()
    return s.rank(ascending=lower_better, method="min").astype(int).to_dict()


# What paper_comparison sets side by side: (title, our aggregate's column, lower is better, the paper's column).
COMPARED = [("FID", "fid_legacy_pytorch_AtoB_mean", True, "FID"),
            ("class IoU (paper: mAP)", "fcn_AtoB_class_iou_mean", False, "mAP"),
            ("pixel acc. (paper: pixAcc)", "fcn_AtoB_pixel_acc_mean", False, "pixAcc"),
            ("s/step", "train/seconds_per_step_mean", True, "sec/iter")]


def paper_comparison(quality: pd.DataFrame, costs: pd.DataFrame) -> str:
    """Ours beside the paper's Table 1 for the three models, with each column's ordering: the paper's scale
    (Cityscapes at 256px, DRN segmentation, a GPU) does not compare with the embedded world's; the order does."""
    means = [c for c in costs.columns if c.endswith("_mean")]
    both = quality.set_index("config").join(costs.set_index("config")[means])
    have = [k for k in LABELS if k in both.index]
    header = ["model"] + [f"{title}: ours / paper (rank ours / paper)" for title, *_ in COMPARED]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = {k: [LABELS[k]] for k in have}
    for _, column, lower, paper_key in COMPARED:
        ours = {k: both.at[k, column] for k in have if column in both}
        paper = {k: PAPER[LABELS[k]][paper_key] for k in have}
        mine, theirs = ranks(ours, lower), ranks({k: v.value for k, v in paper.items()}, lower)
        for k in have:
            value = ours.get(k)
            shown = "-" if value is None or pd.isna(value) else f"{value:.3f}"
            p = paper[k]
            rows[k].append(f"{shown} / {p.value} ({mine.get(k, '-')} / {theirs[k]}){p.mark}")
    lines += ["| " + " | ".join(cells) + " |" for cells in rows.values()]
    return "\n".join(lines) + (
        "\n\nOurs: the embedded labels -> photo world at 64px, FID under pytorch-fid's resize (legacy_pytorch) on 500 "
        "test images, class IoU and pixel accuracy of fcn8s-mini, seconds per step on this study's machine; means over "
        "seeds. The paper's: Cityscapes labels -> photo at 256px (500 val images, DRN segmentation: mAP, pixAcc), "
        "one run each, seconds per iteration on a GPU. Rank 1 = best; only the orderings compare.\n"
        + sources_note([PAPER[LABELS[k]][key] for k in have for *_, key in COMPARED]))


def sources_note(shown: list[PaperValue]) -> str:
    """The footnote on the paper's values in a table: the mark of the unverified ones, the sources of the others."""
    note = []
    if any(not v.source for v in shown):
        note.append(f"{UNVERIFIED} after a cell: the paper's value in it is transcribed from Table 1 of arXiv 2007.15651v3 "
                    "and no second copy of it was found: unverified.")
    for source in sorted({v.source for v in shown if v.source}):
        note.append(f"The paper's values without {UNVERIFIED} match {SOURCES[source]}.")
    return "\n" + " ".join(note) + "\n" if note else ""
