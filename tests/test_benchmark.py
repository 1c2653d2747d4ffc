"""The benchmark command on a tiny configuration: every figure present, ratios and parity computed
against baselines measured in the same run (the figures themselves are not asserted: not a timed test)."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.metrics.registry import METRICS
from pipeline.studies import benchmark, benchmark_tables, throughput


# every path in fresh processes over two rounds (about 2.5 min); the threads, evaluate, FLOP and peak parts are tested below
@pytest.mark.slow
def test_benchmark_writes_figures_ratios_and_parity(tmp_path, params_dict):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_dict))  # nothing translated there yet
    benchmark.main(["--params", str(tmp_path / "params.yaml"), "--configs", "tiny", "--paths", "fused_adam",
                    "channels_last", "--steps", "3", "--repeats", "2", "--warmup", "1", "--rounds", "2", "--pairs", "3",
                    "--device", "cpu", "--loader-images", "6", "--threads", "1", "2", "--out", str(tmp_path)])
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
    # the step's arithmetic rate beside the fp32 matmul peak of the same process
    assert rows["baseline"]["flops_per_step"] == rows["fp32"]["flops_per_step"] > 0  # the same computation
    for r in rows.values():
        # in GFLOP/s, a tiny step runs at a small fraction of the fp32 matmul peak measured beside it, never above
        # it: a unit slip (FLOP vs GFLOP, per image vs per step) lands far outside
        assert r["matmul_peak_gflops"] > 1 and 0.0005 < r["fraction_of_peak"] < 1.2, r
        assert r["gflops"] < 1.2 * r["matmul_peak_gflops"]
    assert [(r["config"], r["threads"]) for r in report["threads"]] == [("tiny", 1), ("tiny", 2)]
    assert all(r["gflops"] > 0 and len(r["round_medians"]) == 2 for r in report["threads"])
    assert report["translate"][0]["images_per_s"] > 0
    paired = report["paired"][0]
    assert paired["pairs"] == 3 and paired["speedup_iqr"][0] <= paired["speedup_median"] <= paired["speedup_iqr"][1]
    loader = report["loader"][0]
    assert (loader["config"], loader["n"], loader["load_size"], loader["crop"]) == ("tiny", 6, 36, 32)
    assert set(loader["images_per_s"]) == {"workers_0", "workers_2"} and min(loader["images_per_s"].values()) > 0
    md = (tmp_path / "cpu-tiny.md").read_text()
    assert "| tiny | fused_adam |" in md and "x baseline" in md and "| of peak |" in md
    assert "| tiny | 1 |" in md and "| tiny | 2 |" in md
    assert "training data loader (tiny: 6 PNG pairs at 36px, crop 32)" in md and "fastest training path" in md
    assert report["evaluate"]["unavailable"].endswith("run `dvc repro` first") and "| evaluate stage | unavailable" in md


@pytest.mark.long
def test_the_evaluate_timing_runs_every_metric_and_writes_nothing(chain):
    p, _ = chain("classifier")
    ev = throughput.measure_evaluate(p, torch.device("cpu"))
    assert list(ev["seconds"]) == ["load images", *METRICS] and ev["errors"] == {}
    assert ev["routes"] == ["AtoB", "AtoBtoA", "BtoA", "BtoAtoB"]  # translations and reconstructions
    assert ev["n_translations"] == 4 * 4 and ev["size"] == 32 and ev["images_per_s"] > 0  # 4 test images each
    assert not Path(p.paths.metrics).exists() and not Path(p.paths.eval_reports).exists()
    md = benchmark_tables.evaluate_markdown({"device": "cpu", "torch": "x", "date": "d", "command": "c", "evaluate": ev})
    assert f"| fid_kid | {ev['seconds']['fid_kid']:.1f} |" in md and f"| all | {sum(ev['seconds'].values()):.1f} |" in md
    assert f"bootstrap resamples: {p.evaluate.bootstrap}" in md


@pytest.mark.long
def test_threads_only_measures_one_process_per_core_against_one_process_on_all(tmp_path, params_dict, monkeypatch):
    """The machine's limit for a sweep: N single-thread processes side by side against one process on N
    threads; every process's rate enters the total."""
    monkeypatch.setattr(benchmark, "cpu_cores", lambda: 2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_dict))
    benchmark.main(["--params", str(tmp_path / "params.yaml"), "--configs", "tiny", "--threads-only", "--threads", "1",
                    "--steps", "2", "--repeats", "1", "--warmup", "1", "--rounds", "1", "--device", "cpu",
                    "--out", str(tmp_path)])
    report = json.loads((tmp_path / "cpu-tiny-threads.json").read_text())
    one, two = report["concurrency"]
    assert (one["processes"], one["threads"], two["processes"], two["threads"]) == (1, 2, 2, 1)
    assert one["x_vs_first"] == 1.0 and two["x_vs_first"] == two["images_per_s"] / one["images_per_s"]
    assert two["round_totals"] == [two["images_per_s"]] and two["images_per_s"] > 0
    assert "| tiny | 2 x 1 |" in (tmp_path / "cpu-tiny-threads.md").read_text()


def test_the_flop_count_is_the_convolutions_forward_and_backward():
    """Checked by hand from the layer's shape: a 3x3 conv, 4 -> 8 channels, on 1x4x10x10 ('same'
    padding) does 8*4*9*10*10 multiply-adds forward = 2x that in FLOPs; backward computes the
    gradients of input and weight, twice the forward."""
    conv = torch.nn.Conv2d(4, 8, 3, padding=1, bias=False)
    x = torch.randn(1, 4, 10, 10, requires_grad=True)
    forward = 2 * 8 * 4 * 9 * 10 * 10
    assert throughput.step_flops(lambda b: conv(b).sum().backward(), x) == 3 * forward
    with torch.no_grad():
        assert throughput.step_flops(conv, x) == forward


