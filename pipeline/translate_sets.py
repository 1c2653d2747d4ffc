"""Translating the test sets with a trained model file: what the translate stage writes, and what
the baselines study writes for an untrained model. Layout of the output folder:

    AtoB/    G_A(testA)          (pix2pix: G(testA))
    BtoA/    G_B(testB)          (CycleGAN only)
    AtoBtoA/ G_B(G_A(testA))     reconstructions, CycleGAN only
    BtoAtoB/ G_A(G_B(testB))

BicycleGAN (G(A, z), multimodal):
    samples/<k>/  G(testA, z_k), k < translate.n_samples, one random code z_k ~ N(0, I) per (input, k),
                  drawn from a generator seeded with params `seed` (the same codes every run)
    AtoB/         = samples/00: one random sample per input, what realism and paired metrics judge
    AtoB_encoded/ G(testA, mean of E(testB)): the ground truth's own style (a reconstruction)
    latent.pt     the codes and E's means recovered from the samples (pipeline/artifacts/translations.py)

StarGAN (G(x, c), k domains A, B, C, ...):
    <X>to<Y>/     G(testX, c = Y) for every ordered pair of domains X != Y

File names match the inputs. The generators are rebuilt from the model file alone, in eval mode
(deterministic: dropout off, BatchNorm running statistics). info.json describes the folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.artifacts import model as model_file
from pipeline.artifacts import translations
from pipeline.data.datasets import list_images, load_tensor, to_image
from pipeline.domains import TWO_DOMAINS, AtoB, Route, ordered_routes, target_label, test_dir
from pipeline.io import atomic_dir, save_png
from pipeline.models.registry import MODELS


def routes_for(model: str, domains: list[str], pair: list[str] | None = None) -> dict[Route, tuple]:
    """The model's routes over the prepared domains (letters) and their chains of generators applied in order
    to the route's source's test images. A multi-domain model's G(x, c) takes every ordered pair, a step of its
    chain being (name, target domain index); a two-domain model's routes (its declaration's) run between the
    letters of its `pair` when it translates two domains of a larger set."""
    spec = MODELS[model]
    if spec.multi_domain:
        return {r: (("G", domains.index(r.target)),) for r in ordered_routes(domains)}
    return {r.relabel(pair): chain for r, chain in spec.routes.items()}


def apply(nets: dict[str, torch.nn.Module], chain: tuple, x: torch.Tensor, n_domains: int) -> torch.Tensor:
    """Run x through a route's chain of generators."""
    for step in chain:
        if isinstance(step, tuple):  # G(x, c) with c the one-hot target domain
            name, target = step
            x = nets[name](x, target_label(target, len(x), n_domains, x.device))
        else:
            x = nets[step](x)
    return x


def fit_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Test images are stored at load_size; the generators were trained on crop_size crops.
    Resize the whole image (no crop, nothing of the test image is dropped)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def load_batch(files: list[Path], size: int, device: torch.device) -> torch.Tensor:
    return fit_to(torch.stack([load_tensor(p) for p in files]).to(device), size)


def write_batch(out: Path, folder: str, names: list[Path], images: torch.Tensor) -> None:
    (out / folder).mkdir(parents=True, exist_ok=True)
    for p, img in zip(names, images, strict=True):
        save_png(out / folder / p.name, to_image(img))


