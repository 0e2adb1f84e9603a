"""How much of the reward the features carry: the paper's Table 3 and two measures that need no LLM.

- **Table 3** (Marks et al. 2023): the utility of an explanation is the mean lexicon utility of
  its words that are in the lexicon (0 if none); a role's score is the sum of |utility| over its
  selected features (top-k per layer over the selected layers). Features explained from a random
  draw of the same dictionary give the baseline, scaled to the same number of features.
- **Token utility**: per feature, the activation-weighted mean utility of the tokens it fires on,
  a token's utility being that of the word it belongs to: sum_t a_t u_t / sum_t a_t.
- **Unembedding utility**: per feature, the mean utility of the ``top_n_tokens`` tokens its
  decoder direction promotes through the final norm and the unembedding.

Base vs RLHF: bootstrap CIs over features, and a two-sided permutation test of the difference
(role labels shuffled over the pooled features). Written here because no library computes these
paper-specific quantities; the statistics are plain numpy.
"""

from .config import ScoringConfig
from .stage import LayerInputs, scoring_stage, score_layer, table3_frame
from .stats import difference_ci, measure_stats, permutation_p, table3_stats
from .utilities import (activation_weighted_utility, explanation_utility, final_norm, token_utilities,
                        unembed_utility, vocab_utilities, word_utility)

__all__ = ["LayerInputs", "ScoringConfig", "activation_weighted_utility", "difference_ci", "explanation_utility",
           "final_norm", "measure_stats", "permutation_p", "score_layer", "scoring_stage", "table3_frame",
           "table3_stats", "token_utilities", "unembed_utility", "vocab_utilities", "word_utility"]
