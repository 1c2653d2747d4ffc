"""Training, translation and evaluation throughput, and what each fast path buys (not a test).

    python -m pipeline.studies.benchmark                          # CPU or CUDA, whichever is present
    python -m pipeline.studies.benchmark --configs paper --paths baseline fp32 bf16 all --repeats 7
    python -m pipeline.studies.benchmark --threads-only --threads 1 2      # the step on 1 and 2 threads
    python -m pipeline.studies.benchmark --stages    # stage by stage, FID/KID beside peers (stage_speed.py)

For each configuration (CONFIGS: the paper's 256px resnet_9blocks, ngf=ndf=64, batch 1; and the
embedded 64px one) and each path (PATHS), a fresh process builds CycleGAN from a fixed seed, runs
`--warmup` steps (torch.compile compiles there), then `--repeats` timed runs of `--steps` steps on
fixed random batches. This is done `--rounds` times with the paths interleaved (a shared machine's
slow minutes then hit every path alike); a row reports the median images/s over all timed runs, the
peak memory and the generator loss of the first `--steps` steps (first round). Every row is compared,
in the same run, with `baseline`: a step written the way the authors' code does it (fp32, contiguous,
torch's default Adam, D_A and D_B each with its own backward pass). Parity: the loss trajectory of each
fast path against plain fp32 (`fp32`), within TOLERANCE (the largest relative deviation over the steps).
Also measured: the translate stage's generator forward (images/s at translate.batch_size), Inception
features for FID/KID (images/s), our plain step against the authors' alternating in one process (`--pairs`:
the tightest "no slower" check), each metric of the evaluate stage on the outputs `dvc repro` left
(seconds), and the training data loader (images/s with 0 and 2 workers, on generated PNGs stored at each
configuration's load size, beside the fastest training path: does loading starve the step?).

How close a step comes to the machine: every training row gives GFLOP/s (the FLOPs of one step counted by
torch.utils.flop_counter, times steps/s) beside an fp32 matrix product timed in the same process on the same
threads, and the fraction. `--threads 1 2` also times the plain fp32 step on each number of threads (default
on the CPU: 1 and all cores); `--threads-only` measures just that and writes <device>-<configs>-threads.md.

Writes reports/benchmark/<device>-<configs>.{json,md} (versions, every figure): a GPU run never overwrites cpu-*.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from pipeline.config import load_params
from pipeline.io import write_json, write_text
from pipeline.knobs import DEVICES
from pipeline.runtime import PEAK_KINDS, configure_threads, cpu_cores, peak_memory
from pipeline.studies import benchmark_tables as tables
from pipeline.studies import stage_speed, throughput
from pipeline.studies.throughput import device_name, matmul_peak, rates, step_flops

CONFIGS = {
    # Zhu et al. 2017 at 256px: resnet_9blocks, 70x70 PatchGAN, ngf = ndf = 64, batch 1, 286 -> random 256 crops
    "paper": {"size": 256, "load_size": 286, "generator": "resnet_9blocks", "ngf": 64, "ndf": 64, "batch": 1},
    "embedded": {"size": 64, "load_size": 64, "generator": "resnet_6blocks", "ngf": 16, "ndf": 16, "batch": 1},  # params.yaml's
    # for the test of this script only
    "tiny": {"size": 32, "load_size": 36, "generator": "resnet_6blocks", "ngf": 4, "ndf": 4, "batch": 1},
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
DEFAULT_PATHS = {"cpu": ["baseline", "fp32", "channels_last", "fused_adam", "bf16", "compile"],
                 "cuda": ["baseline", "fp32", "channels_last", "fused_adam", "cudnn_benchmark", "bf16", "fp16",
                          "compile", "all"]}
# Parity with plain fp32 from the same weights and batches, as relative deviations of the G loss:
# (first step: the forward numerics alone; over all measured steps: the training trajectory).
# float32 paths only reorder sums, but Adam moves each weight by ~lr * sign(gradient), so where a
# gradient is ~0 a reordered sum flips a sign and the trajectories part slowly (the deviations each path
# reaches are in reports/benchmark/): hence 2e-2 over a few steps.
TOLERANCE = {"fp32": (1e-4, 2e-2), "16bit": (1e-2, 5e-2)}


def tolerance(path: str) -> tuple[float, float]:
    return TOLERANCE["16bit" if PATHS[path].get("precision", "fp32") != "fp32" else "fp32"]


def build(cfg: dict, device: torch.device, opts: dict, params_file: Path = Path("params.yaml")):
    """CycleGAN through the model's own builder, with the paper's losses pinned (not read from the
    workspace's params) and the configuration's networks, from a fixed seed: identical initial weights
    for every path."""
    from pipeline.config import parse_params
    from pipeline.models.cyclegan import PAPER
    from pipeline.models.cyclegan.model import build_cyclegan

    d = yaml.safe_load(params_file.read_text())
    d.update(PAPER, seed=0, model="cyclegan")
    d["cyclegan"].update(generator=cfg["generator"], discriminator="basic", ngf=cfg["ngf"], ndf=cfg["ndf"],
                         norm="instance", dropout=False, init_type="normal", init_gain=0.02, gan_mode="lsgan",
                         adversarial=True, cycle_forward=True, cycle_backward=True)
    d["prepare"]["load_size"] = cfg["load_size"]
    d["train"].update(crop_size=cfg["size"], batch_size=cfg["batch"], lr=2e-4, beta1=0.5, beta2=0.999,
                      fused_adam=opts.get("fused_adam", False))
    torch.manual_seed(0)
    model = build_cyclegan(parse_params(d, str(params_file)), device)
    model.configure(precision=opts.get("precision", "fp32"), channels_last=opts.get("channels_last", False),
                    compile=opts.get("compile", False))
    return model


def authors_step(model, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """One iteration as the authors' CycleGANModel.optimize_parameters writes it: forward, G's backward
    and step, then D_A's and D_B's backward passes one after the other and D's step; fp32, contiguous
    tensors, torch's default Adam."""
    from pipeline.models.base import set_requires_grad
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
    return {"G": float(loss_G.detach())}


def batches(cfg: dict, n: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    shape = (cfg["batch"], 3, cfg["size"], cfg["size"])
    return [{"A": (torch.rand(shape, generator=g) * 2 - 1).to(device), "B": (torch.rand(shape, generator=g) * 2 - 1).to(device)}
            for _ in range(n)]


def measure_training(config: str, path: str, device: torch.device, warmup: int, steps: int, repeats: int,
                     trajectory: bool = True, params_file: Path = Path("params.yaml")) -> dict:
    """Run in a fresh process (see main): images/s per repeat, peak memory, and (if `trajectory`) the
    G loss of the first `steps` steps from the shared initial weights; the FLOPs of one step (counted,
    except for `compile`, whose graph the counter does not see: the same computation as fp32) and the
    fp32 matmul peak on the same threads in the same process."""
    cfg, opts = CONFIGS[config], PATHS[path]
    torch.backends.cudnn.benchmark = opts.get("cudnn_benchmark", False)
    model = build(cfg, device, opts, params_file)
    step = (lambda b: authors_step(model, b)) if path == "baseline" else model.train_step
    data = batches(cfg, steps, device)
    losses = [step(b)["G"] for b in data] if trajectory else []  # parity: the first losses from the same start
    for b in data[:warmup]:
        step(b)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    per_repeat = rates(lambda: [step(b) for b in data], steps * cfg["batch"], repeats, device)
    peak, kind = peak_memory(device)
    flops = None if opts.get("compile") else step_flops(step, data[0])
    return {"config": config, "path": path, "images_per_s": statistics.median(per_repeat), "repeats": per_repeat,
            "peak_memory_bytes": peak, "peak_memory_kind": PEAK_KINDS[kind],
            "loss_G": losses, "threads": torch.get_num_threads(), "flops_per_step": flops, "batch": cfg["batch"],
            "tolerance": tolerance(path),
            "matmul_peak_gflops": matmul_peak(device, repeats)["gflops"]}


def measure_paired(config: str, device: torch.device, pairs: int, params_file: Path = Path("params.yaml")) -> dict:
    """The authors' step and ours (fp32, no fast path) alternating in ONE process, each step timed: the
    two see the same machine state within milliseconds, so their ratio is free of the drift between
    processes that widens the ranges of the table. Which one goes first alternates too."""
    cfg = CONFIGS[config]
    authors, ours = build(cfg, device, {}, params_file), build(cfg, device, {}, params_file)
    data = batches(cfg, 2, device)
    steps = {"authors": lambda b: authors_step(authors, b), "ours": ours.train_step}
    for b in data:  # warm-up
        steps["authors"](b), steps["ours"](b)
    times = {"authors": [], "ours": []}
    for i in range(pairs):
        for name in (("authors", "ours") if i % 2 else ("ours", "authors")):
            times[name].append(rates(lambda name=name, i=i: steps[name](data[i % 2]), cfg["batch"], 1, device)[0])
    ratio = [o / a for o, a in zip(times["ours"], times["authors"], strict=True)]
    q1, _, q3 = statistics.quantiles(ratio, n=4) if pairs > 1 else (ratio[0],) * 3
    return {"config": config, "pairs": pairs, "authors_images_per_s": statistics.median(times["authors"]),
            "ours_images_per_s": statistics.median(times["ours"]), "speedup_median": statistics.median(ratio),
            "speedup_iqr": [q1, q3]}


@torch.no_grad()
def measure_translate(config: str, device: torch.device, batch_size: int, repeats: int,
                      params_file: Path = Path("params.yaml")) -> dict:
    cfg = CONFIGS[config]
    G = build(cfg, device, {}, params_file).raw("G_A").eval()
    x = torch.rand(batch_size, 3, cfg["size"], cfg["size"], device=device) * 2 - 1
    G(x)  # warm-up
    per_repeat = rates(lambda: G(x), batch_size, repeats, device)
    return {"config": config, "batch_size": batch_size, "images_per_s": statistics.median(per_repeat)}


def one_command(config: str, path: str, args, trajectory: bool, threads: int | None) -> list[str]:
    """The command that measures one (config, path) in a process of its own (main's --one)."""
    cmd = [sys.executable, "-m", "pipeline.studies.benchmark", "--one", config, path, "--device", args.device,
           "--params", str(args.params),
           "--warmup", str(args.warmup), "--steps", str(args.steps), "--repeats", str(args.repeats)]
    cmd += [] if trajectory else ["--no-trajectory"]
    return cmd + ([] if threads is None else ["--one-threads", str(threads)])


def parse_one(config: str, path: str, returncode: int, stdout: str, stderr: str) -> dict:
    if returncode != 0:
        return {"config": config, "path": path, "error": stderr.strip().splitlines()[-1] if stderr.strip() else "failed"}
    return json.loads(stdout.strip().splitlines()[-1])


def run_isolated(config: str, path: str, args, trajectory: bool, threads: int | None = None) -> dict:
    """One (config, path) in its own process: clean memory peak, no compile cache carried over; on
    `threads` torch threads (None: torch's default, one per core)."""
    r = subprocess.run(one_command(config, path, args, trajectory, threads), capture_output=True, text=True)
    return parse_one(config, path, r.returncode, r.stdout, r.stderr)


def run_concurrent(config: str, args, processes: int, threads: int) -> dict:
    """`processes` copies of the fp32 step measurement started together, each on `threads` threads: the
    total images/s they reach side by side, which is what a sweep of `processes` queue workers can get
    from the machine (cores shared by SMT, memory bandwidth and clock limits cost here, not in a
    one-process figure)."""
    cmd = one_command(config, "fp32", args, trajectory=False, threads=threads)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    outputs = [p.communicate() for p in procs]  # waits for each: returncode is set after
    each = [parse_one(config, "fp32", p.returncode, *out) for p, out in zip(procs, outputs, strict=True)]
    failed = [r for r in each if "error" in r]
    if failed:
        return failed[0]
    return {"config": config, "processes": processes, "threads": threads,
            "images_per_s_each": [r["images_per_s"] for r in each], "images_per_s": sum(r["images_per_s"] for r in each),
            "matmul_peak_gflops": sum(r["matmul_peak_gflops"] for r in each)}


def measure_concurrency(configs: list[str], layouts: list[tuple[int, int]], args) -> list[dict]:
    """Total fp32 step throughput of each (processes, threads) layout, rounds interleaved; the ratio of
    each layout to the first (one process on every core) is the speedup a sweep of that many workers
    can reach at most, the machine's limit that the sweep benchmark's -j ratio is measured against."""
    rounds = {(c, lay): [] for c in configs for lay in layouts}
    for k in range(args.rounds):
        for (c, (procs, threads)), rs in rounds.items():
            r = run_concurrent(c, args, procs, threads)
            rs.append(r)
            print(f"{c:9s} {procs} process(es) x {threads} thread(s) round {k + 1}/{args.rounds} "
                  + (f"{r['images_per_s']:8.2f} images/s in all" if "error" not in r else r["error"]), flush=True)
    rows = []
    for (c, (procs, threads)), rs in rounds.items():
        failed = [r for r in rs if "error" in r]
        if failed:
            rows.append(failed[0])
            continue
        totals = [r["images_per_s"] for r in rs]
        rows.append({"config": c, "processes": procs, "threads": threads, "images_per_s": statistics.median(totals),
                     "round_totals": totals, "matmul_peak_gflops": statistics.median(r["matmul_peak_gflops"] for r in rs)})
    for r in rows:
        base = next((b for b in rows if b["config"] == r["config"] and "error" not in b), None)
        if "error" not in r and base:
            r["x_vs_first"] = r["images_per_s"] / base["images_per_s"]
    return rows


def measure_threads(configs: list[str], threads: list[int], args) -> list[dict]:
    """The plain fp32 step on each number of threads, each in fresh processes, rounds interleaved."""
    rounds = {(c, t): [] for c in configs for t in threads}
    for k in range(args.rounds):
        for c, t in rounds:
            r = run_isolated(c, "fp32", args, trajectory=False, threads=t)
            rounds[(c, t)].append(r)
            print(f"{c:9s} fp32 {t} thread(s) round {k + 1}/{args.rounds} "
                  + (f"{r['images_per_s']:8.2f} images/s" if "error" not in r else r["error"]), flush=True)
    return tables.add_flop_rate([tables.merge_rounds(rs) for rs in rounds.values()])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m pipeline.studies.benchmark", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=DEVICES, default="auto")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["embedded", "paper"])
    ap.add_argument("--paths", nargs="+", choices=list(PATHS), help="default: all that apply to the device")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of --steps steps per process")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per path, interleaved with the other paths")
    ap.add_argument("--pairs", type=int, default=20, help="alternating authors'/our steps in the same-process check")
    ap.add_argument("--loader-images", type=int, default=128, help="PNG pairs in the data loader measurement")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"),
                    help="the base of the benchmarked configurations, and whose outputs the evaluate timing reads")
    ap.add_argument("--out", type=Path, default=Path("reports/benchmark"))
    ap.add_argument("--threads", nargs="*", type=int,
                    help="also time the fp32 step on each of these thread counts (default on the CPU: 1 and all cores)")
    ap.add_argument("--threads-only", action="store_true",
                    help="measure only the thread counts (with GFLOP/s and peak); writes <device>-<configs>-threads.*")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="time only the evaluate stage's metrics on the workspace's outputs; writes <device>-evaluate.*")
    ap.add_argument("--stages", action="store_true", help="the README's workflows and every stage: seconds, FLOPs, floor "
                    "and wall / floor, and FID/KID beside torch-fidelity and clean-fid: pipeline/studies/stage_speed.py")
    ap.add_argument("--one", nargs=2, metavar=("CONFIG", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--one-threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-trajectory", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.command = "python -m pipeline.studies.benchmark " + " ".join(argv if argv is not None else sys.argv[1:])
    return args


def report_head(args: argparse.Namespace, device: torch.device) -> dict:
    """What every report starts with: the machine, the versions, the date, the command and the timing plan."""
    return {"device": device_name(device), "device_type": device.type, "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M"), "command": args.command, "warmup": args.warmup,
            "steps": args.steps, "repeats": args.repeats, "rounds": args.rounds, "cpu_count": os.cpu_count()}


def threads_report(args: argparse.Namespace, device: torch.device, threads: list[int]) -> dict:
    report = {**report_head(args, device), "threads": measure_threads(args.configs, threads or [torch.get_num_threads()],
                                                                      args)}
    if device.type == "cpu" and cpu_cores() > 1:  # what a sweep of one worker per core can reach
        cores = cpu_cores()
        report["concurrency"] = measure_concurrency(args.configs, [(1, cores), (cores, 1)], args)
    return report


def training_rows(args: argparse.Namespace, paths: list[str]) -> list[dict]:
    """Every (config, path) in fresh processes; rounds interleave the paths, so a slow minute of a shared
    machine hits every path alike."""
    rows = []
    for config in args.configs:
        rounds = {path: [] for path in paths}
        for k in range(args.rounds):
            for path in paths:
                r = run_isolated(config, path, args, trajectory=k == 0)
                rounds[path].append(r)
                print(f"{config:9s} {path:16s} round {k + 1}/{args.rounds} "
                      + (f"{r['images_per_s']:8.2f} images/s" if "error" not in r else r["error"]), flush=True)
        rows += [tables.merge_rounds(rounds[path]) for path in paths]
    return rows


def full_report(args: argparse.Namespace, device: torch.device, threads: list[int]) -> dict:
    paths = args.paths or DEFAULT_PATHS[device.type]
    skipped = [p for p in paths if p in CUDA_ONLY and device.type != "cuda"]
    paths = [p for p in paths if p not in skipped]
    paths = ["baseline", "fp32", *(p for p in paths if p not in ("baseline", "fp32"))]
    return {**report_head(args, device), "skipped_paths": skipped,
            "training": tables.summarise(training_rows(args, paths)),
            "threads": measure_threads(args.configs, threads, args),
            "paired": [measure_paired(c, device, args.pairs, args.params) for c in args.configs],
            "translate": [measure_translate(c, device, 16, args.repeats, args.params) for c in args.configs],
            "inception": throughput.measure_inception(device, 25, args.repeats, 64),
            "evaluate": throughput.measure_evaluate(load_params(args.params), device),
            "loader": [throughput.measure_loader(c, CONFIGS[c]["load_size"], CONFIGS[c]["size"], args.loader_images,
                                                 min(args.repeats, 3), device) for c in args.configs]}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.stages:
        return stage_speed.main(["--out", str(args.out)])
    if args.one:
        if args.one_threads:
            configure_threads(args.one_threads, "--one-threads")
        print(json.dumps(measure_training(*args.one, device, args.warmup, args.steps, args.repeats,
                                          trajectory=not args.no_trajectory, params_file=args.params)))
        return
    if args.evaluate_only:
        report = {**report_head(args, device), "evaluate": throughput.measure_evaluate(load_params(args.params), device)}
        write_report(args.out, f"{device.type}-evaluate", report, tables.evaluate_markdown(report))
        return
    threads = args.threads if args.threads is not None else sorted({1, cpu_cores()}) if device.type == "cpu" else []
    if args.threads_only:
        report = threads_report(args, device, threads)
        write_report(args.out, "-".join([device.type, *args.configs, "threads"]), report, tables.threads_markdown(report))
        return
    report = full_report(args, device, threads)
    write_report(args.out, "-".join([device.type, *args.configs]), report, tables.markdown(report))


def write_report(out: Path, stem: str, report: dict, text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", report)
    write_text(out / f"{stem}.md", text)
    print(text)


if __name__ == "__main__":
    main()
