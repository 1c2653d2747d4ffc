"""Where the default pipeline's time goes (not a test): every stage of `dvc repro` timed in a fresh copy,
its counted FLOPs and its fraction of the machine's peak; and our FID and KID with intervals beside
torch-fidelity and clean-fid on the same work.

    python -m pipeline.studies.benchmark --stages    # writes reports/benchmark/stages-cpu.{md,json}
    python -m pipeline.studies.stage_speed --repeats 2 --keep /tmp/run   # the same; keeps the copy

Stages: a copy of the working tree (tracked and untracked files; no DVC cache, no MLflow store, no
outputs) runs `dvc repro --force --single-item <stage>` for each stage of dvc.yaml in order; the wall
seconds include DVC's own hashing and the process start. FLOPs are torch's count (torch.utils.flop_counter:
convolutions and matrix products, 2 per multiply-add; elementwise work not counted, so the fraction of peak
is a lower bound) of one unit of each stage's work, times the units the stage did:

    train       one training step (forward and backward of the four networks) x the steps trained
    translate   one generator pass on one test image x the passes (a cycle's image is two: info.json's chain)
    ref_stats   one Inception-v3 pass (its resize to 299 included) x the real test images
    segmenter   one training step x the batches of its epochs, + one forward pass per real test photo
    classifier  the same, for the domain classifier
    evaluate    one Inception pass x the translations FID/KID score + one segmenter pass x the translations
                it segments (LPIPS, SSIM and the bootstrap not counted)
    download, prepare: files and PNG codecs, no tensor arithmetic: none counted

The peak is the fp32 matmul of throughput.matmul_peak on the same threads, measured before and after the
stages (the larger of the two: the machine's capability, not its worst moment).

Peers: one direction's translations (AtoB) against the real test images of its target, both folders of
the copy's outputs, the features of both computed in each call (no cache): ours (features, FID, KID and the
bootstrap intervals the evaluate stage computes); torch-fidelity's calculate_metrics(fid=True, kid=True);
clean-fid's compute_fid (mode clean, its own loader, resizer and batching) with the same network, which
clean-fid would otherwise download. Median seconds over --repeats, in turn, and their ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pipeline.artifacts import translations
from pipeline.config import load_params
from pipeline.io import write_json, write_text
from pipeline.studies.throughput import device_name, matmul_peak, step_flops

STAGES = ("download", "prepare", "train", "translate", "ref_stats", "segmenter", "classifier", "evaluate")
PNG = "*.png"


# --- the stages, timed in a fresh copy -----------------------------------------------------------

def fresh_copy(root: Path, dest: Path) -> Path:
    """The working tree's files (tracked and untracked, not ignored) in `dest`, as a git repository of
    its own (DVC needs one); nothing of the workspace's outputs or stores."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (root / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / name, dest / name)
    git = ["git", "-c", "user.name=benchmark", "-c", "user.email=benchmark@localhost"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "benchmark copy"]):
        subprocess.run(git + cmd, cwd=dest, check=True)
    return dest


def stage_env() -> dict[str, str]:
    """This interpreter's environment first on PATH (the stages run `python -m ...`), the copy's own
    MLflow store (no inherited tracking URI)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def time_stages(copy: Path) -> dict[str, dict]:
    """{stage: {seconds, stdout}} of `dvc repro -f -s <stage>` for each stage in order."""
    out = {}
    for stage in STAGES:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "dvc", "repro", "--force", "--single-item", stage], cwd=copy,
                              env=stage_env(), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"dvc repro {stage} failed in {copy}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        out[stage] = {"seconds": time.perf_counter() - t0, "stdout": done.stdout}
        print(f"{stage}: {out[stage]['seconds']:.1f} s", flush=True)
    return out


# --- FLOPs: one unit of each stage's work, counted ------------------------------------------------

def forward_flops(net: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return step_flops(net, x)


def training_step_flops(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss) -> int:
    def step(batch):
        loss(net(batch[0]), batch[1]).backward()
    return step_flops(step, (x, y))


def count(folder: Path) -> int:
    return len(list(folder.glob(PNG)))


def generator_passes(translated: Path) -> int:
    """Generator passes of the translate stage: each route's images times the generators of its chain."""
    info = translations.read_info(translated)
    return sum(info["counts"][r] * len(route["generators"]) for r, route in info["routes"].items())


