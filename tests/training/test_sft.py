"""training/sft.py end to end on the tiny model: losses fall, what trains and what stays frozen, adapters, resume."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors import safe_open
from transformers import set_seed

from modeling_affectverse import AffectVerseForConditionalGeneration
from modeling_affectverse.data.collator import AffectVerseCollator
from modeling_affectverse.data.manifest import load_manifest, write_manifest
from modeling_affectverse.tiny import build_tiny_model
from tests.training.conftest import COMMON, RECIPE


def logged(trainer, key: str) -> list[float]:
    return [entry[key] for entry in trainer.state.log_history if key in entry]


@pytest.fixture(scope="module")
def trained(demo_manifest, tmp_path_factory):
    """One demo-recipe run shared by the tests below (40 steps, LoRA + EWM, merged export)."""
    from tests.training.conftest import parse_recipe
    from training.sft import main

    output_dir = str(tmp_path_factory.mktemp("sft") / "out")
    args = parse_recipe("--train_manifest", demo_manifest, "--output_dir", output_dir, "--max_steps", "40",
                        "--merge", "true", "--evaluate_held_out", "true")  # fmt: skip
    return main(*args), output_dir


def test_demo_recipe_both_losses_fall(trained):
    trainer, _ = trained
    # the LM loss is logged every step; the imagination's only on steps whose batch holds a cut clip (the recipe sees
    # 3 samples in 4 whole: a batch of 8 is all whole about 1 step in 10)
    assert len(logged(trainer, "lm_loss")) == 40
    imagined = len(logged(trainer, "imagination_loss"))
    assert 30 <= imagined <= 40
    assert len(logged(trainer, "imagination_cosine_step3")) == imagined
    for key in ("lm_loss", "imagination_loss"):
        values = logged(trainer, key)
        assert sum(values[-10:]) / 10 < sum(values[:10]) / 10, key


def test_trainable_parameters_changed_and_frozen_ones_did_not(trained):
    trainer, _ = trained
    base, _ = build_tiny_model(seed=0)  # the untouched base the run started from, its EWM drawn from the run's seed
    base.init_ewm(trainer.args.seed)
    initial = dict(base.named_parameters())
    trained_model = trainer.model
    lora = {n: p for n, p in trained_model.named_parameters() if "lora_" in n}
    ewm = {n: p for n, p in trained_model.named_parameters() if ".ewm.modules_to_save." in n}
    assert lora and ewm
    # where the demo recipe puts LoRA: the LLM's attention and MLP, the vision merger, the audio projection; never the
    # audio encoder's own q/k/v (same names as the LLM's: docs/architecture.md §3)
    places = ("language_model.layers", "visual.merger.mlp", "audio_tower.proj")
    assert all(any(p in n for p in places) for n in lora) and not any("audio_tower.layers" in n for n in lora)
    assert any("mlp.gate_proj" in n for n in lora) and any("self_attn.q_proj" in n for n in lora)
    assert any("lm_head.modules_to_save" in n for n, p in trained_model.named_parameters() if p.requires_grad)
    # the adapter as the trainer created it: TRL seeds with args.seed, then wraps the seed-0 tiny base
    set_seed(trainer.args.seed)
    start = dict(get_peft_model(build_tiny_model(seed=0)[0], trainer.model.peft_config["default"]).named_parameters())
    for name, param in lora.items():
        assert not torch.equal(param.detach(), start[name]), name  # A moved from random, B from zero
    assert all(not torch.any(start[n]) for n in lora if "lora_B" in n)
    for name, param in ewm.items():
        original = initial[name.split("base_model.model.", 1)[1].replace(".modules_to_save.default", "")]
        assert not torch.equal(param.detach(), original), name
    frozen = 0
    for name, param in trained_model.named_parameters():
        if param.requires_grad:
            continue
        key = name.split("base_model.model.", 1)[1].replace(".base_layer", "").replace(".original_module", "")
        if "token_adapter" in key or key not in initial:
            continue
        torch.testing.assert_close(param.detach(), initial[key], rtol=0, atol=0)
        frozen += 1
    assert frozen > 100


def test_adapter_folder_reloads_and_merged_export_matches(trained, demo_manifest, tmp_path):
    trainer, output_dir = trained
    with safe_open(os.path.join(output_dir, "adapter_model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert any(".ewm." in k for k in keys) and any("lora_A" in k for k in keys)
    assert any("token_adapter" in k for k in keys)  # the <|belief|> embedding row

    rows = load_manifest(demo_manifest, cache_dir=str(tmp_path))
    processor = trainer.processing_class
    batch = AffectVerseCollator.for_prediction(processor, with_answer=True)(
        [rows[9], rows[10]]
    )  # the two held-out clips
    model = trainer.model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
        base, _ = build_tiny_model(seed=0)
        reloaded = PeftModel.from_pretrained(base, output_dir).eval()
        torch.testing.assert_close(reloaded(**batch).logits, expected, rtol=1e-5, atol=1e-5)
        merged = AffectVerseForConditionalGeneration.from_pretrained(os.path.join(output_dir, "merged")).eval()
        torch.testing.assert_close(merged(**batch).logits, expected, rtol=1e-4, atol=1e-4)


def test_four_steps_equal_two_steps_then_resume(run_sft, tmp_path):
    straight = run_sft(
        "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", output_dir=str(tmp_path / "straight")
    )
    resumed = run_sft(
        "--max_steps",
        "4",
        "--resume_from_checkpoint",
        str(tmp_path / "straight" / "checkpoint-2"),
        output_dir=str(tmp_path / "resumed"),
    )
    assert resumed.state.global_step == 4
    a = {n: p for n, p in straight.model.named_parameters() if p.requires_grad}
    b = {n: p for n, p in resumed.model.named_parameters() if p.requires_grad}
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-7, msg=name)
    assert logged(resumed, "loss") == pytest.approx(logged(straight, "loss"), abs=1e-6)  # steps 3-4 recomputed


# one plain-SGD step per optimizer step (lr 1: the update is the gradient), no clipping, no LoRA dropout
SGD = ["--optim", "sgd", "--learning_rate", "1.0", "--lr_scheduler_type", "constant", "--warmup_steps", "0",
       "--max_grad_norm", "0", "--lora_dropout", "0.0"]  # fmt: skip


def one_sgd_step(run_sft, output_dir: str, *overrides: str) -> dict[str, torch.Tensor]:
    """Trainable parameters after one SGD step."""
    trainer = run_sft("--max_steps", "1", *SGD, *overrides, output_dir=output_dir)
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def test_gradient_accumulation_matches_the_full_batch(run_sft, tmp_path):
    full = one_sgd_step(run_sft, str(tmp_path / "full"), "--per_device_train_batch_size", "2")
    accumulated = one_sgd_step(
        run_sft, str(tmp_path / "ga"), "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "2"
    )
    base, _ = build_tiny_model(seed=0)
    ewm_before = dict(base.ewm.named_parameters())
    moved = [
        n
        for n in full
        if ".ewm." in n and not torch.equal(full[n], ewm_before[n.split(".ewm.modules_to_save.default.")[1]])
    ]
    assert moved  # the imagination term reached the EWM
    # float32: two half-batch gradients summed against one full-batch gradient, the same terms in another order;
    # with lr 1 the update is the gradient (entries up to ~1), rounding measured up to 1.4e-6 on this machine
    for name in full:
        torch.testing.assert_close(accumulated[name], full[name], rtol=1e-5, atol=5e-6, msg=name)


def test_two_process_cpu_run_matches_one_process_with_the_same_global_batch(run_sft, demo_manifest, tmp_path):
    """docs/architecture.md §7's launch line (gloo on CPU): both processes step, stay in sync, and match one process."""
    sgd = ["--max_steps", "2", "--logging_steps", "1", *SGD]
    single = run_sft("--per_device_train_batch_size", "2", *sgd, output_dir=str(tmp_path / "single"))
    output_dir = tmp_path / "ddp"
    launch = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no"]  # fmt: skip
    script = ["--config", RECIPE, "--use_cpu", "true", *COMMON, "--train_manifest", demo_manifest]
    command = [sys.executable, "-m", "accelerate.commands.launch", *launch, "training/sft.py", *script,
               "--output_dir", str(output_dir), "--per_device_train_batch_size", "1", *sgd]  # fmt: skip
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "process 0: 2 optimizer steps" in result.stdout and "process 1: 2 optimizer steps" in result.stdout
    assert "trainable parameters identical on all 2 processes" in result.stdout
    ddp_losses = [float(v) for v in re.findall(r"'loss': '([0-9.]+)'", result.stdout)]
    assert ddp_losses == pytest.approx(logged(single, "loss"), rel=2e-3)  # logs print 4 significant digits
    with safe_open(str(output_dir / "adapter_model.safetensors"), "pt") as handle:
        saved = {k: handle.get_tensor(k) for k in handle.keys()}
    reference = PeftModel.from_pretrained(build_tiny_model(seed=0)[0], str(output_dir))
    expected = dict(single.model.named_parameters())
    compared = 0
    for name, param in reference.named_parameters():  # loaded for inference: nothing requires grad here
        if name in expected and expected[name].requires_grad:
            torch.testing.assert_close(param.detach(), expected[name].detach(), rtol=1e-4, atol=1e-5, msg=name)
            compared += 1
    assert compared > 10 and saved


