"""SAE quality metrics, accumulated over a whole evaluation set.

- Explained variance around the mean: ``EV = 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``,
  sums over every evaluation token in float64. The mean and the sum of squared deviations are
  merged batch by batch with Chan et al.'s parallel update, so the result does not depend on the
  batch size and does not lose precision when activations have a large mean offset.
- The legacy variant around zero, ``1 - SSE / sum ||x||^2`` (what SAELens <= 6.18 and SAEBench
  report), is given too and labelled ``explained_variance_legacy_around_zero``; it is inflated
  whenever the activations have a non-zero mean.
- L0 (mean active latents per token), dead fraction (never fired on the evaluation tokens),
  dense fraction (fired on more than 10% of them), mean cosine and mean l2 ratio
  ||x_hat|| / ||x|| per token.
- ``spliced_losses``: the model's next-token CE with the SAE reconstruction spliced in at the
  site, KL(clean || spliced), and the fraction of CE recovered relative to zero- and
  mean-ablation of the site: ``(CE_ablated - CE_sae) / (CE_ablated - CE_clean)``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..model_parts import output_tensor, replace_output

DENSE_THRESHOLD = 0.1


class ReconstructionStats:
    """Accumulates reconstruction and sparsity statistics; call ``update`` per batch, then ``result``."""

    def __init__(self, d: int, m: int | None = None):
        self.n = 0
        self.mean = torch.zeros(d, dtype=torch.float64)
        self.m2 = torch.zeros(d, dtype=torch.float64)  # sum of squared deviations from the running mean
        self.sse = 0.0
        self.sum_sq = 0.0
        self.cos_sum = 0.0
        self.l2_ratio_sum = 0.0
        self.fires = None if m is None else torch.zeros(m, dtype=torch.int64)
        self.active_sum = 0

    def update(self, x: torch.Tensor, x_hat: torch.Tensor, f: torch.Tensor | None = None) -> None:
        """x, x_hat: (tokens, d); f: (tokens, m) latents or None."""
        x64, xh64 = x.detach().double(), x_hat.detach().double()
        b = x64.shape[0]
        if b == 0:
            return
        b_mean = x64.mean(0)
        b_m2 = ((x64 - b_mean) ** 2).sum(0)
        total = self.n + b
        delta = b_mean - self.mean
        self.mean += delta * (b / total)
        self.m2 += b_m2 + delta ** 2 * (self.n * b / total)
        self.n = total
        self.sse += float(((x64 - xh64) ** 2).sum())
        self.sum_sq += float((x64 ** 2).sum())
        x_norm, xh_norm = x64.norm(dim=1), xh64.norm(dim=1)
        self.cos_sum += float(F.cosine_similarity(x64, xh64, dim=1, eps=1e-12).sum())
        self.l2_ratio_sum += float((xh_norm / x_norm.clamp_min(1e-12)).sum())
        if f is not None:
            active = f.detach() != 0
            if self.fires is None:
                self.fires = torch.zeros(f.shape[1], dtype=torch.int64)
            self.fires += active.sum(0)
            self.active_sum += int(active.sum())

    def result(self) -> dict:
        total_var = float(self.m2.sum())
        out = {
            "n_tokens": self.n,
            "explained_variance": 1.0 - self.sse / total_var if total_var > 0 else float("nan"),
            "explained_variance_legacy_around_zero": 1.0 - self.sse / self.sum_sq if self.sum_sq > 0 else float("nan"),
            "mse": self.sse / (self.n * self.mean.numel()) if self.n else float("nan"),
            "cosine": self.cos_sum / self.n if self.n else float("nan"),
            "l2_ratio": self.l2_ratio_sum / self.n if self.n else float("nan"),
        }
        if self.fires is not None and self.n:
            freq = self.fires.double() / self.n
            out.update({"l0": self.active_sum / self.n, "dead_fraction": float((self.fires == 0).double().mean()),
                        "dense_fraction": float((freq > DENSE_THRESHOLD).double().mean()),
                        "dense_threshold": DENSE_THRESHOLD})
        return out


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor, batch_size: int | None = None) -> float:
    """EV around the mean of ``x`` (tokens, d), accumulated in float64 over batches of ``batch_size``."""
    stats = ReconstructionStats(x.shape[1])
    step = batch_size or len(x)
    for i in range(0, len(x), step):
        stats.update(x[i:i + step], x_hat[i:i + step])
    return stats.result()["explained_variance"]


@torch.no_grad()
def reconstruction_metrics(sae, x: torch.Tensor, batch_size: int = 4096) -> dict:
    """Every reconstruction and sparsity metric of ``sae`` on activations ``x`` (tokens, d)."""
    stats = ReconstructionStats(x.shape[1], sae.m)
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        x_hat, f = sae(xb)
        stats.update(xb, x_hat, f)
    return stats.result()


def _token_losses(logits, ids, target_mask):
    """Per-target CE (nats) and log-probs at predicting positions; target_mask (B, T) marks scored targets."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    tgt = ids[:, 1:]
    sel = target_mask[:, 1:]
    ce = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    return ce[sel], logp[sel]