def stage_flops(copy: Path, timed: dict[str, dict]) -> dict[str, int | None]:
    """Counted FLOPs of each stage of the default run in `copy` (see the module's docstring)."""
    from pipeline.artifacts import manifest as manifest_file
    from pipeline.metrics import inception
    from pipeline.metrics.domain_classifier import build_classifier
    from pipeline.metrics.segmenter import FCN8sMini
    from pipeline.models.networks import build_generator
    from pipeline.studies.benchmark import CONFIGS, batches, build

    params = load_params(str(copy / "params.yaml"))
    prepared, translated = copy / params.paths.prepared, copy / params.paths.translated
    size, cpu = params.prepare.load_size, torch.device("cpu")
    image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    unit = torch.rand(1, 3, size, size) * 2 - 1
    c = params.cyclegan
    steps = int(re.search(r"for (\d+) steps", timed["train"]["stdout"]).group(1))
    fe = inception.feature_extractor(inception.resolve_weights(params.evaluate.inception_weights), cpu)
    inception_image = forward_flops(lambda x: fe(x)[0], image)
    seg, cls = params.segmenter, params.classifier
    n_seg_train, n_test_b = count(prepared / "trainB"), count(prepared / "testB")
    n_train = count(prepared / "trainA") + n_seg_train
    n_test = count(prepared / "testA") + n_test_b
    fcn = FCN8sMini(len(manifest_file.read(prepared)[0]["classes"]), seg.width)
    labels = torch.zeros(seg.batch_size, size, size, dtype=torch.long)
    seg_step = training_step_flops(fcn, torch.rand(seg.batch_size, 3, size, size), labels,
                                   torch.nn.functional.cross_entropy)
    resnet = build_classifier(2)
    cls_step = training_step_flops(resnet, torch.rand(cls.batch_size, 3, size, size),
                                   torch.zeros(cls.batch_size, dtype=torch.long), torch.nn.functional.cross_entropy)
    model = build(CONFIGS["embedded"], cpu, {})
    g = build_generator(c.generator, in_channels=3, out_channels=3, ngf=c.ngf, norm=c.norm, dropout=c.dropout).eval()
    n_scored = count(translated / "AtoB") + count(translated / "BtoA")
    return {"download": None, "prepare": None,
            "train": step_flops(model.train_step, batches(CONFIGS["embedded"], 1, cpu)[0]) * steps,
            "translate": forward_flops(g, unit) * generator_passes(translated),
            "ref_stats": inception_image * n_test,
            "segmenter": seg_step * math.ceil(n_seg_train / seg.batch_size) * seg.epochs
                         + forward_flops(fcn.eval(), unit) * n_test_b,
            "classifier": cls_step * math.ceil(n_train / cls.batch_size) * cls.epochs
                          + forward_flops(resnet.eval(), unit) * n_test,
            "evaluate": inception_image * n_scored + forward_flops(fcn, unit) * count(translated / "AtoB")}


# --- peers: FID and KID of one direction -----------------------------------------------------------

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


def measure_peers(copy: Path, repeats: int) -> dict[str, dict]:
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


# --- the cost of torch.compile, its compilation included ------------------------------------------

def compiled_or_eager(path: str, steps: int) -> dict:
    """Run in a fresh process: wall seconds from building the embedded CycleGAN (eager or compiled) to each
    of `steps` training steps on fixed random batches, and the steady rate after the first 20 steps."""
    from pipeline.studies.benchmark import CONFIGS, batches, build

    cfg = CONFIGS["embedded"]
    data = batches(cfg, 20, torch.device("cpu"))
    t0 = time.perf_counter()
    model = build(cfg, torch.device("cpu"), {"compile": path == "compile", "fused_adam": True})
    at = []
    for i in range(steps):
        model.train_step(data[i % len(data)])
        at.append(time.perf_counter() - t0)
    return {"path": path, "first_step_s": at[0], "seconds": at[-1], "steps": steps,
            "steady_steps_per_s": (steps - 20) / (at[-1] - at[19])}


def default_steps(params) -> int:
    """The default run's training steps: the epochs times the larger training domain of the embedded world
    (an unaligned epoch is as long as its larger domain) over the batch size."""
    s, t = params.data.synthetic, params.train
    return (t.n_epochs + t.n_epochs_decay) * math.ceil(max(s.n_train_a, s.n_train_b) / t.batch_size)


