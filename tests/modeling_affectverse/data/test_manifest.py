"""The manifest schema: validation errors name file, line and field; loading with datasets, in memory or streamed."""

from __future__ import annotations

import json

import pytest

from modeling_affectverse.data.manifest import ManifestError, iter_manifest, load_manifest, write_manifest

ROW = {
    "id": "s1",
    "dataset": "demo",
    "split": "train",
    "task": "emotion",
    "video": "clips/s1.mp4",
    "audio": "clips/s1.mp4",
    "subtitle": "hello",
    "label": "happy",
    "label_set": ["happy", "sad"],
}


def lines(path, *rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"label": "bored"}, "field 'label' 'bored' is not in the row's label_set"),
        ({"task": "mood"}, "field 'task' is 'mood'"),
        ({"video": None, "audio": None, "subtitle": ""}, "no video, no audio and an empty subtitle"),
        ({"label": ""}, "field 'label' of an emotion row must be a non-empty string"),
        ({"id": ""}, "field 'id' must be a non-empty string"),
        ({"speaker": "A"}, r"unknown field\(s\) \['speaker'\]"),
        ({"segment": [2.0, 1.0]}, "field 'segment' must be"),
        ({"task": "sentiment", "label": "positive", "label_set": None}, "must be a finite number"),
        ({"task": "open_vocabulary", "label": [], "label_set": None}, "non-empty list of strings"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, change, message):
    path = lines(tmp_path / "m.jsonl", ROW, {**ROW, "id": "s2", **change})
    with pytest.raises(ManifestError, match=message) as caught:
        list(iter_manifest(path))
    assert str(caught.value).startswith(f"{path}:2:")


def test_nan_label_is_rejected(tmp_path):
    row = json.dumps({**ROW, "task": "sentiment", "label": 0.5, "label_set": None}).replace("0.5", "NaN")
    path = lines(tmp_path / "m.jsonl", row)
    with pytest.raises(ManifestError, match=r"m.jsonl:1: NaN is not a valid value"):
        list(iter_manifest(path))
    with pytest.raises(ManifestError, match=r"w.jsonl \(row 1\): field .label. of a sentiment row must be a finite"):
        write_manifest([{**ROW, "task": "sentiment", "label": float("nan"), "label_set": None}], tmp_path / "w.jsonl")


def test_broken_json_line(tmp_path):
    path = lines(tmp_path / "m.jsonl", ROW, '{"id": "s2",')
    with pytest.raises(ManifestError, match=r"m.jsonl:2: not valid JSON"):
        load_manifest(path)


def test_load_resolves_media_and_streams_the_same_rows(tmp_path):
    sentiment = {**ROW, "task": "sentiment", "label": -1.5, "label_set": None, "audio": None}
    path = lines(tmp_path / "m.jsonl", sentiment, {**sentiment, "id": "s2", "label": 2, "video": "/abs/s2.mp4"})
    dataset = load_manifest(path, cache_dir=str(tmp_path / "cache"))
    assert len(dataset) == 2 and dataset.features["label"].dtype == "float64"
    assert dataset[0]["video"] == str(tmp_path / "clips" / "s1.mp4") and dataset[0]["audio"] is None
    assert dataset[1]["video"] == "/abs/s2.mp4" and dataset[1]["label"] == 2.0
    assert list(load_manifest(path, streaming=True)) == list(dataset)
    other = load_manifest(path, media_root="/data/mosi", cache_dir=str(tmp_path / "cache"))
    assert other[0]["video"] == "/data/mosi/clips/s1.mp4"


def test_tasks_are_not_mixed_in_one_dataset(tmp_path):
    emotion = lines(tmp_path / "e.jsonl", ROW)
    sentiment = lines(tmp_path / "s.jsonl", {**ROW, "task": "sentiment", "label": 1.0, "label_set": None})
    with pytest.raises(ManifestError, match="manifests mix tasks"):
        load_manifest([emotion, sentiment])
    both = load_manifest([emotion, emotion], cache_dir=str(tmp_path / "cache"))
    assert len(both) == 2 and both[0]["label"] == "happy"
