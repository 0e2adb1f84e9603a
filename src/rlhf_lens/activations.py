"""Activation store: activations at one hook site of chosen blocks, written as sharded parquet.

Hook sites (``SITES``):

- ``mlp_out``: the output of a block's MLP module, (tokens, d_model), before it is added to the
  residual stream; the paper's choice and the default.
- ``resid_post``: the residual stream after the block (the block's output hidden state).

The forward pass stops after the deepest block needed (a hook raises a private exception), so
extracting block 3 of a 30-block model costs about 4 blocks of compute and no unembedding.
Both roles (base, rlhf) read identical token streams: the corpus is tokenised with one
tokenizer (the base model's), truncated the same way, and the token ids are stored.
BOS, padding and every other special token are excluded from the store, and so are the first
``skip_first_positions`` positions of each document (an attention sink without BOS).

Layout of one store folder (``activations/{reward}/{role}/``)::

    manifest.json              site, layers, d_model, n_docs, n_tokens, documents, tokens and completion
                               tokens per source model, policy_token_share (the policy's documents) and
                               policy_completion_share (its own words), n_groups, model and tokenizer folders
    docs.parquet               doc_id, token_ids (list<int32>, the full stream the model saw), text,
                               model, prompt_index, sample, group (``SOURCE_COLUMNS``), completion_tokens
    layer{L}/part-00000.parquet  doc_id, position, token_id, token_text, vector (list<float32>, d_model)

Memory stays bounded: at most ``shard_tokens`` rows per layer are held before a shard is written.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from .atomic import atomic_dir
from .model_parts import check_layers, find_blocks, output_tensor, pad_token_id, site_module, token_texts
from .tables_io import TABLE_SUFFIXES, read_table

log = logging.getLogger(__name__)



class ActivationStoreError(ValueError):
    """A store folder, manifest or shard is missing or unreadable."""


@dataclass(frozen=True)
class ActivationsConfig:
    """Where and on what activations are recorded (``activations:`` in config.yaml)."""

    site: str = "mlp_out"
    """Hook site: mlp_out (a block's MLP output, the paper's) or resid_post (residual stream after the block)."""
    corpus: str = "rl_eval"
    """rl_eval (eval prompts + completions of base and policy from rl/{reward}/eval.parquet) or a .parquet/.csv/.jsonl file."""
    text_column: str = "text"
    """Column holding the text when corpus is a file."""
    max_docs: int | None = None
    """Use at most this many texts (the first ones, in corpus order); None uses all."""
    max_tokens: int = 32000
    """Stop adding texts once this many storable tokens (non-special, past skip_first_positions) are kept."""
    max_length: int = 128
    """Truncate each text to this many tokens (special tokens included)."""
    batch_size: int = 16
    """Texts per forward pass."""
    shard_tokens: int = 4096
    """Rows per parquet shard: bounds the memory held per layer."""
    skip_first_positions: int = 1
    """Leave out the first N positions of every document: without a BOS token the first content token is
    an attention sink (SmolLM2 block 28: 4% of the tokens, 95% of the variance around the mean)."""


class _StopForward(Exception):
    """Raised by a hook once the deepest needed activation is recorded."""


def capture(model, layers: list[int], site: str, input_ids, attention_mask) -> dict[int, torch.Tensor]:
    """Run ``model`` and return {layer: activations (batch, seq, d_model)} at ``site``; stops after max(layers)."""
    blocks = find_blocks(model)
    layers = check_layers(list(layers), len(blocks))
    deepest = layers[-1]
    got: dict[int, torch.Tensor] = {}
    handles = []

    def make_hook(layer):
        def hook(_module, _inputs, output):
            got[layer] = output_tensor(output).detach()
            if layer == deepest:
                raise _StopForward
        return hook

    for L in layers:
        handles.append(site_module(blocks[L], site, L).register_forward_hook(make_hook(L)))
    try:
        with torch.inference_mode():
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
    return got


# --------------------------------------------------------------------------- corpus


SOURCE_COLUMNS = ("model", "prompt_index", "sample", "group")
"""Where each document came from (docs.parquet): the model that wrote it (base, policy, or file), the
prompt it answers and which sample, and its prompt group: documents of one group share a prefix, so
splits into training and held-out data are made by group, never by document."""


def read_corpus(path: str | os.PathLike, corpus: str = "rl_eval", text_column: str = "text",
                max_docs: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The documents activations are recorded on, in a fixed order: columns text + ``SOURCE_COLUMNS``.

    ``rl_eval``: ``path`` is rl/{reward}/eval.parquet (prompt, model, prompt_index, sample, response);
    each row gives prompt + response. Prompts come in a seeded order and, within a prompt, base and
    policy samples alternate, so any cut (``max_docs``, ``max_tokens``) keeps the two models balanced
    and whole prompt groups together. (eval.parquet lists every base row before any policy row: read
    in file order, a token budget keeps no policy text at all.) Otherwise ``path`` is a table with
    ``text_column``, read in file order, each row its own group. Duplicate texts are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ActivationStoreError(f"{path}: corpus file does not exist")
    if corpus == "rl_eval":
        df = pd.read_parquet(path)
        missing = {"prompt", "response", "model", "prompt_index", "sample"} - set(df.columns)
        if missing:
            raise ActivationStoreError(f"{path}: missing column(s) {sorted(missing)}; expected prompt, response, "
                                       "model, prompt_index, sample (rl_eval output)")
        frame = pd.DataFrame({"text": df["prompt"].astype(str) + df["response"].astype(str),
                              "model": df["model"].astype(str), "prompt_index": df["prompt_index"].astype(np.int64),
                              "sample": df["sample"].astype(np.int64), "prompt": df["prompt"].astype(str)})
        frame["group"] = frame["prompt_index"]
        prompts = np.sort(frame["prompt_index"].unique())
        rank = {int(p): r for r, p in enumerate(np.random.default_rng(seed).permutation(prompts))}
        frame["_prompt_rank"] = frame["prompt_index"].map(rank)
        frame["_model_rank"] = frame["model"].map({"base": 0, "policy": 1}).fillna(2)
        frame = frame.sort_values(["_prompt_rank", "sample", "_model_rank"], kind="stable")
        frame = frame.drop(columns=["_prompt_rank", "_model_rank"])
    else:
        if path.suffix not in TABLE_SUFFIXES:
            raise ActivationStoreError(f"{path}: expected a .parquet, .csv or .jsonl corpus")
        df = read_table(path)
        if text_column not in df.columns:
            raise ActivationStoreError(f"{path}: no column {text_column!r} (config key 'activations.text_column'); "
                                       f"columns are {list(df.columns)}")
        frame = corpus_frame(df[text_column].astype(str).tolist())
    frame = frame[frame["text"].str.strip() != ""].drop_duplicates("text").reset_index(drop=True)
    return frame.iloc[:max_docs].reset_index(drop=True) if max_docs else frame


def corpus_frame(texts) -> pd.DataFrame:
    """A corpus table (text + ``SOURCE_COLUMNS``) for plain texts: model "file", each text its own group."""
    if isinstance(texts, pd.DataFrame):
        return texts.reset_index(drop=True)
    n = len(texts)
    return pd.DataFrame({"text": list(texts), "model": ["file"] * n, "prompt_index": np.arange(n, dtype=np.int64),
                         "sample": np.zeros(n, dtype=np.int64), "group": np.arange(n, dtype=np.int64),
                         "prompt": [""] * n})


def completion_tokens(tokenizer, docs: list[list[int]], prompts, skip_first: int) -> np.ndarray:
    """Stored tokens of each document past its prompt: the model's own words (a plain text: all of them).

    The prompt's length is its token count when tokenized alone; at the prompt/response boundary two
    tokenizations can differ by a token, which this count accepts.
    """
    special = set(tokenizer.all_special_ids)
    out = []
    for ids, prompt in zip(docs, prompts):
        start = len(tokenizer(prompt, add_special_tokens=True)["input_ids"]) if prompt else 0
        out.append(storable_tokens(ids, special, max(skip_first, start)))
    return np.asarray(out, dtype=np.int64)


def storable_tokens(ids, special: set[int], skip_first: int) -> int:
    """How many of a document's token ``ids`` the store keeps: not special, at positions >= ``skip_first``."""
    return sum(1 for pos, t in enumerate(ids) if t not in special and pos >= skip_first)


