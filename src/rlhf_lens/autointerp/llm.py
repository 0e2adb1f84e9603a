"""LLM backends for explaining and simulating features, behind one small interface.

- ``LocalChatLLM``: a transformers chat model on this machine (the offline default: the
  prepared SmolLM2-135M-Instruct).
- ``OpenAICompatibleLLM``: any ``/v1/chat/completions`` endpoint (vLLM, llama.cpp's server,
  OpenAI) through the ``openai`` package; base URL and model from config, the API key read
  from an environment variable whose *name* is configured, so the key itself never reaches
  config files, params, logs or Snakemake metadata.

Both return a ``Completion`` with the text, per generated token the top log-probabilities
(what the "all at once" simulator needs) and token counts. ``CachedLLM`` wraps either one and
stores every answer on disk under a hash of (backend, model, messages, parameters), so a rerun
costs nothing. Failures after the retries raise ``LLMError`` with the reason, which callers
record per feature instead of stopping the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from ..atomic import write_json

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
ValueRead = tuple[dict[str, float], dict[str, float]]
"""One teacher-forced position: log-probs of the candidates there, and of the tokens after the branch there."""


class LLMError(RuntimeError):
    """A call that failed for good (after retries); the message says why."""


@dataclass(frozen=True)
class Completion:
    """One chat answer."""

    text: str
    """The generated text."""
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    """Per generated token, the most likely tokens' natural-log probabilities; empty if not asked for."""
    prompt_tokens: int = 0
    """Tokens in the prompt, as the backend counted them."""
    completion_tokens: int = 0
    """Tokens generated."""
    cached: bool = False
    """True when the answer came from the disk cache."""


