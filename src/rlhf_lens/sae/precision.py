"""Which dtype an SAE's matrix products run in while it trains (``sae.autocast``).

Training under ``torch.autocast(dtype=bfloat16)`` runs the products of the step (encoder, decoder and
their gradients) on bfloat16 inputs with float32 accumulation, while parameters, Adam's state, the loss
and every saved tensor stay float32; the metrics are computed afterwards in float32/float64. SAELens
(``autocast``) and sparsify train this way on GPUs. On a CPU with native bfloat16 (AVX512-BF16 or AMX)
oneDNN's bfloat16 products are 3-8x faster than float32 ones at the default sizes (an Intel Xeon with AMX,
family 6 model 207: 512 x 576 x 576 in 0.74 vs 2.5 ms, one thread); on a CPU without it they are emulated
and slower, which is why ``auto`` asks the hardware.
"""

from __future__ import annotations

import contextlib

import torch

SETTINGS = ("auto", "bfloat16", "off")


def native_bfloat16(device: str | torch.device) -> bool:
    """Whether ``device`` computes bfloat16 products in hardware (a CUDA GPU with bf16, or a CPU with
    AVX512-BF16 or AMX tiles); torch's CPU probes are private, so a torch without them answers False."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def autocast_dtype(setting: str, device: str | torch.device) -> torch.dtype | None:
    """The dtype the step's products run in for ``setting`` on ``device``; None: float32 (no autocast)."""
    if setting not in SETTINGS:
        raise ValueError(f"sae.autocast {setting!r}: expected one of {', '.join(SETTINGS)}")
    if setting == "off" or (setting == "auto" and not native_bfloat16(device)):
        return None
    return torch.bfloat16


def autocast(dtype: torch.dtype | None, device: str | torch.device):
    """A context that runs the products in ``dtype`` on ``device`` (a no-op for None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
