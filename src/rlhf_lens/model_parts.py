"""The parts of a causal language model that the stages reach into, found the same way everywhere.

Transformer blocks (``find_blocks``), the module whose output is a hook site (``site_module``), a
module output's hidden-state tensor and its replacement (``output_tensor``, ``replace_output``),
the padding id used for batching (``pad_token_id``), each vocabulary token's text
(``token_texts``), and the way from a residual-stream direction to the logits it promotes
(``final_norm``, ``direction_logits``). Works for the Llama (SmolLM2), GPT-NeoX (Pythia) and GPT-2 families and any
model whose blocks are a ``ModuleList`` of ``num_hidden_layers`` modules. Nothing here loads a model.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

SITES = ("mlp_out", "resid_post")
"""Hook sites: mlp_out (a block's MLP output, before the residual add) and resid_post (the block's output)."""
_MLP_NAMES = ("mlp", "feed_forward", "ffn")
_BLOCK_PATHS = ("model.layers", "gpt_neox.layers", "transformer.h", "model.decoder.layers", "layers")


def find_blocks(model) -> torch.nn.ModuleList:
    """The ModuleList of transformer blocks of a causal LM (Llama, GPT-NeoX, GPT-2 families, ...)."""
    for path in _BLOCK_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList) and len(obj):
            return obj
    n = getattr(model.config, "num_hidden_layers", None)
    for _name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"cannot find the transformer blocks of {type(model).__name__}: looked for "
                     f"{', '.join(_BLOCK_PATHS)} and a ModuleList of num_hidden_layers={n} modules")


def site_module(block: torch.nn.Module, site: str, layer: int) -> torch.nn.Module:
    """The module whose forward output is the activation at ``site`` of ``block``."""
    if site not in SITES:
        raise ValueError(f"unknown hook site {site!r} (config key 'activations.site'): expected one of {', '.join(SITES)}")
    if site == "resid_post":
        return block
    for name in _MLP_NAMES:
        module = getattr(block, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise ValueError(f"hook site 'mlp_out' (config key 'activations.site'): block {layer} "
                     f"({type(block).__name__}) has no MLP submodule named {', '.join(_MLP_NAMES)}; "
                     "use resid_post")


def check_layers(layers, n_layers: int, source: str = "layers") -> list[int]:
    """Validate block indices against the model's depth; returns them sorted and unique."""
    bad = [L for L in layers if not isinstance(L, int) or L < 0 or L >= n_layers]
    if bad or not layers:
        raise ValueError(f"{source}: layer index(es) {bad or layers} out of range: the model has {n_layers} "
                         f"blocks, expected integers in 0..{n_layers - 1}")
    return sorted(set(layers))


def output_tensor(output):
    """The hidden-state tensor of a module's output (blocks may return a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def replace_output(output, new: torch.Tensor):
    return (new, *output[1:]) if isinstance(output, tuple) else new


def pad_token_id(tokenizer) -> int:
    """The id that fills padded positions: the tokenizer's pad token, else its EOS token, else 0.

    Padded positions are always masked out (attention mask, loss and store masks), so the id never
    changes a result; it must only be a real token id, because generation writes it into the
    sequence after EOS. ``prepare_model`` sets pad = EOS when a model has no pad token, so the
    fallbacks serve folders that were not prepared by it.
    """
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0


def token_texts(tokenizer) -> list[str]:
    """Every vocabulary token's text as it reads in a document (" great", not the piece "Ġgreat"), so
    a document's token texts concatenate back to its text, for explainers and the utility scores."""
    return tokenizer.batch_decode([[i] for i in range(len(tokenizer))])


_FINAL_NORMS = ("norm", "final_layer_norm", "final_layernorm", "ln_f")


def final_norm(model):
    """The norm module applied just before the unembedding, or None if the model has none.

    Llama/SmolLM2/Mistral/Qwen call it ``norm``, GPT-NeoX/Pythia ``final_layer_norm``, Phi
    ``final_layernorm``, GPT-2/Falcon ``ln_f``; OPT keeps it under ``decoder``.
    """
    base = model.base_model
    for owner in (base, getattr(base, "decoder", None)):
        for name in _FINAL_NORMS:
            module = getattr(owner, name, None) if owner is not None else None
            if isinstance(module, torch.nn.Module) and getattr(module, "weight", None) is not None:
                return module
    return None


def direction_logits(directions: torch.Tensor, model, vocab_size: int | None = None) -> torch.Tensor:
    """(m, vocab) float32: the logits that each residual-stream direction (m, d) adds, read through the
    model's final norm and unembedding (a logit lens on directions).

    The norm's division by the token's RMS/std is one positive scalar per vector, so it cannot change
    which tokens rank highest, and is left out; its elementwise weight rescales each dimension
    differently, so it is applied. LayerNorm (GPT-NeoX, GPT-2) also subtracts the mean over dimensions,
    so the direction is centred first; its bias (and the lm_head's) adds the same logits whatever the
    direction, so both are left out. ``vocab_size`` cuts an lm_head padded past the tokenizer's
    vocabulary (those rows are no tokens).
    """
    unembed = model.get_output_embeddings()
    if unembed is None:
        raise ValueError(f"{type(model).__name__} has no output embedding (get_output_embeddings() is None): "
                         "a direction's logits need a causal LM with an lm_head")
    with torch.no_grad():
        out = directions.detach().float()
        norm = final_norm(model)
        if norm is None:
            log.warning("%s: no final norm found (looked for %s); using the raw directions",
                        type(model).__name__, ", ".join(_FINAL_NORMS))
        else:
            if isinstance(norm, torch.nn.LayerNorm):
                out = out - out.mean(dim=1, keepdim=True)
            out = out * norm.weight.detach().float()
        logits = out @ unembed.weight.detach().float().T
    return logits[:, :vocab_size] if vocab_size is not None else logits
