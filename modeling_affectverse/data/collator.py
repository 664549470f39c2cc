"""Manifest rows -> decoded media -> `AffectVerseProcessor` batches, for training and evaluation.

The collator decodes each row's media (`decode_clip`), builds the paper's prompt (Appendix A) with the answer, and
runs the processor on the batch. It also draws, per sample, the keep ratio rho (docs/architecture.md §4.3) and
the modality dropout (docs/architecture.md §4.9): from a generator seeded by (seed, epoch, sample id), so a run is
reproducible, a resumed run draws what the uninterrupted run drew, and every data-parallel process agrees without
sharing state.

Partial observation (docs/architecture.md §4.3, the clip split, the default): rho becomes a split time t* = rho x the
clip's length and the clip is cut there BEFORE the processor (`media_affectverse.ClipSplit`, the rule of every
observed-prefix protocol), so a training sample is exactly the short clip the model would see at inference. The next
`ewm_horizon_seconds` are processed apart as the model's `future_*` inputs, the imagination's target only. With the
paper's embedded split the whole clip is processed and rho goes to the model (`keep_ratio`).

Bad rows never stop an epoch: rows whose media cannot be decoded or whose label gives no answer are skipped with a
warning and counted (`skipped`), or raise `DataError` in strict mode. A batch whose rows all fail becomes one
text-only sample without labelled tokens: a step that changes nothing, counted as `empty_batch`.
"""

from __future__ import annotations

import math
import os
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from modeling_affectverse.media_affectverse import ClipSplit, MediaError, decode_clip, observed_prefix
from modeling_affectverse.modeling_affectverse import BatchLayout
from modeling_affectverse.processing_affectverse import (
    ANSWER_FORMATS,
    AffectVerseProcessor,
    reasoning_answer,
    task_question,
)


class DataError(ValueError):
    """A manifest row that cannot be used (strict mode). The message names the row and the problem."""


def has_reasoning(row: dict) -> bool:
    """Whether a row carries a reasoning text, the target of the reasoning answer format."""
    return bool((row.get("reasoning") or "").strip())


def answer_text(row: dict) -> str:
    """The assistant's answer for a row: the emotion word, positive / negative, or the comma-joined word list.

    A sentiment of exactly 0 has no positive / negative answer (the paper's question asks for one of the two) and
    raises, as does an empty label. An `answer` key (closed-set scoring's candidates) takes precedence.
    """
    if row.get("answer"):
        return str(row["answer"])
    label, task = row.get("label"), row.get("task")
    if task == "emotion" and isinstance(label, str) and label.strip():
        return label.strip()
    if task == "sentiment" and isinstance(label, int | float) and math.isfinite(label) and label != 0:
        return "positive" if label > 0 else "negative"
    if task == "open_vocabulary" and isinstance(label, list) and any(str(x).strip() for x in label):
        return ", ".join(str(x).strip() for x in label if str(x).strip())
    if task == "sentiment" and label == 0:
        raise DataError(f"row {row.get('id')!r}: sentiment label 0 has no positive/negative answer")
    raise DataError(f"row {row.get('id')!r}: empty or invalid label {label!r} for task {task!r}")


def is_unlabeled(row: dict) -> bool:
    """A row marked `unlabeled` (no answer): trained through the imagination loss only, never the LM loss."""
    return bool(row.get("unlabeled"))


def row_problem(row: dict) -> str | None:
    """Why a row cannot be trained on, from cheap checks (answer, media files exist and are non-empty), else None.
    An unlabeled row needs no answer, but media: its only use is the imagination of what follows."""
    if is_unlabeled(row):
        if not row.get("video") and not row.get("audio"):
            return f"row {row.get('id')!r}: an unlabeled row without video or audio has nothing to imagine"
    else:
        try:
            answer_text(row)
        except DataError as err:
            return str(err)
    for name in ("video", "audio"):
        path = row.get(name)
        if path is not None and (not os.path.isfile(path) or os.path.getsize(path) == 0):
            return f"row {row.get('id')!r}: {name} file {'is empty' if os.path.isfile(path) else 'not found'}: {path}"
    return None


