"""Settings of the shaping study (config ``rl.shaping.study``); torch-free. The schema holds the same defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StudyConfig:
    """``rl.shaping.study``: the comparison of schemes and the Bayesian search of the weights."""

    reward: str | None = None
    """The reward (under rewards) that is shaped and trained on; None: the first one."""
    gold: str | None = None
    """The reward that scores held-out responses (the objective); None: rl.gold, else the trained reward."""
    schemes: tuple[str, ...] = ("last_token", "uniform", "shap", "lime", "bo_best")
    """Schemes compared: a component alone (weight 1) or bo_best (the search's best weights)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of each scheme's PPO runs."""
    steps: int | None = None
    """PPO steps of each comparison run; None: rl.ppo's steps."""
    threshold: float | None = None
    """Gold reward whose first crossing counts as convergence; None: the sparse scheme's final level."""
    eval_prompts: int = 32
    """Held-out prompts (the first N of the eval split) that score each run's final policy."""
    eval_samples: int = 2
    """Responses sampled per held-out prompt."""
    bootstrap: int = 1000
    """Bootstrap resamples for the 95% confidence intervals."""
    bo_components: tuple[str, ...] = ("last_token", "shap", "lime")
    """Components whose weights the search tunes."""
    bo_trials: int = 8
    """Trials of the search."""
    bo_initial: int = 3
    """Random initial trials."""
    bo_steps: int = 10
    """PPO steps of each trial."""
    bo_seed: int = 0
    """Seed of the search and of each trial's PPO run."""

    @classmethod
    def from_section(cls, section: dict) -> "StudyConfig":
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items() if k in names})

    def scheme_weights(self, scheme: str, best: dict[str, float] | None = None) -> dict[str, float]:
        """The weights of ``scheme``: one component alone, or the search's best (``best``)."""
        if scheme == "bo_best":
            if best is None:
                raise ValueError("scheme bo_best needs the search's best weights")
            return dict(best)
        return {scheme: 1.0}
