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


def _fake_run(tmp_path, variant: str, seed: int, right: list[bool]) -> dict:
    """A finished run whose predictions at (AVT, 0.5) are right on the clips marked True; other cells are noise."""
    run_dir = tmp_path / variant / f"seed{seed}"
    (run_dir / "bench").mkdir(parents=True)
    records = [
        {"id": f"c{k}", "modality": "AVT", "keep_ratio": 0.5, "reference": "happy",
         "prediction": "happy" if ok else "sad"}
        for k, ok in enumerate(right)
    ]  # fmt: skip
    records.append({"id": "c0", "modality": "AT", "keep_ratio": 0.5, "reference": "happy", "prediction": "sad"})
    records.append({"id": "skipped", "modality": "AVT", "keep_ratio": 0.5, "reference": "happy", "skipped": True})
    with open(run_dir / "bench" / "predictions.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    return {"variant": variant, "seed": seed, "run_dir": str(run_dir)}


def test_primary_endpoint_and_secondary_comparisons_by_hand(tmp_path):
    from training.ablate import primary_endpoint, secondary_comparisons

    full = {0: [1, 1, 1, 0, 1, 0], 1: [1, 1, 0, 0, 1, 1]}
    pooling = {0: [1, 0, 0, 0, 1, 0], 1: [0, 1, 0, 1, 0, 0]}  # 2/6 and 2/6
    lora_cut = {0: [0, 0, 0, 0, 1, 0], 1: [0, 0, 0, 0, 0, 1]}  # worse: not the comparator
    shuffled = {0: [1, 1, 1, 0, 1, 0], 1: [1, 1, 0, 0, 1, 1]}  # identical to full
    results = [
        _fake_run(tmp_path, variant, seed, [bool(v) for v in right])
        for variant, table in (("full", full), ("pooling", pooling), ("lora_cut", lora_cut),
                               ("shuffled_targets", shuffled))
        for seed, right in table.items()
    ]  # fmt: skip
    endpoint = primary_endpoint(results)
    assert endpoint["comparator"] == "pooling" and endpoint["seeds"] == [0, 1] and endpoint["clips"] == 6
    assert endpoint["t_over_seeds"]["mean"] == pytest.approx(((4 - 2) / 6 + (4 - 2) / 6) / 2)
    assert endpoint["bootstrap_over_clips"]["mean"] == pytest.approx(endpoint["t_over_seeds"]["mean"])
    # seed 0: clips 1, 2 only full right, none only pooling; seed 1: 0, 4, 5 only full, 3 only pooling
    assert [(m["only_a"], m["only_b"]) for m in endpoint["mcnemar_per_seed"]] == [(2, 0), (3, 1)]
    secondary = secondary_comparisons(results)
    assert [(c["a"], c["b"]) for c in secondary] == [("full", "shuffled_targets")]  # the other pairs were not run
    same = secondary[0]
    assert same["t_over_seeds"]["mean"] == 0.0 and all(m["p_value"] == 1.0 for m in same["mcnemar_per_seed"])
    summary = {"primary_endpoint": endpoint, "secondary_comparisons": secondary}
    from training.ablate import _comparison_lines

    text = "\n".join(_comparison_lines(summary))
    assert "`full` − `pooling`" in text and "+33.3 points" in text and "| `full` − `shuffled_targets` | +0.0 |" in text


def test_start_naming_counts_answers_equal_to_the_start_expression(tmp_path):
    import argparse

    from training.ablate import start_naming

    results = [
        _fake_run(tmp_path, "full", 0, [True, True, True, False, True, False]),  # wrong answers say "sad"
        _fake_run(tmp_path, "full", 1, [True, False, False, False, True, True]),
    ]
    parameters = [{"id": f"c{k}", "start": "sad" if k < 3 else "angry"} for k in range(6)]
    args = argparse.Namespace(keep_ratios=[1.0, 0.5])
    naming = start_naming(results, parameters, args)
    # seed 0: no clip below 3 is wrong -> 0/6; seed 1: clips 1, 2 wrong with start "sad" -> 2/6 (3 is "angry")
    assert naming["full"]["0.5"]["mean"] == pytest.approx((0 + 2 / 6) / 2) and naming["full"]["0.5"]["n"] == 2
    assert "1" not in naming["full"]  # no predictions at rho = 1 in these runs
    assert start_naming(results, [], args) is None  # not the demo: nothing to count
    summary = {"keep_ratios": [1.0, 0.5], "variants": ["full"], "start_naming": naming}
    from training.ablate import _start_naming_lines

    assert "| full | – | 16.7 ± 23.6 |" in _start_naming_lines(summary)
