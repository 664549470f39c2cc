"""`python -m modeling_affectverse.count_ewm PRESET.json`: a preset's EWM parameter count, built on the meta device,
and those of the seed systems' options (emotion-first imagination, Conv-Attention pre-fusion) at that preset."""

from __future__ import annotations

import argparse
import json

import torch

from .configuration_affectverse import AffectVerseConfig
from .ewm import EmotionWorldModule, count_parameters
from .prefusion import ConvAttentionPrefusion


def load_preset(path: str, **overrides) -> AffectVerseConfig:
    """An AffectVerseConfig from a preset JSON of `configuration/`, with `overrides` applied."""
    with open(path, encoding="utf-8") as handle:
        fields = {k: v for k, v in json.load(handle).items() if k not in ("model_type", "architectures")}
    return AffectVerseConfig(**{**fields, **overrides})


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("preset", help="a config JSON, e.g. configuration/affectverse-7b.json")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Print the EWM parameter count of a preset (built on the meta device: no memory, no weights)."""
    args = build_parser().parse_args(argv)
    config = load_preset(args.preset)
    with torch.device("meta"):
        module = EmotionWorldModule(config)
    print(
        f"EWM parameters at {args.preset} (D={config.ewm_hidden_size}, W={config.ewm_working_size}): "
        f"{count_parameters(module):,}"
    )
    for name, value in option_sizes(args.preset).items():
        print(f"  {name}: {value:,}")


def option_sizes(preset: str) -> dict[str, int]:
    """Parameters the seed systems' options add at a preset (meta device): the emotion-first heads (both rollouts),
    and the Conv-Attention pre-fusion module at its configured width and depth."""
    joint = load_preset(preset)
    emotion_first = load_preset(preset, ewm_factorization="emotion_first")
    prefused = load_preset(preset, ewm_prefusion="conv_attention")
    with torch.device("meta"):
        extra = count_parameters(EmotionWorldModule(emotion_first)) - count_parameters(EmotionWorldModule(joint))
        prefusion = ConvAttentionPrefusion(
            prefused.ewm_hidden_size,
            prefused.ewm_prefusion_size,
            prefused.ewm_num_heads,
            prefused.ewm_prefusion_conv_blocks,
        )
    return {
        f"ewm_factorization=emotion_first adds ({len(emotion_first.emotion_labels)} emotions)": extra,
        f"ewm_prefusion=conv_attention (W={prefused.ewm_prefusion_size}, "
        f"{prefused.ewm_prefusion_conv_blocks} conv blocks)": count_parameters(prefusion),
    }


if __name__ == "__main__":
    main()
