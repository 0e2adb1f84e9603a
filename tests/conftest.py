"""Shared fixtures: the SmolLM2 tokenizer and a tiny random model folder, built once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_models import save_tiny_model, smollm2_tokenizer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tokenizer():
    return smollm2_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A 2-block LlamaForCausalLM (d_model 32) with the SmolLM2 tokenizer, as an HF folder."""
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny", tokenizer)


@pytest.fixture(scope="session")
def tiny_neox_dir(tmp_path_factory, tokenizer) -> Path:
    """A 2-block GPTNeoXForCausalLM (Pythia's architecture, d_model 32) with the SmolLM2 tokenizer."""
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny_neox", tokenizer, architecture="gpt_neox")


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """The real default model, SmolLM2-135M-Instruct, prepared from its packaged GGUF (about 30 s)."""
    from rlhf_lens.models import ModelConfig
    from rlhf_lens.models import prepare_model

    from tiny_models import DEFAULT_SPEC

    return prepare_model(ModelConfig(name="smollm2", spec=DEFAULT_SPEC), tmp_path_factory.mktemp("models") / "smollm2")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads; on a shared machine extra threads only wait on each other.
    Modules that want it: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
