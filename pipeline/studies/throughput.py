"""Throughput of what surrounds the training step, for the benchmark (pipeline/studies/benchmark.py):
Inception feature extraction, every metric of the evaluate stage, the training data loader; and the
timing helpers the benchmark shares."""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} CPU, {torch.get_num_threads()} threads"


def cpu_model() -> str:
    """The processor's name: /proc/cpuinfo's on Linux (platform.processor() is empty there on many machines)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def step_flops(step, batch) -> int:
    """FLOPs of one call of `step` as torch's FLOP counter (torch.utils.flop_counter) counts them: the
    convolutions and matrix products of the forward and backward passes, 2 per multiply-add. Norms,
    activations, losses and the optimizer's update are not counted (elementwise: a few % of the work
    at these widths), so GFLOP/s computed from it is a lower bound on the arithmetic done."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step(batch)
    return int(counter.get_total_flops())


def product_routes(a: torch.Tensor, b: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """The ways torch computes a @ b on this device, each a call returning the product: torch.matmul (the BLAS
    torch is built with: MKL on x86) and, on the CPU, the same product as a 1x1 convolution (oneDNN, which runs
    the networks' convolutions): the n columns of b as pixels of n channels, the rows of a as n filters."""
    routes = {"matmul": lambda: a @ b}
    if a.device.type == "cpu":
        x = b.reshape(1, *b.shape, 1).contiguous(memory_format=torch.channels_last)
        w = a.reshape(*a.shape, 1, 1)
        routes["1x1 convolution"] = lambda: torch.nn.functional.conv2d(x, w)[0, :, :, 0]
    return routes


def matmul_peak(device: torch.device, repeats: int, n: int | None = None) -> dict:
    """The machine's practical fp32 peak on this process's threads: GFLOP/s of an n x n matrix product
    (2 n^3 FLOPs), median of `repeats` after a warm-up, by the faster of its routes (product_routes): the
    networks' convolutions reach it. On an AVX-512 EPYC, MKL's matmul takes a slower path than oneDNN (about
    220 against 470 GFLOP/s on 2 threads), so a matmul-only peak would put convolutions above "peak".
    n = 2048 on the CPU, 8192 on CUDA (large enough to reach the plateau). On CUDA, TF32 stays off (torch's
    default for matmul): the training step's fp32 convolutions are set beside a true fp32 product."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    gflops = {}
    with torch.no_grad():
        for name, fn in product_routes(a, b).items():
            fn()  # warm-up
            gflops[name] = statistics.median(rates(fn, 1, repeats, device)) * 2 * n**3 / 1e9
    return {"n": n, "threads": torch.get_num_threads(), "gflops": max(gflops.values()), "routes": gflops}


def measure_inception(device: torch.device, batch_size: int, repeats: int, size: int) -> dict:
    from pipeline.metrics import inception

    try:
        fe = inception.feature_extractor(inception.resolve_weights(None, allow_download=False), device)
    except inception.Unavailable as e:
        return {"unavailable": str(e)}
    except ImportError as e:  # a bare GPU image may lack torch-fidelity: the training figures still count
        return {"unavailable": f"{e.name or e} is not installed (pip install -e .)"}
    x = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)

    def run():
        return inception.extract_features(fe, x, batch_size, device)
    run()  # warm-up
    return {"extractor": inception.EXTRACTOR, "batch_size": batch_size, "input_size": size,
            "images_per_s": statistics.median(rates(run, batch_size, repeats, device))}


def measure_evaluate(params, device: torch.device) -> dict:
    """The evaluate stage's metrics, each timed on the outputs `dvc repro` left in the workspace (nothing
    is written): seconds per metric and translated images judged per second overall. Loading the
    images is timed on its own, so each metric's figure is its own work."""
    import dataclasses

    from pipeline.metrics.context import Context, source_domain, target_domain
    from pipeline.metrics.evaluation import Bootstrap
    from pipeline.metrics.registry import METRICS

    params = dataclasses.replace(params, evaluate=dataclasses.replace(params.evaluate, device=device.type))
    if not (Path(params.paths.translated) / "info.json").exists():
        return {"unavailable": f"no translations in {params.paths.translated}; run `dvc repro` first"}
    t0 = time.perf_counter()
    ctx = Context(params)
    for route in ctx.routes:
        ctx.fake(route), ctx.real(source_domain(route)), ctx.real(target_domain(route))
    seconds, errors = {"load images": time.perf_counter() - t0}, {}
    boot = Bootstrap.of(params)
    for name, metric in METRICS.items():
        t0 = time.perf_counter()
        try:
            [boot.apply(r) for r in metric.fn(ctx)]  # with its intervals, as the stage computes them
        except Exception as e:  # any failure is reported, e.g. torch-fidelity missing on a bare GPU image
            errors[name] = f"{type(e).__name__}: {e}"
        seconds[name] = time.perf_counter() - t0
    n = sum(len(ctx.names(route)) for route in ctx.routes)
    return {"dataset": params.data.dataset, "size": ctx.size, "routes": [str(r) for r in ctx.routes], "n_translations": n,
            "fid_protocols": params.evaluate.fid_protocols, "bootstrap": params.evaluate.bootstrap, "seconds": seconds,
            "errors": errors, "images_per_s": n / sum(seconds.values())}


def write_images(folder: Path, n: int, size: int, seed: int) -> None:
    """n smooth random RGB pictures as PNG, the format prepare stores: low-resolution noise upsampled
    bicubically, so the files compress (and decode) roughly as photos do, unlike pure noise."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        low = Image.fromarray(rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8))
        low.resize((size, size), Image.BICUBIC).save(folder / f"{i:05d}.png")


def measure_loader(config: str, load_size: int, crop: int, n: int, repeats: int, device: torch.device,
                   workers: tuple[int, ...] = (0, 2)) -> dict:
    """The training stage's loader on n PNG pairs stored at load_size: images/s of a whole epoch as
    train.py iterates it (a fresh DataLoader per epoch, so worker start-up is included; batch_size 1,
    random crop and flip, pinned memory on CUDA), for each number of workers."""
    import tempfile

    from torch.utils.data import DataLoader

    from pipeline.data.datasets import UnalignedDataset

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, domain in enumerate("AB"):
            write_images(Path(tmp) / domain, n, load_size, seed=i)
        data = UnalignedDataset(Path(tmp) / "A", Path(tmp) / "B", crop=crop, flip=True, seed=0)
        for w in workers:
            def epoch(w=w):
                loader = DataLoader(data, batch_size=1, num_workers=w, pin_memory=device.type == "cuda")
                return [{k: x.to(device, non_blocking=True) for k, x in b.items()} for b in loader]
            out[f"workers_{w}"] = statistics.median(rates(epoch, n, repeats, device))
    return {"config": config, "n": n, "load_size": load_size, "crop": crop, "images_per_s": out}
