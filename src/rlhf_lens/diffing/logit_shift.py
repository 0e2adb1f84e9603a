"""logit_shift: the per-token implicit reward, log pi_policy(t|c) - log pi_base(t|c), averaged over contexts.

For a KL-regularised policy, beta * log(pi / pi_ref) of a token is its optimal advantage under the reward
("From r to Q*: Your Language Model is Secretly a Q-Function", Rafailov, Hejna, Park, Finn 2024,
arXiv 2404.12358); averaged over the contexts of a corpus it ranks the tokens the reward favours.

Word scores: at every position of every corpus text (positions inside the prompt left out when
``diffing.corpus.leave_out_prompt``: from the last prompt token on, each position's next-token distribution is
one the policy writes from), both models' full-vocabulary log-probs are differenced; a token's score is the
mean difference (nats) over the positions of one prompt group (one row of ``token_scores`` per group).

Variant ``topk_count``: the count variant of the diffing toolkit's ``diff_mining``
(science-of-finetuning/diffing-toolkit, ``src/diffing/methods/diff_mining``): per position, the ``top_k``
tokens of largest positive logit difference get a count; a token's score is the share of the group's
positions at which it is among them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from .base import MethodResult
from .corpus import batches, tokenize, unit_rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogitShiftConfig:
    """``diffing.logit_shift``."""

    top_k: int = 20
    """Tokens counted per position by the count variant (the largest positive log-prob differences)."""


def first_position(prompt_tokens: int, leave_out_prompt: bool) -> int:
    """First position whose next-token distribution counts: the last prompt token's (it predicts the first
    response token) when the prompt is left out, else position 0."""
    return max(prompt_tokens - 1, 0) if leave_out_prompt else 0


class LogitShift:
    name: ClassVar[str] = "logit_shift"
    config_class: ClassVar[type] = LogitShiftConfig

    @torch.no_grad()
    def run(self, ctx, cfg: LogitShiftConfig) -> MethodResult:
        base, policy, tokenizer = ctx.models()
        vocab = len(tokenizer)
        docs = tokenize(tokenizer, ctx.corpus, ctx.corpus_cfg.max_length)
        groups, row_of = unit_rows(docs)
        sums = torch.zeros(len(groups), vocab, dtype=torch.float64)
        counts = torch.zeros(len(groups), vocab, dtype=torch.float64)
        n_pos = np.zeros(len(groups))
        for chunk, ids, mask in batches(docs, ctx.corpus_cfg.batch_size, tokenizer):
            ids, mask = ids.to(ctx.device), mask.to(ctx.device)
            diff = (policy(input_ids=ids, attention_mask=mask).logits[..., :vocab].float().log_softmax(-1)
                    - base(input_ids=ids, attention_mask=mask).logits[..., :vocab].float().log_softmax(-1))
            for row, doc in enumerate(chunk):
                d = diff[row, first_position(doc.prompt_tokens, ctx.corpus_cfg.leave_out_prompt):len(doc.ids)].cpu()
                u = row_of[doc.group]
                sums[u] += d.double().sum(0)
                top = d.topk(min(cfg.top_k, vocab), dim=-1)
                hits = top.indices[top.values > 0]  # diff_mining counts positive differences only
                counts[u] += torch.bincount(hits, minlength=vocab).double()
                n_pos[u] += len(d)
        keep = n_pos > 0
        if not keep.any():
            raise ValueError("logit_shift: no position left to average (every text is all prompt?)")
        denom = torch.as_tensor(n_pos[keep])[:, None]
        scores = (sums[keep] / denom).numpy()
        count_share = (counts[keep] / denom).numpy()
        log.info("logit_shift: %d positions over %d prompt groups", int(n_pos.sum()), int(keep.sum()))
        return MethodResult(token_scores=scores, unit="prompt_group", variants={"topk_count": count_share},
                            extra={"n_positions": int(n_pos.sum()), "n_texts": len(docs), "top_k": cfg.top_k,
                                   "leave_out_prompt": ctx.corpus_cfg.leave_out_prompt,
                                   "score_units": "nats (mean log pi_policy - log pi_base per position)"})


METHOD_CLASS = LogitShift
