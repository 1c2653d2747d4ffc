"""Training, translation and evaluation throughput, and what each fast path buys (not a test).

    python -m pipeline.benchmark                          # CPU or CUDA, whichever is present
    python -m pipeline.benchmark --configs paper --paths baseline fp32 bf16 all --repeats 7

For each configuration (CONFIGS: the paper's 256px resnet_9blocks, ngf=ndf=64, batch 1; and the
embedded 64px one) and each path (PATHS), one fresh process builds CycleGAN from a fixed seed, runs
`--warmup` steps (torch.compile compiles there), then `--repeats` timed runs of `--steps` steps on
fixed random batches, and reports the median images/s, the peak memory and the generator loss of the
first `--steps` steps. Every row is compared, in the same run, with `baseline`: a step written the
way the authors' code does it (fp32, contiguous, torch's default Adam, D_A and D_B each with its own
backward pass). Parity: the loss trajectory of each fast path against plain fp32 (`fp32`), within
TOLERANCE (the largest relative deviation over the steps). Also measured: the translate stage's
generator forward (images/s at translate.batch_size), Inception feature extraction for FID/KID
(images/s), and the training data loader on data/prepared (images/s, with 0 and 2 workers).

Writes reports/benchmark/benchmark.json and benchmark.md (device, versions, every figure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from pipeline.io import write_json, write_text

CONFIGS = {
    # Zhu et al. 2017 at 256px: resnet_9blocks, 70x70 PatchGAN, ngf = ndf = 64, batch 1
    "paper": {"size": 256, "generator": "resnet_9blocks", "ngf": 64, "ndf": 64, "batch": 1},
    # the embedded default of params.yaml
    "embedded": {"size": 64, "generator": "resnet_6blocks", "ngf": 16, "ndf": 16, "batch": 1},
    # for the test of this script only
    "tiny": {"size": 32, "generator": "resnet_6blocks", "ngf": 4, "ndf": 4, "batch": 1},
}

# path -> train.* options of GANModel.configure / the optimizer (baseline: the authors' step instead)
PATHS = {
    "baseline": {},
    "fp32": {},
    "channels_last": {"channels_last": True},
    "fused_adam": {"fused_adam": True},
    "cudnn_benchmark": {"cudnn_benchmark": True},
    "bf16": {"precision": "bf16"},
    "fp16": {"precision": "fp16"},
    "compile": {"compile": True},
    "all": {"precision": "bf16", "channels_last": True, "fused_adam": True, "cudnn_benchmark": True, "compile": True},
}
CUDA_ONLY = {"fp16", "cudnn_benchmark"}
DEFAULT_PATHS = {"cpu": ["baseline", "fp32", "channels_last", "fused_adam", "bf16"],
                 "cuda": ["baseline", "fp32", "channels_last", "fused_adam", "cudnn_benchmark", "bf16", "fp16",
                          "compile", "all"]}
# Parity with plain fp32 from the same weights and batches, as relative deviations of the G loss:
# (first step: the forward numerics alone; over all measured steps: the training trajectory).
# float32 paths only reorder sums, but Adam moves each weight by ~lr * sign(gradient), so where a
# gradient is ~0 a reordered sum flips a sign and the trajectories part slowly (channels_last on CPU:
# 3e-3 after one step, 9e-3 within 12): hence 2e-2 over a few steps.
TOLERANCE = {"fp32": (1e-4, 2e-2), "16bit": (1e-2, 5e-2)}


def tolerance(path: str) -> tuple[float, float]:
    return TOLERANCE["16bit" if PATHS[path].get("precision", "fp32") != "fp32" else "fp32"]


def build(cfg: dict, device: torch.device, opts: dict):
    """CycleGAN with the paper's losses from a fixed seed (identical initial weights for every path)."""
    from pipeline.models.gan import CycleGAN, make_net

    torch.manual_seed(0)
    gen = dict(in_channels=3, out_channels=3, ngf=cfg["ngf"], norm="instance", dropout=False)
    dis = dict(in_channels=3, ndf=cfg["ndf"], norm="instance")
    nets = [make_net("generator", cfg["generator"], "normal", 0.02, device, **gen) for _ in range(2)] + \
           [make_net("discriminator", "basic", "normal", 0.02, device, **dis) for _ in range(2)]
    model = CycleGAN(*nets, lambda_cycle=10.0, lambda_identity=0.5, cycle_forward=True, cycle_backward=True,
                     adversarial=True, gan_mode="lsgan", lambda_gp=10.0, pool_size=50, lr=2e-4, betas=(0.5, 0.999),
                     seed=0, device=device, fused_adam=opts.get("fused_adam", False))
    model.configure(precision=opts.get("precision", "fp32"), channels_last=opts.get("channels_last", False),
                    compile=opts.get("compile", False))
    return model


