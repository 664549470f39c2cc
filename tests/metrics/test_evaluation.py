"""The evaluation runner end to end on the demo dataset with the tiny model, including interruption and resume."""

from __future__ import annotations

import argparse
import json
import os

import pytest

import metrics.evaluation as runner

ARGS = ["--model", "tiny", "--modalities", "AVT", "AT", "--keep-ratios", "1.0", "0.5", "--batch-size", "1"]


@pytest.fixture
def counted(monkeypatch):
    """Counts the rows the runner actually predicts."""
    calls = []
    original = runner.predict_batch

    def predict_batch(model, collator, rows, scoring):
        calls.extend(row["id"] for row in rows)
        return original(model, collator, rows, scoring)

    monkeypatch.setattr(runner, "predict_batch", predict_batch)
    return calls


def test_runner_writes_everything_and_resumes_without_redoing(demo_manifest, tmp_path, counted):
    manifests = [demo_manifest, os.path.join(os.path.dirname(demo_manifest), "sentiment.jsonl")]
    full = tmp_path / "full"
    assert runner.main([*ARGS, "--manifest", *manifests, "--output", str(full)]) == 0
    total = len(counted)
    assert total == 2 * 2 * 2 * 2  # 2 test clips x 2 settings x 2 keep ratios x 2 manifests
    for name in ("predictions.jsonl", "results.json", "results.md", "keep_ratio.png"):
        assert (full / name).stat().st_size > 0
    results = json.loads((full / "results.json").read_text())
    assert set(results) == {"demo", "demo-sentiment"} and set(results["demo"]) == {"AVT", "AT"}
    assert set(results["demo"]["AVT"]) == {"1", "0.5"}
    emotion = results["demo"]["AVT"]["1"]
    assert {"accuracy", "uar", "macro_f1", "weighted_f1", "unmatched", "hit_rate"} <= set(emotion)
    assert {"has0_acc2", "non0_acc2", "non0_f1", "acc3", "sims_acc2"} <= set(results["demo-sentiment"]["AT"]["0.5"])
    table = (full / "results.md").read_text()
    assert "## Table 1" in table and "| A+V+T |" in table and "| A+T |" in table and "| rho = 0.5 |" in table
    assert "demo (weighted_f1)" in table and "demo-sentiment (non0_f1)" in table

    # interrupted after 5 predictions, the last line cut mid-write; then run again
    counted.clear()
    part = tmp_path / "part"
    assert runner.main([*ARGS, "--manifest", *manifests, "--output", str(part), "--max-predictions", "5"]) == 0
    assert len(counted) == 5 and not (part / "results.json").exists()
    with open(part / "predictions.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"dataset": "demo", "modality": "AT", "keep')  # a kill in the middle of a line
    counted.clear()
    assert runner.main([*ARGS, "--manifest", *manifests, "--output", str(part)]) == 0
    assert len(counted) == total - 5  # nothing redone
    records = runner.read_predictions(str(part / "predictions.jsonl"))
    assert len(records) == total and len({runner._key(r) for r in records}) == total
    assert json.loads((part / "results.json").read_text()) == results


def test_closed_set_scoring_gives_distributions(demo_manifest, tmp_path):
    output = tmp_path / "closed"
    argv = ["--model", "tiny", "--manifest", demo_manifest, "--output", str(output), "--scoring", "closed_set"]
    assert runner.main(argv) == 0
    for record in runner.read_predictions(str(output / "predictions.jsonl")):
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert record["prediction"] == max(record["probabilities"], key=record["probabilities"].get)
        assert record["prediction"] in record["label_set"]


@pytest.mark.parametrize("scoring", ["closed_set", "generate"])
def test_batched_results_equal_batch_size_one(demo_manifest, tmp_path, scoring):
    """Issue 12: `--batch-size 4` runs 4 clips per model call (left-padded, modalities mixed within the batch: some
    clips lose their audio or their video) and gives what one clip per call gives."""
    rows = [json.loads(line) for line in open(demo_manifest, encoding="utf-8")]
    base = os.path.dirname(demo_manifest)
    for row in rows:  # absolute media paths, so the manifest can live elsewhere
        for key in ("video", "audio"):
            if row.get(key):
                row[key] = os.path.join(base, row[key])
    rows[1]["audio"] = rows[4]["audio"] = None  # silent video (the video file's own track is not used: no audio)
    rows[2]["video"] = None
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(row) + "\n" for row in rows))
    outputs = {}
    for size in (1, 4):
        out = tmp_path / f"b{size}"
        argv = ["--model", "tiny", "--manifest", str(mixed), "--split", "train", "--modalities", "AVT", "--keep-ratios",
                "1.0", "0.5", "--scoring", scoring, "--batch-size", str(size), "--output", str(out)]  # fmt: skip
        assert runner.main(argv) == 0
        outputs[size] = {runner._key(r): r for r in runner.read_predictions(str(out / "predictions.jsonl"))}
    assert outputs[1].keys() == outputs[4].keys() and len(outputs[1]) == 2 * 8  # 8 train clips x 2 keep ratios
    for key, single in outputs[1].items():
        batched = outputs[4][key]
        assert batched["prediction"] == single["prediction"], key
        if scoring == "closed_set":
            for label, p in single["probabilities"].items():
                assert batched["probabilities"][label] == pytest.approx(p, abs=1e-4), (key, label)


