"""The inputs the sections run on: the mid-size pair (AffectVerse and a plain thinker with the same weights, on a
synthetic clip through the real processor) and, for the 7B shape, batches built from a config's token ids alone."""

from __future__ import annotations

import os

import torch
from transformers import Qwen2_5OmniThinkerForConditionalGeneration

from modeling_affectverse import AffectVerseForConditionalGeneration
from modeling_affectverse.media_affectverse import ClipSplit
from modeling_affectverse.partial_observation import FutureLayout, FutureSegments
from modeling_affectverse.processing_affectverse import task_question
from modeling_affectverse.tiny import MER_LABELS, build_tiny_processor, synthetic_clip, tiny_config
from modeling_affectverse.wetr import (
    ROLE_AUDIO,
    ROLE_CONTENT,
    ROLE_INSTRUCTION,
    ROLE_QUERY_NEG,
    ROLE_QUERY_POS,
    ROLE_VISUAL,
)

HERE = os.path.dirname(os.path.abspath(__file__))


def midsize_pair(seconds: float, frame_size: int, **config_fields):
    """AffectVerse and a plain thinker with identical backbone weights, the processor, and one clip's inputs.

    `inputs(..., cut=rho)` gives what the collator gives in training with the clip split: the clip cut at rho x its
    length, its labels, and the next `ewm_horizon_seconds` as the future inputs."""
    processor = build_tiny_processor(max_length=2048)
    processor.frame_size = frame_size
    config = tiny_config(processor, path=os.path.join(HERE, "midsize.json"), **config_fields)
    processor.follow_model_config(config)
    torch.manual_seed(0)
    affectverse = AffectVerseForConditionalGeneration(config)
    thinker = Qwen2_5OmniThinkerForConditionalGeneration(config.to_thinker_config())
    missing = thinker.load_state_dict({k: v for k, v in affectverse.state_dict().items() if not k.startswith("ewm.")})
    assert not missing.missing_keys, missing.missing_keys
    frames, wave = synthetic_clip(seconds, size=frame_size, seed=0)
    question = task_question("emotion", list(MER_LABELS))

    def inputs(beliefs: bool, answer: str | None, wetr_queries: bool = False, cut: float | None = None):
        past, future = (frames, wave), None
        if cut is not None and cut < 1:
            split = ClipSplit.of(cut, frames, processor.fps, wave, processor.feature_extractor.sampling_rate)
            past, future = split.past(frames, wave), split.future(frames, wave, processor.ewm_horizon_seconds)
        text = processor.build_prompt(
            question, subtitle="benchmark clip", video=True, answer=answer, wetr_queries=wetr_queries
        )
        batch = processor(
            text=[text],
            videos=[past[0]],
            audio=[past[1]],
            load_audio_from_video=True,
            audio_from_video_indices=[0],
            belief_placeholders=beliefs,
            return_tensors="pt",
        )
        batch = dict(batch)
        batch["use_audio_in_video"] = True
        if answer is not None:
            batch["labels"] = processor.answer_labels(batch["input_ids"], batch["attention_mask"], [answer])
        if future is not None and beliefs:
            batch.update(processor.future_inputs([future]))
        return batch

    return affectverse, thinker, processor, inputs