def tokenize_corpus(tokenizer, texts: list[str], max_length: int, max_tokens: int, skip_first: int = 0):
    """(token ids per kept text, indices of the kept texts): special tokens the tokenizer adds included,
    until ``max_tokens`` storable tokens (non-special, at positions >= ``skip_first``) are kept."""
    special = set(tokenizer.all_special_ids)
    docs, kept, total = [], [], 0
    for i, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
        valid = storable_tokens(ids, special, skip_first)
        if not valid:
            continue
        docs.append(list(ids))
        kept.append(i)
        total += valid
        if total >= max_tokens:
            break
    return docs, kept


# --------------------------------------------------------------------------- writing


class _ShardWriter:
    """Buffers rows for one layer and writes a parquet shard every ``shard_tokens`` rows."""

    def __init__(self, folder: Path, shard_tokens: int):
        self.folder, self.shard_tokens = folder, shard_tokens
        folder.mkdir(parents=True, exist_ok=True)
        self.parts: list[tuple] = []
        self.rows = 0
        self.n_shards = 0

    def add(self, doc_id, position, token_id, token_text, vectors: np.ndarray):
        self.parts.append((doc_id, position, token_id, token_text, vectors))
        self.rows += len(doc_id)
        while self.rows >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def _flush(self, n: int):
        cols = [np.concatenate([p[i] for p in self.parts]) if i != 3 else
                [t for p in self.parts for t in p[3]] for i in range(5)]
        head = [c[:n] for c in cols]
        rest = [c[n:] for c in cols]
        vec = np.ascontiguousarray(head[4], dtype=np.float32)
        d = vec.shape[1]
        vectors = pa.ListArray.from_arrays(pa.array(np.arange(0, (len(vec) + 1) * d, d, dtype=np.int32)),
                                           pa.array(vec.reshape(-1)))
        table = pa.table({"doc_id": pa.array(head[0], pa.int64()), "position": pa.array(head[1], pa.int32()),
                          "token_id": pa.array(head[2], pa.int32()), "token_text": pa.array(head[3], pa.string()),
                          "vector": vectors})
        pq.write_table(table, self.folder / f"part-{self.n_shards:05d}.parquet")
        self.n_shards += 1
        self.parts = [tuple(rest)] if len(rest[0]) else []
        self.rows -= len(head[0])

    def close(self):
        if self.rows:
            self._flush(self.rows)


