"""The paper's overseer: a word-utility table, r = clip(sum of U(word) / 5, -10, 10).

U is the VADER lexicon (mean human valence in [-4, 4], ~7.5k entries), read from the
``vader_lexicon.txt`` file inside the installed vaderSentiment package (no network), any
``word,utility`` CSV, or a planted table drawn with the run's seed before RL (``secret``: ordinary words
the base model writes, not in VADER; ``vader_shuffled``: VADER's values permuted over its words; see
``planted_tables``, whose ``resolved_table`` gives any reward's materialised table). Words are the
whitespace-separated pieces of the text, lowercased, with punctuation stripped from both ends ("Great," ->
"great"; inner punctuation such as "don't" stays); words not in the table count 0. VADER's own sentiment rules (negation, boosters) are
deliberately not used: the paper's reward is the plain table sum.

Per-token form: each response token gets the share of its word's utility equal to the share of
the word's characters it covers, so tokens of one word split that word's utility and a row sums
to the sequence reward. When clipping binds, the row is scaled to sum to the clipped value.

Config: ``type: utility_table`` with the keys of ``UtilityTableConfig``.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

from .base import Reward, RewardConfig, RewardError, Span
from .planted_tables import PLANTED

log = logging.getLogger(__name__)

SCALE = 5.0
CLIP = 10.0
_PUNCT = string.punctuation
_PIECE = re.compile(r"\S+")


def vader_lexicon_path() -> Path:
    """Path of vader_lexicon.txt in the installed vaderSentiment package."""
    try:
        path = Path(str(resources.files("vaderSentiment").joinpath("vader_lexicon.txt")))
    except ModuleNotFoundError as exc:
        raise RewardError("utility table 'vader' needs the vaderSentiment package, which is not installed") from exc
    if not path.is_file():
        raise RewardError(f"utility table 'vader': lexicon file {str(path)!r} does not exist")
    return path


def load_vader(path: str | Path | None = None) -> dict[str, float]:
    """Read the VADER lexicon (word<TAB>mean<TAB>std<TAB>ratings per line) as {word: mean valence}."""
    path = Path(path) if path else vader_lexicon_path()
    table: dict[str, float] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            try:
                value = float(parts[1])
            except (IndexError, ValueError):
                raise RewardError(f"lexicon file {str(path)!r} line {lineno}: expected word<TAB>number..., "
                                  f"got {line[:60]!r}") from None
            table[parts[0].lower()] = value
    if not table:
        raise RewardError(f"lexicon file {str(path)!r} holds no entries")
    return table


def load_csv_table(path: str | Path) -> dict[str, float]:
    """Read a ``word,utility`` CSV (header row required) as {lowercased word: utility}."""
    path = Path(path)
    if not path.is_file():
        raise RewardError(f"utility table file {str(path)!r} does not exist")
    table: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if header[:2] != ["word", "utility"]:
            raise RewardError(f"utility table file {str(path)!r}: expected a header row 'word,utility', "
                              f"got {','.join(header)!r}")
        for lineno, row in enumerate(reader, 2):
            if not row or not "".join(row).strip():
                continue
            try:
                word, value = row[0].strip().lower(), float(row[1])
            except (IndexError, ValueError):
                raise RewardError(f"utility table file {str(path)!r} line {lineno}: expected word,number, "
                                  f"got {','.join(row)[:60]!r}") from None
            if not word or not math.isfinite(value):
                raise RewardError(f"utility table file {str(path)!r} line {lineno}: expected a word and a finite "
                                  f"number, got {','.join(row)[:60]!r}")
            table[word] = value
    if not table:
        raise RewardError(f"utility table file {str(path)!r} holds no entries")
    return table


def load_table(table: str) -> dict[str, float]:
    """``vader`` -> the VADER lexicon; anything else is read as a word,utility CSV path.

    A planted table's name (secret, vader_shuffled) is refused: it is drawn with the run's seed and
    written before RL; ``planted_tables.resolved_table`` reads the written one."""
    if table in PLANTED:
        raise RewardError(f"utility table {table!r} is drawn before RL by the workflow's reward_table rule "
                          "(results/{run}/rewards/{reward}/table.csv); read that file, or call "
                          "rlhf_lens.rewards.planted_tables.resolved_table(config, reward)")
    return load_vader() if table == "vader" else load_csv_table(table)


def words_with_spans(text: str) -> list[tuple[str, Span]]:
    """Lowercased words of ``text`` with the character span of each word's core (punctuation stripped).

    Pieces that are only punctuation are dropped.
    """
    out = []
    for m in _PIECE.finditer(text):
        piece = m.group()
        core = piece.strip(_PUNCT)
        if not core:
            continue
        start = m.start() + (len(piece) - len(piece.lstrip(_PUNCT)))
        out.append((core.lower(), (start, start + len(core))))
    return out


@dataclass(frozen=True, kw_only=True)
class UtilityTableConfig(RewardConfig):
    """``rewards.<name>`` of type utility_table."""

    table: str = "vader"
    """vader (the VADER lexicon from the vaderSentiment package), secret (``secret_words`` ordinary words the
    base model writes, not in VADER, each worth ``secret_utility``; drawn with the run's seed), vader_shuffled
    (VADER's values permuted over its words with the run's seed: the like-for-like null) or a path to a
    word,utility CSV."""
    scope: str = "response"
    """Score the response alone (response) or the prompt and response together (prompt_and_response)."""
    secret_words: int = 40
    """table secret only: how many words are planted."""
    secret_utility: float = 3.0
    """table secret only: the utility of each planted word (VADER's strongest words are about +-3)."""
    shuffle_balance: float | None = 0.02
    """table vader_shuffled only: the permutation is re-drawn (seeded) until its values correlate with VADER's
    within this of 0 over the words the base model writes on the training prompts, weighted by how many
    prompts' completions hold them (one permutation can leave those few words VADER-like; sampling them costs
    about a minute); null keeps the first permutation and samples nothing."""

    @classmethod
    def result_entry(cls, entry: dict) -> dict:
        """The entry less the keys of the planted tables it does not draw (they change nothing else)."""
        own = {"secret": ("secret_words", "secret_utility"), "vader_shuffled": ("shuffle_balance",)}
        keep = own.get(entry.get("table", "vader"), ())
        return {k: v for k, v in entry.items()
                if k in keep or k not in ("secret_words", "secret_utility", "shuffle_balance")}

    def problems(self, prefix: str) -> list[str]:
        out = []
        if (self.table != "vader" and self.table not in PLANTED
                and not Path(self.table).expanduser().is_file()):
            out.append(f"key '{prefix}.table' has value {self.table!r}: expected vader, "
                       f"{', '.join(PLANTED)} or an existing word,utility CSV file; that file does not exist")
        if isinstance(self.secret_words, bool) or not isinstance(self.secret_words, int) or self.secret_words < 1:
            out.append(f"key '{prefix}.secret_words' has value {self.secret_words!r}: expected an integer >= 1 "
                       "(how many words table secret plants)")
        if (isinstance(self.secret_utility, bool) or not isinstance(self.secret_utility, (int, float))
                or not math.isfinite(self.secret_utility) or self.secret_utility == 0):
            out.append(f"key '{prefix}.secret_utility' has value {self.secret_utility!r}: expected a finite "
                       "non-zero number (the utility of each planted word)")
        if self.shuffle_balance is not None and (
                isinstance(self.shuffle_balance, bool) or not isinstance(self.shuffle_balance, (int, float))
                or not 0 < self.shuffle_balance < 1):
            out.append(f"key '{prefix}.shuffle_balance' has value {self.shuffle_balance!r}: expected a number in "
                       "(0, 1) (the largest |correlation| with VADER a shuffled table may keep) or null")
        return out


class UtilityTableReward(Reward):
    """r = clip(sum of U(word) / 5, -10, 10) over the response (or prompt + response) words."""

    per_token = True

    def __init__(self, table: dict[str, float], scope: str = "response", name: str = "utility"):
        if scope not in ("response", "prompt_and_response"):
            raise RewardError(f"reward {name!r}: scope {scope!r}: expected response or prompt_and_response")
        self.table, self.scope, self.name = table, scope, name

    @classmethod
    def from_config(cls, config: UtilityTableConfig, *, name: str, device: str = "cpu",
                    trust_remote_code: bool = False) -> "UtilityTableReward":
        try:
            table = load_table(config.table)
        except RewardError as exc:
            raise RewardError(f"key 'rewards.{name}.table': {exc}") from exc
        return cls(table, scope=config.scope, name=name)

    def raw_utility(self, text: str) -> float:
        """Sum of U(word) over the words of ``text`` (unscaled, unclipped)."""
        return sum(self.table.get(w, 0.0) for w, _ in words_with_spans(text))

    def _unclipped(self, prompt: str, response: str) -> float:
        text = f"{prompt}{response}" if self.scope == "prompt_and_response" else response
        return self.raw_utility(text) / SCALE

    def score(self, prompts: Sequence[str], responses: Sequence[str]):
        import torch

        vals = [min(max(self._unclipped(p, r), -CLIP), CLIP) for p, r in zip(prompts, responses)]
        return torch.tensor(vals, dtype=torch.float32)

    def token_rewards(self, prompts: Sequence[str], responses: Sequence[str],
                      token_spans: Sequence[Sequence[Span]]):
        """(B, T) float32: each token's character share of its word's U / 5; rows sum to ``score``.

        With scope prompt_and_response the prompt's words (fixed for the policy) go on the last token.
        A word that straddles the prompt/response boundary counts with the prompt.
        """
        import torch

        width = max((len(s) for s in token_spans), default=0) or 1
        out = torch.zeros(len(responses), width, dtype=torch.float64)
        for i, (prompt, response, spans) in enumerate(zip(prompts, responses, token_spans)):
            if not spans:
                continue
            offset = 0
            text = response
            if self.scope == "prompt_and_response":
                text, offset = f"{prompt}{response}", len(prompt)
            for word, (ws, we) in words_with_spans(text):
                u = self.table.get(word, 0.0) / SCALE
                if u == 0.0:
                    continue
                if ws < offset:  # the prompt's own words: constant for the policy, on the last token
                    out[i, len(spans) - 1] += u
                    continue
                ws, we = ws - offset, we - offset
                for t, (ts, te) in enumerate(spans):
                    overlap = min(te, we) - max(ts, ws)
                    if overlap > 0:
                        out[i, t] += u * overlap / (we - ws)
            total = float(out[i].sum())
            clipped = min(max(total, -CLIP), CLIP)
            if clipped != total:
                out[i] *= clipped / total
        return out.float()
