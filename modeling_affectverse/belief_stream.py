"""The belief stream: a clip's belief state as the clip arrives, one chunk at a time, with the KV cache of the media
already seen kept between updates (docs/architecture.md §4.12).

    stream = model.belief_stream(processor, task="emotion", video=True, audio=True)  # audio: the video's own track
    for frames, wave in chunks:                   # (T, H, W, 3) uint8 frames at `fps`, mono float audio at 16 kHz
        update = stream.push(frames, wave)        # seconds, probabilities, belief_tokens (answer with answer=True)
    stream.close()

    python -m modeling_affectverse.stream clip.mp4 --model outputs/demo --chunk-seconds 2   # a file played as one

Each update equals the one-shot closed-set scoring of the clip so far, processed as the processor processes a clip
of that length without the token budget (`from_clips(..., max_length=None)`): the observed-prefix rule. What is
reused, what is recomputed:

- Video is encoded per temporal patch (two frames): the vision tower attends within a frame, so a patch's tokens do
  not depend on the others. A patch padded by a repeated frame (an odd frame count) is encoded again when its second
  frame arrives.
- Audio is encoded per encoder window (`2 x n_window` mel frames, 2 s): the audio tower attends within a window. A
  window is final once the STFT support of its last frame has arrived; the partial last window is encoded again
  when more arrives. Whisper's log-mel floor is the clip's own maximum - 8 (a value of the whole clip so far): the
  stream keeps the unfloored log-mel of every frame and, when the floor moves (a louder chunk), encodes again the
  windows it changes (those with a value below the new or the old floor), so the features stay the one-shot's.
- The language model's KV cache is kept for the longest prefix whose tokens, media rows and positions are
  unchanged; everything after it is prefilled again: the re-encoded rows and, under audio-in-video interleaving,
  the rest of their 2-s chunk, then what follows the media (its closing tokens, the belief tokens, the subtitle and
  question, the answer header). The Emotion World Module runs on all the media so far at each update (its belief
  tokens depend on all of it); each candidate answer continues from the cache.

Refused with a clear error: WETR (it refines the whole prompt), pre-fusion (it mixes every media token with all
others), frames of another size or audio at another rate than the first chunk, an empty chunk, a modality the
stream was not opened with, a push after `close()`. A refused chunk changes nothing: the stream continues.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import DynamicCache

from .processing_affectverse import MER_LABELS, SENTIMENT_ANSWERS, answer_token_ids, task_question
from .scoring_affectverse import continue_candidates

SERIAL_BASE = 1 << 40  # media rows are named by serial numbers above every token id (prefix comparison)


class StreamError(ValueError):
    """A chunk or a call the belief stream refuses; the stream's state is unchanged."""


@dataclass
class BeliefUpdate:
    """What one `push` gives.

    Attributes:
        seconds: time observed so far (the longer of the frames and the audio).
        probabilities: candidate -> probability (closed-set tasks), as the one-shot scoring of the clip so far.
        belief_tokens: `(K, D)` the Emotion World Module's belief tokens (None without an EWM or a countable modality).
        answer: the greedy answer, with `answer=True`.
        media_tokens: media tokens of the clip so far.
        prefilled_media_tokens: media tokens this update prefilled (new ones and those prefilled again).
        prefilled_tokens: all tokens this update prefilled (media and what follows them).
        reencoded: video patches / audio windows encoded again this update (a partial last one; after a louder chunk).
        frame: the last frame observed (`(H, W, 3)` uint8), None without video.
    """

    seconds: float
    probabilities: dict[str, float] | None
    belief_tokens: torch.Tensor | None
    answer: str | None
    media_tokens: int
    prefilled_media_tokens: int
    prefilled_tokens: int
    reencoded: dict[str, int] = field(default_factory=dict)
    frame: np.ndarray | None = None


def raw_log_mel(extractor, wave: np.ndarray) -> torch.Tensor:
    """`(n_mels, frames)` log10 mel power of `wave` before Whisper's floor, computed as the feature extractor does
    (`WhisperFeatureExtractor._torch_extract_fbank_features`: its STFT, its filters, float32) up to the clamp to the
    clip's maximum - 8, which the stream applies over the whole clip so far (the feature depends on all of it)."""
    waveform = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    window = torch.hann_window(extractor.n_fft)
    stft = torch.stft(waveform, extractor.n_fft, extractor.hop_length, window=window, return_complex=True)
    magnitudes = (stft[..., :-1].abs() ** 2).contiguous()
    mel = torch.from_numpy(extractor.mel_filters).to(torch.float32).T @ magnitudes
    return torch.clamp(mel, min=1e-10).log10()


