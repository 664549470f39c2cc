"""`python -m modeling_affectverse.count_ewm PRESET.json`: a preset's EWM parameter count, built on the meta device."""

from __future__ import annotations

import argparse
import json

import torch

from .configuration_affectverse import AffectVerseConfig
from .ewm import EmotionWorldModule, count_parameters


def load_preset(path: str, **overrides) -> AffectVerseConfig:
    """An AffectVerseConfig from a preset JSON of `configuration/`, with `overrides` applied."""
    with open(path, encoding="utf-8") as handle:
        fields = {k: v for k, v in json.load(handle).items() if k not in ("model_type", "architectures")}
    return AffectVerseConfig(**{**fields, **overrides})


def main(argv: list[str] | None = None) -> None:
    """Print the EWM parameter count of a preset (built on the meta device: no memory, no weights)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("preset", help="a config JSON, e.g. configuration/affectverse-7b.json")
    args = parser.parse_args(argv)
    config = load_preset(args.preset)
    with torch.device("meta"):
        module = EmotionWorldModule(config)
    print(
        f"EWM parameters at {args.preset} (D={config.ewm_hidden_size}, W={config.ewm_working_size}): "
        f"{count_parameters(module):,}"
    )


if __name__ == "__main__":
    main()