def test_every_route_of_the_peak_computes_the_matrix_product():
    torch.manual_seed(0)
    a, b = torch.randn(48, 48, dtype=torch.float64), torch.randn(48, 48, dtype=torch.float64)
    routes = throughput.product_routes(a.float(), b.float())
    assert set(routes) == {"matmul", "1x1 convolution"}
    for name, fn in routes.items():
        assert torch.allclose(fn().double(), a @ b, atol=1e-4), name


def test_the_peak_is_the_faster_route_on_this_process_threads():
    peak = throughput.matmul_peak(torch.device("cpu"), repeats=2, n=64)
    assert peak["n"] == 64 and peak["threads"] == torch.get_num_threads()
    assert peak["gflops"] == max(peak["routes"].values()) and len(peak["routes"]) == 2


def test_the_stage_benchmark_copies_the_working_tree_and_not_what_git_ignores(tmp_path):
    from pipeline.studies import stage_speed

    root = tmp_path / "repo"
    root.mkdir()
    (root / ".gitignore").write_text("data/\n")
    (root / "kept.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    (root / "new.yaml").write_text("untracked: 1\n")  # untracked, not ignored: part of the working tree
    (root / "data").mkdir()
    (root / "data" / "big.pt").write_text("an output")
    copy = stage_speed.fresh_copy(root, tmp_path / "copy")
    assert sorted(p.name for p in copy.iterdir() if p.name != ".git") == [".gitignore", "kept.py", "new.yaml"]
    assert subprocess.run(["git", "status", "--porcelain"], cwd=copy, capture_output=True, text=True).stdout == ""


def test_the_stage_table_gives_each_stage_and_workflow_its_floor_and_the_peers_ratios(tmp_path):
    from pipeline.studies import stage_speed

    timed = {s: {"seconds": 10.0} for s in stage_speed.STAGES}
    flops = {s: None if s in ("download", "prepare", "record") else 500e9 for s in stage_speed.STAGES}
    rows = stage_speed.stage_rows(timed, flops, peak=100.0)
    assert rows[0] == {"stage": "download", "seconds": 10.0, "gflop": None, "floor_s": None, "wall_over_floor": None}
    # 500 GFLOP at 100 GFLOP/s: 5 s, done in 10 s
    assert rows[2] == {"stage": "train", "seconds": 10.0, "gflop": 500.0, "floor_s": 5.0, "wall_over_floor": 2.0}
    dvc_said = "Running stage 'train':\n> python -m x\nRunning stage 'evaluate':\nRunning stage 'record':\n"
    ran = stage_speed.RAN.findall(dvc_said)
    flows = stage_speed.workflow_rows({"experiment": {"command": "dvc exp run", "seconds": 40.0, "stages": ran}},
                                      flops, peak=100.0)
    assert flows[0]["stages"] == ["train", "evaluate", "record"]  # record has no floor: the sum of the others'
    assert (flows[0]["gflop"], flows[0]["floor_s"], flows[0]["wall_over_floor"]) == (1000.0, 10.0, 4.0)
    peers = {"ours": {"seconds": [4.0, 6.0], "median": 5.0, "values": {"fid": 1.0, "kid": 0.01,
                                                                        "fid_interval": [0.9, 1.1],
                                                                        "kid_interval": [0.0, 0.02],
                                                                        "protocol": "P"}},
             "torch-fidelity": {"seconds": [10.0, 10.0], "median": 10.0, "values": {"fid": 1.0, "kid": 0.01}},
             "clean-fid": {"seconds": [20.0, 20.0], "median": 20.0, "values": {"fid": 1.1}},
             "n": {"translations": 5, "real": 5}}
    peaks = [{"gflops": 90.0, "routes": {"matmul": 40.0, "1x1 convolution": 90.0}},
             {"gflops": 100.0, "routes": {"matmul": 45.0, "1x1 convolution": 100.0}}]
    md = stage_speed.markdown({"device": "cpu", "torch": "x", "command": "c", "peaks": peaks, "peak_gflops": 100.0,
                               "workflows": flows, "stages": rows, "peers": peers})
    assert "| train | 10.0 | 500 | 5.0 | 2.00 |" in md and "| download | 10.0 | - | - | - |" in md
    assert "| experiment | `dvc exp run` | train, evaluate, record | 40.0 | 1000 | 10.0 | 4.00 |" in md
    assert "(matmul 40, 45; 1x1 convolution 90, 100)" in md
    assert "| ours | 5.0 (4.0, 6.0) | 0.50 | 1.000 [0.900, 1.100] | 0.01000 [0.00000, 0.02000] |" in md
    assert "| clean-fid | 20.0 (20.0, 20.0) | 2.00 | 1.100 | - |" in md
    assert "Protocol: P." in md  # the network, weights, resolution, counts and bootstrap of the peers' numbers


def test_the_translate_stages_generator_passes_count_a_cycles_two(tmp_path):
    from pipeline.artifacts import translations
    from pipeline.studies import stage_speed

    translations.write_info(tmp_path, {"counts": {"AtoB": 5, "AtoBtoA": 5},
                                       "routes": {"AtoB": {"generators": ["G_A"]}, "AtoBtoA": {"generators": ["G_A", "G_B"]}}})
    assert stage_speed.generator_passes(tmp_path) == 15


def test_the_timed_workflows_are_the_readmes_commands():
    from pipeline.studies import stage_speed
    from pipeline.tools.docs import REPO, marked_commands

    flows = stage_speed.readme_workflows()
    assert flows["experiment"] in marked_commands(REPO / "README.md", "runnable")
    assert marked_commands(REPO / "README.md", "runnable: setup")[0].endswith(" && " + flows["main job"])
