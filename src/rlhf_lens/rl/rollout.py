"""What every RL algorithm shares about rollouts: padded batches, sampling, response log-probs, the value head.

Shapes: B rollouts; a query is left-padded to Q tokens and its response right-padded to T
tokens; per-token tensors are (B, T) over response tokens with ``mask`` 1 on real tokens.
Log-probabilities are in nats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn


class ValueHead(nn.Module):
    """V(s_t) = w . h_t + b on the policy's last hidden state h_t (d_model,). Starts at zero."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)


@dataclass
class Batch:
    """A padded batch of query + response token ids, ready for a forward pass."""

    input_ids: torch.Tensor  # (B, Q + T) long
    attention_mask: torch.Tensor  # (B, Q + T) long
    position_ids: torch.Tensor  # (B, Q + T) long
    query_len: int  # Q
    mask: torch.Tensor  # (B, T) float: 1 on real response tokens

    def rows(self, idx: torch.Tensor) -> "Batch":
        return Batch(self.input_ids[idx], self.attention_mask[idx], self.position_ids[idx], self.query_len,
                     self.mask[idx])


def pad_batch(queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], pad_id: int,
              device: str = "cpu") -> Batch:
    """Left-pad queries to Q, right-pad responses to T, and build masks and position ids."""
    Q = max(len(q) for q in queries)
    T = max(max((len(r) for r in responses), default=1), 1)
    B = len(queries)
    ids = torch.full((B, Q + T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, Q + T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.float32)
    for i, (q, r) in enumerate(zip(queries, responses)):
        ids[i, Q - len(q):Q] = q
        attn[i, Q - len(q):Q] = 1
        ids[i, Q:Q + len(r)] = r
        attn[i, Q:Q + len(r)] = 1
        mask[i, :len(r)] = 1
    pos = (attn.cumsum(1) - 1).clamp_min(0)
    return Batch(ids.to(device), attn.to(device), pos.to(device), Q, mask.to(device))


def response_logprobs(model, value_head: ValueHead | None, batch: Batch, with_entropy: bool = False,
                      with_hidden: bool = False):
    """Log-probs (B, T) of the response tokens, values (B, T) or None, entropies (B, T) or None; with
    ``with_hidden`` also the last-layer hidden states at the response tokens (B, T, d_model), for a reward
    that reads the policy (R2M) from this same forward.

    Runs the decoder once and the output layer only on the positions that predict response
    tokens (the vocabulary projection dominates memory for small models).
    """
    out = model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids, use_cache=False)
    Q, T = batch.query_len, batch.mask.shape[1]
    hidden = out.last_hidden_state[:, Q - 1:Q + T - 1]  # state before each response token
    logits = model.get_output_embeddings()(hidden).float()
    logz = torch.logsumexp(logits, dim=-1)
    targets = batch.input_ids[:, Q:Q + T]
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logz
    values = value_head(hidden) if value_head is not None else None
    entropy = None
    if with_entropy:
        probs = torch.softmax(logits, dim=-1)
        entropy = logz - (probs * logits).sum(-1)
    if with_hidden:
        return logp, values, entropy, out.last_hidden_state[:, Q:Q + T]
    return logp, values, entropy


class InverseCDFSampler:
    """A logits processor that draws each row's next token by inverse transform sampling (one uniform
    number per row against the cumulative probabilities) and raises that token to +inf, so that greedy
    decoding emits it.

    The tokens follow softmax(scores / temperature) exactly, as transformers' own sampling does; that
    one draws with ``torch.multinomial``, whose exponential race makes one random number per vocabulary
    entry: 23% of a batch-64 rollout of SmolLM2 (49k tokens) on a CPU, against ~1% here.
    """

    def __init__(self, temperature: float = 1.0, generator: torch.Generator | None = None):
        self.temperature = temperature
        self.generator = generator

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores if self.temperature == 1.0 else scores / self.temperature, dim=-1)
        cdf = probs.cumsum(-1)  # (B, V), float32 as transformers' own sampling
        u = torch.rand((len(cdf), 1), dtype=cdf.dtype, device=cdf.device, generator=self.generator) * cdf[:, -1:]
        token = torch.searchsorted(cdf, u, right=True).clamp_max(cdf.shape[-1] - 1)  # first cdf > u
        # a new tensor: transformers keeps the unprocessed scores it passed in (output_logits)
        return scores.scatter(1, token, float("inf"))


@dataclass
class Generated:
    """A sampled batch with what generation computed on the way. Per-token tensors are (B, T) over the
    response tokens as ``pad_batch`` lays them out (T the longest response), 0 past each response's end."""

    responses: list[torch.Tensor]
    """Each response's ids (1-D long), cut after its first end-of-sequence token."""
    logp: torch.Tensor
    """(B, T) float32: log-probs (nats) of the sampled tokens under the sampling model at temperature 1."""
    entropy: torch.Tensor
    """(B, T) float32: entropy (nats) of the model's next-token distribution before each token."""
    hidden: torch.Tensor | None
    """(B, T, d_model): the model's last-layer state before each response token (what a value head
    reads), or None when not asked for."""


