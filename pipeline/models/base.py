"""What the training loop needs of any model, and how a step is executed.

A model (pipeline/models/<name>/model.py, declared in its package's __init__.py) owns its networks, their
optimizers and any state of its own (image pools, a random stream), and defines `train_step` and
`sample_rows`. This base holds the execution options, none of which changes the objective:
- precision "bf16"/"fp16": forward passes under torch.autocast (fp16 with a GradScaler);
- channels_last memory format for inputs and weights; torch.compile of each network;
- under torchrun, each network wrapped in its own DistributedDataParallel (`net(name)`), while a
  network that a step only reads (D in G's step) is called unwrapped (`raw(name)`): no gradient
  sync is wasted on it and DDP sees the same pattern of calls every iteration (static graph).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.models.networks import build_net, init_weights
from pipeline.models.pool import ImagePool

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Net:
    """A network with the spec that rebuilds it: {'role', 'name', 'kwargs'}."""

    module: nn.Module
    spec: dict


def make_net(role: str, name: str, init_type: str, init_gain: float, device: torch.device, **kwargs) -> Net:
    module = init_weights(build_net(role, name, **kwargs), init_type, init_gain).to(device)
    return Net(module, {"role": role, "name": name, "kwargs": kwargs})


def discriminator_kwargs(section, in_channels: int) -> dict:
    """Constructor arguments of a model section's discriminator (n_layers only where it takes them)."""
    extra = {"n_layers": section.n_layers_d} if section.discriminator == "n_layers" else {}
    return dict(in_channels=in_channels, ndf=section.ndf, norm=section.norm, **extra)


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    """Freeze D while G is updated (saves computing D's weight gradients)."""
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def adam(nets: list[nn.Module], lr: float, betas: tuple[float, float], fused: bool = False) -> torch.optim.Adam:
    # fused=False leaves torch's default (foreach); fused=True runs one kernel per parameter group
    return torch.optim.Adam(itertools.chain(*(n.parameters() for n in nets)), lr=lr, betas=betas,
                            **({"fused": True} if fused else {}))


def stream_seed(*parts: int) -> int:
    """A seed for one random stream of one rank: distinct streams never share a sequence."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


class GANModel:
    """Networks, optimizers and per-rank state of one model, and how its steps are executed."""

    # The generators' mode at test time under the model's paper (translate.generator_mode "paper"),
    # recorded in the model file: "eval", or "train" (dropout on, batch-norm statistics of each image).
    test_mode = "eval"

    def __init__(self, nets: dict[str, Net], optimizers: dict[str, torch.optim.Optimizer], *,
                 generators: tuple[str, ...], device: torch.device, pools: dict[str, ImagePool] | None = None,
                 rng: torch.Generator | None = None):
        self.nets = nets
        self.optimizers = optimizers
        self.generators = generators  # the nets later stages need (kept in the final checkpoint)
        self.device = device
        self.pools = pools or {}      # per rank: histories of generated images
        self.rng = rng                # per rank: a model's own random stream (StarGAN's labels, CUT's patches)
        self.amp_dtype: torch.dtype | None = None
        self.memory_format = torch.contiguous_format
        self.scaler: torch.amp.GradScaler | None = None
        self.wrapped: dict[str, nn.Module] = {}
        # each optimizer's lr as constructed: the schedule scales it (set_lr_factor)
        self.base_lr = {k: o.param_groups[0]["lr"] for k, o in optimizers.items()}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def sample_rows(self, *reals: torch.Tensor) -> tuple[list[str], list[torch.Tensor]]:
        """(column titles, rows of a sample grid) from test images of each domain (A, B, ...): what the run's
        sample pictures show."""
        raise NotImplementedError

    def configure(self, *, precision: str = "fp32", channels_last: bool = False, compile: bool = False,
                  ddp_device_ids: list[int] | None = None, distributed: bool = False) -> None:
        self.amp_dtype = PRECISIONS[precision]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        if channels_last:
            self.memory_format = torch.channels_last
            for n in self.nets.values():
                n.module.to(memory_format=torch.channels_last)
        if compile:
            for n in self.nets.values():
                n.module.compile()  # in place: state_dict keys stay those of the plain module
        self.wrapped = {}
        if distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.wrapped = {k: DDP(n.module, device_ids=ddp_device_ids, static_graph=True) for k, n in self.nets.items()}

    def net(self, name: str) -> nn.Module:
        """The network as trained: DDP-wrapped under torchrun, else the module itself."""
        return self.wrapped.get(name) or self.nets[name].module

    def raw(self, name: str) -> nn.Module:
        return self.nets[name].module

    def amp(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def inputs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        real_A, real_B = (batch[k].to(self.device, memory_format=self.memory_format, non_blocking=True) for k in "AB")
        return real_A, real_B

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, *names: str) -> None:
        for name in names:
            if self.scaler:
                self.scaler.step(self.optimizers[name])
            else:
                self.optimizers[name].step()

    def end_step(self) -> None:
        if self.scaler:
            self.scaler.update()

    def set_lr_factor(self, factor: float) -> float:
        """Every optimizer at `factor` times its initial lr (the schedule's factor); returns G's lr."""
        for k, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = self.base_lr[k] * factor
        return self.optimizers["G"].param_groups[0]["lr"]

    def train(self, mode: bool = True) -> None:
        for net in self.nets.values():
            net.module.train(mode)

    def state_dict(self) -> dict:
        """What every rank shares: weights and optimizer states (identical on all ranks)."""
        return {
            "nets": {k: n.module.state_dict() for k, n in self.nets.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict() if self.scaler else {},
        }

    def load_state_dict(self, state: dict) -> None:
        for k, n in self.nets.items():
            n.module.load_state_dict(state["nets"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def local_state(self) -> dict:
        """What differs per rank: the image pools and the model's own random stream."""
        return {"pools": {k: p.state_dict() for k, p in self.pools.items()},
                **({"rng": self.rng.get_state()} if self.rng is not None else {})}

    def load_local_state(self, state: dict) -> None:
        for k, p in self.pools.items():
            p.load_state_dict(state["pools"][k], self.device)
        if self.rng is not None:
            self.rng.set_state(state["rng"])
