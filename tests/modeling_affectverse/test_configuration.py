"""AffectVerseConfig: paper defaults, validation naming the field, presets, serialisation."""

import pytest
import torch

from modeling_affectverse import AffectVerseConfig, AffectVerseForConditionalGeneration
from modeling_affectverse.count_ewm import load_preset, main
from modeling_affectverse.ewm import count_parameters

PRESET_7B = "configuration/affectverse-7b.json"


def test_defaults_are_the_papers_table_7():
    config = AffectVerseConfig()
    assert (config.ewm_working_size, config.ewm_num_future_queries, config.ewm_rollout_steps) == (512, 8, 3)
    assert (config.ewm_imagination_layers, config.ewm_aggregation_layers, config.ewm_num_heads) == (2, 1, 8)
    assert (config.ewm_belief_tokens_dual, config.ewm_belief_tokens_single) == (8, 4)
    assert config.ewm_num_type_embeddings == 6 and config.ewm_residual_scale_init == 0.1
    assert config.ewm_hidden_size == 3584 and config.model_type == "affectverse"


@pytest.mark.parametrize(
    "field, value",
    [
        ("ewm_num_heads", 7),  # 512 not divisible by 7
        ("ewm_working_size", 0),
        ("ewm_rollout_steps", 0),
        ("ewm_belief_tokens_dual", 3),
        ("ewm_belief_tokens_single", 0),
        ("ewm_context_mode", "both"),
        ("ewm_keep_ratio_min", 0.0),
        ("ewm_keep_ratio_min", 1.5),
        ("ewm_num_type_embeddings", 1),
        ("ewm_min_modality_tokens", 1),
        ("belief_token_id", 10**7),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AffectVerseConfig(**{field: value})


def test_save_and_load_round_trip(tmp_path):
    config = AffectVerseConfig(ewm_rollout_steps=2, ewm_context_mode="self", belief_token_id=151665)
    config.save_pretrained(tmp_path)
    loaded = AffectVerseConfig.from_pretrained(tmp_path)
    assert loaded.ewm_rollout_steps == 2 and loaded.ewm_context_mode == "self"
    assert loaded.belief_token_id == 151665 and loaded.ewm_hidden_size == config.ewm_hidden_size


def test_7b_preset_ewm_parameter_count_is_about_25m():
    config = load_preset(PRESET_7B)
    assert config.get_text_config().hidden_size == 3584
    with torch.device("meta"):
        model = AffectVerseForConditionalGeneration(config)
    ewm = count_parameters(model.ewm)
    assert 24_000_000 <= ewm <= 26_000_000
    # every EWM weight lives under `ewm.`, and nothing else does
    ewm_names = [n for n, _ in model.named_parameters() if n.startswith("ewm.")]
    assert sum(p.numel() for n, p in model.named_parameters() if n in set(ewm_names)) == ewm


def test_count_command_prints_the_count(capsys):
    main([PRESET_7B])
    printed = capsys.readouterr().out
    count = int(printed.splitlines()[0].rsplit(":", 1)[1].replace(",", ""))  # the EWM line; the options follow
    assert 24_000_000 <= count <= 26_000_000
