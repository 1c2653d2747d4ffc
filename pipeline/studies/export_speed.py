"""Speed of an exported generator (not a test): images/s of onnxruntime against PyTorch eager and
torch.compile on the same generator, inputs and threads, in the same run.

    python -m pipeline.studies.export_speed                    # CPU, writes reports/benchmark/onnx-cpu.{md,json}
    python -m pipeline.studies.export_speed --device cuda      # ONNX Runtime's CUDA provider against PyTorch on the GPU

The generator is the default CycleGAN's (params.yaml `cyclegan`: its architecture and width, random weights:
speed does not depend on them), in eval mode, at 64 px (the embedded default) and 256 px (the paper's size),
exported by pipeline/export.py. Each figure is the median of --repeats timed calls after a warm-up (the
compiled model's compilation included in neither); the range is min-max over the repeats; the FLOPs of one
image are torch's count (studies/throughput.step_flops: convolutions, 2 per multiply-add), so GFLOP/s beside
the machine's fp32 matmul peak measured in the same run says how much of the machine each path uses.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline import export
from pipeline.config import load_params
from pipeline.domains import AtoB
from pipeline.io import write_json, write_text
from pipeline.models.networks import build_generator
from pipeline.studies.throughput import device_name, matmul_peak, rates, step_flops
from pipeline.translator import Translator

SIZES = {64: 8, 256: 1}  # px -> batch size


def generator(c) -> torch.nn.Module:
    """The generator of params.yaml's `cyclegan` section `c`, in eval mode."""
    return build_generator(c.generator, in_channels=3, out_channels=3, ngf=c.ngf, norm=c.norm, dropout=c.dropout).eval()


def session(path: Path, device: str):
    import onnxruntime as ort

    providers = ["CUDAExecutionProvider"] if device == "cuda" else []
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=providers + ["CPUExecutionProvider"])


def measure(net: torch.nn.Module, size: int, batch: int, device: torch.device, repeats: int, folder: Path) -> dict:
    """images/s of eager, compiled and onnxruntime at one size; their largest difference from eager."""
    x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    path = export.export(Translator(net, AtoB, size, "benchmark", model="cyclegan"), folder / f"g{size}.onnx")
    ort = session(path, device.type)
    compiled = torch.compile(net)
    feeds = {"image": x.cpu().numpy()}
    with torch.no_grad():
        eager_out = net(x)
        compiled(x)  # compilation, before the timing
        ort.run(None, feeds)
        paths = {"PyTorch eager": lambda: net(x), "torch.compile": lambda: compiled(x),
                 "onnxruntime": lambda: ort.run(None, feeds)}
        rows = {name: rates(fn, batch, repeats, device) for name, fn in paths.items()}
        flops = step_flops(lambda b: net(b), x[:1])
        diff = float(np.abs(ort.run(None, feeds)[0] - eager_out.cpu().numpy()).max())
    return {"size": size, "batch": batch, "gflop_per_image": flops / 1e9, "onnx_max_abs_diff": diff,
            "paths": {name: {"median": statistics.median(r), "min": min(r), "max": max(r)} for name, r in rows.items()}}


def markdown(report: dict) -> str:
    lines = [f"# Exported generator: onnxruntime against PyTorch ({report['device']})", "",
             f"`{report['command']}`; the default CycleGAN generator ({report['generator']}), eval mode, random "
             f"weights; median images/s of {report['repeats']} timed calls [min, max]; matmul peak "
             f"{report['peak']['gflops']:.0f} GFLOP/s (fp32, n = {report['peak']['n']}) measured in the same run.", "",
             "| size | batch | path | images/s | ratio to eager | GFLOP/s | fraction of peak |", "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        eager = row["paths"]["PyTorch eager"]["median"]
        for name, r in row["paths"].items():
            gflops = r["median"] * row["gflop_per_image"]
            lines.append(f"| {row['size']} px | {row['batch']} | {name} | {r['median']:.1f} [{r['min']:.1f}, {r['max']:.1f}] | "
                         f"{r['median'] / eager:.2f}x | {gflops:.1f} | {gflops / report['peak']['gflops']:.0%} |")
    lines += ["", "Largest difference of the ONNX output from eager: " + ", ".join(
        f"{row['size']} px {row['onnx_max_abs_diff']:.1e}" for row in report["rows"]) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.studies.export_speed", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmark"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    c = load_params(args.params).cyclegan
    net = generator(c).to(device)
    with tempfile.TemporaryDirectory() as folder:
        rows = [measure(net, size, batch, device, args.repeats, Path(folder)) for size, batch in SIZES.items()]
    report = {"device": device_name(device), "command": "python -m pipeline.studies.export_speed"
              + (f" --device {args.device}" if args.device != "cpu" else ""), "repeats": args.repeats,
              "generator": f"{c.generator}, ngf {c.ngf}, {c.norm} norm", "peak": matmul_peak(device, args.repeats),
              "rows": rows, "onnxruntime": __import__("onnxruntime").__version__, "opset": export.OPSET,
              "torch": torch.__version__}
    stem = f"onnx-{device.type}"
    write_json(args.out / f"{stem}.json", report)
    write_text(args.out / f"{stem}.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
