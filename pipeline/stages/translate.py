"""Stage `translate`: the final checkpoint + test images -> translated images (paths.translated).

    AtoB/    G_A(testA)          (pix2pix: G(testA))
    BtoA/    G_B(testB)          (CycleGAN only)
    AtoBtoA/ G_B(G_A(testA))     reconstructions, CycleGAN only
    BtoAtoB/ G_A(G_B(testB))

BicycleGAN (G(A, z), multimodal):
    samples/<k>/  G(testA, z_k), k < translate.n_samples, one random code z_k ~ N(0, I) per (input, k),
                  drawn from a generator seeded with params `seed` (the same codes every run)
    AtoB/         = samples/00: one random sample per input, what realism and paired metrics judge
    AtoB_encoded/ G(testA, mean of E(testB)): the ground truth's own style (a reconstruction)

File names match the inputs. The generators are rebuilt from the checkpoint alone (constructor
spec + weights), in eval mode (deterministic: dropout off, BatchNorm running statistics).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline import checkpoint
from pipeline.config import Params
from pipeline.data.datasets import list_images, load_tensor, to_image
from pipeline.io import atomic_dir, save_png, write_json
from pipeline.models.networks import build
from pipeline.stages.common import StageError, run_stage, stage_main
from pipeline.stages.train import resolve_device


def load_generators(path: str | Path, device: torch.device) -> tuple[dict, dict[str, torch.nn.Module]]:
    """(final checkpoint, {name: generator in eval mode}) from the file alone."""
    if not Path(path).exists():
        raise StageError(f"{path} missing; run the train stage first (dvc repro train)")
    ckpt = checkpoint.load(path, device)
    nets = {}
    for name, entry in ckpt["nets"].items():
        net = build(entry["spec"]).to(device)
        net.load_state_dict(entry["state_dict"])
        nets[name] = net.eval()
    return ckpt, nets


def fit_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Test images are stored at load_size; the generators were trained on crop_size crops.
    Resize the whole image (no crop, nothing of the test image is dropped)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


# output folder -> (input folder, chain of generators applied in order), per model
ROUTES = {
    "cyclegan": {"AtoB": ("testA", ("G_A",)), "AtoBtoA": ("testA", ("G_A", "G_B")),
                 "BtoA": ("testB", ("G_B",)), "BtoAtoB": ("testB", ("G_B", "G_A"))},
    "pix2pix": {"AtoB": ("testA", ("G",))},
}


def latent_outputs(nets: dict[str, torch.nn.Module], a: torch.Tensor, b: torch.Tensor, codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """A multimodal generator's outputs for a batch: one per code (codes: (K, N, nz)), and, with an
    encoder, the one of the ground truth's encoded style."""
    G = nets["G"]
    out = {f"samples/{k:02d}": G(a, z) for k, z in enumerate(codes)}
    if "E" in nets:
        out["AtoB_encoded"] = G(a, nets["E"](b)[0])
    return out


ZERO_GUESS_L1 = (2 / math.pi) ** 0.5  # E|z| for z ~ N(0, 1): guessing 0 for every code


def latent_recovery(nets: dict[str, torch.nn.Module], outputs: torch.Tensor) -> torch.Tensor:
    """(N, nz) codes recovered from G(A, z) by the encoder's mean (the cLR-GAN cycle z -> B -> z)."""
    return nets["E"](outputs)[0]


def write_batch(out: Path, folder: str, names: list[Path], images: torch.Tensor) -> None:
    (out / folder).mkdir(parents=True, exist_ok=True)
    for p, img in zip(names, images):
        save_png(out / folder / p.name, to_image(img))


def load_batch(files: list[Path], size: int, device: torch.device) -> torch.Tensor:
    return fit_to(torch.stack([load_tensor(p) for p in files]).to(device), size)


@torch.no_grad()
def translate(params: Params, *, progress: bool = True) -> dict:
    device = resolve_device(params.translate.device)
    ckpt, nets = load_generators(params.paths.model, device)
    size = ckpt["config"]["train"]["crop_size"]
    prepared = Path(params.paths.prepared)
    bs = params.translate.batch_size
    counts: dict[str, int] = {}
    extra: dict = {}
    with atomic_dir(params.paths.translated) as out:
        if ckpt["model"] == "bicyclegan":
            routes = {"AtoB": ("testA", ("G",))}
            files_a, files_b = list_images(prepared / "testA"), list_images(prepared / "testB")
            k, nz = params.translate.n_samples, ckpt["config"]["bicyclegan"]["nz"]
            codes = torch.randn(k, len(files_a), nz, generator=torch.Generator().manual_seed(params.seed))
            recovered: list[list[torch.Tensor]] = [[] for _ in range(k)]
            for i in tqdm(range(0, len(files_a), bs), desc="AtoB samples", disable=not progress):
                a = load_batch(files_a[i:i + bs], size, device)
                b = load_batch(files_b[i:i + bs], size, device)
                chunk = codes[:, i:i + bs].to(device)
                for folder, images in latent_outputs(nets, a, b, chunk).items():
                    write_batch(out, folder, files_a[i:i + bs], images)
                    if "E" in nets and folder.startswith("samples/"):
                        recovered[int(folder[-2:])].append(latent_recovery(nets, images).cpu())
            shutil.copytree(out / "samples" / "00", out / "AtoB")
            counts = {"AtoB": len(files_a), "samples": k * len(files_a)}
            extra = {"samples": {"folder": "samples", "n_samples": k, "nz": nz, "seed": params.seed}}
            if "E" in nets:
                counts["AtoB_encoded"] = len(files_a)
                mu = torch.stack([torch.cat(r) for r in recovered])  # (k, N, nz), like codes
                # chance: the same recovered codes against the codes of OTHER inputs (a fixed derangement)
                other = torch.roll(torch.arange(len(files_a)), 1)
                extra["latent_recovery"] = {
                    "l1": float((mu - codes).abs().mean()), "chance_l1": float((mu - codes[:, other]).abs().mean()),
                    "zero_guess_l1": ZERO_GUESS_L1, "n": k * len(files_a),
                    "method": "mean |mu(E(G(A, z))) - z| over every sample (before 8-bit rounding); chance: the "
                              "same against another input's code"}
        else:
            routes = ROUTES[ckpt["model"]]
            for folder, (source, chain) in routes.items():
                files = list_images(prepared / source)
                for i in tqdm(range(0, len(files), bs), desc=folder, disable=not progress):
                    x = load_batch(files[i:i + bs], size, device)
                    for name in chain:
                        x = nets[name](x)
                    write_batch(out, folder, files[i:i + bs], x)
                counts[folder] = len(files)
        info = {"model": ckpt["model"], "checkpoint": str(params.paths.model), "size": size, "counts": counts,
                "routes": {k: {"input": v[0], "generators": list(v[1])} for k, v in routes.items()},
                "mlflow_run_id": ckpt["mlflow_run_id"], **extra}
        write_json(out / "info.json", info)
    return info


def json_info(translated: str | Path) -> dict:
    """The info.json a translate run wrote: model, size, counts, routes, MLflow run."""
    path = Path(translated) / "info.json"
    if not path.exists():
        raise StageError(f"{path} missing; run the translate stage first (dvc repro translate)")
    return json.loads(path.read_text())


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main("translate", argv)
    info = run_stage(translate, params)
    print(f"translated {', '.join(f'{k}={v}' for k, v in info['counts'].items())} -> {params.paths.translated}")


if __name__ == "__main__":
    main()
