"""Domains and routes: the one home of their names.

A prepared dataset's domains are letters, as the authors' trainA/trainB: A, B, and on a multi-domain set
C, D, ... in the order of params data.domains. A route is a translation between them:

    AtoB      testA translated into domain B
    AtoBtoA   the same translated back into A (CycleGAN's reconstruction F(G(x)))
    toC       any image translated into C (a multi-domain model's generator, e.g. MLflow's generator_toC)

Strings exist only where a name meets a file: folder names (trainA/, testB/, AtoB/), JSON/CSV keys and
command-line arguments; inside the code a route is a `Route`. A leaf module: it imports nothing of the
pipeline, and torch only inside `one_hot`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

LETTERS = "ABCDEFGH"  # the most domains a dataset has
TWO_DOMAINS = ("A", "B")
TWO_DOMAIN_NAMES = {"A": "A", "B": "B"}  # {letter: name} of a two-domain dataset (its manifest's domains)
FORMS = "<X>to<Y> (e.g. AtoB), <X>to<Y>to<X> (a reconstruction, e.g. AtoBtoA) or to<Y> (e.g. toC), X, Y in A-H"
_FORM = re.compile(r"([A-H])?to([A-H])(?:to([A-H]))?")


@dataclass(frozen=True)
class Route:
    """A translation of domain `source`'s images into domain `target`, and with `back` into that domain
    again (a cycle's reconstruction; back == source). source None: from any domain (a multi-domain
    generator G(x, c) translates every image into its target label c)."""

    source: str | None
    target: str
    back: str | None = None

    def __post_init__(self) -> None:
        for letter in (self.source, self.target, self.back):
            if letter is not None and (len(letter) != 1 or letter not in LETTERS):
                raise ValueError(f"route {self.source}->{self.target}->{self.back}: domains are letters {LETTERS}")
        if self.back is not None and self.source is None:
            raise ValueError(f"a reconstruction route needs a source: to{self.target}to{self.back}")

    @classmethod
    def parse(cls, text: str) -> Route:
        """'AtoB' -> Route("A", "B"); 'AtoBtoA' -> Route("A", "B", back="A"); 'toC' -> Route(None, "C")."""
        m = _FORM.fullmatch(text) if isinstance(text, str) else None
        if m is None or (m.group(1) is None and m.group(3) is not None):
            raise ValueError(f"route {text!r}: valid forms are {FORMS}")
        return cls(m.group(1), m.group(2), m.group(3))

    def __str__(self) -> str:
        return f"{self.source or ''}to{self.target}" + (f"to{self.back}" if self.back else "")

    format = __str__

    @property
    def is_cycle(self) -> bool:
        return self.back is not None

    @property
    def end(self) -> str:
        """The domain the route's outputs are in: the target, or for a reconstruction the domain it returns to."""
        return self.back or self.target

    @property
    def forward(self) -> Route:
        """The translation without its way back: AtoBtoA -> AtoB."""
        return Route(self.source, self.target)

    def cycle(self) -> Route:
        """The reconstruction of this translation: AtoB -> AtoBtoA."""
        assert self.source is not None and self.back is None, self
        return Route(self.source, self.target, self.source)

    def relabel(self, pair: list[str] | tuple[str, ...] | None) -> Route:
        """A two-domain route with A and B replaced by the pair's letters (AtoB -> CtoA for pair [C, A])."""
        if not pair:
            return self
        swap = dict(zip(TWO_DOMAINS, pair, strict=True))
        return Route(*(None if x is None else swap[x] for x in (self.source, self.target)),
                     None if self.back is None else swap[self.back])


# A two-domain model's translations: a dataset's A to B and back (the keys of metrics.json are declared in them).
AtoB, BtoA = Route("A", "B"), Route("B", "A")
TWO_DOMAIN_ROUTES = (AtoB, BtoA)


def letters(k: int) -> tuple[str, ...]:
    """The letters of k domains: A, B, ..."""
    if not 1 <= k <= len(LETTERS):
        raise ValueError(f"{k} domains: between 1 and {len(LETTERS)}")
    return tuple(LETTERS[:k])


def ordered_routes(domains: str | list[str] | tuple[str, ...]) -> list[Route]:
    """Every ordered pair of distinct domains (letters), source-major: AtoB, AtoC, BtoA, BtoC, CtoA, CtoB."""
    return [Route(x, y) for x in domains for y in domains if x != y]


def index(letter: str) -> int:
    """A domain's position: A -> 0 (its index in the one-hot label and in data.domains)."""
    return LETTERS.index(letter)


def train_dir(letter: str) -> str:
    """The prepared folder of a domain's training images: A -> trainA."""
    return f"train{letter}"


def test_dir(letter: str) -> str:
    """The prepared folder of a domain's test images: A -> testA."""
    return f"test{letter}"


def paired_train_dir(letter: str) -> str:
    """The synthetic world's label maps of domain B's training scenes, paired with them: A -> paired_trainA."""
    return f"paired_{train_dir(letter)}"


def labels_dir(folder: str) -> str:
    """The class-id maps of a prepared photo folder: testB -> testB_labels."""
    return f"{folder}_labels"


def is_train_dir(folder: str) -> bool:
    """A domain's prepared training folder (trainA; not trainB_labels or paired_trainA)."""
    return re.fullmatch(r"train[A-H]", folder) is not None


def is_test_dir(folder: str) -> bool:
    """A domain's prepared test folder (testA; not testB_labels)."""
    return re.fullmatch(r"test[A-H]", folder) is not None


def letter_of(folder: str) -> str:
    """The domain of a prepared folder: testC -> C, trainB_labels -> B."""
    m = re.fullmatch(r"(?:paired_)?(?:train|test)([A-H])(?:_labels)?", folder)
    if m is None:
        raise ValueError(f"folder {folder!r}: not a prepared domain folder (train<X>, test<X>, X in A-H)")
    return m.group(1)


def one_hot(domains: torch.Tensor, k: int) -> torch.Tensor:
    """StarGAN's domain label c (Choi et al. 2018, Sec. 3): the one-hot float vectors of domain indices."""
    import torch.nn.functional as F

    return F.one_hot(domains.long(), k).float()


def target_label(target: int, n: int, k: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The label c of target domain index `target` for a batch of n images, of k domains."""
    import torch

    return one_hot(torch.full((n,), target, device=device), k)