def floored(raw: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """Whisper's normalisation of unfloored log-mel frames with the clip's maximum `peak` (a float32 scalar)."""
    return (torch.maximum(raw, peak - 8.0) + 4.0) / 4.0


@dataclass
class _Window:
    """One encoded audio window: its tokens, the peak its floor came from, its smallest unfloored value, whether
    its frames were final, and the serial of its first token."""

    tokens: torch.Tensor
    peak: float
    low: float
    final: bool
    serial: int


class CandidateTree:
    """The candidates' continuation as extra rows of the prompt's last prefill call (tree attention): candidate c's
    tokens but its last, at the temporal positions after the prompt's last, each row attending to the whole prompt
    and to c's earlier rows. One call instead of a second one on a cache repeated once per candidate; the scores are
    `continue_candidates`' (the same log-probabilities, summed the same way). Used where the language model takes a
    custom 4D mask (sdpa, eager); any other attention falls back to `continue_candidates`."""

    def __init__(self, candidates: list[list[int]], device, kind: str):
        fed = [c[:-1] for c in candidates]  # token k predicts token k + 1
        self.candidates, self.kind = candidates, kind
        self.size = sum(map(len, fed))
        self.ids = torch.tensor([[t for c in fed for t in c]], dtype=torch.long, device=device)
        self.depth = torch.tensor([d for c in fed for d in range(len(c))], device=device)
        self.owner = torch.tensor([i for i, c in enumerate(fed) for _ in c], device=device)
        self.targets = torch.tensor([t for c in candidates for t in c[1:]], device=device)

    @staticmethod
    def mask_kind(base) -> str | None:
        """`bool` (sdpa: True attends), `float` (eager: added to the scores) or None (no custom 4D mask)."""
        kind = getattr(base.config.get_text_config(), "_attn_implementation", None)
        return {"sdpa": "bool", "eager": "float"}.get(kind)

    def positions(self, last: torch.Tensor) -> torch.Tensor:
        """`(3, 1, size)`: text positions continue from the prompt's last temporal position."""
        return (last.view(()) + 1 + self.depth).view(1, 1, -1).expand(3, 1, -1)

    def attention(self, start: int, length: int, dtype) -> torch.Tensor:
        """`(1, 1, length - start + size, length + size)`: prompt rows from `start` causal; tree rows see the prompt
        and their own candidate's rows up to themselves."""
        device = self.ids.device
        columns = torch.arange(length + self.size, device=device)
        prompt_rows = columns[None, :] <= torch.arange(start, length, device=device)[:, None]
        same = (self.owner[:, None] == self.owner[None, :]) & (self.depth[None, :] <= self.depth[:, None])
        tree_rows = torch.cat([torch.ones(self.size, length, dtype=torch.bool, device=device), same], dim=1)
        allowed = torch.cat([prompt_rows, tree_rows], dim=0)[None, None]
        if self.kind == "bool":
            return allowed
        return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)

    def scores(self, first_logits: torch.Tensor, tree_logits: torch.Tensor) -> torch.Tensor:
        """`(1, C)` log p(candidate | prompt) from the prompt's last logits `(1, V)` and the tree rows' `(1, n, V)`."""
        first = torch.log_softmax(first_logits.float(), dim=-1)[0]
        picked = torch.log_softmax(tree_logits.float(), dim=-1)[0].gather(-1, self.targets[:, None])[:, 0]
        rest = torch.zeros(len(self.candidates), device=picked.device).index_add(0, self.owner, picked)
        return (first[[c[0] for c in self.candidates]] + rest)[None]


