"""Prompt and text sources: the built-in review openings, local files, Hugging Face datasets."""

from .prompts import builtin_texts, load_texts, make_prompt_splits, split_texts

__all__ = ["builtin_texts", "load_texts", "make_prompt_splits", "split_texts"]
