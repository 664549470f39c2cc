"""Issue 16: the belief trajectory (the paper's case study, §4.4) from the pipeline: the probabilities of each label
as the observed fraction of the clip grows, under the evaluation runner's keep-ratio rule."""

from __future__ import annotations

import math

import pytest
import torch

from modeling_affectverse.data.collator import AffectVerseCollator, MediaOptions
from modeling_affectverse.data.manifest import load_manifest
from modeling_affectverse.pipeline_affectverse import TRAJECTORY_FRACTIONS, AffectVerseEmotionPipeline
from modeling_affectverse.scoring_affectverse import candidate_log_likelihoods, candidate_token_ids
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


def test_each_fraction_scores_what_the_collators_keep_ratio_observes(recognizer, row):
    """The row at fraction f (a belief stream's update) equals the one-shot scoring of the collator's inputs with
    `keep_ratio=f` on the same clip (the clip cut at t* = f x its length: whole 2-frame patches ending by t*, at
    least one; audio samples before t*), the same prompt; the frame shown is the cut's last."""
    processor = recognizer.processor
    fractions = [0.1, 0.3, 0.5, 0.7, 1.0]
    answer = recognizer({"video": row["video"], "subtitle": row["subtitle"]}, label_set=row["label_set"],
                        trajectory=fractions)  # fmt: skip
    trajectory = answer["trajectory"]
    assert trajectory["fractions"] == fractions
    media = processor.decode(row["video"], row["audio"])
    ids = candidate_token_ids(processor.tokenizer, row["label_set"])
    for fraction, got, index in zip(fractions, trajectory["probabilities"], trajectory["frame_index"], strict=True):
        collator = AffectVerseCollator.for_prediction(
            processor, keep_ratio=fraction, media=MediaOptions(fps=processor.fps)
        )
        inputs = {k: v for k, v in collator([row]).items() if k not in ("labels",)}
        expected = candidate_log_likelihoods(recognizer.model, inputs, ids).softmax(-1)[0]
        torch.testing.assert_close(torch.tensor(got), expected, rtol=0, atol=1e-4)
        frames, rate = len(media.video.frames), media.audio.sample_rate
        t = fraction * max(frames / media.video.fps, len(media.audio.waveform) / rate)
        whole = frames if fraction == 1.0 else min(frames, max(2, 2 * math.floor(t * media.video.fps / 2 + 1e-9)))
        assert index == whole - 1


def test_the_trajectory_prefills_less_than_one_shot_scorings(recognizer, row, monkeypatch):
    """A hook on the language model counts the positions it is given: ten fractions through one stream against the
    one-shot scorings of the nine cuts (what the trajectory ran before the stream), on the same clip."""
    base, processor = recognizer.model, recognizer.processor
    fed: list[int] = []

    def counting(function):
        def counted(*args, **kwargs):
            handle = base.model.language_model.register_forward_pre_hook(
                lambda module, a, k: fed.append(k["inputs_embeds"].shape[1]), with_kwargs=True
            )
            try:
                return function(*args, **kwargs)
            finally:
                handle.remove()

        return counted

    monkeypatch.setattr(recognizer, "_trajectory", counting(recognizer._trajectory))
    answer = recognizer(row["video"], trajectory=True)
    streamed, fed[:] = sum(fed), []
    ids = candidate_token_ids(processor.tokenizer, list(answer["trajectory"]["labels"]))
    score = counting(candidate_log_likelihoods)
    for fraction in answer["trajectory"]["fractions"][:-1]:
        collator = AffectVerseCollator.for_prediction(processor, keep_ratio=fraction, media=MediaOptions(fps=3.0))
        score(base, {k: v for k, v in collator([{**row, "subtitle": None}]).items() if k != "labels"}, ids)
    assert streamed < 0.9 * sum(fed), (streamed, sum(fed))  # measured 760 against 948 (a 2-s clip: the text dominates)


def test_bad_trajectory_options_are_refused(recognizer, row):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        recognizer(row["video"], trajectory=[0.0, 0.5])
    with pytest.raises(ValueError, match="closed label set"):
        recognizer(row["video"], task="open_vocabulary", trajectory=True)
    with pytest.raises(ValueError, match="trajectory must be"):
        recognizer(row["video"], trajectory="often")
