"""Issue 16: the belief trajectory (the paper's case study, §4.4) from the pipeline: the probabilities of each label
as the observed fraction of the clip grows, under the evaluation runner's keep-ratio rule."""

from __future__ import annotations

import math

import pytest
import torch

from modeling_affectverse.data.collator import AffectVerseCollator, MediaOptions
from modeling_affectverse.data.manifest import load_manifest
from modeling_affectverse.pipeline_affectverse import TRAJECTORY_FRACTIONS, AffectVerseEmotionPipeline
from modeling_affectverse.tiny import build_tiny_model


@pytest.fixture(scope="module")
def recognizer():
    model, processor = build_tiny_model()
    return AffectVerseEmotionPipeline(model=model, processor=processor)


@pytest.fixture
def row(demo_manifest):
    return next(r for r in load_manifest(demo_manifest) if r["split"] == "test")


def test_trajectory_ends_at_the_pipelines_probabilities(recognizer, row):
    clip = {"video": row["video"], "subtitle": row["subtitle"]}
    plain = recognizer(clip, return_details=True)
    answer = recognizer(clip, trajectory=True)
    trajectory = answer["trajectory"]
    assert trajectory["fractions"] == list(TRAJECTORY_FRACTIONS) and trajectory["labels"] == list(plain["scores"])
    assert len(trajectory["probabilities"]) == 10
    for row_probabilities in trajectory["probabilities"]:
        assert sum(row_probabilities) == pytest.approx(1.0, abs=1e-5)
    assert trajectory["probabilities"][-1] == list(plain["scores"].values())  # fraction 1.0: exactly the pipeline's
    assert answer["label"] == plain["label"] and answer["scores"] == plain["scores"]
    assert len(set(map(tuple, trajectory["probabilities"]))) > 1  # what the model believes changes as it sees more
    frames = trajectory["frames"]
    assert all(f.ndim == 3 and f.shape[-1] == 3 for f in frames)
    assert trajectory["frame_index"] == sorted(trajectory["frame_index"])  # later fractions, later frames


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 1.0])
def test_each_fraction_observes_what_the_collators_keep_ratio_observes(recognizer, row, fraction):
    """The model inputs at fraction f equal the collator's with `keep_ratio=f` on the same clip: the clip cut at
    t* = f x its length (whole 2-frame patches ending by t*, at least one; audio samples before t*), the same
    prompt."""
    processor = recognizer.processor
    model_inputs = recognizer.preprocess({"video": row["video"], "subtitle": row["subtitle"]},
                                         label_set=row["label_set"], trajectory=[fraction])  # fmt: skip
    step = model_inputs["trajectory"][-1] if fraction == 1.0 else model_inputs["trajectory"][0]
    inputs = model_inputs["generation"] if step["inputs"] is None else step["inputs"]
    collator = AffectVerseCollator.for_prediction(processor, keep_ratio=fraction, media=MediaOptions(fps=processor.fps))
    expected = collator([row])
    for key in ("input_ids", "attention_mask", "pixel_values_videos", "video_grid_thw", "input_features",
                "feature_attention_mask"):  # fmt: skip
        assert torch.equal(inputs[key], expected[key]), key
    media = processor.decode(row["video"], row["audio"])
    frames, rate = len(media.video.frames), media.audio.sample_rate
    t = fraction * max(frames / media.video.fps, len(media.audio.waveform) / rate)
    whole = frames if fraction == 1.0 else min(frames, max(2, 2 * math.floor(t * media.video.fps / 2 + 1e-9)))
    assert step["frame_index"] == whole - 1
    samples = int(expected["feature_attention_mask"].sum()) * processor.feature_extractor.hop_length
    assert abs(samples - min(len(media.audio.waveform), math.ceil(t * rate))) < processor.feature_extractor.hop_length


def test_bad_trajectory_options_are_refused(recognizer, row):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        recognizer(row["video"], trajectory=[0.0, 0.5])
    with pytest.raises(ValueError, match="closed label set"):
        recognizer(row["video"], task="open_vocabulary", trajectory=True)
    with pytest.raises(ValueError, match="trajectory must be"):
        recognizer(row["video"], trajectory="often")
