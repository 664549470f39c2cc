"""Shared fixtures: the tiny processor (built once), fresh tiny models, synthetic clips and input builders."""

from __future__ import annotations

import pytest

from modeling_affectverse import AffectVerseForConditionalGeneration
from modeling_affectverse.data.demo_data import generate_demo_dataset
from modeling_affectverse.media_affectverse import ClipSplit
from modeling_affectverse.processing_affectverse import task_question
from modeling_affectverse.tiny import MER_LABELS, build_tiny_processor, synthetic_clip, tiny_model

# modality combinations of the Must-show list: (video, audio, audio from the video's own track)
COMBOS = {
    "video+audio": (True, True, False),
    "audio-in-video": (True, True, True),
    "video": (True, False, False),
    "audio": (False, True, False),
    "text": (False, False, False),
}


@pytest.fixture(scope="session")
def processor():
    return build_tiny_processor()


@pytest.fixture
def make_model(processor):
    """Factory: a fresh random tiny model (eval mode), deterministic for its seed."""

    def _make(seed: int = 0, **overrides) -> AffectVerseForConditionalGeneration:
        return tiny_model(processor, seed, **overrides)

    return _make


@pytest.fixture
def model(make_model):
    return make_model()


def build_inputs(processor, combos, seconds=(2.0,), answer=None, belief_placeholders=None, max_length=None,
                 seeds=None, keep_ratio=None) -> dict:  # fmt: skip
    """Processor outputs for a list of modality combos (one sample each), plus forward kwargs.

    `belief_placeholders=None` leaves the choice to the processor (its `belief_injection`). `keep_ratio`: the clip
    split, as the collator makes it in training: each clip cut at rho x its length, its next `ewm_horizon_seconds`
    added as the future inputs."""
    texts, videos, audios, audio_sources, futures = [], [], [], [], []
    in_video = any(COMBOS[c][2] for c in combos)
    for i, combo in enumerate(combos):
        video, audio, from_video = COMBOS[combo]
        length = seconds[i % len(seconds)]
        seed = i if seeds is None else seeds[i]
        frames, wave = synthetic_clip(length, seed=seed)
        frames, wave = frames if video else None, wave if audio else None
        if keep_ratio is not None and (video or audio):
            split = ClipSplit.of(keep_ratio, frames, processor.fps, wave, processor.feature_extractor.sampling_rate)
            futures.append(split.future(frames, wave, processor.ewm_horizon_seconds) if processor.imagines else None)
            frames, wave = split.past(frames, wave)
        elif keep_ratio is not None:
            futures.append(None)
        texts.append(
            processor.build_prompt(
                task_question("emotion", list(MER_LABELS)),
                subtitle=f"clip {seed}",
                video=video,
                audio=audio and not from_video,
                answer=answer,
            )
        )
        if video:
            videos.append(frames)
        if audio:
            audios.append(wave)
            audio_sources.append(len(videos) - 1 if from_video else None)
    kwargs = {"padding": True, "return_tensors": "pt", "max_length": max_length}
    if belief_placeholders is not None:
        kwargs["belief_placeholders"] = belief_placeholders
    if in_video:  # videos without their own audio are silent in such a batch (None slots: standalone audio)
        kwargs.update(load_audio_from_video=True, audio_from_video_indices=audio_sources)
    inputs = processor(text=texts, videos=videos or None, audio=audios or None, **kwargs)
    forward = dict(inputs)
    if in_video:
        forward["use_audio_in_video"] = True
    if futures:
        forward.update(processor.future_inputs(futures))
    return forward


@pytest.fixture
def make_inputs(processor):
    """Factory: `build_inputs` with the shared tiny processor (placeholders by default)."""

    def _make(combos, belief_placeholders=True, **kwargs):
        return build_inputs(processor, combos, belief_placeholders=belief_placeholders, **kwargs)

    return _make


@pytest.fixture(scope="session")
def demo_manifest(tmp_path_factory) -> str:
    """11 demo clips (8 train, 1 validation, 2 test) and 4 unlabelled pool clips (`unlabeled.jsonl` next to it); the
    emotion manifest's path."""
    folder = tmp_path_factory.mktemp("demo-data")
    return generate_demo_dataset(str(folder), num_clips=11, seed=0, progress=False, num_unlabeled=4)["emotion"]