class BeliefStream:
    """Incremental belief updates for one clip; built by `model.belief_stream(processor, ...)`.

    Args:
        model: an AffectVerse model (or its PEFT wrapper); put in eval mode.
        processor: its `AffectVerseProcessor`.
        task: `emotion` (default) or `sentiment`; closed-set (open vocabulary has no candidates to score).
        label_set: emotion candidates (default MER's six).
        subtitle: the clip's subtitle, if any.
        video / audio: the modalities the clip has. Both: the audio is the video's own track, interleaved as the
            Omni model takes it (`audio_from_video=False` puts it in a separate block after the video, as the
            processor does for a separate audio file; then its tokens follow all video tokens and are prefilled
            again at each update).
        fps: the frames' rate (default the processor's); sample_rate: the audio's (the feature extractor's).
        answer: also generate a greedy answer at each update (`max_new_tokens`).
    """

    def __init__(
        self,
        model,
        processor,
        task: str = "emotion",
        label_set: list[str] | None = None,
        subtitle: str | None = None,
        video: bool = True,
        audio: bool = True,
        audio_from_video: bool = True,
        fps: float | None = None,
        sample_rate: int | None = None,
        answer: bool = False,
        max_new_tokens: int = 16,
    ):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if getattr(base, "wetr", None) is not None:
            raise StreamError("WETR refines the whole prompt at each call: a stream cannot reuse it (disable_wetr())")
        if getattr(base, "prefusion", None) is not None:
            raise StreamError("ewm_prefusion mixes every media token with all others: a stream cannot reuse a prefix")
        if task not in ("emotion", "sentiment"):
            raise StreamError(f"a belief stream scores a closed label set: task 'emotion' or 'sentiment', got {task!r}")
        if not (video or audio):
            raise StreamError("a stream needs video, audio or both")
        extractor = processor.feature_extractor
        rate = extractor.sampling_rate if sample_rate is None else int(sample_rate)
        if rate != extractor.sampling_rate:
            raise StreamError(
                f"audio must arrive at {extractor.sampling_rate} Hz (the feature extractor's), got {rate}"
            )
        self.model, self.base, self.processor = model.eval(), base, processor
        self.config = base.config
        self.labels = list(label_set or MER_LABELS) if task == "emotion" else list(SENTIMENT_ANSWERS)
        self.candidates = [answer_token_ids(processor.tokenizer, c) for c in self.labels]
        kind = CandidateTree.mask_kind(base) if max(map(len, self.candidates)) > 1 else None
        self.tree = None if kind is None else CandidateTree(self.candidates, base.device, kind)  # decided once
        self.question, self.subtitle = task_question(task, self.labels if task == "emotion" else None), subtitle
        self.video, self.audio = bool(video), bool(audio)
        self.audio_from_video = bool(audio_from_video)
        self.fps = float(fps or processor.fps)
        self.rate = rate
        self.answer, self.max_new_tokens = answer, max_new_tokens
        self.closed = False
        self.chunks = 0
        self.serial = SERIAL_BASE
        # video: frames seen, the first frame's size, the frame of an unfinished patch, per-patch tokens / serials
        self.frames, self.frame_shape, self.odd_frame, self.last_frame = 0, None, None, None
        self.patches: list[tuple[torch.Tensor, int]] = []
        self.patch_final: list[bool] = []
        self.grid_hw: tuple[int, int] | None = None
        # audio: samples seen, the retained tail of the waveform, final unfloored frames, their running peak, windows
        self.samples, self.wave, self.wave_start = 0, np.zeros(0, dtype=np.float32), 0
        self.final_raw: list[torch.Tensor] = []
        self.final_frames = 0
        self.final_peak = torch.tensor(float("-inf"))
        self.windows: list[_Window] = []
        # the language model's cache of the last prompt, with each position's source and 3D position
        self.cache = None
        self.sources: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None

    # -- input checks (before anything changes) ----------------------------------------------------------------
    def _check(self, frames, audio, sample_rate):
        name = f"chunk {self.chunks}"
        if self.closed:
            raise StreamError(f"{name}: the stream was closed; open a new one")
        if frames is None and audio is None:
            raise StreamError(f"{name}: empty chunk (no frames and no audio)")
        if frames is not None:
            if not self.video:
                raise StreamError(f"{name}: frames pushed to a stream opened without video (audio only)")
            frames = np.asarray(frames)
            if frames.ndim == 3:
                frames = frames[None]
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise StreamError(f"{name}: frames must be (T, H, W, 3) RGB, got shape {tuple(frames.shape)}")
            if len(frames) == 0:
                raise StreamError(f"{name}: empty chunk (0 frames)")
            if frames.dtype != np.uint8:
                raise StreamError(f"{name}: frames must be uint8 RGB (0-255), got {frames.dtype}")
            if self.frame_shape is not None and frames.shape[1:3] != self.frame_shape:
                raise StreamError(
                    f"{name}: frames are {frames.shape[2]}x{frames.shape[1]}, the stream's first were "
                    f"{self.frame_shape[1]}x{self.frame_shape[0]}: every chunk must have the first chunk's frame size"
                )
        if audio is not None:
            if not self.audio:
                raise StreamError(f"{name}: audio pushed to a stream opened without audio (video only)")
            if sample_rate is not None and int(sample_rate) != self.rate:
                raise StreamError(
                    f"{name}: audio at {int(sample_rate)} Hz, the stream's is {self.rate} Hz: every chunk must have "
                    "the first chunk's sample rate"
                )
            audio = np.asarray(audio, dtype=np.float32)
            if audio.ndim == 2:
                audio = audio.mean(axis=int(np.argmin(audio.shape)))
            if audio.ndim != 1:
                raise StreamError(f"{name}: audio must be a waveform (samples,), got shape {tuple(audio.shape)}")
            if audio.size == 0:
                raise StreamError(f"{name}: empty chunk (0 audio samples)")
            if not np.isfinite(audio).all():
                raise StreamError(f"{name}: audio holds NaN or infinite samples")
            minimum = self.processor.min_audio_samples
            if self.samples + audio.size < minimum:
                raise StreamError(
                    f"{name}: {self.samples + audio.size} audio samples in all give no audio token; the first audio "
                    f"must hold at least {minimum} samples"
                )
        return frames, audio

    # -- encoders ---------------------------------------------------------------------------------------------
    def _new_serials(self, count: int) -> int:
        start, self.serial = self.serial, self.serial + count
        return start

    def _encode_video(self, frames: np.ndarray | None) -> int:
        """Encode the new frames (with the frame of an unfinished patch): the patches they complete or start."""
        if frames is None:
            return 0
        pending = frames if self.odd_frame is None else np.concatenate([self.odd_frame[None], frames])
        redo = int(self.odd_frame is not None)  # the padded patch, encoded again with its second frame
        if redo:
            self.patches.pop()
            self.patch_final.pop()
        processor = self.processor
        inputs = processor(
            text=[processor.build_prompt("", video=True)],
            videos=[pending],
            videos_kwargs={"fps": [self.fps]},
            max_length=None,
            belief_placeholders=False,
            padding=True,
            return_tensors="pt",
        )
        grid = inputs["video_grid_thw"]
        device = self.base.device
        pixels = inputs["pixel_values_videos"].to(device, next(self.base.model.visual.parameters()).dtype)
        out = self.base.model.get_video_features(pixels, grid.to(device), return_dict=True)
        features = torch.cat(out.pooler_output, dim=0)
        t, h, w = (int(x) for x in grid[0])
        merge = self.config.vision_config.spatial_merge_size
        per_patch = h * w // merge**2
        self.grid_hw = (h, w)
        for i in range(t):
            self.patches.append((features[i * per_patch : (i + 1) * per_patch], self._new_serials(per_patch)))
            self.patch_final.append(True)
        self.frames += len(frames)
        self.frame_shape = tuple(frames.shape[1:3])
        self.last_frame = frames[-1]
        self.odd_frame = pending[-1] if len(pending) % 2 else None
        if self.odd_frame is not None:
            self.patch_final[-1] = False
        return redo

    def _encode_audio(self, wave: np.ndarray | None) -> int:
        """Add the new samples: final log-mel frames are kept unfloored; the windows whose features changed (new,
        partial, or moved by a new floor) are encoded. Returns the number of windows encoded again."""
        if wave is None:
            return 0
        extractor = self.processor.feature_extractor
        hop, half = extractor.hop_length, extractor.n_fft // 2
        self.wave = np.concatenate([self.wave, wave])
        self.samples += wave.size
        total = self.samples
        # the frames from the first not yet final one (two frames of context before it: the STFT's reflect padding
        # at a segment's start touches them), zero-padded as the processor pads a clip (its length + n_fft)
        start_frame = max(0, self.final_frames - 2)
        start = start_frame * hop
        padded = math.ceil((total + extractor.n_fft) / hop) * hop
        segment = self.wave[start - self.wave_start :]
        segment = np.pad(segment, (0, padded - start - segment.size))
        raw = raw_log_mel(extractor, segment)[:, self.final_frames - start_frame :]  # from the first non-final frame
        final_now = max(0, (total - half) // hop + 1)  # frame k is final once samples up to k*hop + n_fft/2 arrived
        newly_final = final_now - self.final_frames
        if newly_final > 0:
            kept = raw[:, :newly_final]
            self.final_raw.append(kept.clone())
            self.final_peak = torch.maximum(self.final_peak, kept.max())
            self.final_frames = final_now
        provisional = raw[:, max(newly_final, 0) :]
        peak = self.final_peak if provisional.numel() == 0 else torch.maximum(self.final_peak, provisional.max())
        real = math.ceil(total / hop)  # the frames the attention mask keeps
        # the retained tail: what the next update's first segment needs
        keep_from = max(0, self.final_frames - 2) * hop
        self.wave = self.wave[keep_from - self.wave_start :]
        self.wave_start = keep_from
        if len(self.final_raw) > 1:
            self.final_raw = [torch.cat(self.final_raw, dim=1)]
        frames_all = torch.cat([*self.final_raw, provisional], dim=1)[:, :real]
        width = 2 * self.config.audio_config.n_window
        count = math.ceil(real / width)
        first = len(self.windows)
        for i, window in enumerate(self.windows):
            moved = float(peak) != window.peak and window.low < max(float(peak), window.peak) - 8.0
            if not window.final or moved:
                first = i
                break
        reencoded = len(self.windows) - first
        del self.windows[first:]
        if first < count:
            piece = frames_all[:, first * width :]
            features = floored(piece, peak)[None]
            device = self.base.device
            mask = torch.ones(1, piece.shape[1], dtype=torch.long, device=device)
            tokens = self.base.model.get_audio_features(
                features.to(device, next(self.base.model.audio_tower.parameters()).dtype), mask, return_dict=True
            ).last_hidden_state
            per_window = width // 4  # the encoder halves the frames twice
            offset = 0
            for w in range(first, count):
                frames_w = piece[:, (w - first) * width : (w - first + 1) * width]
                n = per_window if w < count - 1 else tokens.shape[0] - offset
                final = (w + 1) * width <= self.final_frames
                self.windows.append(
                    _Window(
                        tokens[offset : offset + n],
                        float(peak),
                        float(frames_w.min()),
                        final,
                        self._new_serials(n),
                    )
                )
                offset += n
            if offset != tokens.shape[0]:
                raise RuntimeError(f"audio windows hold {offset} tokens, the encoder gave {tokens.shape[0]}")
        return reencoded

    # -- the prompt of the clip so far --------------------------------------------------------------------------
    def _prompt_ids(self) -> tuple[torch.Tensor, dict]:
        """The token ids of the clip so far, as the processor writes them (placeholders expanded, belief tokens
        placed for the modalities that count), and the media facts the thinker's positions need."""
        processor = self.processor
        has_video, has_audio = self.frames > 0, self.samples > 0
        interleaved = has_video and has_audio and self.audio_from_video
        text = processor.build_prompt(
            self.question, subtitle=self.subtitle or None, video=has_video, audio=has_audio and not interleaved
        )
        if processor.belief_injection != "none":
            minimum = processor.min_modality_tokens
            video_counts = has_video and processor.video_tokens(self.frames) >= minimum
            audio_counts = has_audio and processor._audio_tokens(self.samples) >= minimum
            text = processor.insert_belief_placeholders(text, video_counts, audio_counts)
        audio_tokens = sum(w.tokens.shape[0] for w in self.windows)
        grid = None
        if has_video:
            grid = torch.tensor([[len(self.patches), *self.grid_hw]])
            second = processor.video_processor.temporal_patch_size / self.fps
            if interleaved:
                expansion = processor.replace_video_with_audio_token(
                    {"video_grid_thw": grid, "video_second_per_grid": [second]},
                    0,
                    {"num_audio_tokens": [audio_tokens]},
                    0,
                    position_id_per_seconds=self.config.position_id_per_seconds,
                    seconds_per_chunk=self.config.seconds_per_chunk,
                )
            else:
                expansion = processor.video_token * sum(p[0].shape[0] for p in self.patches)
            text = text.replace(processor.video_token, expansion, 1)
        if has_audio and not interleaved:
            text = text.replace(processor.audio_token, processor.audio_token * audio_tokens, 1)
        ids = torch.tensor([processor.tokenizer(text)["input_ids"]])
        hop = processor.feature_extractor.hop_length
        media = {
            "input_features": None,
            "pixel_values": None,
            "pixel_values_videos": None,
            "image_grid_thw": None,
            "video_grid_thw": grid,
            "feature_attention_mask": None,
            "audio_feature_lengths": torch.tensor([math.ceil(self.samples / hop)]) if has_audio else None,
        }
        second_per_grid = (
            None if grid is None else torch.tensor([processor.video_processor.temporal_patch_size / self.fps])
        )
        return ids, {"media": media, "interleaved": interleaved, "video_second_per_grid": second_per_grid}

    # -- one update ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def push(self, frames=None, audio=None, sample_rate: int | None = None) -> BeliefUpdate:
        """Add a chunk (new frames `(T, H, W, 3)` uint8 and / or new mono samples) and return the updated beliefs."""
        frames, audio = self._check(frames, audio, sample_rate)
        redo_video = self._encode_video(frames)
        redo_audio = self._encode_audio(audio)
        self.chunks += 1
        base, config = self.base, self.config
        device = base.device
        ids, facts = self._prompt_ids()
        ids = ids.to(device)
        mask = torch.ones_like(ids)
        media = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in facts["media"].items()}
        second = facts["video_second_per_grid"]
        second = None if second is None else second.to(device)
        positions = base._position_ids(ids, mask, media, facts["interleaved"], second)
        embeds = base.model.get_input_embeddings()(ids)
        sources = ids[0].clone()
        video_mask, audio_mask = ids[0] == config.video_token_id, ids[0] == config.audio_token_id
        for selected, rows in ((video_mask, self.patches), (audio_mask, [(w.tokens, w.serial) for w in self.windows])):
            if not rows:
                continue
            features = torch.cat([r[0] for r in rows]).to(embeds.dtype)
            serials = torch.cat([torch.arange(s, s + r.shape[0]) for r, s in rows]).to(device)
            if int(selected.sum()) != features.shape[0]:
                raise RuntimeError(f"{int(selected.sum())} placeholders for {features.shape[0]} media rows")
            embeds[0, selected] = features
            sources[selected] = serials
        belief_tokens = None
        belief_mask = ids[0] == config.belief_token_id
        if base.ewm is not None and bool(belief_mask.any()):
            arguments = {
                "input_ids": ids,
                "attention_mask": mask,
                "past_key_values": None,
                "keep_ratio": None,
                "batch_layout": None,
                "use_audio_in_video": facts["interleaved"],
                "video_second_per_grid": second,
                **media,
            }
            step = base._step(arguments)
            ewm_out, _ = base._observe(step, embeds, positions, None, None, {}, None)
            embeds = base._inject_beliefs(step, embeds, ewm_out)
            belief_tokens = ewm_out.belief_tokens[0].float().cpu()
            sources[belief_mask] = torch.arange(self._new_serials(int(belief_mask.sum())), self.serial).to(device)
        length = ids.shape[1]
        is_media = video_mask | audio_mask
        last = positions.max().view(1, 1)
        tree = self.tree
        keep, hidden = self._prefill(embeds, mask, positions, sources, is_media, tree, last)
        self.sources, self.positions = sources, positions[:, 0].clone()
        if tree is not None:  # the candidates rode along with the suffix: their rows follow the prompt's last
            last_logits = base.lm_head(hidden[:, -1 - tree.size])
            scores = tree.scores(last_logits, base.lm_head(hidden[:, hidden.shape[1] - tree.size :]))
            self._crop_to(length)
        else:
            last_logits = base.lm_head(hidden[:, -1])
            scores = continue_candidates(base, last_logits, self.cache, mask, last, self.candidates)
            self._restore_cache(length)
        answer = self._generate(last_logits, mask, last, length) if self.answer else None
        probabilities = scores.softmax(dim=-1)[0].tolist()
        return BeliefUpdate(
            seconds=max(self.frames / self.fps, self.samples / self.rate),
            probabilities=dict(zip(self.labels, probabilities, strict=True)),
            belief_tokens=belief_tokens,
            answer=answer,
            media_tokens=int(is_media.sum()),
            prefilled_media_tokens=int(is_media[keep:].sum()),
            prefilled_tokens=length - keep,
            reencoded={"video_patches": redo_video, "audio_windows": redo_audio},
            frame=None if self.last_frame is None else self.last_frame.copy(),
        )

    def _prefill(self, embeds, mask, positions, sources, is_media, tree=None, last=None) -> tuple[int, torch.Tensor]:
        """Crop the cache to the reusable prefix and prefill the rest: the media tokens, then what follows them (two
        calls, so a hook on the language model sees the media part alone). With a candidate `tree`, its rows follow
        the prompt's in the second call (each attending to the prompt and its own earlier tokens). Returns `(kept
        length, the second call's hidden states)`."""
        length = embeds.shape[1]
        keep = min(self._reusable(sources, positions[:, 0]), length - 1)  # the last position's logits always
        if self.cache is None:
            self.cache = DynamicCache()
        self._crop_to(keep)
        media_end = int(is_media.nonzero().max()) + 1 if bool(is_media.any()) else 0
        split, hidden = min(max(keep, media_end), length - 1), None
        for a, b in ((keep, split), (split, length)):
            if b <= a:
                continue
            rows, where, attend = embeds[:, a:b], positions[:, :, a:b], mask[:, :b]
            if tree is not None and b == length:
                rows = torch.cat([rows, self.base.model.get_input_embeddings()(tree.ids)], dim=1)
                where = torch.cat([where, tree.positions(last)], dim=2)
                attend = tree.attention(a, length, rows.dtype)
            out = self.base.model(
                input_ids=None,
                inputs_embeds=rows,
                attention_mask=attend,
                position_ids=where,
                past_key_values=self.cache,
                use_cache=True,
            )
            hidden = out.last_hidden_state
        return keep, hidden

    def _reusable(self, sources: torch.Tensor, positions: torch.Tensor) -> int:
        """Length of the longest prefix whose tokens / media rows and positions equal the cached prompt's."""
        if self.sources is None:
            return 0
        n = min(len(self.sources), len(sources))
        same = (self.sources[:n] == sources[:n]) & (self.positions[:, :n] == positions[:, :n]).all(0)
        differs = (~same).nonzero()
        return int(differs[0]) if len(differs) else n

    def _restore_cache(self, length: int) -> None:
        """Back to one row and the prompt's `length` after the candidates' continuation extended and repeated it."""
        self.cache.batch_select_indices(torch.tensor([0], device=self.base.device))
        self._crop_to(length)

    def _crop_to(self, length: int) -> None:
        """Keep the cache's first `length` positions (transformers 5's `crop` takes the count to remove)."""
        extra = self.cache.get_seq_length() - length
        if extra > 0:
            self.cache.crop(-extra)

    def _generate(self, last_logits, mask, last, length) -> str:
        """Greedy answer from the cached prompt (then cropped back to it)."""
        tokenizer = self.processor.tokenizer
        end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        token, out, device = int(last_logits.argmax(-1)), [], self.base.device
        for i in range(self.max_new_tokens):
            if token == end:
                break
            out.append(token)
            position = (last + 1 + i).view(1, 1, 1).expand(3, 1, 1)
            step = self.base(
                input_ids=torch.tensor([[token]], device=device),
                attention_mask=torch.ones(1, length + i + 1, dtype=torch.long, device=device),
                position_ids=position,
                past_key_values=self.cache,
                use_cache=True,
            )
            token = int(step.logits[0, -1].argmax(-1))
        self._crop_to(length)
        return tokenizer.decode(out, skip_special_tokens=True).strip()

    def close(self) -> None:
        """End the stream: its cache and media are freed; a later push is refused."""
        self.closed = True
        self.cache = self.sources = self.positions = None
        self.patches, self.windows, self.final_raw = [], [], []


