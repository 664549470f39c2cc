"""Training-side switches: evaluation that is evaluation, lambda = 0, EWM config overrides end to end."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open

from modeling_affectverse.data.collator import AffectVerseCollator
from modeling_affectverse.data.manifest import load_manifest
from modeling_affectverse.loading import EWM_CONFIG_FILE, load
from tests.training.test_sft import SGD, logged
from training.sft import ScriptArguments


def placeholders(batch, processor) -> list[int]:
    return (batch["input_ids"] == processor.belief_token_id).sum(1).tolist()


def test_evaluation_sees_whole_clips_with_every_modality(run_sft, demo_manifest):
    trainer = run_sft("--max_steps", "1", "--modality_dropout", "1.0", "--eval_manifest", demo_manifest,
                      "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2")  # fmt: skip
    processor = trainer.processing_class
    train_batch = next(iter(trainer.get_train_dataloader()))
    assert placeholders(train_batch, processor) == [4, 4]  # dropout 1: one modality dropped from every sample
    assert "future_layout" in train_batch  # the clips were cut: their futures are the imagination's targets
    eval_batch = next(iter(trainer.get_eval_dataloader()))
    assert placeholders(eval_batch, processor) == [8, 8]  # both modalities, nothing drawn
    assert not any(key.startswith("future_") or key == "keep_ratio" for key in eval_batch)  # whole clips
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and "eval_imagination_loss" not in metrics  # whole clips: no future to imagine


def test_an_eval_keep_ratio_is_applied_to_every_eval_sample(run_sft, demo_manifest):
    trainer = run_sft("--max_steps", "1", "--eval_manifest", demo_manifest, "--eval_keep_ratio", "0.5",
                      "--per_device_eval_batch_size", "2")  # fmt: skip
    eval_batch = next(iter(trainer.get_eval_dataloader()))
    assert trainer.eval_data_collator.last_keep_ratio == [0.5, 0.5]
    assert eval_batch["future_layout"].batch_size == 2 and len(eval_batch["future_layout"].audio.sample) == 2
    metrics = trainer.evaluate()
    assert metrics["eval_imagination_loss"] > 0 and "eval_imagination_skill_copy_last" in metrics


def test_lambda_zero_trains_the_ewm_through_the_lm_loss_only(run_sft):
    trainer = run_sft("--max_steps", "1", "--logging_steps", "1", "--imagination_loss_weight", "0", *SGD)
    assert logged(trainer, "loss") == pytest.approx(logged(trainer, "lm_loss"), rel=1e-3)  # the optimised loss
    assert logged(trainer, "imagination_loss")[0] > 0  # it is still computed and logged, not optimised
    from modeling_affectverse.tiny import build_tiny_model

    initial, _ = build_tiny_model(seed=0)
    initial.init_ewm(trainer.args.seed)
    start = dict(initial.ewm.named_parameters())
    trained = {n.split(".ewm.modules_to_save.default.")[1]: p for n, p in trainer.model.named_parameters()
               if ".ewm.modules_to_save.default." in n}  # fmt: skip
    moved = [name for name, param in trained.items() if not torch.equal(param.detach(), start[name])]
    assert "up_proj.weight" in moved and any(n.startswith("video_imagination.") for n in moved)


def test_ewm_config_override_trains_saves_and_reloads_the_variant(run_sft, demo_manifest, tmp_path):
    output = str(tmp_path / "out")
    trainer = run_sft("--max_steps", "2", "--ewm_config", '{"ewm_belief_construction": "none"}', output_dir=output)
    assert json.load(open(os.path.join(output, EWM_CONFIG_FILE))) == {"ewm_belief_construction": "none"}
    with safe_open(os.path.join(output, "adapter_model.safetensors"), "pt") as handle:
        assert not any(".ewm." in key or "token_adapter" in key for key in handle.keys())
    model, processor = load(output)
    assert model.get_base_model().ewm is None and processor.belief_injection == "none"
    rows = load_manifest(demo_manifest, cache_dir=str(tmp_path / "cache"))
    batch = AffectVerseCollator.for_prediction(processor, with_answer=True)([rows[0], rows[5]])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(**batch).logits, trainer.model.eval()(**batch).logits)


def test_ewm_config_takes_only_ewm_fields():
    assert ScriptArguments(ewm_config='{"ewm_context_mode": "self"}').ewm_config == {"ewm_context_mode": "self"}
    with pytest.raises(ValueError, match="only ewm_"):
        ScriptArguments(ewm_config='{"context_mode": "self"}')