def extract_activations(model, tokenizer, texts, layers: list[int], out_dir: str | os.PathLike,
                        cfg: ActivationsConfig, device: str = "cpu", meta: dict | None = None) -> dict:
    """Record activations of ``layers`` at ``cfg.site`` on ``texts``; write the store at ``out_dir`` atomically.

    ``texts`` is a list of strings or a corpus table from ``read_corpus`` (text + ``SOURCE_COLUMNS``,
    which docs.parquet keeps per document). Returns the manifest, which counts documents and stored
    tokens per source model. ``tokenizer`` must be the same for every role so the streams match.
    """
    blocks = find_blocks(model)
    layers = check_layers(list(layers), len(blocks), source="layers")
    for L in layers:  # fail on a bad site before any forward pass
        site_module(blocks[L], cfg.site, L)
    if getattr(model.config, "vocab_size", len(tokenizer)) < len(tokenizer):
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary is "
                         f"{model.config.vocab_size}: base and RLHF models must share a tokenizer")
    corpus = corpus_frame(texts)
    docs, kept = tokenize_corpus(tokenizer, corpus["text"].tolist(), cfg.max_length, cfg.max_tokens,
                                 cfg.skip_first_positions)
    corpus = corpus.iloc[kept].reset_index(drop=True)
    prompts = corpus["prompt"].tolist() if "prompt" in corpus else [""] * len(corpus)
    if not docs:
        raise ActivationStoreError("the corpus has no text with a non-special token")
    special = np.array(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
    pad_id = pad_token_id(tokenizer)
    vocab = token_texts(tokenizer)
    # Sorting by length keeps padding small; doc ids stay the corpus order.
    order = sorted(range(len(docs)), key=lambda i: len(docs[i]))
    n_tokens = 0
    d_model = None
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        writers = {L: _ShardWriter(tmp / f"layer{L}", cfg.shard_tokens) for L in layers}
        for start in tqdm(range(0, len(order), cfg.batch_size), desc=f"activations {out.name}", unit="batch"):
            idx = order[start:start + cfg.batch_size]
            width = max(len(docs[i]) for i in idx)
            ids = np.full((len(idx), width), pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, :len(docs[i])] = docs[i]
                mask[row, :len(docs[i])] = 1
            acts = capture(model, layers, cfg.site, torch.from_numpy(ids).to(device),
                           torch.from_numpy(mask).to(device))
            keep = (mask == 1) & ~np.isin(ids, special)
            keep[:, :cfg.skip_first_positions] = False
            rows, cols = np.nonzero(keep)
            doc_id = np.asarray(idx, dtype=np.int64)[rows]
            token_id = ids[rows, cols]
            token_text = [vocab[t] for t in token_id]
            for L in layers:
                vec = acts[L][torch.from_numpy(rows), torch.from_numpy(cols)].float().cpu().numpy()
                d_model = vec.shape[1]
                writers[L].add(doc_id, cols.astype(np.int32), token_id.astype(np.int32), token_text, vec)
            n_tokens += len(rows)
        for w in writers.values():
            w.close()
        doc_table = pd.DataFrame({"doc_id": np.arange(len(docs), dtype=np.int64),
                                  "token_ids": [np.asarray(d, dtype=np.int32) for d in docs],
                                  "text": corpus["text"].tolist(),
                                  **{c: corpus[c].to_numpy() for c in SOURCE_COLUMNS},
                                  "completion_tokens": completion_tokens(tokenizer, docs, prompts, cfg.skip_first_positions)})
        doc_table.to_parquet(tmp / "docs.parquet", index=False)
        manifest = {"site": cfg.site, "layers": layers, "d_model": d_model, "n_docs": len(docs),
                    "n_tokens": n_tokens, "max_length": cfg.max_length,
                    "skip_first_positions": cfg.skip_first_positions,
                    **source_counts(doc_table, tokenizer, cfg.skip_first_positions), **(meta or {})}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info("stored %d tokens of %d texts for layers %s at %s (%s); policy share of tokens %s, of them "
             "written by the policy %s", n_tokens, len(docs), layers, out, cfg.site, manifest["policy_token_share"],
             manifest["policy_completion_share"])
    return manifest


def source_counts(doc_table: pd.DataFrame, tokenizer, skip_first: int) -> dict:
    """Documents and stored tokens per source model, and the policy's share of the stored tokens: of
    its documents (prompt included) and of its completions alone (None for a corpus without policy text).
    The RLHF-vs-base comparison needs the policy's own words in the store."""
    special = set(tokenizer.all_special_ids)
    stored = doc_table["token_ids"].map(lambda ids: storable_tokens(ids, special, skip_first))
    by_model = doc_table.assign(stored=stored).groupby("model")
    tokens = {str(k): int(v) for k, v in by_model["stored"].sum().items()}
    written = {str(k): int(v) for k, v in by_model["completion_tokens"].sum().items()} \
        if "completion_tokens" in doc_table else {}
    total = sum(tokens.values())
    from_models = ("policy" in tokens or "base" in tokens) and total > 0
    return {"n_docs_by_model": {str(k): int(v) for k, v in by_model.size().items()},
            "n_tokens_by_model": tokens,
            "n_completion_tokens_by_model": written,
            "n_groups": int(doc_table["group"].nunique()),
            "policy_token_share": round(tokens.get("policy", 0) / total, 4) if from_models else None,
            "policy_completion_share": round(written.get("policy", 0) / total, 4) if from_models else None}


# --------------------------------------------------------------------------- reading


def read_manifest(store: str | os.PathLike) -> dict:
    path = Path(store) / "manifest.json"
    if not path.is_file():
        raise ActivationStoreError(f"{path}: missing; is {store} an activation store?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ActivationStoreError(f"{path}: not valid JSON ({exc})") from None


def layer_shards(store: str | os.PathLike, layer: int) -> list[Path]:
    manifest = read_manifest(store)
    if layer not in manifest["layers"]:
        raise ActivationStoreError(f"{store}: layer {layer} was not extracted; the store holds layers "
                                   f"{manifest['layers']} (the top blocks of the divergence ranking)")
    shards = sorted((Path(store) / f"layer{layer}").glob("part-*.parquet"))
    if not shards:
        raise ActivationStoreError(f"{Path(store) / f'layer{layer}'}: no parquet shards")
    return shards


def read_layer(store: str | os.PathLike, layer: int, doc_ids=None, with_text: bool = False):
    """(rows, X): token metadata (DataFrame) and activations X (tokens, d_model) float32, for ``layer``.

    ``doc_ids`` keeps only those documents. Each shard is checked: readable, right columns, right width.
    """
    manifest = read_manifest(store)
    d = manifest["d_model"]
    columns = ["doc_id", "position", "token_id", "vector"] + (["token_text"] if with_text else [])
    metas, mats = [], []
    wanted = None if doc_ids is None else np.asarray(sorted(doc_ids), dtype=np.int64)
    for shard in layer_shards(store, layer):
        try:
            table = pq.read_table(shard, columns=columns)
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for truncated or corrupt files
            raise ActivationStoreError(f"{shard}: unreadable parquet shard ({exc}); delete the store and rerun") from None
        if wanted is not None:
            sel = np.isin(table.column("doc_id").to_numpy(), wanted)
            table = table.filter(pa.array(sel))
        flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        if flat.size != table.num_rows * d:
            raise ActivationStoreError(f"{shard}: vectors do not all have d_model={d} values (manifest.json)")
        mats.append(flat.astype(np.float32, copy=False).reshape(table.num_rows, d))
        metas.append(table.drop_columns(["vector"]).to_pandas())
    rows = pd.concat(metas, ignore_index=True)
    return rows, torch.from_numpy(np.concatenate(mats))


def read_docs(store: str | os.PathLike) -> pd.DataFrame:
    path = Path(store) / "docs.parquet"
    try:
        return pd.read_parquet(path)
    except Exception as exc:
        raise ActivationStoreError(f"{path}: unreadable ({exc})") from None


def split_docs(groups, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_ids, eval_ids): a seeded split of document ids by group, so no group is on both sides.

    ``groups`` holds each document's group (docs.parquet ``group``: its prompt; documents of one prompt
    share a prefix, hence identical activations on it), or is an int n for n documents of one group
    each. A ``round(eval_fraction * n_groups)`` share of the groups is held out, at least one group
    on each side when there are two or more.
    """
    groups = np.arange(groups) if isinstance(groups, (int, np.integer)) else np.asarray(groups)
    names = np.unique(groups)
    perm = np.random.default_rng(seed).permutation(len(names))
    n = len(names)
    n_eval = min(max(1, round(eval_fraction * n)), n - 1) if n >= 2 else 0
    held = np.isin(groups, names[perm[:n_eval]])
    ids = np.arange(len(groups))
    return ids[~held], ids[held]


def doc_groups(store: str | os.PathLike) -> np.ndarray:
    """Each document's group (doc_id order); stores written before groups were recorded: one per document."""
    docs = read_docs(store)
    return docs["group"].to_numpy() if "group" in docs.columns else np.arange(len(docs))


def activation_store_stage(model_dir, tokenizer_dir, corpus_path, layers_json, out_dir, cfg: ActivationsConfig,
                           device: str = "cpu", seed: int = 0) -> dict:
    """Load a model (base or policy) and the base tokenizer, read the corpus and the chosen layers, extract.

    The tokenizer always comes from ``tokenizer_dir`` (the base model) so both roles see the same tokens.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    layers_path = Path(layers_json)
    try:
        layers = json.loads(layers_path.read_text())["layers"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ActivationStoreError(f"{layers_path}: cannot read the 'layers' list ({exc})") from None
    texts = read_corpus(corpus_path, cfg.corpus, cfg.text_column, cfg.max_docs, seed=seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True).to(device).eval()
    check_layers(layers, len(find_blocks(model)), source=str(layers_path))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return extract_activations(model, tokenizer, texts, layers, out_dir, cfg, device=device,
                               meta={"model": str(model_dir), "tokenizer": str(tokenizer_dir),
                                     "corpus": str(corpus_path)})
