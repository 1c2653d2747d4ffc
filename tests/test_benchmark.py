"""The benchmark command on a tiny configuration: every figure present, ratios and parity computed
against baselines measured in the same run (the figures themselves are not asserted: not a timed test)."""

import json
from pathlib import Path

import torch
import yaml

from pipeline.metrics.registry import METRICS
from pipeline.studies import benchmark, throughput


def test_benchmark_writes_figures_ratios_and_parity(tmp_path, params_dict):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_dict))  # nothing translated there yet
    benchmark.main(["--params", str(tmp_path / "params.yaml"), "--configs", "tiny", "--paths", "fused_adam",
                    "channels_last", "--steps", "3", "--repeats", "2", "--warmup", "1", "--rounds", "2", "--pairs", "3",
                    "--device", "cpu", "--loader-images", "6", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "cpu-tiny.json").read_text())
    rows = {r["path"]: r for r in report["training"]}
    assert list(rows) == ["baseline", "fp32", "fused_adam", "channels_last"]  # baselines always measured
    for r in rows.values():
        # 2 rounds x 2 repeats, the trajectory from the first round only
        assert r["images_per_s"] > 0 and len(r["repeats"]) == 4 and len(r["round_medians"]) == 2
        assert r["peak_memory_bytes"] > 0 and len(r["loss_G"]) == 3
        lo, hi = r["speedup_range"]
        assert lo <= hi and lo > 0
    assert rows["baseline"]["speedup_vs_baseline"] == 1.0 and rows["baseline"]["speedup_range"] == [1.0, 1.0]
    assert rows["fp32"]["loss_rel_dev_max"] == 0.0 and rows["fp32"]["parity"]  # the same computation
    # the authors' step and ours compute the same losses from the same start
    assert abs(rows["baseline"]["loss_G"][0] - rows["fp32"]["loss_G"][0]) < 1e-4 * rows["fp32"]["loss_G"][0]
    assert rows["fused_adam"]["parity"] and rows["channels_last"]["loss_rel_dev_first"] < 1e-4
    assert report["translate"][0]["images_per_s"] > 0
    paired = report["paired"][0]
    assert paired["pairs"] == 3 and paired["speedup_iqr"][0] <= paired["speedup_median"] <= paired["speedup_iqr"][1]
    loader = report["loader"][0]
    assert (loader["config"], loader["n"], loader["load_size"], loader["crop"]) == ("tiny", 6, 36, 32)
    assert set(loader["images_per_s"]) == {"workers_0", "workers_2"} and min(loader["images_per_s"].values()) > 0
    md = (tmp_path / "cpu-tiny.md").read_text()
    assert "| tiny | fused_adam |" in md and "x baseline" in md
    assert "training data loader (tiny: 6 PNG pairs at 36px, crop 32)" in md and "fastest training path" in md
    assert report["evaluate"]["unavailable"].endswith("run `dvc repro` first") and "| evaluate stage | unavailable" in md


def test_the_evaluate_timing_runs_every_metric_and_writes_nothing(chain):
    p, _ = chain("evaluator")
    ev = throughput.measure_evaluate(p, torch.device("cpu"))
    assert list(ev["seconds"]) == ["load images", *METRICS] and ev["errors"] == {}
    assert ev["routes"] == ["AtoB", "AtoBtoA", "BtoA", "BtoAtoB"]  # translations and reconstructions
    assert ev["n_translations"] == 4 * 4 and ev["size"] == 32 and ev["images_per_s"] > 0  # 4 test images each
    assert not Path(p.paths.metrics).exists() and not Path(p.paths.eval_reports).exists()