@dataclass
class TokenUsage:
    """Tokens spent on one feature, summed over its LLM calls (a teacher-forced pass counts none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, completion: Completion | None) -> None:
        """Count one chat answer (None: a call that reports no tokens)."""
        if completion is not None:
            self.prompt_tokens += completion.prompt_tokens
            self.completion_tokens += completion.completion_tokens


class ChatLLM(Protocol):
    """What the explainer and the simulator need from a model."""

    cache_identity: str
    """Backend and model, as they enter the cache key."""

    def chat(self, messages: Messages, *, max_tokens: int, temperature: float = 0.0,
             top_logprobs: int = 0) -> Completion: ...


def model_fingerprint(model_dir: str | os.PathLike) -> str:
    """SHA-256 (first 16 hex digits) of a model folder's config.json and weight files, read in 1 MiB
    blocks (SmolLM2-135M: ~0.5 s)."""
    folder = Path(model_dir)
    digest = hashlib.sha256()
    for path in [folder / "config.json", *sorted(folder.glob("*.safetensors"))]:
        if path.is_file():
            digest.update(path.name.encode())
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


class LocalChatLLM:
    """A transformers chat model. Greedy when temperature is 0, else seeded sampling."""

    def __init__(self, model_dir: str | os.PathLike, device: str = "cpu", seed: int = 0):
        from ..models import load_prepared

        self.model, self.tokenizer = load_prepared(model_dir, device=device)
        self.device = device
        self.seed = seed
        # By content, not folder name: two runs' "policy" folders, or a model prepared again under the
        # same name, must not share answers.
        self.cache_identity = f"local:{Path(model_dir).resolve().name}:{model_fingerprint(model_dir)}"
        # value_logprobs keeps its last pass's token ids and key/value cache: the next call's first pass
        # starts after their common prefix (a feature's windows share the system prompt and explanation).
        self._last: tuple[list[int], object] | None = None
        self.reused_tokens = 0
        """Prompt tokens value_logprobs has not recomputed, summed over calls (for logs and tests)."""

    def chat(self, messages: Messages, *, max_tokens: int, temperature: float = 0.0,
             top_logprobs: int = 0) -> Completion:
        import torch

        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)["input_ids"].to(self.device)
        torch.manual_seed(self.seed)
        with torch.no_grad():
            out = self.model.generate(
                ids, max_new_tokens=max_tokens, do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None, top_p=None, top_k=None,
                # Small models fall into loops ("the story of the story of ..."); repeating a 4-gram is barred.
                no_repeat_ngram_size=4,
                output_logits=top_logprobs > 0, return_dict_in_generate=True,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out.sequences[0, ids.shape[1]:]
        eos = self.tokenizer.eos_token_id
        if eos is not None and (new == eos).any():
            new = new[: int((new == eos).nonzero()[0])]
        tops: list[dict[str, float]] = []
        if top_logprobs > 0:
            for logits in out.logits[: len(new)]:
                logp = torch.log_softmax(logits[0].float(), dim=-1)
                values, indices = logp.topk(top_logprobs)
                tops.append({self.tokenizer.decode([int(i)]): float(v) for v, i in zip(values, indices)})
        return Completion(text=self.tokenizer.decode(new, skip_special_tokens=True), top_logprobs=tops,
                          prompt_tokens=int(ids.shape[1]), completion_tokens=int(len(new)))


    def _single_tokens(self, candidates: list[str]) -> list[int]:
        ids = []
        for c in candidates:
            tokens = self.tokenizer(c, add_special_tokens=False)["input_ids"]
            if len(tokens) != 1:
                raise ValueError(f"candidate {c!r} is not a single token for this tokenizer")
            ids.append(tokens[0])
        return ids

    def _reusable_prefix(self, ids: list[int], limit: int) -> tuple[int, object]:
        """(L, cache): the last pass's cache cut back to the first L tokens it shares with ``ids`` (L <= limit,
        so the positions to read are computed anew), or (0, None) when too little is shared to pay, or the
        cache is not the plain growing kind that can be cut back."""
        from transformers.cache_utils import DynamicCache, DynamicLayer

        if self._last is None:
            return 0, None
        old, cache = self._last
        self._last = None  # the cache is cut back and grown in place: never reuse it twice
        shared = 0
        for a, b in zip(old, ids[:limit]):
            if a != b:
                break
            shared += 1
        if shared < 16 or type(cache) is not DynamicCache or any(type(layer) is not DynamicLayer
                                                                 for layer in cache.layers):
            return 0, None
        cache.crop(shared - cache.get_seq_length())
        return shared, cache

    def value_logprobs(self, messages: Messages, assistant_text: str, char_positions: list[int],
                       candidates: list[str], branch: str, after: list[str]) -> list[ValueRead]:
        """Teacher-forced reads at each character position of the reply ``assistant_text`` (each must start
        a token): the log-probabilities of the ``candidates`` as the token there, and of the ``after``
        tokens right after ``branch`` written there, the text before that position unchanged (P("0" | "1")
        at a value whose earlier lines read as they did, not as a second answer wrote them).

        One pass over prompt + reply gives the first read at every position (only those rows go through
        the 49k-row unembedding) and fills the key/value cache; one more forward reads every branch at
        once: the branch token of position i is placed at that position, and an attention mask lets it
        see only the prompt and the reply before it (and itself), so each reads exactly the context it
        would alone. (Separate passes for the two reads took 1.7-1.9x as long on a 17-token window; one
        token per position with a cut-back copy of the cache ~0.3 s per position here.) The first pass
        starts after the tokens this call shares with the previous one, whose cache is kept: the windows
        of one feature share the system prompt and the explanation, ~40% of each pass.
        """
        import torch

        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                    return_dict=True)["input_ids"].to(self.device)
        answer = self.tokenizer(assistant_text, add_special_tokens=False, return_offsets_mapping=True)
        starts = {start: j for j, (start, _) in enumerate(answer["offset_mapping"])}
        missing = [pos for pos in char_positions if pos not in starts]
        if missing:
            raise ValueError(f"character {missing[0]} of the assistant text does not start a token")
        candidate_ids, [branch_id], after_ids = (self._single_tokens(candidates), self._single_tokens([branch]),
                                                 self._single_tokens(after))
        if not char_positions:
            return []
        ids = torch.cat([prompt, torch.tensor([answer["input_ids"]], device=self.device)], dim=1)
        n, p = ids.shape[1], len(char_positions)
        kept = torch.tensor([prompt.shape[1] + starts[pos] for pos in char_positions], device=self.device)
        reuse, cache = self._reusable_prefix(ids[0].tolist(), int(kept.min()) - 1)
        # (1, 1, p, n + p): branch i sees the first kept[i] tokens and itself.
        visible = torch.arange(n, device=self.device)[None, :] < kept[:, None]
        visible = torch.cat([visible, torch.eye(p, dtype=torch.bool, device=self.device)], dim=1)
        mask = torch.zeros(visible.shape, device=self.device).masked_fill(~visible, torch.finfo(torch.float32).min)
        with torch.no_grad():
            # The logits at token kept[i] - 1 predict the token at kept[i].
            first = self.model(ids[:, reuse:], past_key_values=cache, use_cache=True, logits_to_keep=kept - 1 - reuse)
            logits = self.model(torch.full((1, p), branch_id, device=self.device), past_key_values=first.past_key_values,
                                attention_mask=mask[None, None], position_ids=kept[None],
                                use_cache=True).logits
        self._last = (ids[0].tolist(), first.past_key_values)
        self.reused_tokens += reuse
        here = torch.log_softmax(first.logits[0].float(), dim=-1)
        then = torch.log_softmax(logits[0].float(), dim=-1)
        return [({c: float(here[i, j]) for c, j in zip(candidates, candidate_ids)},
                 {c: float(then[i, j]) for c, j in zip(after, after_ids)}) for i in range(p)]


class OpenAICompatibleLLM:
    """An OpenAI-compatible chat endpoint, with retries and exponential backoff."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, timeout_s: float = 60.0,
                 max_retries: int = 3, backoff_s: float = 1.0):
        import openai

        key = "not-needed"
        if api_key_env:
            key = os.environ.get(api_key_env, "")
            if not key:
                raise LLMError(f"environment variable {api_key_env!r} (autointerp api_key_env) is not set or empty")
        # The openai client's own retries are turned off: ours also cover malformed answers.
        self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout_s, max_retries=0)
        self._openai = openai
        self.model = model
        self.base_url = base_url
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.cache_identity = f"openai:{base_url}:{model}"

    def check(self) -> None:
        """Fail fast on a wrong URL, model or key: one 1-token request before any feature is explained."""
        self.chat([{"role": "user", "content": "Say OK."}], max_tokens=1)

    def _once(self, messages: Messages, max_tokens: int, temperature: float, top_logprobs: int) -> Completion:
        kwargs = {"logprobs": True, "top_logprobs": top_logprobs} if top_logprobs > 0 else {}
        response = self._client.chat.completions.create(
            model=self.model, messages=messages, max_tokens=max_tokens, temperature=temperature, **kwargs)
        if not response.choices or response.choices[0].message.content is None:
            raise LLMError("the endpoint returned no message content")
        choice = response.choices[0]
        tops = []
        if top_logprobs > 0 and choice.logprobs is not None and choice.logprobs.content:
            tops = [{t.token: t.logprob for t in item.top_logprobs} for item in choice.logprobs.content]
        usage = response.usage
        return Completion(text=choice.message.content, top_logprobs=tops,
                          prompt_tokens=usage.prompt_tokens if usage else 0,
                          completion_tokens=usage.completion_tokens if usage else 0)

    def chat(self, messages: Messages, *, max_tokens: int, temperature: float = 0.0,
             top_logprobs: int = 0) -> Completion:
        retryable = (self._openai.APIConnectionError, self._openai.APITimeoutError, self._openai.RateLimitError,
                     self._openai.InternalServerError, LLMError)
        for attempt in range(self.max_retries + 1):
            try:
                return self._once(messages, max_tokens, temperature, top_logprobs)
            except retryable as exc:
                if attempt == self.max_retries:
                    raise LLMError(f"{self.base_url} failed after {attempt + 1} tries: {exc}") from exc
                wait = self.backoff_s * 2**attempt
                log.warning("%s: %s; retrying in %.1f s", self.base_url, exc, wait)
                time.sleep(wait)
            except self._openai.APIStatusError as exc:  # 4xx other than rate limits: retrying will not help
                raise LLMError(f"{self.base_url} refused the request ({exc.status_code}): {exc.message}") from exc
        raise AssertionError("unreachable")