def compile_cost(steps: int, default_steps: int) -> str:
    """Eager and compiled training, each in a fresh process, compiled once with the compiler's cache empty and
    once with it warm; the projection to `default_steps` steps, compilation included."""
    rows = []
    with tempfile.TemporaryDirectory() as cache:  # the compiler's on-disk cache: empty, then as the first run left it
        for path, label in (("eager", "eager"), ("compile", "compile, empty cache (a machine's first run)"),
                            ("compile", "compile, warm cache (every later run)")):
            done = subprocess.run([sys.executable, "-m", "pipeline.studies.stage_speed", "--one", path, str(steps)],
                                  capture_output=True, text=True, check=True,
                                  env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache})
            rows.append({**json.loads(done.stdout.strip().splitlines()[-1]), "path": label})
    lines = [f"# torch.compile of the embedded training step: {device_name(torch.device('cpu'))}", "",
             f"`python -m pipeline.studies.stage_speed --compile-cost {steps}`, torch {torch.__version__}; each path "
             "in a fresh process from building the model; projected = first step + the rest at the steady rate.", "",
             f"| path | first step s | steady steps/s | {default_steps} steps projected s |", "|---|---|---|---|"]
    for r in rows:
        projected = r["first_step_s"] + (default_steps - 1) / r["steady_steps_per_s"]
        lines.append(f"| {r['path']} | {r['first_step_s']:.1f} | {r['steady_steps_per_s']:.2f} | {projected:.0f} |")
    return "\n".join(lines) + "\n"


# --- the report ----------------------------------------------------------------------------------

def stage_rows(timed: dict, flops: dict, peak: float) -> list[dict]:
    return [{"stage": s, "seconds": timed[s]["seconds"], "gflop": None if flops[s] is None else flops[s] / 1e9,
             "fraction_of_peak": None if flops[s] is None else flops[s] / 1e9 / timed[s]["seconds"] / peak}
            for s in STAGES]


def markdown(report: dict) -> str:
    peak = report["peak_gflops"]
    lines = [f"# Stages of the default pipeline: {report['device']}", "",
             f"torch {report['torch']}; command: `{report['command']}`. Each stage by "
             "`dvc repro --force --single-item` in a fresh copy of the working tree; FLOPs counted by torch's "
             "counter on one unit of the stage's work times its units (pipeline/studies/stage_speed.py); "
             f"peak = fp32 matmul {peak:.0f} GFLOP/s (n = 2048, the larger of the runs before and after: "
             f"{', '.join(f'{p:.0f}' for p in report['peaks'])}).", "",
             "| stage | seconds | counted GFLOP | GFLOP/s | fraction of peak |", "|---|---|---|---|---|"]
    for r in report["stages"]:
        if r["gflop"] is None:
            lines.append(f"| {r['stage']} | {r['seconds']:.1f} | - | - | - |")
        else:
            rate = r["gflop"] / r["seconds"]
            lines.append(f"| {r['stage']} | {r['seconds']:.1f} | {r['gflop']:.0f} | {rate:.1f} | "
                         f"{r['fraction_of_peak']:.0%} |")
    lines.append(f"| all | {sum(r['seconds'] for r in report['stages']):.1f} | | | |")
    peers, n = report["peers"], report["peers"]["n"]
    names = [k for k in peers if k != "n"]
    protocol = peers[names[0]]["values"].get("protocol")
    base = peers[names[1]]["median"]
    lines += ["", f"Peers on the same work: AtoB's {n['translations']} translations against the {n['real']} real "
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
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the peers' comparison")
    ap.add_argument("--out", type=Path, default=Path("reports/benchmark"))
    ap.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    ap.add_argument("--compile-cost", type=int, metavar="STEPS",
                    help="only time eager against compiled training over STEPS steps, compilation included; "
                         "writes compile-cost-cpu.md")
    ap.add_argument("--one", nargs=2, metavar=("PATH", "STEPS"), help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(compiled_or_eager(args.one[0], int(args.one[1]))))
        return
    if args.compile_cost:
        text = compile_cost(args.compile_cost, default_steps(load_params("params.yaml")))
        write_text(args.out / "compile-cost-cpu.md", text)
        print(text)
        return
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep:
            args.keep.mkdir(parents=True)
        copy = fresh_copy(Path.cwd(), args.keep or Path(tmp))
        peaks = [matmul_peak(cpu, 5)["gflops"]]
        timed = time_stages(copy)
        peaks.append(matmul_peak(cpu, 5)["gflops"])
        flops = stage_flops(copy, timed)
        peers = measure_peers(copy, args.repeats)
    report = {"device": device_name(cpu), "torch": torch.__version__, "peaks": peaks, "peak_gflops": max(peaks),
              "command": "python -m pipeline.studies.stage_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
              "stages": stage_rows(timed, flops, max(peaks)), "peers": peers}
    stem = args.out / "stages-cpu"
    write_json(stem.with_suffix(".json"), report)
    write_text(stem.with_suffix(".md"), markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
