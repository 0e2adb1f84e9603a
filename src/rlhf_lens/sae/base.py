"""What every SAE architecture shares: its config's base class, the module base class, and the
input scaling (``activation_scale``, ``fold_input_scale``).

An architecture (``tied_relu``, ``topk``, ...) subclasses ``ArchitectureConfig`` with only its own
fields and ``SAE`` with its encode, decode, loss and the SAELens names of its tensors and settings;
``registry`` maps the name written in ``cfg.json`` to the pair, and ``io`` saves and loads any
registered architecture through it.

Shapes: ``x`` is (tokens, d) activations, ``f`` is (tokens, m) latents, m the dictionary size.
Saved tensors use the SAELens names and shapes: ``W_enc`` (d, m), ``W_dec`` (m, d), ``b_enc`` (m),
``b_dec`` (d).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn


def activation_scale(x: torch.Tensor) -> float:
    """The constant c that gives ``c * x`` a mean L2 norm of sqrt(d) (x: (tokens, d)).

    SAEs are trained on ``c * x`` so that the L1 coefficient means the same at every layer and
    model: MLP outputs differ in norm by >10x between blocks (SmolLM2's last blocks: ~800 vs ~50).
    """
    norm = x.norm(dim=1).mean().item()
    return 1.0 if norm == 0 else x.shape[1] ** 0.5 / norm


@torch.no_grad()
def fold_input_scale(sae: nn.Module, c: float) -> None:
    """Make an SAE trained on ``c * x`` work on raw ``x``: latents become 1/c times theirs, the
    reconstruction 1/c times theirs, atoms unchanged (every architecture here is linear up to a
    ReLU/TopK, which commute with a positive scale), so dividing the two biases by c is exact."""
    sae.b_enc.div_(c)
    sae.b_dec.div_(c)


@dataclasses.dataclass(frozen=True)
class ArchitectureConfig:
    """Base of an architecture's settings; subclasses add only their own (typed, one docstring each).

    The dictionary's shape (d, m) is not part of it: it is saved as SAELens's ``d_in``/``d_sae``.
    """

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """The config from ``data``, keeping only this class's fields (others are ignored, so one dict
        of every architecture's settings builds each, and files with extra keys still load)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class SAE(nn.Module):
    """Base of the SAE modules. A subclass sets ``architecture`` (its registry name),
    ``config_class`` and ``saelens_architecture``, and defines ``from_config``, ``config``,
    ``encode``, ``decode`` and ``loss``; it overrides the rest only where it differs."""

    architecture: ClassVar[str]
    """Registry name, written to cfg.json as ``rlhf_lens.architecture`` (also the ``sae.kinds`` value)."""
    config_class: ClassVar[type[ArchitectureConfig]]
    saelens_architecture: ClassVar[str]
    """SAELens's ``architecture`` whose inference reproduces this one (written at cfg.json's top level)."""
    TENSORS: ClassVar[tuple[str, ...]] = ("W_enc", "W_dec", "b_enc", "b_dec")
    """Parameters saved as they are, under their own names (the default ``saelens_tensors``)."""

    d: int
    m: int

    @property
    def kind(self) -> str:
        """The architecture's registry name (the ``sae.kinds`` value)."""
        return self.architecture

    @classmethod
    def from_config(cls, d: int, m: int, cfg: ArchitectureConfig) -> "SAE":
        raise NotImplementedError

    def config(self) -> ArchitectureConfig:
        raise NotImplementedError

    def atoms(self) -> torch.Tensor:
        """Unit-norm dictionary atoms, (m, d)."""
        raise NotImplementedError

    def forward(self, x):
        f = self.encode(x)
        return self.decode(f), f

    def after_step(self) -> None:
        """Called after every optimiser step (e.g. to renormalise atoms); nothing by default."""

    @classmethod
    def saelens_shapes(cls, d: int, m: int) -> dict[str, tuple[int, ...]]:
        """The saved tensors' names and shapes (what loading checks)."""
        return {"W_enc": (d, m), "W_dec": (m, d), "b_enc": (m,), "b_dec": (d,)}

    def saelens_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors to save, by their SAELens names."""
        return {name: getattr(self, name).detach().clone() for name in self.TENSORS}

    def load_saelens_tensors(self, t: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name in self.TENSORS:
                getattr(self, name).copy_(t[name])

    def saelens_config(self) -> dict[str, Any]:
        """SAELens config fields of this architecture beyond d_in, d_sae, dtype, device, metadata, e.g.
        ``apply_b_dec_to_input`` and TopK's ``k``: the values under which SAELens computes our function."""
        return {}
