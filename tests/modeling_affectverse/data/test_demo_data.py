"""The embedded demo dataset: deterministic, real mp4 files, labels that follow how each clip ends."""

from __future__ import annotations

import av
import numpy as np
import pytest

from metrics.ceilings import dominant_reader, ideal_observer, observed_weights, read_parameters
from modeling_affectverse.data.converters import MER_LABELS
from modeling_affectverse.data.demo_data import (
    EXPRESSIONS,
    VALENCE,
    clip_rng,
    draw_clip,
    generate_demo_dataset,
    make_clip,
    pool_labels,
    render_clip,
)
from modeling_affectverse.data.demo_data import main as demo_main
from modeling_affectverse.data.manifest import iter_manifest, load_manifest
from modeling_affectverse.media_affectverse import decode_audio, decode_video


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    return folder, generate_demo_dataset(str(folder), num_clips=12, seed=1, progress=False, num_unlabeled=2)


def test_same_seed_same_manifest_bytes_and_frames(demo, tmp_path):
    folder, manifests = demo
    again = generate_demo_dataset(str(tmp_path), num_clips=12, seed=1, progress=False, num_unlabeled=2)
    for task in ("emotion", "sentiment", "unlabeled", "parameters"):
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
    assert emotion["split"] == ["train"] * 8 + ["validation"] + ["test"] * 3
    assert sorted(emotion["label"]) == sorted(MER_LABELS * 2)  # 12 clips: every class twice
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
    arguments = ["--output", str(tmp_path), "--num-clips", "2", "--num-unlabeled", "1", "--seed", "5", "--workers", "1"]
    assert demo_main(arguments) == 0
    assert "wrote 2 clips (+ 1 unlabelled)" in capsys.readouterr().out
    assert len(list(iter_manifest(tmp_path / "emotion.jsonl"))) == 2
    assert len(list(iter_manifest(tmp_path / "unlabeled.jsonl"))) == 1


def test_unlabelled_pool_rows_carry_no_label(demo, tmp_path):
    _, manifests = demo
    pool = load_manifest(manifests["unlabeled"], cache_dir=str(tmp_path))
    assert pool["unlabeled"] == [True, True] and pool["label"] == [None, None] and set(pool["split"]) == {"unlabeled"}
    labelled = {row["id"] for row in iter_manifest(manifests["emotion"])}
    assert labelled.isdisjoint(pool["id"])  # another pool of clips, from the same process


def test_parameters_and_ideal_observer_reproduce_the_generators_draws(demo):
    """The sidecar's draws are the generator's: the same labels, starts and onsets come out of each clip's own
    generator, the rendered states start at S, are S until the onset and end at L; the ideal observer reads them."""
    folder, manifests = demo
    parameters = read_parameters(manifests["parameters"])
    labels = pool_labels(1, "demo", 12) + pool_labels(1, "pool", 2)
    rows = {row["id"]: row for row in iter_manifest(manifests["emotion"])}
    for draws, label in zip(parameters, labels, strict=True):
        pool, number = draws["id"].split("_")
        again = draw_clip(label, clip_rng(1, pool, int(number)))
        assert {k: again[k] for k in ("label", "start", "onset", "completion", "seconds")} == {
            k: draws[k] for k in ("label", "start", "onset", "completion", "seconds")
        }
        assert draws["start"] != draws["label"]
        _, _, states = render_clip(again)
        fractions = np.arange(len(states)) / (len(states) - 1)
        unchanged = [flat(s) == pytest.approx(flat(EXPRESSIONS[draws["start"]])) for s in states]
        assert unchanged == list(fractions <= draws["onset"])  # S exactly until the onset, moving after it
        assert flat(states[-1]) == pytest.approx(flat(EXPRESSIONS[label]))
        if pool == "demo":
            assert rows[draws["id"]]["label"] == label and rows[draws["id"]]["reasoning"].startswith("The clip starts")
        # the ideal observer: 1/5 for a cut before the onset, 1 once any observed state has moved
        early = draws["onset"] * 0.5
        assert observed_weights(draws, early)["audio"] == 0.0
        assert ideal_observer([draws], early, "A") == pytest.approx(0.2)
        assert ideal_observer([draws], 0.5, "AV") == 1.0 and ideal_observer([draws], 1.0, "V") == 1.0
        assert dominant_reader([draws], 0.5, "A") == 0.0 and dominant_reader([draws], 1.0, "A") == 1.0
        assert ideal_observer([draws], 0.5, "T") == pytest.approx(1 / 6)  # the subtitle says nothing


def test_parallel_workers_write_the_same_bytes(demo, tmp_path):
    folder, manifests = demo
    again = generate_demo_dataset(str(tmp_path), num_clips=12, seed=1, progress=False, num_unlabeled=2, workers=2)
    for name in ("emotion", "unlabeled", "parameters"):
        assert open(manifests[name], "rb").read() == open(again[name], "rb").read()
    for clip in sorted((folder / "clips").iterdir()):
        assert clip.read_bytes() == (tmp_path / "clips" / clip.name).read_bytes()