def authors_step(model, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """One iteration as the authors' CycleGANModel.optimize_parameters writes it: forward, G's backward
    and step, then D_A's and D_B's backward passes one after the other and D's step; fp32, contiguous
    tensors, torch's default Adam."""
    from pipeline.models.gan import set_requires_grad
    from pipeline.models.losses import gan_loss, l1

    real_A, real_B = batch["A"].to(model.device), batch["B"].to(model.device)
    G_A, G_B, D_A, D_B = (model.raw(k) for k in ("G_A", "G_B", "D_A", "D_B"))
    fake_B = G_A(real_A)
    rec_A = G_B(fake_B)
    fake_A = G_B(real_B)
    rec_B = G_A(fake_A)
    set_requires_grad([D_A, D_B], False)
    model.optimizers["G"].zero_grad()
    idt_A, idt_B = G_A(real_B), G_B(real_A)
    loss_G = (gan_loss(D_A(fake_B), True, "lsgan") + gan_loss(D_B(fake_A), True, "lsgan") + l1(rec_A, real_A) * 10
              + l1(rec_B, real_B) * 10 + l1(idt_A, real_B) * 5 + l1(idt_B, real_A) * 5)
    loss_G.backward()
    model.optimizers["G"].step()
    set_requires_grad([D_A, D_B], True)
    model.optimizers["D"].zero_grad()
    for D, real, fake in ((D_A, real_B, model.pools["fake_B"].query(fake_B)),
                          (D_B, real_A, model.pools["fake_A"].query(fake_A))):
        loss_D = (gan_loss(D(real), True, "lsgan") + gan_loss(D(fake.detach()), False, "lsgan")) * 0.5
        loss_D.backward()
    model.optimizers["D"].step()
    return {"G": float(loss_G)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rates(fn, images: int, repeats: int, device: torch.device) -> list[float]:
    """images/s of each of `repeats` timed calls of `fn`, which handles `images` images per call."""
    out = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(images / (time.perf_counter() - t0))
    return out


def batches(cfg: dict, n: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    shape = (cfg["batch"], 3, cfg["size"], cfg["size"])
    return [{"A": (torch.rand(shape, generator=g) * 2 - 1).to(device), "B": (torch.rand(shape, generator=g) * 2 - 1).to(device)}
            for _ in range(n)]


def measure_training(config: str, path: str, device: torch.device, warmup: int, steps: int, repeats: int) -> dict:
    """Run in a fresh process (see main): images/s per repeat, peak memory, loss trajectory."""
    cfg, opts = CONFIGS[config], PATHS[path]
    torch.backends.cudnn.benchmark = opts.get("cudnn_benchmark", False)
    model = build(cfg, device, opts)
    step = (lambda b: authors_step(model, b)) if path == "baseline" else model.train_step
    data = batches(cfg, steps, device)
    trajectory = [step(b)["G"] for b in data]  # parity: the first `steps` losses from the same start
    for b in data[:warmup]:
        step(b)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    per_repeat = rates(lambda: [step(b) for b in data], steps * cfg["batch"], repeats, device)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"config": config, "path": path, "images_per_s": statistics.median(per_repeat), "repeats": per_repeat,
            "peak_memory_bytes": peak, "peak_memory_kind": "CUDA max allocated" if device.type == "cuda" else "process max RSS",
            "loss_G": trajectory}


@torch.no_grad()
def measure_translate(config: str, device: torch.device, batch_size: int, repeats: int) -> dict:
    cfg = CONFIGS[config]
    G = build(cfg, device, {}).raw("G_A").eval()
    x = torch.rand(batch_size, 3, cfg["size"], cfg["size"], device=device) * 2 - 1
    G(x)  # warm-up
    return {"config": config, "batch_size": batch_size, "images_per_s": statistics.median(rates(lambda: G(x), batch_size, repeats, device))}


def measure_inception(device: torch.device, batch_size: int, repeats: int, size: int) -> dict:
    from pipeline.metrics import inception

    try:
        fe = inception.feature_extractor(inception.resolve_weights(None, allow_download=False), device)
    except inception.Unavailable as e:
        return {"unavailable": str(e)}
    x = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    run = lambda: inception.extract_features(fe, x, batch_size, device)  # noqa: E731
    run()  # warm-up
    return {"batch_size": batch_size, "input_size": size, "images_per_s": statistics.median(rates(run, batch_size, repeats, device))}


def measure_loader(prepared: Path, repeats: int) -> dict:
    from torch.utils.data import DataLoader

    from pipeline.data.datasets import UnalignedDataset

    if not (prepared / "trainA").is_dir():
        return {"unavailable": f"{prepared} has no prepared data; run `dvc repro prepare` first"}
    data = UnalignedDataset(prepared / "trainA", prepared / "trainB", crop=64, flip=True, seed=0)
    out = {}
    for workers in (0, 2):
        out[f"workers_{workers}"] = statistics.median(rates(
            lambda: list(DataLoader(data, batch_size=1, num_workers=workers)), len(data), repeats, torch.device("cpu")))
    return {"images_per_s": out, "n": len(data)}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def run_isolated(config: str, path: str, args) -> dict:
    """One (config, path) in its own process: clean memory peak, no compile cache carried over."""
    cmd = [sys.executable, "-m", "pipeline.benchmark", "--one", config, path, "--device", args.device,
           "--warmup", str(args.warmup), "--steps", str(args.steps), "--repeats", str(args.repeats)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"config": config, "path": path, "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def summarise(rows: list[dict]) -> list[dict]:
    """Speedup against the authors' step and loss parity against plain fp32, per configuration."""
    by = {(r["config"], r["path"]): r for r in rows}
    for r in rows:
        if "error" in r:
            continue
        base, ref = by.get((r["config"], "baseline")), by.get((r["config"], "fp32"))
        if base and "error" not in base:
            r["speedup_vs_baseline"] = r["images_per_s"] / base["images_per_s"]
        if ref and "error" not in ref and r["path"] != "baseline":
            devs = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(r["loss_G"], ref["loss_G"])]
            r["loss_rel_dev_first"], r["loss_rel_dev_max"], r["tolerance"] = devs[0], max(devs), tolerance(r["path"])
            r["parity"] = devs[0] <= r["tolerance"][0] and max(devs) <= r["tolerance"][1]
    return rows


def markdown(report: dict) -> str:
    lines = [f"# Benchmark: {report['device']}", "",
             f"torch {report['torch']}, {report['date']}; median of {report['repeats']} repeats of {report['steps']} "
             f"steps after {report['warmup']} warm-up steps. Baseline = the authors' step (fp32, no fusion).", "",
             "| config | path | images/s | x baseline | peak memory (MiB) | G loss vs fp32: rel. dev. first step / max over steps (tolerances) |",
             "|---|---|---|---|---|---|"]
    for r in report["training"]:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['path']} | failed: {r['error']} | | | |")
            continue
        parity = (f"{r['loss_rel_dev_first']:.1e} / {r['loss_rel_dev_max']:.1e} ({r['tolerance'][0]:.0e} / "
                  f"{r['tolerance'][1]:.0e}) {'ok' if r['parity'] else 'EXCEEDED'}" if "parity" in r else "-")
        lines.append(f"| {r['config']} | {r['path']} | {r['images_per_s']:.2f} | {r.get('speedup_vs_baseline', 1):.2f} | "
                     f"{r['peak_memory_bytes'] / 2**20:.0f} ({r['peak_memory_kind']}) | {parity} |")
    lines += ["", "| stage | figure |", "|---|---|"]
    for t in report["translate"]:
        lines.append(f"| translate ({t['config']}, batch {t['batch_size']}) | {t['images_per_s']:.1f} images/s |")
    inc = report["inception"]
    lines.append(f"| evaluate: Inception features (batch {inc.get('batch_size')}) | "
                 + (f"{inc['images_per_s']:.1f} images/s |" if "images_per_s" in inc else f"unavailable: {inc['unavailable']} |"))
    loader = report["loader"]
    if "images_per_s" in loader:
        lines.append(f"| training data loader, embedded set | {loader['images_per_s']['workers_0']:.0f} images/s (0 workers), "
                     f"{loader['images_per_s']['workers_2']:.0f} (2 workers) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.benchmark", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["embedded", "paper"])
    ap.add_argument("--paths", nargs="+", choices=list(PATHS), help="default: all that apply to the device")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmark"))
    ap.add_argument("--one", nargs=2, metavar=("CONFIG", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.one:
        print(json.dumps(measure_training(*args.one, device, args.warmup, args.steps, args.repeats)))
        return
    paths = args.paths or DEFAULT_PATHS[device.type]
    skipped = [p for p in paths if p in CUDA_ONLY and device.type != "cuda"]
    paths = [p for p in paths if p not in skipped]
    if "baseline" not in paths:
        paths.insert(0, "baseline")
    if "fp32" not in paths:
        paths.insert(1, "fp32")
    rows = []
    for config in args.configs:
        for path in paths:
            rows.append(run_isolated(config, path, args))
            r = rows[-1]
            print(f"{config:9s} {path:16s} " + (f"{r['images_per_s']:8.2f} images/s" if "error" not in r else r["error"]),
                  flush=True)
    report = {"device": device_name(device), "device_type": device.type, "torch": torch.__version__,
              "date": time.strftime("%Y-%m-%d %H:%M"), "warmup": args.warmup, "steps": args.steps,
              "repeats": args.repeats, "skipped_paths": skipped, "cpu_count": os.cpu_count(),
              "training": summarise(rows),
              "translate": [measure_translate(c, device, 16, args.repeats) for c in args.configs],
              "inception": measure_inception(device, 25, args.repeats, 64),
              "loader": measure_loader(Path("data/prepared"), min(args.repeats, 3))}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "benchmark.json", report)
    write_text(args.out / "benchmark.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
