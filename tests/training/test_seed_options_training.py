"""Issue 14 on the demo recipe: the emotion-first loss falls, the pre-fusion trains and travels with the adapter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from modeling_affectverse.loading import load
from tests.training.test_sft import logged

OPTIONS = '{"ewm_factorization": "emotion_first", "ewm_prefusion": "conv_attention"}'


@pytest.fixture(scope="module")
def trained_options(demo_manifest, tmp_path_factory):
    from tests.training.conftest import parse_recipe
    from training.sft import main

    output = str(tmp_path_factory.mktemp("options") / "out")
    args = parse_recipe("--train_manifest", demo_manifest, "--output_dir", output, "--max_steps", "30",
                        "--per_device_train_batch_size", "4", "--logging_steps", "1", "--ewm_config", OPTIONS,
                        "--save_strategy", "no")  # fmt: skip
    return main(*args), output


@pytest.mark.slow
def test_the_emotion_loss_falls_on_the_demo_recipe(trained_options):
    trainer, _ = trained_options
    losses = logged(trainer, "emotion_loss")
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)


@pytest.mark.slow
def test_the_prefusion_trains_and_is_saved_and_reloaded_with_the_adapter(trained_options):
    trainer, output = trained_options
    key = ".prefusion.modules_to_save.default."
    trained = {n.split(key)[1]: p.detach() for n, p in trainer.model.named_parameters() if key in n}
    assert trained and trained["up.weight"].abs().sum() > 0  # it left its zero start
    reloaded, _ = load(output)
    assert reloaded.config.ewm_factorization == "emotion_first" and reloaded.config.ewm_prefusion == "conv_attention"
    wrapper = getattr(reloaded.prefusion, "modules_to_save", None)  # a PEFT model keeps the trained copy there
    module = wrapper["default"] if wrapper is not None else reloaded.prefusion
    for name, value in module.named_parameters():
        assert torch.equal(value.detach(), trained[name]), name


def test_the_size_command_prints_the_options_at_the_7b_preset():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = [sys.executable, "-m", "modeling_affectverse.count_ewm", "configuration/affectverse-7b.json"]
    shown = subprocess.run(command, capture_output=True, text=True, cwd=root, check=True).stdout
    assert "24,732,673" in shown and "ewm_prefusion=conv_attention (W=512, 2 conv blocks): 8,139,776" in shown
    assert "ewm_factorization=emotion_first adds (6 emotions): 13,324" in shown
