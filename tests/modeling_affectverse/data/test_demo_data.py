"""The embedded demo dataset: deterministic, real mp4 files, labels that follow how each clip ends."""

from __future__ import annotations

import av
import numpy as np
import pytest

from modeling_affectverse.data.converters import MER_LABELS
from modeling_affectverse.data.demo_data import EXPRESSIONS, VALENCE, generate_demo_dataset, make_clip
from modeling_affectverse.data.demo_data import main as demo_main
from modeling_affectverse.data.manifest import iter_manifest, load_manifest
from modeling_affectverse.media_affectverse import decode_audio, decode_video


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    return folder, generate_demo_dataset(str(folder), num_clips=6, seed=1, progress=False)


def test_same_seed_same_manifest_bytes_and_frames(demo, tmp_path):
    folder, manifests = demo
    again = generate_demo_dataset(str(tmp_path), num_clips=6, seed=1, progress=False)
    for task in ("emotion", "sentiment"):
        assert open(manifests[task], "rb").read() == open(again[task], "rb").read()
    for row in iter_manifest(manifests["emotion"]):
        first, second = (decode_video(root / row["video"]).frames for root in (folder, tmp_path))
        np.testing.assert_array_equal(first, second)
        np.testing.assert_array_equal(
            decode_audio(folder / row["audio"]).waveform, decode_audio(tmp_path / row["audio"]).waveform
        )
    other = generate_demo_dataset(str(tmp_path / "other"), num_clips=6, seed=2, progress=False)
    assert open(other["emotion"], "rb").read() != open(manifests["emotion"], "rb").read()


def test_clips_are_ordinary_h264_aac_mp4(demo):
    folder, manifests = demo
    for row in iter_manifest(manifests["emotion"]):
        with av.open(str(folder / row["video"])) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
            assert sum(1 for _ in container.decode(video=0)) == video.frames > 0
            seconds = video.frames / float(video.average_rate)
            assert 1.0 <= seconds <= 3.0


def test_manifests_label_and_split(demo, tmp_path):
    _, manifests = demo
    emotion = load_manifest(manifests["emotion"], cache_dir=str(tmp_path))
    assert emotion["split"] == ["train"] * 5 + ["test"]
    assert set(emotion["label"]) == set(MER_LABELS)  # 6 clips: every class once
    sentiment = {row["id"]: row["label"] for row in iter_manifest(manifests["sentiment"])}
    for row in emotion:
        assert abs(sentiment[row["id"]] - VALENCE[row["label"]]) <= 0.45  # valence of the final expression


def flat(state: dict) -> list[float]:
    """An expression's numbers in one list (the tint is a tuple)."""
    return [float(x) for value in state.values() for x in (value if isinstance(value, tuple) else (value,))]


@pytest.mark.parametrize("label", MER_LABELS)
def test_label_is_the_expression_the_clip_ends_in(label):
    frames, wave, states = make_clip(label, np.random.default_rng(7))
    assert flat(states[-1]) == pytest.approx(flat(EXPRESSIONS[label]))
    start = [name for name, expression in EXPRESSIONS.items() if flat(states[0]) == pytest.approx(flat(expression))]
    assert start and start[0] != label  # it evolves from a different expression
    assert not np.array_equal(frames[0], frames[-1])
    assert wave.dtype == np.float32 and np.abs(wave).max() < 1.0


def test_cli(tmp_path, capsys):
    assert demo_main(["--output", str(tmp_path), "--num-clips", "2", "--seed", "5"]) == 0
    assert "wrote 2 clips" in capsys.readouterr().out
    assert len(list(iter_manifest(tmp_path / "emotion.jsonl"))) == 2
