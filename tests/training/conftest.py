"""Fixtures for the training tests: a small generated demo dataset and a runner for training/sft.py's main()."""

from __future__ import annotations

import os

import pytest

RECIPE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "configuration", "recipes", "demo.yaml"
)


# overrides every test run takes: no TensorBoard, no checkpoints, no demo data generation, no prediction
COMMON = ["--report_to", "none", "--save_strategy", "no", "--demo_data", "", "--evaluate_held_out", "false"]


def parse_recipe(*overrides: str, recipe: str = RECIPE):
    """A recipe's three argument dataclasses (the demo recipe by default), with command-line style overrides."""
    from trl import ModelConfig, TrlParser

    from training.sft import ScriptArguments
    from training.trainer import AffectVerseSFTConfig

    parser = TrlParser((ScriptArguments, AffectVerseSFTConfig, ModelConfig))
    return parser.parse_args_and_config(["--config", recipe, *COMMON, *overrides])


@pytest.fixture
def run_sft(demo_manifest, tmp_path):
    """Run training/sft.py's main() on the demo recipe with overrides; returns the trainer."""

    def _run(*overrides: str, output_dir: str | None = None):
        from training.sft import main

        output_dir = output_dir or str(tmp_path / "out")
        args = parse_recipe("--train_manifest", demo_manifest, "--output_dir", output_dir, *overrides)
        return main(*args)

    return _run
