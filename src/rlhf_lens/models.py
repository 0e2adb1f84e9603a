"""Load models from any spec and save them as plain Hugging Face folders.

``prepare_model`` turns a spec (hub id, local folder, local or packaged GGUF) into
``resources/models/{name}/``: config.json, model.safetensors and the tokenizer, which every
later stage loads with ``load_prepared``. A model loaded from GGUF carries a GGUF
quantization config and cannot be ``save_pretrained`` as is, so it is rebuilt from its plain
config and its dequantised state dict before saving.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_dir
from .model_specs import ModelSpec, resolve_spec

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ModelConfig:
    """The base model (``model:`` in config.yaml)."""

    name: str
    """Folder name of the prepared model: resources/models/{name}/."""
    spec: str
    """Hub id, local folder, local .gguf or package:<pkg>/<file> (see rlhf_lens.model_specs)."""
    revision: str | None = None
    """Hub revision for hub ids; None for the default branch."""
    trust_remote_code: bool = False
    """Allow the model repository's own Python code."""
    dtype: str = "float32"
    """Floating-point type of the saved weights: float32, bfloat16 or float16."""


_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def _torch_dtype(name: str):
    import torch

    return getattr(torch, _DTYPES[name])


def load_from_spec(spec: ModelSpec, *, revision: str | None = None, trust_remote_code: bool = False,
                   dtype: str = "float32"):
    """Load (model, tokenizer) from a resolved spec. Weights load through safetensors only.

    GGUF files are dequantised to ``dtype`` by transformers + gguf.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec.is_gguf:
        path = Path(spec.location)
        kwargs = {"gguf_file": path.name}
        tokenizer = AutoTokenizer.from_pretrained(path.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(path.parent, dtype=_torch_dtype(dtype), **kwargs)
        return _plain_copy(model), tokenizer
    common = {"revision": revision, "trust_remote_code": trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(spec.location, **common)
    model = AutoModelForCausalLM.from_pretrained(
        spec.location, dtype=_torch_dtype(dtype), use_safetensors=True, **common
    )
    return model, tokenizer


def _plain_copy(model):
    """Rebuild a GGUF-loaded model as an ordinary one (no quantization config) with the same weights."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = ""
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    # Tied output embeddings appear as "missing" when the state dict holds them once.
    missing = [k for k in missing if not (config.tie_word_embeddings and k.endswith("lm_head.weight"))]
    if missing or unexpected:
        raise RuntimeError(f"GGUF weights do not fit the rebuilt model: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        plain.tie_weights()
    return plain.eval()


def prepare_model(cfg: ModelConfig, out_dir: str | os.PathLike, check=None) -> Path:
    """Resolve ``cfg.spec``, load it and save a plain HF folder at ``out_dir`` (atomically).

    Also writes ``rlhf_lens.json`` recording the spec it came from. ``check(config_dict)``, if given, sees the
    loaded model's config.json contents before anything is written, and raises to refuse settings that do not
    fit the model (the first moment its width is known when the spec is a GGUF file or a hub id).
    """
    spec = resolve_spec(cfg.spec)
    log.info("loading %s (%s)", cfg.spec, spec.kind)
    model, tokenizer = load_from_spec(spec, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code,
                                      dtype=cfg.dtype)
    if check is not None:
        check(model.config.to_dict())
    if tokenizer.pad_token is None:
        # Generation and batching need a pad token; EOS is the usual choice for causal LMs.
        tokenizer.pad_token = tokenizer.eos_token
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "rlhf_lens.json").write_text(json.dumps(
            {"spec": cfg.spec, "kind": spec.kind, "location": spec.location, "dtype": cfg.dtype,
             "n_parameters": sum(p.numel() for p in model.parameters())}, indent=2) + "\n")
    log.info("saved %s (%d layers, d_model %d) to %s", model.config.model_type,
             model.config.num_hidden_layers, model.config.hidden_size, out)
    return out


def load_prepared(model_dir: str | os.PathLike, device: str = "cpu", trust_remote_code: bool = False):
    """Load (model, tokenizer) from a folder written by ``prepare_model`` (or any HF folder), in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True,
                                                 trust_remote_code=trust_remote_code)
    return model.to(device).eval(), tokenizer
