"""What the metrics read, loaded once per evaluation: the translations and their info, the real
test images, the manifest, the ground-truth labels, the device."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from pipeline.artifacts import manifest as manifest_file
from pipeline.artifacts import translations
from pipeline.config import Params
from pipeline.data.datasets import list_images, load_uint8
from pipeline.domains import Route, is_test_dir, test_dir
from pipeline.runtime import resolve_device


def target_domain(route: Route) -> str:
    """The real test folder a route's outputs should look like: AtoB -> testB, AtoBtoA -> testA."""
    return test_dir(route.end)


def source_domain(route: Route) -> str:
    """The real test folder a translation was made from: AtoB -> testA."""
    return test_dir(route.source)


class Context:
    def __init__(self, params: Params):
        self.params = params
        self.prepared, self.translated = Path(params.paths.prepared), Path(params.paths.translated)
        self.info = translations.read_info(self.translated)
        self.manifest, _ = manifest_file.read(self.prepared)
        manifest_file.check_test_set(params, self.manifest)
        self.size: int = self.info["size"]
        # e.g. {AtoB: {"input": "testA", ...}}: info.json's routes, by their folder names
        self.routes: dict[Route, dict] = {Route.parse(k): v for k, v in self.info["routes"].items()}
        self.device = resolve_device(params.evaluate.device, "evaluate.device")
        self.paired = self.manifest["pairs"]["test"] is not None
        self._images: dict[str, torch.Tensor] = {}

    def directions(self) -> list[Route]:
        """The translation directions this model has (AtoB, and BtoA for CycleGAN; StarGAN: every <X>to<Y>)."""
        return [r for r in self.routes if not r.is_cycle]

    @property
    def multi_domain(self) -> bool:
        """More than two domains: every metric also gets its mean over the routes."""
        return len(self.manifest["domains"]) > 2

    def domain_name(self, folder: str) -> str:
        return manifest_file.domain_name(self.manifest, folder)

    def names(self, folder: Route | str) -> list[str]:
        return [p.name for p in list_images(self.translated / str(folder))]

    def fake(self, folder: Route | str) -> torch.Tensor:
        """Translations (uint8, N x 3 x size x size) of a route or sample folder."""
        return self._load(self.translated / str(folder))

    def real(self, domain: str) -> torch.Tensor:
        """Real test images at the translation size (ground truth and inputs)."""
        return self._load(self.prepared / domain)

    def _load(self, folder: Path) -> torch.Tensor:
        key = str(folder)
        if key not in self._images:
            self._images[key] = load_uint8(list_images(folder), size=self.size)
        return self._images[key]

    @cached_property
    def truth_ids(self) -> np.ndarray | None:
        """Class ids of the test scenes: the first test photo domain's (testB's in a two-domain set; a multi-domain
        set's test scenes are the same in every domain)."""
        lab = next((lab for f, lab in self.manifest["labels"].items() if is_test_dir(f)), None)
        return None if lab is None else load_uint8(list_images(self.prepared / lab), size=self.size, labels=True).numpy()

    @cached_property
    def latent(self) -> dict[str, torch.Tensor] | None:
        """BicycleGAN's codes and recovered codes, when the model has an encoder."""
        return translations.read_latent(self.translated)
