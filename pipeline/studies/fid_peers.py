"""Our FID and KID beside torch-fidelity's and clean-fid's on the same work (not a test), for the stage
benchmark (pipeline/studies/stage_speed.py): one direction's translations (AtoB) against the real test images of
its target, both folders of a run's outputs, the features of both computed in each call (no cache):
ours (features, FID, KID and the bootstrap intervals the evaluate stage computes); torch-fidelity's
calculate_metrics(fid=True, kid=True); clean-fid's compute_fid (mode clean, its own loader, resizer and batching)
with the same network, which clean-fid would otherwise download. Median seconds over the repeats, in turn, and
their ratios."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from pipeline.config import load_params

PNG = "*.png"


def count(folder: Path) -> int:
    return len(list(folder.glob(PNG)))



def ours(fake_dir: Path, real_dir: Path, params) -> dict:
    """The evaluate stage's FID, KID and their bootstrap intervals (tf protocol), the features of both sets
    computed here."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    from pipeline.data.datasets import list_images, load_uint8
    from pipeline.metrics import inception
    from pipeline.metrics.evaluation import Bootstrap
    from pipeline.metrics.fidelity import kid_subset, resamplables

    e = params.evaluate
    features, source = inception.protocol_extractor("tf", e.inception_weights, torch.device("cpu"))
    fake, real = (features(load_uint8(list_images(d)), e.batch_size) for d in (fake_dir, real_dir))
    fid = fid_statistics_to_metric(fid_features_to_statistics(fake), fid_features_to_statistics(real), False)
    kid = kid_features_to_metric(fake, real, kid_subset_size=kid_subset(len(fake), len(real)),
                                 kid_subsets=e.kid_subsets, verbose=False, rng_seed=2020)
    boot = Bootstrap.of(params)
    fid_stat, kid_stat = resamplables(fake.double().numpy(), real.double().numpy())
    protocol = (f"{inception.EXTRACTOR} (TF Inception 2015-12-05, pool3; weights: {source}), {fake.shape[0]} + "
                f"{real.shape[0]} images at {params.prepare.load_size} px resized to 299 (ours and torch-fidelity: "
                f"torch-fidelity's TF1 bilinear; clean-fid: its clean resize); KID subsets of "
                f"{kid_subset(len(fake), len(real))} x {e.kid_subsets}; intervals: {boot.n} resamples, seed {boot.seed}")
    return {"fid": fid["frechet_inception_distance"], "kid": kid["kernel_inception_distance_mean"],
            "fid_interval": boot.resample(fid_stat)[0], "kid_interval": boot.resample(kid_stat)[0],
            "protocol": protocol}


def torch_fidelity(fake_dir: Path, real_dir: Path, params) -> dict:
    import torch_fidelity as tf

    from pipeline.metrics import inception
    from pipeline.metrics.fidelity import kid_subset

    n = min(count(fake_dir), count(real_dir))
    got = tf.calculate_metrics(input1=str(fake_dir), input2=str(real_dir), fid=True, kid=True, cuda=False, cache=False,
                               verbose=False, kid_subset_size=kid_subset(n, n),
                               feature_extractor_weights_path=str(inception.resolve_weights(params.evaluate.inception_weights).path))
    return {"fid": got["frechet_inception_distance"], "kid": got["kernel_inception_distance_mean"]}


def clean_fid(fake_dir: Path, real_dir: Path, params) -> dict:
    from cleanfid import fid as cleanfid

    from pipeline.metrics import inception

    path = inception.find_fid_helper_torchscript(inception.cache_dir())
    layers = torch.jit.load(str(path)).eval().net.layers  # clean-fid's network, as it loads it

    def network(x):  # clean-fid's InceptionV3W.forward with its resize done by clean-fid's loader
        return layers((x - 128) / 128).reshape(-1, 2048)

    value = cleanfid.compute_fid(str(fake_dir), str(real_dir), mode="clean", num_workers=0, batch_size=32,
                                 device=torch.device("cpu"), custom_feat_extractor=network, verbose=False,
                                 use_dataparallel=False)
    return {"fid": float(value)}


PEERS = {"ours: features + FID + KID + 95% intervals": ours,
         "torch-fidelity calculate_metrics(fid, kid)": torch_fidelity,
         "clean-fid compute_fid (clean)": clean_fid}


def measure(copy: Path, repeats: int) -> dict[str, dict]:
    """{peer: {seconds (each repeat), median, values}}: the peers in turn, `repeats` times."""
    params = load_params(str(copy / "params.yaml"))
    fake_dir, real_dir = copy / params.paths.translated / "AtoB", copy / params.paths.prepared / "testB"
    out: dict[str, dict] = {name: {"seconds": []} for name in PEERS}
    for _ in range(repeats):
        for name, fn in PEERS.items():
            t0 = time.perf_counter()
            out[name]["values"] = fn(fake_dir, real_dir, params)
            out[name]["seconds"].append(time.perf_counter() - t0)
            print(f"{name}: {out[name]['seconds'][-1]:.1f} s", flush=True)
    for v in out.values():
        v["median"] = statistics.median(v["seconds"])
    out["n"] = {"translations": count(fake_dir), "real": count(real_dir)}
    return out


def markdown(peers: dict) -> list[str]:
    n, names = peers["n"], [k for k in peers if k != "n"]
    protocol = peers[names[0]]["values"].get("protocol")
    base = peers[names[1]]["median"]
    lines = ["", f"Peers on the same work: AtoB's {n['translations']} translations against the {n['real']} real "
                 f"test images of B, the features of both computed in each call; median seconds over "
                 f"{len(peers[names[0]]['seconds'])} repeats; x = against torch-fidelity's FID + KID.", "",
             *([f"Protocol: {protocol}.", ""] if protocol else []),
             "| what | seconds (repeats) | x torch-fidelity | FID | KID |", "|---|---|---|---|---|"]
    for name in names:
        v = peers[name]["values"]
        fid = f"{v['fid']:.3f}" + (f" [{v['fid_interval'][0]:.3f}, {v['fid_interval'][1]:.3f}]" if "fid_interval" in v else "")
        kid = "-" if "kid" not in v else f"{v['kid']:.5f}" + (
            f" [{v['kid_interval'][0]:.5f}, {v['kid_interval'][1]:.5f}]" if "kid_interval" in v else "")
        secs = ", ".join(f"{s:.1f}" for s in peers[name]["seconds"])
        lines.append(f"| {name} | {peers[name]['median']:.1f} ({secs}) | {peers[name]['median'] / base:.2f} | {fid} | {kid} |")
    return lines
