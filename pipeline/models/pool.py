"""Image pool (Shrivastava et al. 2017; CycleGAN Sec. 4): D is updated with a history of
generated images rather than only the latest ones, which reduces model oscillation.

Semantics of the authors' ImagePool: until the pool holds `size` images, every new image is stored
and returned. Afterwards each new image is, with probability 1/2, swapped with a random stored one
(the stored one is returned and the new one kept), otherwise returned as is. size 0 = no pool.

The pool draws from its own seeded generator, and `state_dict` carries images and generator state,
so a resumed run makes the same choices as an uninterrupted one.
"""

from __future__ import annotations

import torch


class ImagePool:
    def __init__(self, size: int, seed: int):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.rng).item() > 0.5:
                i = int(torch.randint(len(self.images), (), generator=self.rng).item())
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        return {"images": [t.cpu() for t in self.images], "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.images = [t.to(device) for t in state["images"]]
        self.rng.set_state(state["rng"])