@dataclass
class _Sample:
    row: dict
    frames: np.ndarray | None
    fps: float
    wave: np.ndarray | None
    audio_from_video: bool


@dataclass(frozen=True)
class MediaOptions:
    """How a collator decodes a row's media: the rarely changed options, grouped.

    Attributes:
        fps: decoding frame rate (the paper's 3).
        max_frames, max_audio_seconds: memory guards for long clips (the processor then fits the token budget).
        cache: keep each row's decoded media in memory (a small dataset seen for many epochs, like the demo), so a
            clip is decoded once rather than once per epoch.
        store: a dict shared by several collators as their decoded-media cache (implies `cache`): an evaluation
            that cuts the same clips at several keep ratios and modality settings decodes each clip once. Entries
            are keyed by the decoding options too, so collators with different options can share one store.
    """

    fps: float = 3.0
    max_frames: int | None = 64
    max_audio_seconds: float | None = 30.0
    cache: bool = False
    store: dict | None = field(default=None, compare=False, hash=False, repr=False)


class AffectVerseCollator:
    """Turns a list of manifest rows into model inputs (tensors), with labels on the answer tokens only.

    Build one by purpose: `for_training` (keep ratios drawn, modality dropout, answers labelled) or `for_prediction`
    (a fixed keep ratio, nothing dropped; prompts that end at the assistant header unless `with_answer`).

    Args:
        processor: the `AffectVerseProcessor` (prompt format, belief placeholders, token budget).
        train: draw keep ratios and modality dropout (training); otherwise every sample is observed to `keep_ratio`.
        keep_ratio: prediction: the fraction of each clip observed (the paper's Table 2 protocol; 1: whole clips).
            Each clip is cut at t* = keep_ratio x its length before the processor (`media_affectverse.ClipSplit`:
            whole temporal patches, audio up to the same time), exactly as training cuts it.
        with_future: prediction: also pass what follows the cut (the next `ewm_horizon_seconds`) as the
            imagination's target, as training does (embedded split: the whole clip and its keep ratio, and the model
            drops the future tokens itself). False: the rest of the clip is not seen at all.
        keep_ratio_range: training: rho ~ U(low, high) per sample (docs/architecture.md §4.3: U(0.3, 1)).
        modality_dropout: training: probability of dropping one modality of a sample that has both, half video, half
            audio (docs/architecture.md §4.9: 0.15).
        whole_clip_probability: training: probability that a sample is seen whole (rho = 1) instead of cut at its
            drawn rho (drawn after the sample's other draws, so 0 draws exactly as before; docs/design-notes.md,
            "Evidence v2"). Never for an unlabeled row: seen whole it would add no loss at all.
        seed: seeds the per-sample draws, together with `epoch` (set by the trainer) and the sample id.
        with_answer: put the answer in the prompt and label it (training, scoring); False gives prompts that end at
            the assistant header, for generation (no labels, the rows need none).
        answer_format: `"label"` (the answer alone) or `"reasoning"`: the question asks for the cues in `<think>`
            and the answer in `<answer>`, and the target is `<think>{row reasoning}</think><answer>{answer}
            </answer>`; a row without `reasoning` is skipped (counted as `no_reasoning`). `"joint"` (the curriculum's
            stage 2: recognition and reasoning together): in training each sample is drawn, half and half, as a
            label or a reasoning sample (a row without reasoning is a label sample); otherwise it is `"reasoning"`.
        wetr_queries: prompts carry WETR's two query spans and the batch its `wetr_roles`.
        strict: raise `DataError` on a bad row instead of skipping it.
        media: how media are decoded (`MediaOptions`).
    """

    def __init__(
        self,
        processor: AffectVerseProcessor,
        *,
        train: bool,
        keep_ratio: float = 1.0,
        with_future: bool = False,
        keep_ratio_range: tuple[float, float] = (0.3, 1.0),
        modality_dropout: float = 0.15,
        whole_clip_probability: float = 0.0,
        seed: int = 0,
        with_answer: bool = True,
        answer_format: str = "label",
        wetr_queries: bool = False,
        strict: bool = False,
        media: MediaOptions | None = None,
    ):
        low, high = keep_ratio_range
        if not 0 < low <= high <= 1:
            raise ValueError(f"keep_ratio_range must satisfy 0 < low <= high <= 1, got {keep_ratio_range}")
        if not 0 <= modality_dropout <= 1:
            raise ValueError(f"modality_dropout must lie in [0, 1], got {modality_dropout}")
        if not 0 <= whole_clip_probability <= 1:
            raise ValueError(f"whole_clip_probability must lie in [0, 1], got {whole_clip_probability}")
        if not 0 < keep_ratio <= 1:
            raise ValueError(f"keep_ratio must lie in (0, 1], got {keep_ratio}")
        if answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
        self.processor = processor
        self.train = train
        self.keep_ratio, self.with_future = float(keep_ratio), with_future
        self.keep_ratio_range = (float(low), float(high))
        self.modality_dropout = float(modality_dropout)
        self.whole_clip_probability = float(whole_clip_probability)
        self.seed = seed
        self.with_answer = with_answer
        self.answer_format = answer_format
        self.wetr_queries = wetr_queries
        self.strict = strict
        self.media = media or MediaOptions()
        self._format = "reasoning" if answer_format == "joint" and not train else answer_format  # fixed unless drawn
        self._layout_ids: dict | None = None
        self._media: dict = {} if self.media.store is None else self.media.store
        self._prompt_room: dict = {}  # tokens left for a subtitle, per kind of prompt (see _fit_subtitle)
        self.last_kept: list[int] = []  # indices of the last call's rows that are in its batch, in batch order
        self.last_skipped: list[tuple] = []  # (id, reason, message) of the last call's skipped rows
        self.last_keep_ratio: list[float] | None = None  # rho of each sample of the last batch (None: whole clips)
        self.epoch = 0
        self.skipped: Counter = Counter()
        self.adjusted: Counter = Counter()  # rows used with a documented change (a subtitle cut to the budget)
        self.dropped_modality: Counter = Counter()

    @classmethod
    def for_training(
        cls,
        processor: AffectVerseProcessor,
        *,
        keep_ratio_range: tuple[float, float] = (0.3, 1.0),
        modality_dropout: float = 0.15,
        whole_clip_probability: float = 0.0,
        seed: int = 0,
        answer_format: str = "label",
        wetr_queries: bool = False,
        strict: bool = False,
        media: MediaOptions | None = None,
    ) -> AffectVerseCollator:
        """A training collator: each sample's clip cut at a drawn rho (its next horizon the imagination's target),
        one modality dropped now and then, the answer labelled."""
        return cls(
            processor,
            train=True,
            keep_ratio_range=keep_ratio_range,
            modality_dropout=modality_dropout,
            whole_clip_probability=whole_clip_probability,
            seed=seed,
            answer_format=answer_format,
            wetr_queries=wetr_queries,
            strict=strict,
            media=media,
        )

    @classmethod
    def for_prediction(
        cls,
        processor: AffectVerseProcessor,
        *,
        keep_ratio: float = 1.0,
        with_future: bool = False,
        with_answer: bool = False,
        answer_format: str = "label",
        wetr_queries: bool = False,
        strict: bool = False,
        media: MediaOptions | None = None,
    ) -> AffectVerseCollator:
        """An evaluation / inference collator: every clip observed to `keep_ratio`, nothing dropped; prompts end at
        the assistant header (generation) unless `with_answer` (scoring candidates, an LM loss)."""
        return cls(
            processor,
            train=False,
            keep_ratio=keep_ratio,
            with_future=with_future,
            with_answer=with_answer,
            answer_format=answer_format,
            wetr_queries=wetr_queries,
            strict=strict,
            media=media,
        )

    # -- per-sample randomness ---------------------------------------------------------------------
    def _rng(self, row: dict) -> np.random.Generator:
        """A generator for one sample in one epoch: (seed, epoch, crc32 of the id). No state carried between calls."""
        return np.random.default_rng([self.seed, self.epoch, zlib.crc32(str(row["id"]).encode("utf-8"))])

    def _skip(self, row: dict, reason: str, error: Exception) -> None:
        if self.strict:
            raise DataError(f"row {row.get('id')!r}: {error}") from error
        self.skipped[reason] += 1
        self.last_skipped.append((row.get("id"), reason, str(error)))
        warnings.warn(
            f"skipping row {row.get('id')!r} ({reason}, {sum(self.skipped.values())} so far): {error}", stacklevel=3
        )

    def _decode(self, row: dict) -> _Sample | None:
        unlabeled = is_unlabeled(row)
        try:
            if self.with_answer and not unlabeled:
                answer_text(row)
        except DataError as err:
            self._skip(row, "no_answer", err)
            return None
        if self._format == "reasoning" and self.with_answer and not unlabeled and not has_reasoning(row):
            self._skip(row, "no_reasoning", DataError(f"row {row.get('id')!r}: no reasoning text for the answer"))
            return None
        decoding = self.media
        options = (decoding.fps, self.processor.frame_size, decoding.max_frames, decoding.max_audio_seconds)
        key = (row.get("video"), row.get("audio"), tuple(row.get("segment") or ()), *options)
        try:
            media = self._media.get(key) or decode_clip(
                row.get("video"),
                row.get("audio"),
                row.get("segment"),
                fps=self.media.fps,
                size=self.processor.frame_size,
                sample_rate=self.processor.feature_extractor.sampling_rate,
                max_frames=self.media.max_frames,
                max_audio_seconds=self.media.max_audio_seconds,
            )
        except MediaError as err:
            self._skip(row, type(err).__name__, err)
            return None
        if self.media.cache or self.media.store is not None:
            self._media[key] = media
        frames = None if media.video is None else media.video.frames
        fps = self.media.fps if media.video is None else media.video.fps
        wave = None if media.audio is None else media.audio.waveform
        rate = self.processor.feature_extractor.sampling_rate
        patch = self.processor.video_processor.temporal_patch_size
        if not self.train and not self.with_future:  # prediction: the clip's beginning only, the rest never seen
            frames, wave = observed_prefix(frames, fps, wave, rate, self.keep_ratio, patch)
        return _Sample(row, frames, fps, wave, media.audio_from_video)

    def _cut(self, sample: _Sample, rho: float):
        """The clip split (docs/architecture.md §4.3): the sample becomes its clip cut at t* = rho x its length,
        processed as a short clip is; returns the future segment after the cut (`FutureMedia`), or None when the
        model has no imagination to score or nothing follows."""
        processor = self.processor
        rate, patch = processor.feature_extractor.sampling_rate, processor.video_processor.temporal_patch_size
        if rho >= 1 or (sample.frames is None and sample.wave is None):
            return None
        split = ClipSplit.of(rho, sample.frames, sample.fps, sample.wave, rate, patch)
        future = split.future(sample.frames, sample.wave, processor.ewm_horizon_seconds) if processor.imagines else None
        sample.frames, sample.wave = split.past(sample.frames, sample.wave)
        return future

    def _drop_modality(self, sample: _Sample, rng: np.random.Generator) -> None:
        """docs/architecture.md §4.9: with probability p drop video or audio (half each) of a sample that has both."""
        if sample.frames is None or sample.wave is None or rng.random() >= self.modality_dropout:
            return
        if rng.random() < 0.5:
            sample.frames, sample.audio_from_video = None, False  # its soundtrack stays, now a standalone audio
            self.dropped_modality["video"] += 1
        else:
            sample.wave, sample.audio_from_video = None, False  # a silent video
            self.dropped_modality["audio"] += 1

    # -- batch ---------------------------------------------------------------------------------------
    def __call__(self, rows: list[dict]) -> dict:
        """A batch of the rows that could be used; `last_kept` / `last_skipped` say which rows those were."""
        self.last_skipped = []
        samples = [s for s in map(self._decode, rows) if s is not None]
        kept_ids = {id(s.row) for s in samples}
        self.last_kept = [i for i, row in enumerate(rows) if id(row) in kept_ids]
        rho, formats = self._draw(samples)
        self.last_keep_ratio = rho
        clip_split = self.processor.ewm_split == "clip"
        futures = [self._cut(s, r) for s, r in zip(samples, rho, strict=True)] if clip_split and rho else []
        if not samples:
            self.skipped["empty_batch"] += 1
            warnings.warn(f"every row of a batch of {len(rows)} was skipped: an empty step is taken", stacklevel=2)
            return self._empty_batch()
        batch = self._process(samples, formats)
        if rho is not None and not clip_split:  # the embedded split: the model drops the future tokens itself
            batch["keep_ratio"] = torch.tensor(rho, dtype=torch.float32)
        if any(future is not None for future in futures):
            batch.update(self.processor.future_inputs(futures, [s.fps for s in samples]))
        self._add_extras(batch, samples)
        return batch

    def _draw(self, samples: list[_Sample]) -> tuple[list[float] | None, list[str]]:
        """Each sample's rho (training: drawn; prediction with a future: `keep_ratio`; else None, nothing split) and
        answer format; drops a modality now and then in training. The draws of a sample come from its own generator
        in a fixed order, so a sample draws the same whatever batch it is in."""
        keep, formats = [], []
        for sample in samples:
            rng = self._rng(sample.row)
            low, high = self.keep_ratio_range
            keep.append(low + (high - low) * rng.random())
            if self.train:
                self._drop_modality(sample, rng)
            answer_format = self._format
            if answer_format == "joint":  # drawn after the other draws: label and reasoning collators draw as before
                answer_format = "reasoning" if has_reasoning(sample.row) and rng.random() < 0.5 else "label"
            formats.append(answer_format)
            whole = self.train and self.whole_clip_probability and not is_unlabeled(sample.row)
            if whole and rng.random() < self.whole_clip_probability:  # an unlabeled row is always cut: seen whole
                keep[-1] = 1.0  # it has no answer and no future, nothing to learn (drawn last: the rest as without)
        rho = keep if self.train else [self.keep_ratio] * len(samples) if self.with_future else None
        return rho, formats

    def _process(self, samples: list[_Sample], formats: list[str]) -> dict:
        """The samples' prompts and media through the processor, with the answers labelled when asked for."""
        processor = self.processor
        texts, videos, fps, audio, sources = [], [], [], [], []
        for sample, answer_format in zip(samples, formats, strict=True):
            row = sample.row
            has_video, has_audio = sample.frames is not None, sample.wave is not None
            question = task_question(row["task"], row.get("label_set"), answer_format)
            prompt = {
                "video": has_video,
                "audio": has_audio and not sample.audio_from_video,
                "answer": self._answer(row, answer_format) if self.with_answer and not is_unlabeled(row) else None,
            }
            spans = processor.wetr_query_lines if self.wetr_queries else ""  # text the budget must fit
            own_track = has_video and has_audio and sample.audio_from_video  # one interleaved audio-in-video block
            subtitle = self._fit_subtitle(row, spans + question, has_video or has_audio, prompt, own_track)
            texts.append(processor.build_prompt(question, subtitle=subtitle, wetr_queries=self.wetr_queries, **prompt))
            if has_video:
                videos.append(sample.frames)
                fps.append(sample.fps)
            if has_audio:
                audio.append(sample.wave)
                sources.append(len(videos) - 1 if sample.audio_from_video else None)
        in_video = any(s is not None for s in sources)
        kwargs = {"padding": True, "return_tensors": "pt", "videos_kwargs": {"fps": fps}}
        if in_video:
            kwargs.update(load_audio_from_video=True, audio_from_video_indices=sources)
        batch = dict(processor(text=texts, videos=videos or None, audio=audio or None, **kwargs))
        if self.with_answer:
            answers = [  # an unlabeled row's prompt ends at the assistant header: nothing of it is labelled
                None if is_unlabeled(s.row) else self._answer(s.row, f) for s, f in zip(samples, formats, strict=True)
            ]
            try:
                batch["labels"] = processor.answer_labels(batch["input_ids"], batch["attention_mask"], answers)
            except ValueError as err:
                raise DataError(f"rows {[s.row.get('id') for s in samples]}: {err}") from err
        if in_video:
            batch["use_audio_in_video"] = True
        return batch

    def _add_extras(self, batch: dict, samples: list[_Sample]) -> None:
        """The emotion-first labels, WETR's token roles and the host-side `batch_layout` (so the model's forward never
        reads counts back from the GPU; free on CPU tensors)."""
        processor = self.processor
        emotions = getattr(processor, "emotion_labels", None)  # emotion-first: the clip label's index
        if emotions and self.with_answer:
            batch["emotion_labels"] = torch.tensor(
                [
                    emotions.index(s.row["label"])
                    if s.row.get("task") == "emotion" and s.row.get("label") in emotions
                    else -100
                    for s in samples
                ]
            )
        if self.wetr_queries:
            batch["wetr_roles"] = processor.token_roles(batch["input_ids"])
        if self._layout_ids is None:
            self._layout_ids = BatchLayout.token_ids(processor.tokenizer)
        batch["batch_layout"] = BatchLayout.read(
            batch["input_ids"],
            batch["attention_mask"],
            self._layout_ids,
            batch.get("keep_ratio"),
            batch.get("video_grid_thw"),
            processor.video_processor.merge_size,
        )

    def _fit_subtitle(self, row: dict, question: str, has_media: bool, prompt: dict, own_track: bool = False):
        """The row's subtitle, cut (with a counted warning) when the prompt's text alone would not leave the media
        their minimum tokens within the processor's `max_length` (the processor refuses to cut text itself).
        `own_track`: the video carries its own audio, one interleaved block (its audio tokens and the block's
        `<|audio_bos|>` / `<|audio_eos|>` need room too)."""
        subtitle = row.get("subtitle") or None
        processor = self.processor
        if subtitle is None or processor.max_length is None:
            return subtitle
        tokenizer = processor.tokenizer
        key = (processor.max_length, question, has_media, own_track, *prompt.values())  # a few kinds per dataset
        if key not in self._prompt_room:
            frame = processor.build_prompt(question, subtitle="x", **prompt)  # "x": the subtitle line's frame
            reserve = processor.belief_tokens_dual if has_media else 0
            if prompt["video"]:
                reserve += processor.video_tokens(2 * processor.video_processor.temporal_patch_size)  # fewest frames
            if has_media and (prompt["audio"] or not prompt["video"]):
                reserve += 2  # the fewest audio tokens the budget keeps
            if own_track:
                reserve += 2 + 2  # the track's fewest audio tokens and the interleaved block's two tokens
            used = len(tokenizer(frame, add_special_tokens=False)["input_ids"])
            self._prompt_room[key] = processor.max_length - used - reserve
        room = self._prompt_room[key]
        defused = processor.defuse_special_tokens(subtitle)
        if len(defused.encode("utf-8")) + 2 <= room:  # a token covers at least one byte: it fits, no tokenizing
            return subtitle
        ids = tokenizer(defused, add_special_tokens=False)["input_ids"]
        if len(ids) <= room:
            return subtitle
        self.adjusted["subtitle_truncated"] += 1
        warnings.warn(
            f"row {row.get('id')!r}: subtitle of {len(ids)} tokens cut to {max(room, 0)} to fit max_length="
            f"{processor.max_length} ({self.adjusted['subtitle_truncated']} so far)",
            stacklevel=3,
        )
        return tokenizer.decode(ids[: max(room, 0)]) or None

    def _answer(self, row: dict, answer_format: str) -> str:
        """The assistant's target for a row in an answer format (label or reasoning)."""
        answer = answer_text(row)
        return answer if answer_format == "label" else reasoning_answer(row["reasoning"], answer)

    def collate_candidates(self, rows: list[dict], candidates: list[str]) -> dict:
        """One sequence per (row, candidate answer), candidates of a row consecutive, answers labelled: the input of
        `closed_set_probabilities`. Each clip is decoded once per candidate (simple; the model's cost dominates)."""
        return self([{**row, "answer": candidate} for row in rows for candidate in candidates])

    def _empty_batch(self) -> dict:
        text = self.processor.build_prompt("(skipped)", answer="" if self.with_answer else None)
        batch = dict(self.processor(text=[text], return_tensors="pt"))
        if self.with_answer:
            batch["labels"] = torch.full_like(batch["input_ids"], -100)
        return batch


__all__ = [
    "AffectVerseCollator",
    "DataError",
    "MediaOptions",
    "answer_text",
    "has_reasoning",
    "is_unlabeled",
    "row_problem",
]