def test_bad_rows_never_stop_training(run_sft, demo_manifest, tmp_path, capsys):
    sentiment = os.path.join(os.path.dirname(demo_manifest), "sentiment.jsonl")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(bytes(range(256)) * 20)
    rows = [json.loads(line) for line in open(sentiment, encoding="utf-8")]
    clips = os.path.join(os.path.dirname(demo_manifest), "clips")
    for row in rows:
        row["video"] = row["audio"] = os.path.join(clips, os.path.basename(row["video"]))
    template = rows[0]
    rows += [
        {**template, "id": "missing", "video": str(tmp_path / "gone.mp4"), "audio": str(tmp_path / "gone.mp4")},
        {**template, "id": "unreadable", "video": str(garbage), "audio": str(garbage)},
        {**template, "id": "no-answer", "label": 0.0},
    ]
    manifest = tmp_path / "with-bad-rows.jsonl"
    write_manifest(rows, manifest)
    with pytest.warns(UserWarning, match="skipping row 'unreadable'"):
        trainer = run_sft("--train_manifest", str(manifest), "--max_steps", "4", output_dir=str(tmp_path / "out"))
    assert trainer.state.global_step == 4
    assert trainer.data_collator.skipped["CorruptMediaError"] >= 1  # found while decoding, mid-epoch
    out = capsys.readouterr().out
    found = re.search(r"skipping (\d+) unusable row", out)  # missing media, label 0 (the demo has some too)
    assert found and int(found.group(1)) >= 2 and "skipped rows during training" in out
    with pytest.raises(ValueError, match=r"\d+ unusable row\(s\) in .*with-bad-rows.jsonl, first: row"):
        run_sft("--train_manifest", str(manifest), "--strict_data", "true", output_dir=str(tmp_path / "strict"))