@pytest.mark.parametrize("scoring", ["closed_set", "generate"])
def test_the_runner_scores_with_wetr(demo_manifest, tmp_path, scoring):
    """`--wetr`: prompts with the two query spans, the refinement inside the language model, the same protocol and
    outputs (closed-set scoring continues the candidates from the refined cache)."""
    output = tmp_path / "wetr"
    argv = ["--model", "tiny", "--manifest", demo_manifest, "--output", str(output), "--scoring", scoring,
            "--batch-size", "2", "--wetr", "--wetr-interval", "2", "--wetr-p-visual", "0.25"]  # fmt: skip
    assert runner.main(argv) == 0
    records = runner.read_predictions(str(output / "predictions.jsonl"))
    assert len(records) == 2 and not any(r.get("skipped") for r in records)
    if scoring == "closed_set":
        for record in records:
            assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="smaller than the decoder depth"):
        runner.main([*argv, "--wetr-interval", "4"])  # not below the tiny model's 4 layers: refused


def test_the_wetr_ablation_switches_reach_the_config():
    """WETR Tables 2, 3 and 6 from the command line: proxy, NTS only, STR only, STR without anchors."""
    parser = argparse.ArgumentParser()
    runner.add_wetr_arguments(parser)
    assert runner.wetr_config(parser.parse_args([])) == runner.WETRConfig()  # the paper's defaults
    cases = {
        "--wetr-no-str": {"reweight": False},
        "--wetr-no-nts": {"select": False},
        "--wetr-no-anchors": {"anchors": False},
    }
    for flag, changed in cases.items():
        assert runner.wetr_config(parser.parse_args([flag])) == runner.WETRConfig(**changed), flag
    config = runner.wetr_config(parser.parse_args(["--wetr-proxy", "random", "--wetr-interval", "2"]), p_visual=0.5)
    assert (config.proxy, config.trigger_interval, config.p_visual) == ("random", 2, 0.5)


def test_the_runner_sets_the_query_spans():
    from modeling_affectverse.tiny import build_tiny_processor

    parser = argparse.ArgumentParser()
    runner.add_wetr_arguments(parser)
    processor = build_tiny_processor()
    default_neg = processor.wetr_query_neg
    runner.use_wetr_queries(processor, parser.parse_args(["--wetr-query-pos", "How does he feel?"]))
    assert (processor.wetr_query_pos, processor.wetr_query_neg) == ("How does he feel?", default_neg)
    with pytest.raises(ValueError, match="must differ"):
        runner.use_wetr_queries(processor, parser.parse_args(["--wetr-query-neg", "How does he feel?"]))