def _generate(model, queries: Sequence[torch.Tensor], length: int, *, pad_id: int, eos_id: int | None,
              temperature: float, stop_at_eos: bool, device: str, logits: bool, hidden: bool,
              generator: torch.Generator | None = None):
    """transformers' generate with the inverse-CDF sampler: (the generation output, query length Q)."""
    from transformers import GenerationConfig, LogitsProcessorList

    batch = pad_batch(queries, [q[:0] for q in queries], pad_id, device)
    Q = batch.query_len
    # Greedy over the sampler's one possible token: sampling without transformers' per-entry random numbers.
    # Without stop_at_eos, the minimum length's processor bars EOS before the sampler sees the scores.
    gen = GenerationConfig(do_sample=False, top_k=None, top_p=None, temperature=None, max_new_tokens=length,
                           min_new_tokens=0 if stop_at_eos else length, pad_token_id=pad_id, eos_token_id=eos_id,
                           output_logits=logits, output_hidden_states=hidden, return_dict_in_generate=True)
    was_training = model.training
    model.eval()
    out = model.generate(input_ids=batch.input_ids[:, :Q], attention_mask=batch.attention_mask[:, :Q],
                         generation_config=gen, logits_processor=LogitsProcessorList([InverseCDFSampler(temperature, generator)]))
    model.train(was_training)
    return out, Q


def _cut(tokens: torch.Tensor, length: int, eos_id: int | None, stop_at_eos: bool) -> list[torch.Tensor]:
    """Each row of (B, steps) sampled ids up to ``length`` tokens, ending at its first EOS when ``stop_at_eos``."""
    responses = []
    for row in tokens.cpu():
        if stop_at_eos and eos_id is not None:
            hits = (row == eos_id).nonzero()
            if len(hits):
                row = row[:int(hits[0]) + 1]
        responses.append(row[:length].clone())
    return responses


def _token_logps(step_logits, tokens: torch.Tensor) -> torch.Tensor:
    """(B, steps) log-probs of ``tokens`` under each step's raw logits (B, V) (before any processor)."""
    return torch.stack([step.float().gather(-1, tokens[:, t:t + 1]).squeeze(-1) - torch.logsumexp(step.float(), dim=-1)
                        for t, step in enumerate(step_logits)], dim=1)


@torch.no_grad()
def sample_responses(model, queries: Sequence[torch.Tensor], length: int, *, pad_id: int, eos_id: int | None,
                     temperature: float = 1.0, stop_at_eos: bool = True, device: str = "cpu",
                     with_logprobs: bool = False, generator: torch.Generator | None = None):
    """Sample ``length`` tokens after each query (1-D long tensors) from ``model``, top-k off, top-p 1.

    Returns each response's ids, cut after the first end-of-sequence token when ``stop_at_eos``
    (otherwise EOS is never sampled and every response has ``length`` tokens). Draws from ``generator``
    (on ``device``; None: torch's global RNG), so a seeded run (and a resumed one) samples the same tokens.

    ``with_logprobs``: also return each response's per-token log-probs (nats, 1-D float32 of its
    length) under ``model`` at temperature 1, read off the logits generation computed anyway: the
    same values as a separate forward pass (``response_logprobs``) to float rounding, for no pass.
    """
    out, Q = _generate(model, queries, length, pad_id=pad_id, eos_id=eos_id, temperature=temperature,
                       stop_at_eos=stop_at_eos, device=device, logits=with_logprobs, hidden=False,
                       generator=generator)
    tokens = out.sequences[:, Q:]
    responses = _cut(tokens, length, eos_id, stop_at_eos)
    if not with_logprobs:
        return responses
    token_logps = _token_logps(out.logits, tokens).cpu()
    return responses, [token_logps[i, :len(r)].clone() for i, r in enumerate(responses)]


@torch.no_grad()
def sample_with_states(model, queries: Sequence[torch.Tensor], length: int, *, pad_id: int, eos_id: int | None,
                       temperature: float = 1.0, stop_at_eos: bool = True, device: str = "cpu",
                       hidden: bool = True, generator: torch.Generator | None = None) -> Generated:
    """``sample_responses``, the same draws, plus the per-token log-probs, entropies and (``hidden``) last-layer
    states that generation computed: what a rollout's forward pass of the sampling policy would give, to
    float rounding, without that pass (~1 s of a 12 s PPO step of the default)."""
    out, Q = _generate(model, queries, length, pad_id=pad_id, eos_id=eos_id, temperature=temperature,
                       stop_at_eos=stop_at_eos, device=device, logits=True, hidden=hidden, generator=generator)
    tokens = out.sequences[:, Q:]
    responses = _cut(tokens, length, eos_id, stop_at_eos)
    T = max(max((len(r) for r in responses), default=1), 1)
    mask = torch.zeros(len(responses), T)
    for i, r in enumerate(responses):
        mask[i, :len(r)] = 1
    mask = mask.to(tokens.device)
    logps, entropies = [], []
    for t, step in enumerate(out.logits[:T]):  # step by step: a (B, T, V) stack of the logits took 4x as long
        step = step.float()
        logz = torch.logsumexp(step, dim=-1)
        logps.append(step.gather(-1, tokens[:, t:t + 1]).squeeze(-1) - logz)
        entropies.append(logz - torch.einsum("bv,bv->b", torch.softmax(step, dim=-1), step))
    logp, entropy = torch.stack(logps, dim=1) * mask, torch.stack(entropies, dim=1) * mask
    states = None
    if hidden:
        # step 0 holds the prompt's states (B, Q, d), each later step the last token's (B, 1, d); [-1]: last layer
        states = torch.cat([out.hidden_states[0][-1][:, -1:]] + [h[-1] for h in out.hidden_states[1:T]], dim=1)
        states = states * mask.unsqueeze(-1).to(states.dtype)
    return Generated(responses, logp, entropy, states)
