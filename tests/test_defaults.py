"""One source of defaults: the schema. Every typed config that mirrors a config.yaml section must
default each field to the schema's default, so a dataclass built without arguments (tests, the
Python API) behaves as the workflow does. The first wave had ActivationsConfig.max_tokens 8000 vs
the schema's 6000, and SAEStageConfig.ce_eval_tokens 256 vs 128."""

from __future__ import annotations

import dataclasses

import pytest

from rlhf_lens.activations import ActivationsConfig
from rlhf_lens.autointerp.examples import ExampleConfig
from rlhf_lens.autointerp.simulate import SimulationConfig
from rlhf_lens.autointerp.stage import AutointerpConfig
from rlhf_lens.config import validate_config
from rlhf_lens.diffing.activation_lens import ActivationLensConfig
from rlhf_lens.diffing.base import CorpusConfig
from rlhf_lens.diffing.crosscoder import CrosscoderMethodConfig
from rlhf_lens.diffing.diff_sae import DiffSAEConfig
from rlhf_lens.diffing.paper import PaperConfig
from rlhf_lens.diffing.sae_shift import SAEShiftConfig
from rlhf_lens.diffing.logit_shift import LogitShiftConfig
from rlhf_lens.diffing.stage import ReadoutConfig
from rlhf_lens.data.prompts import PromptsConfig
from rlhf_lens.features import FeaturesConfig
from rlhf_lens.reward_models.sarm import SARMConfig
from rlhf_lens.reward_models.sarm_analysis import SARMAnalysisConfig
from rlhf_lens.preferences.sample import PreferencesConfig
from rlhf_lens.reward_models.plain import PlainRMConfig
from rlhf_lens.rl.config import EvalConfig
from rlhf_lens.sae.crosscoder_fit import CrosscoderStageConfig
from rlhf_lens.sae.fit import SAEStageConfig
from rlhf_lens.shaping import ShapingConfig
from rlhf_lens.shaping_study.config import StudyConfig

DEFAULTS = validate_config({})

# (dataclass, the section of the validated default config it mirrors)
MIRRORS = [
    (PromptsConfig, DEFAULTS["prompts"]),
    (ActivationsConfig, DEFAULTS["activations"]),
    (SAEStageConfig, DEFAULTS["sae"]),
    (CrosscoderStageConfig, DEFAULTS["crosscoder"]),
    (FeaturesConfig, DEFAULTS["features"]),
    (EvalConfig, DEFAULTS["rl"]["eval"]),
    (AutointerpConfig, DEFAULTS["autointerp"]),
    (ExampleConfig, DEFAULTS["autointerp"]["examples"]),
    (SimulationConfig, DEFAULTS["autointerp"]),
    (SARMConfig, DEFAULTS["sarm"]),
    (SARMAnalysisConfig, DEFAULTS["sarm"]["analysis"]),
    (PreferencesConfig, DEFAULTS["preferences"]),
    (PlainRMConfig, DEFAULTS["plain_rm"]),
    (ShapingConfig, DEFAULTS["rl"]["shaping"]),
    (StudyConfig, DEFAULTS["rl"]["shaping"]["study"]),
    (CorpusConfig, DEFAULTS["diffing"]["corpus"]),
    (ReadoutConfig, DEFAULTS["diffing"]["readout"]),
    (LogitShiftConfig, DEFAULTS["diffing"]["logit_shift"]),
    (ActivationLensConfig, DEFAULTS["diffing"]["activation_lens"]),
    (SAEShiftConfig, DEFAULTS["diffing"]["sae_shift"]),
    (DiffSAEConfig, DEFAULTS["diffing"]["diff_sae"]),
    (CrosscoderMethodConfig, DEFAULTS["diffing"]["crosscoder"]),
    (PaperConfig, DEFAULTS["diffing"]["paper"]),
]


def _default(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


@pytest.mark.parametrize("cls,section", MIRRORS, ids=[c.__name__ for c, _ in MIRRORS])
def test_dataclass_defaults_equal_the_schema_defaults(cls, section):
    checked = 0
    for field in dataclasses.fields(cls):
        if field.name not in section:
            continue
        default = _default(field)
        if default is dataclasses.MISSING:
            continue
        schema_value = section[field.name]
        if isinstance(default, tuple):
            schema_value = tuple(schema_value)
        assert default == schema_value, f"{cls.__name__}.{field.name} = {default!r}, schema default {schema_value!r}"
        checked += 1
    assert checked, f"{cls.__name__}: no field shared with its config section"
