"""The rules across params.yaml's sections that no single knob can express: the shared ones here, each
model's own in its declaration (pipeline/models/<name>/__init__.py: check). Each raises a ConfigError that
names the key, what was found and the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.data.registry import dataset_spec
from pipeline.data.synthetic import MULTI_DOMAINS, domain_count
from pipeline.errors import ConfigError
from pipeline.models.names import UNET_LEVELS
from pipeline.models.registry import MODELS

if TYPE_CHECKING:
    from pipeline.config import Params


class Rules:
    """What Params adds to its fields: the selected model's section and the rules across sections."""

    @property
    def net(self) -> Any:
        """The section of the selected model."""
        return getattr(self, self.model)

    def check(self) -> None:
        """Cross-field rules that no single field can express: the shared ones, then the model's own."""
        check_domains(self)
        check_model_data(self)
        MODELS[self.model].check(self)
        check_networks(self)
        check_execution(self)
        check_synthetic(self)

    def check_test_set_size(self, n_test: int) -> None:
        """Rules that need the number of test images: known from params for the embedded dataset, from
        the prepared manifest otherwise (train and evaluate call this before they start work)."""
        k = self.evaluate.kid_subset_size
        if k is not None and k > n_test:
            raise ConfigError(f"evaluate.kid_subset_size={k} is larger than the test set ({n_test} images per "
                              f"domain): KID would sample the same images over and over; set it to null "
                              f"(= min(1000, test-set size // 2)) or to at most {n_test}")


def check_domains(params: Params) -> None:
    """data.domains and train.pair against the dataset and the model's domain count."""
    spec, n_domains, pair = dataset_spec(params.data), domain_count(params.data), params.train.pair
    if params.data.domains is not None and spec.layout != "synthetic_multi":
        raise ConfigError(f"data.domains selects domains of a multi-domain dataset (synthetic_multi), but "
                          f"data.dataset={spec.name} has the two domains A and B; set data.domains to null")
    if n_domains < 2:
        raise ConfigError(f"data.domains={list(params.data.domains or ())}: a translation needs at least two domains")
    multi_domain = MODELS[params.model].multi_domain
    if pair is not None:
        named = params.data.domains or MULTI_DOMAINS
        if multi_domain or spec.layout != "synthetic_multi":
            raise ConfigError(f"train.pair picks the two domains of a multi-domain set (synthetic_multi) that a "
                              f"two-domain model translates between; model={params.model} on data.dataset={spec.name}: "
                              f"set train.pair to null")
        if len(pair) != 2 or not set(pair) <= set(named):
            raise ConfigError(f"train.pair={list(pair)} must name two of the prepared domains "
                              f"({', '.join(named)}), e.g. -S 'train.pair=[{named[0]},{named[1]}]'")
    if not multi_domain and n_domains != 2 and pair is None:
        multi = next(name for name, m in MODELS.items() if m.multi_domain)
        raise ConfigError(f"model={params.model} translates between two domains, but data.domains selects "
                          f"{n_domains} ({', '.join(params.data.domains or MULTI_DOMAINS)}); pick the two with "
                          f"-S 'train.pair=[day,dusk]' (or prepare two: -S 'data.domains=[day,dusk]'), or use "
                          f"model={multi}")


def check_model_data(params: Params) -> None:
    """A paired model needs paired training data."""
    layout = dataset_spec(params.data).layout
    if MODELS[params.model].paired and layout == "synthetic_multi":
        raise ConfigError(f"model={params.model} needs paired training data, but synthetic_multi's training domains "
                          f"are unpaired; use data.dataset=synthetic (its label <-> day photo pairs)")
    if MODELS[params.model].paired and layout == "unaligned":
        unpaired = next(name for name, m in MODELS.items() if not m.paired and not m.multi_domain)
        raise ConfigError(f"model={params.model} needs paired training data, but data.dataset={params.data.dataset} is "
                          f"unpaired; use a paired set (synthetic, *_pix2pix) or model={unpaired}")


def check_networks(params: Params) -> None:
    """The crop against the load size and what the model's networks need of its side."""
    net, crop = params.net, params.train.crop_size
    generator = net.generator
    if net.discriminator == "basic_multi" and crop < 64:
        raise ConfigError(f"{params.model}.discriminator=basic_multi judges the image also at half size, where a 70x70 "
                          f"PatchGAN needs 32px: train.crop_size must be >= 64, got {crop}; "
                          f"use {params.model}.discriminator=basic")
    if crop > params.prepare.load_size:
        raise ConfigError(f"train.crop_size={crop} is larger than prepare.load_size="
                          f"{params.prepare.load_size}; crop_size must be <= load_size")
    if generator.startswith("unet_"):
        side = 2 ** UNET_LEVELS[generator]
        if crop % side:
            raise ConfigError(f"{params.model}.generator={generator} needs train.crop_size divisible by "
                              f"{side}, got {crop}")
    elif crop % 4:
        raise ConfigError(f"train.crop_size={crop} must be divisible by 4 for {params.model}'s {generator} generator")


def check_execution(params: Params) -> None:
    t = params.train
    if t.cudnn_benchmark and t.deterministic:
        raise ConfigError("train.cudnn_benchmark=true contradicts train.deterministic=true (cuDNN's timed algorithm "
                          "choice is not reproducible); set one of them to false")
    if t.precision == "fp16" and t.device == "cpu":
        raise ConfigError("train.precision=fp16 needs CUDA (fp16 autocast with a GradScaler); on CPU use bf16 or fp32")
    if t.nnodes > 1 and t.rdzv_endpoint is None:
        raise ConfigError(f"train.nnodes={t.nnodes} needs train.rdzv_endpoint (host:port reachable from every node)")


def check_synthetic(params: Params) -> None:
    """The embedded world's sizes against the test-set rules and prepare's minimum size."""
    layout, s = dataset_spec(params.data).layout, params.data.synthetic
    if not layout.startswith("synthetic"):
        return
    params.check_test_set_size(s.n_test_multi if layout == "synthetic_multi" else s.n_test)
    if params.prepare.min_size > s.image_size:
        raise ConfigError(f"prepare.min_size={params.prepare.min_size} is larger than data.synthetic.image_size="
                          f"{s.image_size}: every generated image would be rejected; lower min_size")
