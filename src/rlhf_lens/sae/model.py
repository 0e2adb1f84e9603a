"""Where the architectures used to live; kept so that ``rlhf_lens.sae.model`` imports still work.

Each architecture now has its own file (``tied_relu``, ``topk``), the registry is ``registry``
and the shared machinery is ``base``.
"""

from .base import activation_scale, fold_input_scale
from .registry import KINDS, build_sae
from .tied_relu import TiedReLUSAE
from .topk import TopKSAE

__all__ = ["KINDS", "TiedReLUSAE", "TopKSAE", "activation_scale", "build_sae", "fold_input_scale"]
