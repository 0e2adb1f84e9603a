"""Prompt sources and the deterministic train/eval split."""

from __future__ import annotations

import pandas as pd
import pytest

from rlhf_lens.data.prompts import PromptsConfig
from rlhf_lens.data import builtin_texts, load_texts, make_prompt_splits, split_texts
from rlhf_lens.data.prompts import DataError


def test_builtin_openings_meet_their_contract():
    texts = builtin_texts()
    assert len(texts) >= 300
    assert all(2 <= len(t.split()) <= 12 for t in texts)
    assert len({t.lower() for t in texts}) == len(texts)
    assert all(t.isascii() for t in texts)


@pytest.fixture
def reviews():
    return pd.DataFrame({"review": ["A quiet film about a long winter", "The cast is large", "", None,
                                    "The cast is large", "Subtitles were out of sync for the first hour"],
                         "label": [1, 0, 1, 0, 0, 1]})


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_local_files(tmp_path, reviews, suffix):
    path = tmp_path / f"reviews{suffix}"
    {".parquet": lambda: reviews.to_parquet(path), ".csv": lambda: reviews.to_csv(path, index=False),
     ".jsonl": lambda: reviews.to_json(path, orient="records", lines=True)}[suffix]()
    frame = load_texts(PromptsConfig(source=str(path), text_column="review", max_words=3))
    # Empty, missing and duplicate texts are dropped; texts are cut to 3 words.
    assert frame["text"].tolist() == ["A quiet film", "The cast is", "Subtitles were out"]
    assert frame["source_id"].tolist() == ["0", "1", "5"]


def test_missing_column_names_file_and_columns(tmp_path, reviews):
    path = tmp_path / "reviews.parquet"
    reviews.to_parquet(path)
    with pytest.raises(DataError, match=r"no column 'text'.*review, label"):
        load_texts(PromptsConfig(source=str(path)))


def test_too_few_texts(tmp_path):
    path = tmp_path / "one.csv"
    pd.DataFrame({"text": ["only one"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="at least 2"):
        load_texts(PromptsConfig(source=str(path)))


def test_hugging_face_datasets_path_on_a_local_dataset_folder(tmp_path, reviews):
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    reviews.dropna().to_csv(folder / "train.csv", index=False)
    frame = load_texts(PromptsConfig(source=f"hf:{folder}", text_column="review", hf_split="train"))
    assert "Subtitles were out of sync for the first hour" in frame["text"].tolist()
    with pytest.raises(DataError, match="cannot load Hugging Face dataset"):
        load_texts(PromptsConfig(source=f"hf:{tmp_path / 'nothing_here'}"))


def test_split_is_deterministic_disjoint_and_complete():
    frame = load_texts(PromptsConfig())
    train, evaluation = split_texts(frame, 0.2, seed=3)
    train2, evaluation2 = split_texts(frame, 0.2, seed=3)
    assert train.equals(train2) and evaluation.equals(evaluation2)
    assert set(train["text"]).isdisjoint(evaluation["text"])
    assert len(train) + len(evaluation) == len(frame)
    assert len(evaluation) == round(0.2 * len(frame))
    _, other = split_texts(frame, 0.2, seed=4)
    assert set(other["text"]) != set(evaluation["text"])


def test_max_texts_and_tiny_inputs_keep_both_sides():
    frame = pd.DataFrame({"text": ["a b", "c d", "e f"], "source_id": ["0", "1", "2"]})
    train, evaluation = split_texts(frame, 0.01, seed=0)
    assert len(evaluation) == 1 and len(train) == 2
    train, evaluation = split_texts(frame, 0.99, seed=0, max_texts=2)
    assert len(evaluation) == 1 and len(train) == 1


def test_make_prompt_splits_writes_parquet(tmp_path):
    n_train, n_eval = make_prompt_splits(PromptsConfig(), 0, tmp_path / "p" / "train.parquet",
                                         tmp_path / "p" / "eval.parquet")
    train = pd.read_parquet(tmp_path / "p" / "train.parquet")
    assert len(train) == n_train and list(train.columns) == ["text", "source_id"]
    assert len(pd.read_parquet(tmp_path / "p" / "eval.parquet")) == n_eval