# -- a file played as a stream ----------------------------------------------------------------------------------
def play(path: str, fps: float, size: int, sample_rate: int, chunk_seconds: float, aspect: str = "pad"):
    """Decode `path` incrementally (PyAV, packet by packet; never the whole clip) and yield `(frames, wave)` chunks
    of `chunk_seconds`: frames sampled at `fps` (for each sample time the frame on screen, as `decode_video` samples,
    scaled to `size` as it scales), mono float32 audio at `sample_rate`. Either is None when the file lacks it."""
    import av

    from .media_affectverse import CorruptMediaError, _open, _stream_duration, _to_rgb

    container = _open(path)
    streams = [s for s in (next(iter(container.streams.video), None), next(iter(container.streams.audio), None)) if s]
    video_stream = next((s for s in streams if s.type == "video"), None)
    audio_stream = next((s for s in streams if s.type == "audio"), None)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate) if audio_stream else None
    declared = _stream_duration(container, audio_stream) if audio_stream else None
    frames, wave, t0, previous, previous_end = [], [], None, None, None
    sent_frames = sent_samples = 0  # what earlier chunks held
    total_samples, chunk = 0, 1

    def ready(seconds: float, done: bool) -> bool:
        video_ok = video_stream is None or done or (t0 is not None and (sent_frames + len(frames)) / fps >= seconds)
        audio_ok = audio_stream is None or done or total_samples >= seconds * sample_rate
        return video_ok and audio_ok

    def take(seconds: float | None):
        nonlocal frames, wave, sent_frames, sent_samples
        n_frames = len(frames) if seconds is None else max(0, math.ceil(seconds * fps - 1e-6) - sent_frames)
        n_frames = min(n_frames, len(frames))
        n_samples = total_samples - sent_samples if seconds is None else round(seconds * sample_rate) - sent_samples
        n_samples = min(n_samples, total_samples - sent_samples)
        joined = np.concatenate(wave) if wave else np.zeros(0, dtype=np.float32)
        out_frames = np.stack(frames[:n_frames]) if video_stream is not None and n_frames > 0 else None
        out_wave = joined[:n_samples] if audio_stream is not None and n_samples > 0 else None
        frames, wave = frames[n_frames:], [joined[n_samples:]] if joined.size > n_samples else []
        sent_frames, sent_samples = sent_frames + n_frames, sent_samples + max(0, n_samples)
        return out_frames, out_wave

    def hear(pieces) -> None:
        nonlocal total_samples
        for piece in pieces:
            wave.append(piece.to_ndarray().reshape(-1).astype(np.float32))
            total_samples += wave[-1].size

    try:
        for packet in container.demux(*streams):
            for item in packet.decode():
                if packet.stream is video_stream:
                    time = item.time if item.time is not None else 0.0
                    t0 = time if t0 is None else t0
                    while previous is not None and t0 + (sent_frames + len(frames)) / fps < time - 1e-6:
                        frames.append(_to_rgb(previous, size, aspect))
                    previous = item
                    previous_end = time + (float(item.duration * item.time_base) if item.duration else 1.0 / fps)
                else:
                    hear(resampler.resample(item))
            while ready(chunk * chunk_seconds, False):
                yield take(chunk * chunk_seconds)
                chunk += 1
    except av.error.FFmpegError as err:
        raise CorruptMediaError(path, f"decoding failed ({err.strerror or err})") from err
    finally:
        container.close()
    if resampler is not None:
        hear(resampler.resample(None))
        # codecs pad their last frame (AAC: to 1024 samples): cut to the declared length, never more than 0.1 s,
        # as `decode_audio` does
        excess = total_samples - round(declared * sample_rate) if declared is not None else 0
        if 0 < excess <= 0.1 * sample_rate and total_samples - sent_samples >= excess:
            joined = np.concatenate(wave)
            wave, total_samples = [joined[: joined.size - excess]], total_samples - excess
    if previous is not None:  # the last frame covers the sample times up to its end
        while t0 + (sent_frames + len(frames)) / fps < previous_end - 1e-6:
            frames.append(_to_rgb(previous, size, aspect))
    out = take(chunk * chunk_seconds)
    while out[0] is not None or out[1] is not None:  # the chunks after the last packet, then what remains
        yield out
        chunk += 1
        out = take(chunk * chunk_seconds)
    rest = take(None)
    if rest[0] is not None or rest[1] is not None:
        yield rest


__all__ = ["BeliefStream", "BeliefUpdate", "CandidateTree", "StreamError", "floored", "play", "raw_log_mel"]