def latent_outputs(nets: dict[str, torch.nn.Module], a: torch.Tensor, b: torch.Tensor,
                   codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """A multimodal generator's outputs for a batch: one per code (codes: (K, N, nz)), and, with an
    encoder, the one of the ground truth's encoded style."""
    G = nets["G"]
    out = {f"samples/{k:02d}": G(a, z) for k, z in enumerate(codes)}
    if "E" in nets:
        out[f"{AtoB}_encoded"] = G(a, nets["E"](b)[0])
    return out


def translate_multimodal(nets: dict[str, torch.nn.Module], prepared: Path, out: Path, size: int, *, n_samples: int,
                         nz: int, seed: int, batch_size: int, device: torch.device, progress: bool) -> tuple[dict, dict]:
    """BicycleGAN's samples, encoded-style outputs and (with E) the recovered codes; (counts, info extra)."""
    files_a, files_b = list_images(prepared / test_dir(AtoB.source)), list_images(prepared / test_dir(AtoB.target))
    codes = torch.randn(n_samples, len(files_a), nz, generator=torch.Generator().manual_seed(seed))
    recovered: list[list[torch.Tensor]] = [[] for _ in range(n_samples)]
    for i in tqdm(range(0, len(files_a), batch_size), desc=f"{AtoB} samples", disable=not progress):
        a = load_batch(files_a[i:i + batch_size], size, device)
        b = load_batch(files_b[i:i + batch_size], size, device)
        for folder, images in latent_outputs(nets, a, b, codes[:, i:i + batch_size].to(device)).items():
            write_batch(out, folder, files_a[i:i + batch_size], images)
            if "E" in nets and folder.startswith("samples/"):
                # the cLR-GAN cycle z -> G(A, z) -> E: codes recovered before 8-bit rounding
                recovered[int(folder[-2:])].append(nets["E"](images)[0].cpu())
    shutil.copytree(out / "samples" / "00", out / str(AtoB))
    counts = {str(AtoB): len(files_a), "samples": n_samples * len(files_a)}
    if "E" in nets:
        counts[f"{AtoB}_encoded"] = len(files_a)
        translations.write_latent(out, codes, torch.stack([torch.cat(r) for r in recovered]))
    return counts, {"samples": {"folder": "samples", "n_samples": n_samples, "nz": nz, "seed": seed}}


@torch.no_grad()
def translate_test_sets(model_path: str | Path, prepared: str | Path, translated: str | Path, *, batch_size: int,
                        n_samples: int, seed: int, device: torch.device, progress: bool = True,
                        generator_mode: str = "paper") -> dict:
    """Translate the prepared test sets with the model file into the folder `translated` (replaced
    atomically); returns what info.json says. Generators in training mode (pix2pix under its paper's
    protocol) see one image per batch, so that batch normalisation uses that image's statistics as in
    the authors' test.py, and their dropout draws from `seed`."""
    ckpt, nets = model_file.load(model_path, device, generator_mode)
    mode = "train" if any(net.training for net in nets.values()) else "eval"
    if mode == "train":
        batch_size = 1
        torch.manual_seed(seed)
    size = ckpt["config"]["train"]["crop_size"]
    prepared = Path(prepared)
    domains = list(ckpt.get("domains") or TWO_DOMAINS)
    routes = routes_for(ckpt["model"], domains, ckpt.get("pair"))
    extra: dict = {}
    with atomic_dir(translated) as out:
        if MODELS[ckpt["model"]].multimodal:
            counts, extra = translate_multimodal(nets, prepared, out, size, n_samples=n_samples,
                                                 nz=ckpt["config"][ckpt["model"]]["nz"], seed=seed,
                                                 batch_size=batch_size, device=device, progress=progress)
        else:
            counts = {}
            for route, chain in routes.items():
                files = list_images(prepared / test_dir(route.source))
                for i in tqdm(range(0, len(files), batch_size), desc=str(route), disable=not progress):
                    x = apply(nets, chain, load_batch(files[i:i + batch_size], size, device), len(domains))
                    write_batch(out, str(route), files[i:i + batch_size], x)
                counts[str(route)] = len(files)
        info = {"model": ckpt["model"], "checkpoint": str(model_path), "size": size, "counts": counts,
                "routes": {str(r): {"input": test_dir(r.source), "target": test_dir(r.end), "generators": list(chain)}
                           for r, chain in routes.items()},
                "fingerprint": ckpt["fingerprint"], "generator_mode": mode, **extra}
        translations.write_info(out, info)
    return info