def synthetic_batch(config, video_grid: tuple[int, int, int], audio_frames: int, text: int, device, dtype) -> dict:
    """Model inputs built from a config's token ids: a video block, an audio block, belief placeholders, text.

    No tokenizer or processor is needed (the 7B tokenizer is not available offline); encoder inputs are random.
    """
    vision, audio = config.vision_config, config.audio_config
    merge = vision.spatial_merge_size
    t, h, w = video_grid
    video_tokens = t * h * w // (merge * merge)
    audio_tokens = ((audio_frames - 1) // 2 + 1 - 2) // 2 + 1
    half = config.ewm_belief_tokens_dual // 2
    generator = torch.Generator().manual_seed(0)
    words = torch.randint(20, min(1000, config.get_text_config().vocab_size - 1), (text,), generator=generator).tolist()
    ids = (
        words[: text // 2]
        + [config.vision_start_token_id]
        + [config.video_token_id] * video_tokens
        + [config.vision_end_token_id, config.audio_start_token_id]
        + [config.audio_token_id] * audio_tokens
        + [config.audio_end_token_id]
        + [config.belief_token_id] * half
        + words[text // 2 :]
        + [config.belief_token_id] * half
        + words[:8]
    )
    input_ids = torch.tensor([ids], device=device)
    patch = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    labels = torch.full_like(input_ids, -100)
    labels[0, -8:] = input_ids[0, -8:]
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "pixel_values_videos": torch.randn(t * h * w, patch, generator=generator).to(device, dtype),
        "video_grid_thw": torch.tensor([[t, h, w]], device=device),
        "video_second_per_grid": torch.tensor([vision.temporal_patch_size / 3.0], device=device),
        "input_features": torch.randn(1, audio.num_mel_bins, audio_frames, generator=generator).to(device, dtype),
        "feature_attention_mask": torch.ones(1, audio_frames, dtype=torch.long, device=device),
    }


def synthetic_future(
    config, video_grid: tuple[int, int, int], audio_frames: int, device, dtype, start: float = 4.0
) -> dict:
    """The clip split's future inputs for a one-sample `synthetic_batch`: a video segment of `video_grid` and an
    audio segment of `audio_frames` mel frames (2 s: 3 temporal patches at 3 fps, 200 frames) starting at `start`
    seconds, with their `FutureLayout`. Encoder inputs are random."""
    vision, audio = config.vision_config, config.audio_config
    merge = vision.spatial_merge_size
    t, h, w = video_grid
    generator = torch.Generator().manual_seed(1)
    patch = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    step = vision.temporal_patch_size / 3.0
    audio_tokens = ((audio_frames - 1) // 2 + 1 - 2) // 2 + 1
    layout = FutureLayout(
        1,
        FutureSegments((0,), (start,), (t * step,), (t * h * w // merge**2,), (step,), (h * w // merge**2,)),
        FutureSegments((0,), (start,), (audio_frames / 100.0,), (audio_tokens,), (0.04,), (1,)),
    )
    return {
        "future_pixel_values_videos": torch.randn(t * h * w, patch, generator=generator).to(device, dtype),
        "future_video_grid_thw": torch.tensor([[t, h, w]], device=device),
        "future_input_features": torch.randn(1, audio.num_mel_bins, audio_frames, generator=generator).to(
            device, dtype
        ),
        "future_feature_attention_mask": torch.ones(1, audio_frames, dtype=torch.long, device=device),
        "future_layout": layout,
    }


def repeat_future(future: dict, copies: int) -> dict:
    """The future inputs of `copies` copies of a one-sample batch (`repeat_batch`)."""
    if copies == 1:
        return future
    layout = future["future_layout"]

    def repeated(segments: FutureSegments) -> FutureSegments:
        fields = ("start", "seconds", "tokens", "step", "per_step")
        return FutureSegments(tuple(range(copies)), *(getattr(segments, name) * copies for name in fields))

    return {
        "future_pixel_values_videos": future["future_pixel_values_videos"].repeat(copies, 1),
        "future_video_grid_thw": future["future_video_grid_thw"].repeat(copies, 1),
        "future_input_features": future["future_input_features"].repeat(copies, 1, 1),
        "future_feature_attention_mask": future["future_feature_attention_mask"].repeat(copies, 1),
        "future_layout": FutureLayout(copies, repeated(layout.video), repeated(layout.audio)),
    }


def synthetic_roles(config, input_ids: torch.Tensor, span: int = 8) -> torch.Tensor:
    """WETR token roles for a `synthetic_batch` prompt, laid out as the processor lays out a real one (media,
    subtitle, Q_pos, Q_neg, question): video and audio placeholders are media; of the words between the two belief
    blocks the last 2 x `span` stand in for the Q_pos and Q_neg spans and the others are the subtitle (content); the
    rest is instruction. The 7B tokenizer, which would spell the real spans, is not available offline; WETR reads
    roles, not words."""
    roles = torch.full_like(input_ids, ROLE_INSTRUCTION)
    roles[input_ids == config.video_token_id] = ROLE_VISUAL
    roles[input_ids == config.audio_token_id] = ROLE_AUDIO
    for b, ids in enumerate(input_ids.tolist()):
        beliefs = [i for i, token in enumerate(ids) if token == config.belief_token_id]
        first_end = next(i for i in beliefs if i + 1 not in beliefs)  # the first belief block's last position
        words = list(range(first_end + 1, beliefs[-1] - len(beliefs) // 2 + 1))
        content, spans = words[: -2 * span], words[-2 * span :]
        roles[b, content], roles[b, spans[:span]], roles[b, spans[span:]] = ROLE_CONTENT, ROLE_QUERY_POS, ROLE_QUERY_NEG
    return roles


def repeat_batch(batch: dict, copies: int) -> dict:
    """`copies` copies of a one-sample synthetic batch (encoder inputs repeated per sample)."""
    if copies == 1:
        return batch
    out = {}
    for key, value in batch.items():
        if key in ("pixel_values_videos",):
            out[key] = value.repeat(copies, 1)
        elif isinstance(value, torch.Tensor):
            out[key] = value.repeat(copies, *([1] * (value.dim() - 1)))
        else:
            out[key] = value
    return out
