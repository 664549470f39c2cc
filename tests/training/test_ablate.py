"""The ablation runner: one command, resumable, tables and plot written; the committed miniature is its output."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from training.ablate import MINIATURE, ROOT, load_variants, main, render, variant_arguments


def test_every_variant_parses_into_sft_arguments():
    from tests.training.conftest import parse_recipe

    variants = load_variants()
    assert {"full", "lora_only", "self_only", "lambda_0", "random_tokens", "pooling", "no_truncation"} <= set(variants)
    for name, overrides in variants.items():
        script_args, training_args, _ = parse_recipe(*variant_arguments(overrides))
        for key, value in overrides.items():
            if key == "ewm_config":
                assert script_args.ewm_config == value, name
            else:  # a training argument, or a script argument (answer_format)
                target = script_args if hasattr(script_args, key) else training_args
                assert getattr(target, key) == value, name


def test_sweep_writes_tables_and_a_resumed_sweep_skips_finished_runs(demo_manifest, tmp_path, monkeypatch, capsys):
    output = str(tmp_path / "sweep")
    sft = ["--max_steps", "2", "--train_manifest", demo_manifest, "--demo_data", ""]
    argv = ["--variants", "full", "lora_only", "--seeds", "0", "--output", output, "--keep-ratios", "1", "0.5",
            "--modalities", "AVT", "--", *sft]  # fmt: skip
    assert main(argv) == 0
    for name in ("results.json", "results.md", "keep_ratio.png"):
        assert os.path.getsize(os.path.join(output, name)) > 0
    summary = json.load(open(os.path.join(output, "results.json")))
    assert set(summary["accuracy"]) == {"full", "lora_only"}
    assert summary["accuracy"]["full"]["AVT"]["0.5"]["n"] == 1  # one seed
    assert summary["imagination"]["lora_only"] == {}  # nothing imagines there
    assert set(summary["imagination"]["full"]) == {"init", "trained"}
    probes = summary["imagination"]["full"]["trained"]["probes"]  # belief and pooled probes per report rho
    assert set(probes) == {"0.3", "0.5", "0.7"}
    assert all(p["belief"]["n"] == p["pooled"]["n"] == 1 for p in probes.values())
    assert "Label probes" in render(summary)
    result = json.load(open(os.path.join(output, "runs", "full", "seed0", "result.json")))
    assert result["seed"] == 0 and "--seed" in result["arguments"] and result["recipe"].endswith("demo.yaml")
    assert summary["recipe"] == os.path.join("configuration", "recipes", "demo.yaml")
    printed = capsys.readouterr().out
    assert render(summary) in printed

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was started again")

    monkeypatch.setattr(subprocess, "Popen", no_training)
    assert main(argv) == 0
    assert "2 runs, 2 already finished, 0 to do" in capsys.readouterr().out
    assert json.load(open(os.path.join(output, "results.json"))) == summary


def test_unknown_variant_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown variant"):
        main(["--variants", "fulll", "--output", str(tmp_path)])


def test_committed_miniature_is_what_the_runner_renders():
    folder = os.path.join(ROOT, "docs", "miniature")
    summary = json.load(open(os.path.join(folder, "results.json"), encoding="utf-8"))
    assert open(os.path.join(folder, "results.md"), encoding="utf-8").read() == render(summary)
    assert set(summary["variants"]) <= set(load_variants())  # every committed variant is still defined
    assert summary["runs"] and all(len(runs) == len(summary["seeds"]) for runs in summary["runs"].values())


def test_the_miniature_variants_are_the_issues():
    assert set(MINIATURE) >= {"lora_only", "lora_cut", "pooling", "random_tokens", "full", "lambda_0"}
    assert {"shuffled_targets", "full_unlabeled"} <= set(MINIATURE) <= set(load_variants())
