"""Where the default pipeline's time goes (not a test): the README's two workflows (its main command and its
experiment) and every stage of `dvc repro`, timed in a fresh copy, each with its counted FLOPs, its floor (those
FLOPs at the machine's measured peak) and wall / floor; and our FID and KID with intervals beside torch-fidelity
and clean-fid on the same work.

    python -m pipeline.studies.benchmark --stages    # writes reports/benchmark/stages-cpu.{md,json} (-cuda on a GPU)
    python -m pipeline.studies.stage_speed --repeats 2 --keep /tmp/run   # the same; keeps the copy

Stages: a copy of the working tree (tracked and untracked files; no DVC cache, no MLflow store, no
outputs) runs `dvc repro --force --single-item <stage>` for each stage of dvc.yaml in order; the wall
seconds include DVC's own hashing and the process start. FLOPs are torch's count (torch.utils.flop_counter:
convolutions and matrix products, 2 per multiply-add; elementwise work not counted, so the floor is a lower
bound) of one unit of each stage's work, times the units the stage did:

    train       one training step (forward and backward of the four networks) x the steps trained
    translate   one generator pass on one test image x the passes (a cycle's image is two: info.json's chain)
    ref_stats   one Inception-v3 pass (its resize to 299 included) x the real test images
    segmenter   one training step x the batches of its epochs, + one forward pass per real test photo
    classifier  the same, for the domain classifier
    evaluate    one Inception pass x the translations FID/KID score + one segmenter pass x the translations
                it segments (LPIPS, SSIM and the bootstrap not counted)
    download, prepare, record: files, PNG codecs and MLflow, no tensor arithmetic: none counted

The peak is throughput.matmul_peak on the same threads: an fp32 product by the faster of torch's matmul and a 1x1
convolution, measured before and after the stages (the larger: the machine's capability, not its worst moment).
The floor of a stage is its counted FLOPs at that peak; the README's two workflows (the main command in the fresh
copy, then the README's experiment there) are timed first, their floor the sum of the stages DVC ran.

Peers (our FID and KID beside torch-fidelity's and clean-fid's on the copy's outputs): pipeline/studies/fid_peers.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pipeline.artifacts import translations
from pipeline.config import load_params
from pipeline.io import write_json, write_text
from pipeline.studies import fid_peers
from pipeline.studies.fid_peers import count
from pipeline.studies.throughput import device_name, matmul_peak, step_flops
from pipeline.tools.docs import readme_commands

STAGES = ("download", "prepare", "train", "translate", "ref_stats", "segmenter", "classifier", "evaluate", "record")
RAN = re.compile(r"Running stage '([\w-]+)'")  # DVC's line for each stage it runs


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


def timed_run(args: list[str], copy: Path) -> dict:
    """{seconds, stdout} of one command in the copy; a failure stops the benchmark naming the command."""
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=copy, env=stage_env(), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed in {copy}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return {"seconds": time.perf_counter() - t0, "stdout": done.stdout}


def time_stages(copy: Path) -> dict[str, dict]:
    """{stage: {seconds, stdout}} of `dvc repro -f -s <stage>` for each stage in order."""
    out = {}
    for stage in STAGES:
        out[stage] = timed_run([sys.executable, "-m", "dvc", "repro", "--force", "--single-item", stage], copy)
        print(f"{stage}: {out[stage]['seconds']:.1f} s", flush=True)
    return out


def readme_workflows() -> dict[str, str]:
    """The two commands a newcomer waits for, as the README shows them: the main job's command after its
    install, and the README's experiment."""
    commands = readme_commands()
    return {"main job": commands["main job"].split(" && ")[-1], "experiment": commands["experiment"]}


def time_workflows(copy: Path) -> dict[str, dict]:
    """{workflow: {command, seconds, stages}}: the README's main command in the fresh copy, then its experiment
    there; the stages are those DVC says it ran. The copy's params are restored afterwards (an experiment
    leaves its own in the workspace)."""
    out = {}
    for name, command in readme_workflows().items():
        done = timed_run(shlex.split(command), copy)
        out[name] = {"command": command, "seconds": done["seconds"], "stages": RAN.findall(done["stdout"])}
        print(f"{name}: {done['seconds']:.1f} s ({', '.join(out[name]['stages'])})", flush=True)
    subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=copy, check=True)
    return out


# --- FLOPs: one unit of each stage's work, counted ------------------------------------------------

def forward_flops(net: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return step_flops(net, x)


def training_step_flops(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss) -> int:
    def step(batch):
        loss(net(batch[0]), batch[1]).backward()
    return step_flops(step, (x, y))


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
            "evaluate": inception_image * n_scored + forward_flops(fcn, unit) * count(translated / "AtoB"),
            "record": None}


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