class CachedLLM:
    """Wrap a ChatLLM so every answer is stored on disk and a repeated call costs nothing."""

    def __init__(self, llm: ChatLLM, cache_dir: str | os.PathLike):
        self.llm = llm
        self.cache_dir = Path(cache_dir)
        self.cache_identity = llm.cache_identity
        self.hits = 0
        self.misses = 0

    def key(self, messages: Messages, **params) -> str:
        blob = json.dumps({"llm": self.llm.cache_identity, "messages": messages, "params": params}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def chat(self, messages: Messages, *, max_tokens: int, temperature: float = 0.0,
             top_logprobs: int = 0) -> Completion:
        params = {"max_tokens": max_tokens, "temperature": temperature, "top_logprobs": top_logprobs}
        path = self._path(self.key(messages, **params))
        if path.is_file():
            self.hits += 1
            return Completion(**{**json.loads(path.read_text()), "cached": True})
        self.misses += 1
        completion = self.llm.chat(messages, **params)
        write_json(asdict(completion), path)
        return completion

    @property
    def can_prefill(self) -> bool:
        return hasattr(self.llm, "value_logprobs")

    def value_logprobs(self, messages: Messages, assistant_text: str, char_positions: list[int],
                       candidates: list[str], branch: str, after: list[str]) -> list[ValueRead]:
        params = {"values": [assistant_text, char_positions, candidates, branch, after]}
        path = self._path(self.key(messages, **params))
        if path.is_file():
            self.hits += 1
            return [tuple(pair) for pair in json.loads(path.read_text())]
        self.misses += 1
        result = self.llm.value_logprobs(messages, assistant_text, char_positions, candidates, branch, after)
        write_json([list(pair) for pair in result], path)
        return result
