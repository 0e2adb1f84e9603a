"""The report stage: feature cards (``cards``), the run's summary in words (``summary``), report tables
(``tables``) and plots (``plots``); ``wording`` holds the one rule for calling a difference significant.

Everything here reads the files earlier stages wrote; nothing is recomputed.
"""

from .cards import feature_cards
from .summary import RewardResults, load_reward_results, summary_markdown, write_summary
from .tables import mmcs_vs_noise_floor, sae_metrics_table

__all__ = ["RewardResults", "feature_cards", "load_reward_results", "mmcs_vs_noise_floor", "sae_metrics_table",
           "summary_markdown", "write_summary"]
