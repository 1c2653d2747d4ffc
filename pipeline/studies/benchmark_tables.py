"""The benchmark's rows, summarised and written as markdown: rounds merged, speedups against the authors'
step, loss parity, GFLOP/s against the measured peak, and one table per measurement under the sentence
that says how it was measured (pipeline/studies/benchmark.py measures; this module only reads its rows)."""

from __future__ import annotations

import statistics


def merge_rounds(rounds: list[dict]) -> dict:
    """One row from the rounds of a (config, path): the median over every timed repeat of every round,
    each round's median (to pair with the baseline's of the same round), the largest memory peak and
    the loss trajectory of the first round."""
    failed = [r for r in rounds if "error" in r]
    if failed:
        return failed[0]
    row = {**rounds[0], "repeats": [x for r in rounds for x in r["repeats"]],
           "round_medians": [r["images_per_s"] for r in rounds],
           "peak_memory_bytes": max(r["peak_memory_bytes"] for r in rounds),
           "matmul_peak_gflops": statistics.median(r["matmul_peak_gflops"] for r in rounds)}
    row["images_per_s"] = statistics.median(row["repeats"])
    return row


def add_flop_rate(rows: list[dict]) -> list[dict]:
    """GFLOP/s of each row's step (counted FLOPs x steps/s; a compiled path takes fp32's count, the same
    computation) and its fraction of the fp32 peak (throughput.matmul_peak) measured in the same processes."""
    counted = {r["config"]: r["flops_per_step"] for r in rows if r.get("flops_per_step") and r["path"] == "fp32"}
    for r in rows:
        flops = r.get("flops_per_step") or counted.get(r["config"])
        if "error" in r or not flops:
            continue
        r["gflop_per_step"] = flops / 1e9
        r["gflops"] = r["images_per_s"] / r["batch"] * flops / 1e9
        r["fraction_of_peak"] = r["gflops"] / r["matmul_peak_gflops"]
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Speedup against the authors' step and loss parity against plain fp32, per configuration. The
    speedup is the ratio of medians; its range is that of the per-round ratios (a path and the baseline
    measured minutes apart in the same round), which shows how much the machine drifted."""
    by = {(r["config"], r["path"]): r for r in rows}
    for r in rows:
        if "error" in r:
            continue
        base, ref = by.get((r["config"], "baseline")), by.get((r["config"], "fp32"))
        if base and "error" not in base:
            r["speedup_vs_baseline"] = r["images_per_s"] / base["images_per_s"]
            per_round = [x / y for x, y in zip(r["round_medians"], base["round_medians"], strict=True)]
            r["speedup_range"] = [min(per_round), max(per_round)]
        if ref and "error" not in ref and r["path"] != "baseline":
            devs = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(r["loss_G"], ref["loss_G"], strict=True)]
            r["loss_rel_dev_first"], r["loss_rel_dev_max"] = devs[0], max(devs)
            r["parity"] = devs[0] <= r["tolerance"][0] and max(devs) <= r["tolerance"][1]
    return add_flop_rate(rows)



def concurrency_table(rows: list[dict]) -> list[str]:
    def cells(r: dict) -> list[str]:
        lo, hi = min(r["round_totals"]), max(r["round_totals"])
        return [r["config"], f"{r['processes']} x {r['threads']}", f"{r['images_per_s']:.3g} ({lo:.3g}-{hi:.3g})",
                f"{r.get('x_vs_first', float('nan')):.2f}", f"{r['matmul_peak_gflops']:.0f}"]
    return table("Concurrency: N processes of the fp32 step started together, each on T threads; total images/s "
                 "(median over rounds, range) and the sum of their fp32 peaks measured side by side. x = against "
                 "the first layout (one process on every core): the most a sweep of N workers can gain.",
                 ["config", "processes x threads", "total images/s (range over rounds)", "x", "total peak GFLOP/s"],
                 rows, cells)


def flop_cells(r: dict) -> str:
    if "gflops" not in r:
        return "- | - | -"
    return f"{r['gflops']:.1f} | {r['matmul_peak_gflops']:.0f} | {r['fraction_of_peak']:.0%}"


def table(intro: str, columns: list[str], rows: list[dict], cells) -> list[str]:
    """A markdown table of measured rows under its explanation; a failed row says why."""
    lines = [intro, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out = [r["config"], "-", f"failed: {r['error']}", *[""] * (len(columns) - 3)] if "error" in r else cells(r)
        lines.append("| " + " | ".join(out) + " |")
    return lines


def threads_table(rows: list[dict]) -> list[str]:
    def cells(r: dict) -> list[str]:
        lo, hi = min(r["round_medians"]), max(r["round_medians"])
        return [r["config"], str(r["threads"]), f"{r['images_per_s']:.3g} ({lo:.3g}-{hi:.3g})",
                f"{r.get('gflop_per_step', 0):.2f}", flop_cells(r)]
    return table("Threads: the fp32 step on each number of torch threads (intra- and inter-op), fresh processes; "
                 "GFLOP/s from the counted FLOPs (torch.utils.flop_counter), peak = an fp32 product by its faster route "
                 "(torch.matmul or a 1x1 convolution: throughput.matmul_peak) "
                 "in the same process on the same threads.",
                 ["config", "threads", "images/s (range over rounds)", "GFLOP per step", "GFLOP/s", "peak GFLOP/s",
                  "of peak"], rows, cells)


def threads_markdown(report: dict) -> str:
    concurrency = ["", *concurrency_table(report["concurrency"])] if report.get("concurrency") else []
    return "\n".join([f"# Benchmark, threads: {report['device']}", "",
                      f"torch {report['torch']}, {report['date']}; images/s = median over {report['rounds']} rounds x "
                      f"{report['repeats']} timed repeats of {report['steps']} steps after {report['warmup']} warm-up "
                      f"steps. Command: `{report['command']}`.", "", *threads_table(report["threads"]),
                      *concurrency]) + "\n"


def evaluate_markdown(report: dict) -> str:
    ev = report["evaluate"]
    head = [f"# Benchmark, evaluate stage: {report['device']}", "",
            f"torch {report['torch']}, {report['date']}. Command: `{report['command']}`. Each metric of "
            "pipeline/metrics/registry.py timed once on the translations `dvc repro` left in the workspace (the "
            "stage's work, with its bootstrap intervals; nothing written).", ""]
    if "unavailable" in ev:
        return "\n".join([*head, f"unavailable: {ev['unavailable']}"]) + "\n"
    rows = [f"| {k} | {v:.1f}" + (" (failed)" if k in ev["errors"] else "") + " |" for k, v in ev["seconds"].items()]
    return "\n".join([*head, f"{ev['n_translations']} translations ({', '.join(ev['routes'])}) of the `{ev['dataset']}` "
                       f"test set at {ev['size']}px; FID/KID protocols: {ev['fid_protocols']}; bootstrap resamples: "
                       f"{ev['bootstrap']}.", "", "| metric | seconds |", "|---|---|", *rows,
                       f"| all | {sum(ev['seconds'].values()):.1f} |"]) + "\n"


def markdown(report: dict) -> str:
    lines = [f"# Benchmark: {report['device']}", "",
             f"torch {report['torch']}, {report['date']}; images/s = median over {report['rounds']} rounds (a fresh "
             f"process per path and round, paths interleaved) x {report['repeats']} timed repeats of {report['steps']} "
             f"steps after {report['warmup']} warm-up steps. Baseline = the authors' step (fp32, no fusion); "
             "x baseline = ratio of medians (range of the per-round ratios).", "",
             "GFLOP/s = FLOPs of one step counted by torch.utils.flop_counter (convolutions and matrix products, "
             "forward and backward; elementwise work uncounted) x steps/s; peak = an fp32 product by its faster route "
             "(torch.matmul or a 1x1 convolution: throughput.matmul_peak) "
             "in the same process on the same threads; % = the step's share of that peak.", "",
             "| config | path | images/s | x baseline (range) | peak memory (MiB) "
             "| G loss vs fp32: rel. dev. first step / max over steps (tolerances) | GFLOP/s | peak GFLOP/s | of peak |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["training"]:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['path']} | failed: {r['error']} | | | | | | |")
            continue
        parity = (f"{r['loss_rel_dev_first']:.1e} / {r['loss_rel_dev_max']:.1e} ({r['tolerance'][0]:.0e} / "
                  f"{r['tolerance'][1]:.0e}) {'ok' if r['parity'] else 'EXCEEDED'}" if "parity" in r else "-")
        ratio = (f"{r['speedup_vs_baseline']:.2f} ({r['speedup_range'][0]:.2f}-{r['speedup_range'][1]:.2f})"
                 if "speedup_vs_baseline" in r else "-")
        lines.append(f"| {r['config']} | {r['path']} | {r['images_per_s']:.3g} | {ratio} | "
                     f"{r['peak_memory_bytes'] / 2**20:.0f} ({r['peak_memory_kind']}) | {parity} | {flop_cells(r)} |")
    for pr in report.get("paired", []):
        lines.append(f"| {pr['config']} | ours vs authors' step, {pr['pairs']} alternating pairs in one process | "
                     f"{pr['ours_images_per_s']:.3g} vs {pr['authors_images_per_s']:.3g} | {pr['speedup_median']:.3f} "
                     f"(IQR {pr['speedup_iqr'][0]:.2f}-{pr['speedup_iqr'][1]:.2f}) | | same computation | | | |")
    if report.get("threads"):
        lines += ["", *threads_table(report["threads"])]
    lines += ["", "| stage | figure |", "|---|---|"]
    for t in report["translate"]:
        lines.append(f"| translate ({t['config']}, batch {t['batch_size']}) | {t['images_per_s']:.1f} images/s |")
    inc = report["inception"]
    lines.append(f"| evaluate: Inception features ({inc.get('extractor')}, {inc.get('input_size')}px uint8 input "
                 f"resized to 299, batch {inc.get('batch_size')}) | "
                 + (f"{inc['images_per_s']:.1f} images/s |" if "images_per_s" in inc else f"unavailable: {inc['unavailable']} |"))
    ev = report["evaluate"]
    if "images_per_s" in ev:
        parts = ", ".join(f"{k} {v:.1f} s" + (" (failed)" if k in ev["errors"] else "") for k, v in ev["seconds"].items())
        lines.append(f"| evaluate stage on the workspace's {ev['dataset']} outputs ({ev['n_translations']} images in "
                     f"{', '.join(ev['routes'])} at {ev['size']}px; {parts}) | {ev['images_per_s']:.1f} images/s |")
    else:
        lines.append(f"| evaluate stage | unavailable: {ev['unavailable']} |")
    for ld in report["loader"]:
        fastest = max((r["images_per_s"] for r in report["training"] if r["config"] == ld["config"] and "error" not in r),
                      default=None)
        rates_ = ", ".join(f"{v:.0f} ({k.split('_')[1]} workers)" for k, v in ld["images_per_s"].items())
        lines.append(f"| training data loader ({ld['config']}: {ld['n']} PNG pairs at {ld['load_size']}px, crop "
                     f"{ld['crop']}) | {rates_} images/s"
                     + (f"; the fastest training path above takes {fastest:.3g}" if fastest else "") + " |")
    return "\n".join(lines) + "\n"