@torch.no_grad()
def spliced_losses(model, module: torch.nn.Module, sae, docs: list[list[int]], exclude: set[int] | None = None,
                   mean_vector: torch.Tensor | None = None, batch_size: int = 32, pad_id: int = 0,
                   device: str = "cpu", max_tokens: int | None = None, skip_first: int = 0) -> dict:
    """CE and KL with the SAE's reconstruction spliced in at ``module``'s output.

    ``sae``: one SAE, or a dict name -> SAE of the same site; with a dict the clean and ablated
    forwards are shared (one extra forward per SAE) and the result is a dict name -> metrics. Any
    callable ``h (tokens, d) -> (h_hat, ...)`` serves; one with a ``prepare_batch(ids, attn, content)``
    method is given each batch first (``crosscoder_metrics.CrosscoderSplice``: the other model's
    activations of the same tokens).

    ``docs``: token id lists (the streams the store recorded). ``exclude``: token ids that are
    not content (special tokens): activations are replaced only at content tokens and only
    content tokens are scored as targets; so are the first ``skip_first`` positions of each document
    (the store leaves them out, so the SAE never saw them). Four forwards per batch: clean, spliced, zero-ablated, mean-ablated (the latter
    only when ``mean_vector`` (d,) is given). Returns mean CE (nats/token) of each, KL(clean ||
    spliced) in nats/token, and the fraction of CE recovered against each ablation.
    """
    saes = sae if isinstance(sae, dict) else {None: sae}
    if max_tokens:
        docs = _docs_for_budget(docs, max_tokens, exclude, skip_first)
    runs = ["clean", "zero"] + (["mean"] if mean_vector is not None else []) + [("sae", k) for k in saes]
    totals = {"clean": 0.0, "zero": 0.0, "mean": 0.0, **{("sae", k): 0.0 for k in saes},
              **{("kl", k): 0.0 for k in saes}}
    n = 0
    mode = {"kind": None}
    handle = module.register_forward_hook(_splice_hook(mode, mean_vector))
    try:
        for start in range(0, len(docs), batch_size):
            ids, attn, content = _padded_batch(docs[start:start + batch_size], pad_id, exclude, device, skip_first)
            mode.update(kind=None)  # the other model may be this one: its recording forward must run clean
            for s in saes.values():  # a crosscoder's splice reads the other model's activations of this batch
                if hasattr(s, "prepare_batch"):
                    s.prepare_batch(ids, attn, content)
            logp_clean = None
            for run in runs:
                kind = run[0] if isinstance(run, tuple) else run
                mode.update(kind=None if kind == "clean" else kind, mask=content,
                            sae=saes[run[1]] if kind == "sae" else None)
                logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
                ce, logp = _token_losses(logits, ids, content)
                totals[run] += float(ce.sum())
                if kind == "clean":
                    logp_clean = logp
                elif kind == "sae":
                    totals[("kl", run[1])] += float((logp_clean.exp() * (logp_clean - logp)).sum())
            n += int(content[:, 1:].sum())
            if max_tokens and n >= max_tokens:
                break
    finally:
        handle.remove()
    if n == 0:
        raise ValueError("no scored tokens for the spliced CE/KL evaluation")
    results = {name: _spliced_summary(totals, n, name, with_mean=mean_vector is not None) for name in saes}
    return results if isinstance(sae, dict) else results[None]


def _splice_hook(mode: dict, mean_vector: torch.Tensor | None):
    """A forward hook that replaces the output at ``mode["mask"]`` by what ``mode["kind"]`` says:
    None leaves it, "sae" the reconstruction of ``mode["sae"]``, "zero" zeros, "mean" ``mean_vector``."""

    def hook(_m, _i, output):
        h = output_tensor(output)
        if mode["kind"] is None:
            return None
        sel = mode["mask"]
        new = h.clone()
        if mode["kind"] == "sae":
            new[sel] = mode["sae"](h[sel].float())[0].to(h.dtype)
        elif mode["kind"] == "zero":
            new[sel] = 0.0
        elif mode["kind"] == "mean":
            new[sel] = mean_vector.to(h.dtype).to(h.device)
        return replace_output(output, new)

    return hook


def _docs_for_budget(docs: list[list[int]], max_tokens: int, exclude: set[int] | None,
                     skip_first: int = 0) -> list[list[int]]:
    """Only as many documents as the token budget needs, so they fill few, full batches: each
    batch costs 3 + len(saes) whole-model forwards however few tokens it scores."""
    kept, budget = [], 0
    for d in docs:
        if budget >= max_tokens:
            break
        kept.append(d)
        budget += sum(1 for t in d[max(1, skip_first):] if not exclude or t not in exclude)
    return kept


def _padded_batch(batch: list[list[int]], pad_id: int, exclude: set[int] | None, device: str, skip_first: int = 0):
    """(ids, attention mask, content mask), each (B, T) on ``device``: right-padded with ``pad_id``;
    content marks real tokens that are not in ``exclude``, from position ``skip_first`` on."""
    width = max(len(d) for d in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for r, d in enumerate(batch):
        ids[r, :len(d)] = torch.as_tensor(d)
        attn[r, :len(d)] = 1
    content = attn.bool()
    if exclude:
        content &= ~torch.isin(ids, torch.as_tensor(sorted(exclude)))
    content[:, :skip_first] = False
    return ids.to(device), attn.to(device), content.to(device)


def _spliced_summary(totals: dict, n: int, name, with_mean: bool) -> dict:
    """The metrics of SAE ``name`` from the summed CE/KL of every run over ``n`` scored tokens."""
    out = {"ce_tokens": n, "ce_clean": totals["clean"] / n, "ce_sae": totals[("sae", name)] / n,
           "ce_zero_ablation": totals["zero"] / n, "kl_sae": totals[("kl", name)] / n}
    out["ce_loss_score_zero"] = _recovered(out["ce_zero_ablation"], out["ce_sae"], out["ce_clean"])
    if with_mean:
        out["ce_mean_ablation"] = totals["mean"] / n
        out["ce_loss_score_mean"] = _recovered(out["ce_mean_ablation"], out["ce_sae"], out["ce_clean"])
    return out


def _recovered(ablated: float, spliced: float, clean: float) -> float:
    gap = ablated - clean
    return (ablated - spliced) / gap if abs(gap) > 1e-12 else float("nan")
