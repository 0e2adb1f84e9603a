"""How much of the reward the features carry: the paper's Table 3 and two measures that need no LLM.

- **Table 3** (Marks et al. 2023): the utility of an explanation is the mean lexicon utility of
  its words that are in the lexicon (0 if none); a role's score is the sum of |utility| over its
  selected features (top-k per layer over the selected layers). Features explained from a random
  draw of the same dictionary give the baseline, scaled to the same number of features.
- **Token utility**: per feature, the activation-weighted mean utility of the tokens it fires on,
  a token's utility being that of the word it belongs to: sum_t a_t u_t / sum_t a_t.
- **Unembedding utility**: per feature, the mean utility of the ``top_n_tokens`` tokens its
  decoder direction promotes through the final norm and the unembedding.

Table 3 is also given over only the explanation words quoted from the feature's own examples
(``table3_quoted``): template words ("like", "positive", "words") carry VADER values of their own.

Base vs RLHF: bootstrap CIs and a two-sided permutation test of the difference, both within layers
(features of one layer pair across roles; features of different layers are not exchangeable); a
failed explanation counts 0 on either side. A difference is an ``effect`` only if its CI excludes 0,
p < 0.05, and RLHF's selected features beat its random ones. Written here because no library
computes these paper-specific quantities; the statistics are plain numpy.
"""

from .config import ScoringConfig
from .stage import LayerInputs, scoring_stage, score_layer, table3_frame
from .stats import is_effect, measure_stats, paired_difference, stratified_permutation_p, table3_stats
from .utilities import (activation_weighted_utility, explanation_utility, final_norm, quoted_explanation_utility,
                        token_utilities, unembed_utility, vocab_utilities, word_utility)

__all__ = ["LayerInputs", "ScoringConfig", "activation_weighted_utility", "explanation_utility", "final_norm",
           "is_effect", "measure_stats", "paired_difference", "quoted_explanation_utility", "score_layer",
           "scoring_stage", "stratified_permutation_p", "table3_frame", "table3_stats", "token_utilities",
           "unembed_utility", "vocab_utilities", "word_utility"]