FLOOR_LEAVES_OUT = ("The floor is the counted arithmetic at the measured peak, the least time the work could take on "
                    "these cores. It leaves out what is not convolution or matrix product: elementwise tensor work "
                    "(normalisation, activations, the optimizer's update, the bootstrap), reading and writing files and "
                    "PNG codecs, Python between operations, process start and imports, DVC's hashing and MLflow's "
                    "logging. Stages without counted FLOPs (download, prepare, record) have no floor; a workflow's "
                    "floor is the sum of its stages'.")


def with_floor(row: dict, flops: int | None, peak: float) -> dict:
    """`row` with its counted GFLOP, floor seconds (FLOPs at the peak) and wall / floor."""
    gflop = None if not flops else flops / 1e9
    return {**row, "gflop": gflop, "floor_s": gflop and gflop / peak,
            "wall_over_floor": gflop and row["seconds"] / (gflop / peak)}


def stage_rows(timed: dict, flops: dict, peak: float) -> list[dict]:
    return [with_floor({"stage": s, "seconds": timed[s]["seconds"]}, flops[s], peak) for s in STAGES]


def workflow_rows(workflows: dict, flops: dict, peak: float) -> list[dict]:
    return [with_floor({"workflow": name, **w}, sum(flops[s] or 0 for s in w["stages"]), peak)
            for name, w in workflows.items()]


def floor_cells(r: dict) -> str:
    if r["gflop"] is None:
        return f"{r['seconds']:.1f} | - | - | -"
    return f"{r['seconds']:.1f} | {r['gflop']:.0f} | {r['floor_s']:.1f} | {r['wall_over_floor']:.2f}"


def peak_routes(peaks: list[dict]) -> str:
    """'matmul 220, 221; 1x1 convolution 470, 465' (GFLOP/s of each route, before and after)."""
    def each(route: str) -> str:
        return ", ".join(f"{p['routes'][route]:.0f}" for p in peaks)
    return "; ".join(f"{route} {each(route)}" for route in peaks[0]["routes"])


def markdown(report: dict) -> str:
    peak = report["peak_gflops"]
    lines = [f"# Stages of the default pipeline: {report['device']}", "",
             f"torch {report['torch']}; command: `{report['command']}`. In a fresh copy of the working tree: the "
             "README's two workflows as a newcomer runs them (the main command, then the experiment), then each "
             "stage by `dvc repro --force --single-item`. FLOPs counted by torch's counter on one unit of each "
             "stage's work times its units (pipeline/studies/stage_speed.py). Peak = "
             f"{peak:.0f} GFLOP/s: an fp32 2048 x 2048 product by its faster route, measured before and after the "
             f"stages ({peak_routes(report['peaks'])}); floor = counted FLOPs at that peak.", "",
             "| workflow | command | stages run | seconds | counted GFLOP | floor s | wall / floor |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['workflow']} | `{r['command']}` | {', '.join(r['stages'])} | {floor_cells(r)} |"
              for r in report["workflows"]]
    lines += ["", "| stage | seconds | counted GFLOP | floor s | wall / floor |", "|---|---|---|---|---|"]
    lines += [f"| {r['stage']} | {floor_cells(r)} |" for r in report["stages"]]
    lines += [f"| all | {sum(r['seconds'] for r in report['stages']):.1f} | | | |", "", FLOOR_LEAVES_OUT]
    if report["peers"]:
        lines += fid_peers.markdown(report["peers"])
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the peers' comparison (0: none)")
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
    # the device the stages' `device: auto` picks: on a GPU machine the floors are the GPU's
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep:
            args.keep.mkdir(parents=True)
        copy = fresh_copy(Path.cwd(), args.keep or Path(tmp))
        peaks = [matmul_peak(device, 5)]
        workflows = time_workflows(copy)
        timed = time_stages(copy)
        peaks.append(matmul_peak(device, 5))
        flops = stage_flops(copy, timed)
        peers = fid_peers.measure(copy, args.repeats) if args.repeats else None
    peak = max(p["gflops"] for p in peaks)
    report = {"device": device_name(device), "torch": torch.__version__, "peaks": peaks, "peak_gflops": peak,
              "command": "python -m pipeline.studies.stage_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
              "workflows": workflow_rows(workflows, flops, peak), "stages": stage_rows(timed, flops, peak),
              "peers": peers}
    stem = args.out / f"stages-{device.type}"
    write_json(stem.with_suffix(".json"), report)
    write_text(stem.with_suffix(".md"), markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
