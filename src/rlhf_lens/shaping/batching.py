"""One reward called for many explanation requests at once: a cache by text and a batching barrier.

An explainer of one response (shap's Partition explainer, lime's LimeTextExplainer) calls its model
function with a few masked texts at a time and waits for the values before it chooses the next
masks. ``BatchedScorer.run`` runs one such explainer per response of a rollout, each in its own
thread; a thread's model call blocks until every running thread is blocked on one, and then all
their texts go to the reward in one ``score`` call. The explainers see exactly the values they
would see alone (the same texts, scored by the same reward), so their attributions are the
library's; only the number of reward calls drops, from one per explainer batch to one per round.

Every (prompt, text) pair scored is cached, so texts that several explainers (or several rounds)
ask for are scored once: the full response and the all-masked text come up in every explainer.
Python threads share one interpreter lock, so the explainers' own bookkeeping does not run in
parallel; what is saved is the reward's per-call overhead and its small batches.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np


@dataclass
class _Request:
    prompt: str
    texts: list[str]
    done: bool = False
    values: np.ndarray | None = None
    error: BaseException | None = None


@dataclass
class ScorerStats:
    """What one scorer has cost so far: reward ``score`` calls, texts scored (after the cache), seconds in them."""

    calls: int = 0
    texts: int = 0
    seconds: float = 0.0
    cache_hits: int = 0

    def since(self, before: "ScorerStats") -> "ScorerStats":
        return ScorerStats(self.calls - before.calls, self.texts - before.texts, self.seconds - before.seconds,
                           self.cache_hits - before.cache_hits)


@dataclass
class BatchedScorer:
    """Scores (prompt, text) pairs with ``reward.score``, cached; ``run`` merges concurrent explainers' requests.

    ``max_batch`` caps the texts of one reward call (None: no cap; the reward may still split them
    into its own forward batches). ``max_cache`` caps the cached pairs (oldest dropped first).
    """

    reward: object
    max_batch: int | None = None
    max_cache: int = 200_000
    stats: ScorerStats = field(default_factory=ScorerStats)

    def __post_init__(self):
        self._cache: dict[tuple[str, str], float] = {}
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._active = 0

    # ------------------------------------------------------------------ direct scoring

    def score(self, prompt: str, texts: Sequence[str]) -> np.ndarray:
        """Rewards (len(texts),) float64 of ``prompt`` followed by each text; cached pairs are not rescored."""
        return self._score_many([(prompt, t) for t in texts])

    def _score_many(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        todo = list(dict.fromkeys(p for p in pairs if p not in self._cache))
        self.stats.cache_hits += len(pairs) - len(todo)
        step = self.max_batch or max(len(todo), 1)
        for i in range(0, len(todo), step):
            chunk = todo[i:i + step]
            t0 = time.perf_counter()
            values = self.reward.score([p for p, _ in chunk], [t for _, t in chunk])
            self.stats.seconds += time.perf_counter() - t0
            self.stats.calls += 1
            self.stats.texts += len(chunk)
            for pair, v in zip(chunk, np.asarray(values, dtype=np.float64).reshape(-1)):
                self._cache[pair] = float(v)
        if len(self._cache) > self.max_cache:
            for key in list(self._cache)[:len(self._cache) - self.max_cache]:
                del self._cache[key]
        return np.array([self._cache[p] for p in pairs], dtype=np.float64)

    # ------------------------------------------------------------------ batched across threads

    def run(self, jobs: Sequence[Callable[[Callable[[str, Sequence[str]], np.ndarray]], object]]) -> list:
        """Run each job in a thread of its own and return their results in order.

        A job is called with a scoring function ``f(prompt, texts) -> (len(texts),) float64`` that
        blocks until all running jobs wait on one, then scores their texts together. An exception in
        a job (or in the reward) is raised here after every thread has ended.
        """
        results: list = [None] * len(jobs)
        errors: list[BaseException | None] = [None] * len(jobs)
        with self._cond:
            self._active = len(jobs)

        def worker(i: int) -> None:
            try:
                results[i] = jobs[i](self._request)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors[i] = exc
            finally:
                with self._cond:
                    self._active -= 1
                    self._maybe_flush()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for exc in errors:
            if exc is not None:
                raise exc
        return results

    def _request(self, prompt: str, texts: Sequence[str]) -> np.ndarray:
        req = _Request(prompt, [str(t) for t in texts])
        with self._cond:
            self._pending.append(req)
            self._maybe_flush()
            while not req.done:
                self._cond.wait()
        if req.error is not None:
            raise req.error
        return req.values

    def _maybe_flush(self) -> None:
        """Score every pending request once each running job waits on one (called with the lock held)."""
        if not self._pending or len(self._pending) < self._active:
            return
        pending, self._pending = self._pending, []
        try:
            values = self._score_many([(r.prompt, t) for r in pending for t in r.texts])
            start = 0
            for r in pending:
                r.values = values[start:start + len(r.texts)]
                start += len(r.texts)
        except BaseException as exc:  # noqa: BLE001 - handed to each waiting job
            for r in pending:
                r.error = exc
        for r in pending:
            r.done = True
        self._cond.notify_all()
