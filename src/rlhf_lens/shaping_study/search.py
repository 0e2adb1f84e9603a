"""Bayesian optimisation of the shaping weights w (on the simplex) around short PPO runs.

The library is Optuna (5.0): its ``GPSampler`` is a Gaussian-process surrogate (Matern 5/2 kernel,
fitted marginal likelihood) with log expected improvement as the acquisition (``LogEI``), the
"log" form that Koo et al. 2025 use (they used BoTorch's qLogNoisyExpectedImprovement). Why Optuna
rather than BoTorch: it needs nothing beyond torch and scipy, which the project already has
(BoTorch pulls gpytorch and linear_operator), its ask-and-tell interface lets every trial be a job
of its own, and a study can be rebuilt from stored (params, value) pairs with ``add_trial``, which is
what makes the search resumable and the trials independent of one process. Not scikit-optimize
(archived); ``bayesian-optimization`` would also do, but has no log-EI.

Reparametrisation: the d weights live on the simplex, so the search has d - 1 free coordinates
z in [0, 1]^(d-1), mapped by stick-breaking with each z_i first turned into a Beta(1, d - i) draw by
its inverse CDF, so that uniform z give uniform (Dirichlet(1)) weights and every point of the
simplex is reachable.

Persistence and resume: each finished trial is one JSON file (``trial_{k}.json``: its z, weights,
objective and anything the objective reports), written atomically. ``propose(k)`` rebuilds the
study from the files of trials 0..k-1 and asks for trial k with a sampler seeded by (seed, k), so
a proposal is a pure function of the seed and the earlier results: a killed search run again
skips every trial that has its file and proposes the same next trial it would have. The first
``n_initial`` trials are random draws that depend on (seed, k) only, so they can run in parallel
(Snakemake jobs with no inputs from each other); later ones need all earlier trials.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..atomic import write_json

log = logging.getLogger(__name__)


def simplex_from_free(z: Sequence[float]) -> list[float]:
    """d - 1 coordinates in [0, 1] -> d non-negative weights summing to 1 (uniform z -> uniform on the simplex)."""
    d = len(z) + 1
    weights, left = [], 1.0
    for i, zi in enumerate(z):
        share = 1.0 - (1.0 - min(max(float(zi), 0.0), 1.0)) ** (1.0 / (d - 1 - i))  # Beta(1, d-1-i) by inverse CDF
        weights.append(left * share)
        left -= left * share
    weights.append(max(left, 0.0))
    total = sum(weights)
    return [w / total for w in weights]


def trial_seed(seed: int, k: int) -> int:
    """The sampler seed of trial ``k``: a function of the search seed and the trial number only."""
    return zlib.crc32(f"{seed}:{k}".encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class WeightSearch:
    """The search over the weights of ``components``: ``n_trials`` trials, the first ``n_initial`` random.

    ``folder`` holds the trial files (``trial_{k}.json``).
    """

    components: tuple[str, ...]
    folder: Path
    n_trials: int = 8
    n_initial: int = 3
    seed: int = 0

    def __post_init__(self):
        if len(self.components) < 2:
            raise ValueError(f"a weight search needs at least 2 components, got {list(self.components)}")

    # ------------------------------------------------------------------ trial files

    def trial_path(self, k: int) -> Path:
        return Path(self.folder) / f"trial_{k}.json"

    def finished(self) -> dict[int, dict]:
        """Trial number -> its record, for every trial file present."""
        out = {}
        for k in range(self.n_trials):
            path = self.trial_path(k)
            if path.is_file():
                out[k] = json.loads(path.read_text())
        return out

    def needs(self, k: int) -> list[int]:
        """The trials whose results trial ``k``'s proposal reads (none for the random initial ones)."""
        return [] if k < self.n_initial else list(range(k))

    # ------------------------------------------------------------------ ask and tell

    def _names(self) -> list[str]:
        return [f"z{i}" for i in range(len(self.components) - 1)]

    def propose(self, k: int, history: dict[int, dict] | None = None) -> dict:
        """Trial ``k``'s point: {"trial", "z": {name: value}, "weights": {component: w}}.

        ``history`` (default: the trial files) must hold every trial in ``needs(k)``.
        """
        import optuna
        from optuna.distributions import FloatDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        history = self.finished() if history is None else history
        missing = [j for j in self.needs(k) if j not in history]
        if missing:
            raise ValueError(f"trial {k} needs the results of trials {missing} first")
        dists = {name: FloatDistribution(0.0, 1.0) for name in self._names()}
        sampler = optuna.samplers.GPSampler(seed=trial_seed(self.seed, k), n_startup_trials=self.n_initial,
                                            deterministic_objective=False)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for j in self.needs(k):
            rec = history[j]
            value = rec["value"]
            if value is None or not math.isfinite(value):
                state = optuna.trial.TrialState.FAIL
                study.add_trial(optuna.trial.create_trial(params=rec["z"], distributions=dists, state=state))
            else:
                study.add_trial(optuna.trial.create_trial(params=rec["z"], distributions=dists, value=float(value)))
        trial = study.ask(dists)
        z = {name: float(trial.params[name]) for name in self._names()}
        weights = dict(zip(self.components, simplex_from_free([z[n] for n in self._names()])))
        return {"trial": k, "z": z, "weights": weights}

    def tell(self, proposal: dict, value: float, **extra) -> dict:
        """Write trial ``proposal['trial']``'s record (its point, the objective, ``extra``) to its file."""
        record = {**proposal, "value": None if value is None or not math.isfinite(value) else float(value), **extra}
        write_json(record, self.trial_path(proposal["trial"]))
        return record

    def run(self, objective: Callable[[dict[str, float], int], float | tuple[float, dict]]) -> dict[int, dict]:
        """Every trial without a file, in order: propose, ``objective(weights, k)``, tell; returns all records.

        ``objective`` returns the value to maximise, or (value, extra fields for the record).
        """
        history = self.finished()
        for k in range(self.n_trials):
            if k in history:
                continue
            proposal = self.propose(k, history)
            out = objective(proposal["weights"], k)
            value, extra = out if isinstance(out, tuple) else (out, {})
            history[k] = self.tell(proposal, value, **extra)
            log.info("trial %d: weights %s -> %.4f", k, {c: round(w, 3) for c, w in proposal["weights"].items()},
                     history[k]["value"] if history[k]["value"] is not None else float("nan"))
        return history

    @staticmethod
    def best(history: dict[int, dict]) -> dict:
        """The record with the highest objective."""
        done = [r for r in history.values() if r.get("value") is not None]
        if not done:
            raise ValueError("no finished trial with an objective")
        return max(done, key=lambda r: (r["value"], -r["trial"]))
