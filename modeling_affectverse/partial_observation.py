"""Partial observation (docs/architecture.md §4.3, §4.5, §4.8): what a training sample observes, and what its
imagination is scored against.

Clip split (`ewm_split="clip"`, the default). The collator cuts each clip at t* BEFORE the processor
(`media_affectverse.ClipSplit`): the model's input IS the cut clip, processed as a short clip is, so nothing after t*
reaches the encoders, the positions or the belief tokens. The next `ewm_horizon_seconds` of media travel as separate
future inputs, described on the host by `FutureLayout`; the model encodes them without gradient and with every
adapter on the encoders switched off (`frozen_encoders`), and `future_segment` lays them out per sample as the
imagination's target (`ewm.FutureSegment`).

Embedded split (`ewm_split="embedded"`, the paper's wording, kept for reproduction). The token-level split of the
merged embeddings after the encoders: `future_token_mask` marks the future tokens and `drop_positions` removes them
from the LLM input. The encoders have already seen the future by then (the Omni audio encoder attends both ways
within 2-s chunks): that leak is the mode's, documented in docs/design-notes.md.

Shapes: B batch, L sequence, D width, F future tokens of one modality per sample.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from .ewm import FutureSegment
from .ewm_layers import compaction

IGNORE_INDEX = -100


@dataclass(frozen=True)
class FutureSegments:
    """The future segments of one modality in a batch, one per sample that has one, in the order of their rows in the
    future inputs (`future_video_grid_thw` / `future_input_features`). Host values: the model builds shapes and
    masks from them without reading the device.

    Attributes:
        sample: the sample each segment belongs to.
        start: seconds from the clip's start of the segment's first frame / sample (the video's future starts where
            the past's last whole temporal patch ends, the audio's at t*).
        seconds: length of the segment's real media (the last video patch may be padded by a repeated frame).
        tokens: encoder output tokens of the segment.
        step: seconds one token step covers (a video patch: temporal_patch_size / fps; an audio token: 40 ms).
        per_step: tokens per step (a video patch's merged spatial patches; 1 for audio).
    """

    sample: tuple[int, ...] = ()
    start: tuple[float, ...] = ()
    seconds: tuple[float, ...] = ()
    tokens: tuple[int, ...] = ()
    step: tuple[float, ...] = ()
    per_step: tuple[int, ...] = ()

    def __post_init__(self):
        lengths = {len(getattr(self, name)) for name in ("sample", "start", "seconds", "tokens", "step", "per_step")}
        if len(lengths) != 1:
            raise ValueError(f"FutureSegments fields must have one entry per segment, got lengths {sorted(lengths)}")
        if len(set(self.sample)) != len(self.sample):
            raise ValueError(f"FutureSegments: one segment per sample, got samples {self.sample}")

    def counts(self, batch_size: int) -> tuple[int, ...]:
        """Future tokens per sample (0 for a sample without a segment)."""
        counts = [0] * batch_size
        for sample, tokens in zip(self.sample, self.tokens, strict=True):
            counts[sample] = tokens
        return tuple(counts)


@dataclass(frozen=True)
class FutureLayout:
    """Host description of a batch's future inputs (clip split): which sample each future video / audio segment
    belongs to, where it starts and how long it is. The collator builds it with the tensors; like `BatchLayout` it is
    an object without `.to`, so the Trainer and accelerate pass it through untouched."""

    batch_size: int
    video: FutureSegments = FutureSegments()
    audio: FutureSegments = FutureSegments()

    def counts(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Per modality (video, audio) the future tokens per sample."""
        return self.video.counts(self.batch_size), self.audio.counts(self.batch_size)


def _adapter_layers(modules: list[nn.Module]) -> list[nn.Module]:
    """PEFT's tuner layers and `modules_to_save` wrappers inside `modules` (they carry `_disable_adapters`)."""
    flagged = (m for module in modules for m in module.modules())
    return [m for m in flagged if isinstance(getattr(m, "_disable_adapters", None), bool)]


def encoder_adapters_active(encoders: list[nn.Module]) -> bool:
    """Whether a trained module sits on the encoders' path: an enabled PEFT adapter layer in them (a recipe's LoRA on
    the vision merger or the audio projection moves the features the imagination targets are read from)."""
    return any(not layer._disable_adapters for layer in _adapter_layers(encoders))


@contextlib.contextmanager
def frozen_encoders(encoders: list[nn.Module]):
    """Within the block every PEFT adapter layer in `encoders` is switched off (the base weights alone: the frozen
    base's features, docs/architecture.md §4.5, and restored after. Sets the layers' own flag rather than calling
    `enable_adapters`, which would also change `requires_grad`."""
    layers = _adapter_layers(encoders)
    before = [layer._disable_adapters for layer in layers]
    for layer in layers:
        layer._disable_adapters = True
    try:
        yield
    finally:
        for layer, value in zip(layers, before, strict=True):
            layer._disable_adapters = value


def to_device(values: torch.Tensor, device) -> torch.Tensor:
    """A small CPU tensor to `device` without making the host wait (pinned memory, asynchronous copy on CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        return values.pin_memory().to(device, non_blocking=True)
    return values.to(device)


def future_segment(features: torch.Tensor, segments: FutureSegments, batch_size: int) -> FutureSegment:
    """The encoded future tokens of one modality `(N, D)` (segments concatenated in row order) laid out per sample
    as the EWM's `FutureSegment` `(B, F, D)`, with each token's start time, the step it covers and the segment's end.
    Index, times and masks are built on the host from `segments`: nothing is read back from the device."""
    if sum(segments.tokens) != features.shape[0]:
        raise ValueError(
            f"the future inputs give {features.shape[0]} tokens but future_layout describes {sum(segments.tokens)}"
        )
    width = max(segments.tokens, default=0)
    slot = torch.arange(width)
    times = torch.zeros(batch_size, width, dtype=torch.float64)
    span, end = torch.zeros(batch_size), torch.zeros(batch_size)
    slots = []
    for sample, start, seconds, tokens, step, per_step in zip(
        segments.sample,
        segments.start,
        segments.seconds,
        segments.tokens,
        segments.step,
        segments.per_step,
        strict=True,
    ):
        slots.append(sample * width + slot[:tokens])
        times[sample, :tokens] = start + (slot[:tokens] // per_step) * step  # a video patch's tokens share its time
        span[sample], end[sample] = step, start + seconds
    device = features.device
    placed = features.new_zeros(batch_size * width, features.shape[-1])
    if slots:
        placed = placed.index_copy(0, to_device(torch.cat(slots), device), features)
    count = to_device(torch.tensor(segments.counts(batch_size)), device)
    return FutureSegment(
        placed.view(batch_size, width, features.shape[-1]),
        to_device(times.float(), device),
        to_device(span, device),
        to_device(end, device),
        count,
    )


# -- the embedded split (the paper's token-level split, for reproduction) -------------------------------------------
def future_token_mask(modality_mask: torch.Tensor, past_len: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """`(B, L)` True at the positions of one modality stream that lie past its split point.

    The stream is ordered by sequence position (= time, also for audio-in-video interleaving):
    the i-th token of the stream is future when i >= past_len (docs/architecture.md §4.3).
    """
    stream_index = modality_mask.long().cumsum(1) - 1
    return modality_mask & (stream_index >= past_len[:, None]) & present[:, None]


def drop_positions(
    drop: torch.Tensor,
    attention_mask: torch.Tensor,
    inputs_embeds: torch.Tensor,
    labels: torch.Tensor | None,
    new_len: int | None = None,
    left_padded: bool | None = None,
    input_ids: torch.Tensor | None = None,
):
    """Remove the `drop` positions and re-pad the batch, keeping the input's padding side.

    `new_len` (the longest kept sequence) and `left_padded` set shapes: given from the host (`BatchLayout`), nothing
    is read back from the device; None reads them. `input_ids`, when given, are gathered too: the kept ids, which the
    model positions anew as a clip that long (docs/architecture.md §4.8; positions are never gathered from the full
    sequence, whose gap after the media told the clip's length). Batched: one stable sort.

    Returns `(inputs_embeds, attention_mask, labels, kept_index, input_ids)` of length L' = max kept tokens;
    `kept_index` holds each position's source index, -1 on padding.
    """
    keep = attention_mask.bool() & ~drop
    if new_len is None:
        new_len = int(keep.sum(1).max())
    if left_padded is None:
        left_padded = bool((attention_mask[:, 0] == 0).any())
    order, new_mask = compaction(keep, new_len, left_padded)

    embeds = inputs_embeds.gather(1, order[..., None].expand(-1, -1, inputs_embeds.shape[-1]))
    embeds = embeds.masked_fill(~new_mask[..., None], 0.0)  # padding slots hold nothing (not a dropped future token)
    if labels is not None:
        labels = labels.gather(1, order).masked_fill(~new_mask, IGNORE_INDEX)
    if input_ids is not None:
        input_ids = input_ids.gather(1, order).masked_fill(~new_mask, 0)
    kept_index = order.masked_fill(~new_mask, -1)
    return embeds, new_mask.to(attention_mask.dtype), labels, kept_index, input_ids


def audio_feature_length(tokens: int) -> int:
    """The fewest mel frames that give `tokens` audio tokens through the Qwen2.5-Omni encoder's two halvings
    (`((L - 1) // 2 + 1 - 2) // 2 + 1 == tokens` for L = 4 tokens - 1): the length a clip of that many tokens has,
    for the thinker's position code."""
    return 4 * tokens - 1


__all__ = [
    "FutureLayout",
    "FutureSegments",
    "audio_feature_length",
    "drop_positions",
    "encoder_adapters_active",
    "frozen_encoders",
    "future_segment",
    "future_token_mask",
    "to_device",
]
