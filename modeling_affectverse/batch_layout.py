"""What the host knows of a batch: `BatchLayout` (per-sample token counts read once, or handed over by the collator)
and the counts built on it (`count_imagination_targets`).

Part of the Hub remote code (imported by the modeling file with `from .x import Y`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .ewm import AUDIO, VIDEO, StreamPlan
from .ewm_layers import past_length
from .partial_observation import FutureLayout, to_device

IGNORE_INDEX = -100

LAYOUT_TOKENS = {
    "video": "<|VIDEO|>",
    "audio": "<|AUDIO|>",
    "belief": "<|belief|>",
    "vision_start": "<|vision_bos|>",
    "audio_start": "<|audio_bos|>",
}


@dataclass(frozen=True)
class BatchLayout:
    """What the host must know of a batch of token ids to run AffectVerse's forward without waiting for the device:
    per sample the video, audio and `<|belief|>` token counts, the unpadded length, whether it holds a
    plain video block and an interleaved audio-in-video block, the padding side, rho when one is given, and the video
    tokens per temporal patch (for the embedded split, which keeps whole patches) when the video grid is given.

    The collator builds it from its CPU tensors for free (`batch["batch_layout"]`, passed through by the Trainer and
    accelerate untouched); otherwise the forward reads it once per prefill (one device-to-host copy). Decode steps
    need none. It must describe the batch it travels with: a batch size that differs (candidates expanded for
    scoring, beams) makes the forward read its own.
    """

    video: tuple[int, ...]
    audio: tuple[int, ...]
    belief: tuple[int, ...]
    lengths: tuple[int, ...]
    plain_video: tuple[bool, ...]
    interleaved: tuple[bool, ...]
    left_padded: bool
    keep_ratio: tuple[float, ...] | None = None
    video_patch: tuple[int, ...] | None = None

    @staticmethod
    def token_ids(source) -> dict[str, int | None]:
        """The ids the layout counts, from a config (its `*_token_id` fields) or a tokenizer (the token strings)."""
        if hasattr(source, "convert_tokens_to_ids"):
            ids = {name: source.convert_tokens_to_ids(token) for name, token in LAYOUT_TOKENS.items()}
            return {name: None if i == source.unk_token_id and i is not None else i for name, i in ids.items()}
        return {name: getattr(source, f"{name}_token_id", None) for name in LAYOUT_TOKENS}

    @classmethod
    def read(
        cls,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_ids: dict,
        keep_ratio: torch.Tensor | float | None = None,
        video_grid_thw: torch.Tensor | None = None,
        merge_size: int = 2,
    ) -> BatchLayout:
        """The layout of `input_ids` `(B, L)`: one stacked tensor copied to the host (free for CPU tensors), and the
        video grid's spatial sizes (one video per sample that has video tokens, in order)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        following = torch.roll(input_ids, -1, dims=1)
        starts = input_ids == token_ids["vision_start"]
        columns = [
            (input_ids == token_ids[name]).sum(1) if token_ids[name] is not None else torch.zeros_like(input_ids[:, 0])
            for name in ("video", "audio", "belief")
        ]
        columns += [
            attention_mask.sum(1),
            (starts & (following == token_ids["video"])).any(1),
            (starts & (following == token_ids["audio_start"])).any(1),
            attention_mask[:, 0] == 0,
        ]
        host = torch.stack([c.double() for c in columns], dim=1)
        if keep_ratio is not None:  # float32 rho, exactly representable in float64
            rho = torch.as_tensor(keep_ratio, dtype=torch.float32, device=input_ids.device).expand(input_ids.shape[0])
            host = torch.cat([host, rho.double()[:, None]], dim=1)
        host = host.cpu().tolist()
        counts = [[int(row[i]) for row in host] for i in range(4)]
        video_patch = None
        if video_grid_thw is not None:
            spatial = (video_grid_thw[:, 1] * video_grid_thw[:, 2] // merge_size**2).tolist()
            with_video = [b for b, n in enumerate(counts[0]) if n > 0]
            if len(spatial) != len(with_video):
                raise ValueError(f"video_grid_thw has {len(spatial)} rows for {len(with_video)} samples with video")
            patch = dict(zip(with_video, spatial, strict=True))
            video_patch = tuple(int(patch.get(b, 0)) for b in range(len(counts[0])))
        return cls(
            *(tuple(c) for c in counts),
            plain_video=tuple(bool(row[4]) for row in host),
            interleaved=tuple(bool(row[5]) for row in host),
            left_padded=any(row[6] for row in host),
            keep_ratio=None if keep_ratio is None else tuple(row[7] for row in host),
            video_patch=video_patch,
        )

    @property
    def batch_size(self) -> int:
        return len(self.video)

    def stream_plan(self, keep_ratio: tuple[float, ...] | None, future: FutureLayout | None = None) -> StreamPlan:
        """The EWM's host plan: the embedded split's rho (whole video patches) or the clip split's future counts."""
        return StreamPlan(
            self.video,
            self.audio,
            keep_ratio,
            self.video_patch if keep_ratio is not None else None,
            None if future is None else future.counts(),
        )

    def past_tokens(self, keep_ratio: tuple[float, ...] | None, min_tokens: int) -> list[tuple[int, int]]:
        """Embedded split: per sample the (video, audio) tokens the LLM keeps (a stream too short for the EWM is kept
        whole), by the EWM's own rule (whole video patches)."""
        rho = keep_ratio or (None,) * self.batch_size
        patch = self.video_patch or (1,) * self.batch_size
        return [
            (past_length(v, r, max(k, 1)) if v >= min_tokens else v, past_length(a, r) if a >= min_tokens else a)
            for v, a, r, k in zip(self.video, self.audio, rho, patch, strict=True)
        ]

    def dropped(self, keep_ratio: tuple[float, ...] | None, min_tokens: int) -> list[int]:
        """Per sample, the future video + audio tokens that rho removes from the LLM input (embedded split)."""
        if keep_ratio is None:
            return [0] * self.batch_size
        kept = self.past_tokens(keep_ratio, min_tokens)
        return [v + a - kv - ka for v, a, (kv, ka) in zip(self.video, self.audio, kept, strict=True)]

    def token_seconds(self, video_second_per_grid, position_id_per_seconds, device) -> dict[int, torch.Tensor]:
        """Per modality `(B,)` seconds one token step covers: a video's `video_second_per_grid` (gathered per sample on
        the device by the layout's host index), an audio token's 1 / `position_id_per_seconds`."""
        audio = torch.full((self.batch_size,), 1.0 / float(position_id_per_seconds), device=device)
        video = torch.zeros(self.batch_size, device=device)
        with_video = [b for b, n in enumerate(self.video) if n > 0]
        if with_video and video_second_per_grid is not None:
            seconds = torch.as_tensor(video_second_per_grid, device=device).float().reshape(-1)
            video = video.index_copy(0, to_device(torch.tensor(with_video), device), seconds[: len(with_video)])
        return {VIDEO: video, AUDIO: audio}

    def check_belief_placeholders(self, config) -> None:
        """Raise, naming the samples, when a sample's `<|belief|>` count is not the one its modalities call for."""
        facts = self.stream_plan(None).streams(config.ewm_min_modality_tokens)
        video, audio = facts[VIDEO]["present"], facts[AUDIO]["present"]
        dual, single = config.ewm_belief_tokens_dual, config.ewm_belief_tokens_single
        expected = [dual if v and a else single if v or a else 0 for v, a in zip(video, audio, strict=True)]
        wrong = [i for i, (n, e) in enumerate(zip(self.belief, expected, strict=True)) if n != e]
        if wrong:
            details = "; ".join(
                f"sample {i}: {self.belief[i]} placeholders, expected {expected[i]} "
                f"(video {'present' if video[i] else 'absent'}, audio {'present' if audio[i] else 'absent'})"
                for i in wrong
            )
            raise ValueError(
                f"<|belief|> placeholder count does not match the modalities: {details}. Expected {dual} with video "
                f"and audio, {single} with one, 0 with neither (a stream of fewer than "
                f"{config.ewm_min_modality_tokens} tokens counts as absent); build inputs with AffectVerseProcessor"
            )


def count_imagination_targets(batch: dict, config) -> int:
    """How many (sample, modality) pairs the imagination loss of a batch (the model's keyword arguments) averages over.

    The same rule as the EWM (docs/architecture.md §4.3, §4.5): a stream of at least `ewm_min_modality_tokens`
    tokens with a future to score against: the clip split's future segment (`future_layout`), or in the embedded
    split the tokens after the split point (`keep_ratio`). Known before the forward, so a trainer can normalise the
    loss over a whole gradient-accumulation window (or all processes) instead of per micro-batch. With the
    collator's `batch_layout` it is computed on the host; without, from the batch's ids and video grid (one
    device-to-host copy).
    """
    if not config.imagines or config.belief_token_id is None:
        return 0
    clip = config.ewm_split == "clip"
    future, keep_ratio = batch.get("future_layout"), batch.get("keep_ratio")
    if (future is None) if clip else (keep_ratio is None):
        return 0
    input_ids, layout = batch["input_ids"], batch.get("batch_layout")
    stale = layout is None or layout.batch_size != input_ids.shape[0]
    if not clip and not stale:  # the embedded split keeps whole video patches: it needs rho and the patch sizes
        stale = layout.keep_ratio is None or (batch.get("video_grid_thw") is not None and layout.video_patch is None)
    if stale:
        merge = config.vision_config.spatial_merge_size
        layout = BatchLayout.read(
            input_ids,
            None,
            BatchLayout.token_ids(config),
            None if clip else keep_ratio,
            batch.get("video_grid_thw"),
            merge,
        )
    if not any(layout.belief):
        return 0
    plan = layout.stream_plan(None, future) if clip else layout.stream_plan(layout.keep_ratio)
    return sum(fact["pairs"] for fact in plan.streams(config.ewm_min_modality_tokens))


def labels_at(labels: torch.Tensor, kept_index: torch.Tensor) -> torch.Tensor:
    """The labels of the positions a shortened sequence holds (`kept_index` `(B, L')`, -1 on padding)."""
    return torch.where(kept_index >= 0, labels.gather(1, kept_index.clamp(min=0)), IGNORE_INDEX)


__all__ = ["IGNORE_INDEX", "LAYOUT_TOKENS", "BatchLayout", "count_imagination_targets", "labels_at"]
