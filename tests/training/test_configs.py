"""The shipped recipes and accelerate configs parse: no unknown key, the values the README promises."""

from __future__ import annotations

import glob
import os

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from tests.training.conftest import parse_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_paper_recipe_is_the_papers_setting():
    path = os.path.join(ROOT, "configuration", "recipes", "paper.yaml")
    assert yaml.safe_load(open(path))["bf16"] is True
    script, training, model = parse_recipe("--bf16", "false", recipe=path)  # bf16 needs a GPU to parse here
    assert (model.model_name_or_path, model.lora_r, model.lora_alpha, model.lora_dropout) == (
        "Qwen/Qwen2.5-Omni-7B",
        16,
        32,
        0.05,
    )
    assert training.imagination_loss_weight == 1.0 and training.modality_dropout == 0.15
    assert (training.keep_ratio_min, training.keep_ratio_max) == (0.3, 1.0)
    assert training.per_device_train_batch_size * training.gradient_accumulation_steps * 8 == 32
    assert training.num_train_epochs == 3 and training.max_length == 1024
    assert training.lr_scheduler_type == "cosine" and training.warmup_steps == 0.03


EXPECTED = {
    "single_gpu": DistributedType.NO,
    "multi_gpu": DistributedType.MULTI_GPU,
    "deepspeed_zero2": DistributedType.DEEPSPEED,
    "deepspeed_zero3": DistributedType.DEEPSPEED,
    "fsdp": DistributedType.FSDP,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_configs_load(name):
    config = load_config_from_file(os.path.join(ROOT, "configuration", "accelerate", f"{name}.yaml"))
    assert config.distributed_type == EXPECTED[name] and config.mixed_precision == "bf16"
    if name.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(name[-1])


def test_every_accelerate_config_is_listed():
    shipped = {os.path.basename(p)[:-5] for p in glob.glob(os.path.join(ROOT, "configuration", "accelerate", "*.yaml"))}
    assert shipped == set(EXPECTED)
