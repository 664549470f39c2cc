"""Media decoding for AffectVerse: video frames and audio from real files, through `av`.

The paper feeds the thinker video at 3 FPS, 224x224, and 16 kHz mono audio (Appendix A, docs/architecture.md §5).
This file turns any container `av` can open (mp4, avi, mkv, webm, wav, mp3, flac, m4a, ...) into exactly that:

- `decode_video` streams the file frame by frame and keeps only the frames it samples, so a clip never sits in
  memory whole. Sampling follows presentation timestamps, so variable-frame-rate files come out right.
- `decode_audio` decodes the first audio track (of a video container or an audio-only file), downmixes to mono
  and resamples with torchaudio.
- `augment_audio` is the optional torchaudio augmentation (noise at an SNR, speed, gain).

Bad input raises a `MediaError` subclass naming the file: missing (`MediaNotFoundError`), zero-byte
(`EmptyMediaError`), unreadable or truncated (`CorruptMediaError`), lacking the wanted track
(`MissingStreamError`), or cut by a segment outside the file (`SegmentError`). Documented fallbacks (a clip
shorter than two frames is padded by repeating its last frame; an over-long clip gets a lower frame rate) are
reported on the returned clip, never silent.

Lives in the model package (flat, no sub-packages) so that the Hub remote code and the pipeline can decode media
without the training folder.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass, field

import av
import numpy as np
import torch
import torchaudio.functional as AF

__all__ = [
    "AudioClip",
    "ClipMedia",
    "ClipSplit",
    "CorruptMediaError",
    "EmptyMediaError",
    "FutureMedia",
    "MediaError",
    "MediaInfo",
    "MediaNotFoundError",
    "MissingStreamError",
    "SegmentError",
    "VideoClip",
    "augment_audio",
    "clip_seconds",
    "decode_clip",
    "observed_media",
    "observed_prefix",
    "decode_audio",
    "decode_video",
    "probe_media",
]

ASPECT_MODES = ("pad", "crop", "stretch")


class MediaError(ValueError):
    """A media file could not be decoded as asked. `path` names the file."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MediaNotFoundError(MediaError):
    """The file does not exist."""


class EmptyMediaError(MediaError):
    """The file exists but has zero bytes."""


class CorruptMediaError(MediaError):
    """`av` cannot read the file, or it ends far before its declared duration (truncated)."""


class MissingStreamError(MediaError):
    """The file has no track of the wanted kind (a video without audio, an audio file asked for frames)."""


class SegmentError(MediaError):
    """A segment that is reversed, empty, or starts at or past the end of the file."""


@dataclass
class VideoClip:
    """Frames sampled from a video file.

    Attributes:
        frames: `(T, H, W, 3)` uint8 RGB.
        fps: the rate the frames were sampled at (lower than asked when `max_frames` forced it).
        timestamps: `(T,)` presentation time in seconds of each sampled frame in the source.
        duration: seconds of source video covered (from the first frame to the end of the last one).
        padded_frames: frames appended by repeating the last one (clips shorter than `min_frames`).
        notes: what was adjusted and why, one line each (also issued as warnings).
    """

    frames: np.ndarray
    fps: float
    timestamps: np.ndarray
    duration: float
    padded_frames: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class AudioClip:
    """Mono audio decoded from a file.

    Attributes:
        waveform: `(N,)` float32 at `sample_rate`.
        sample_rate: the output rate (16 kHz by default).
        source_rate: the track's own rate before resampling.
        duration: `N / sample_rate` seconds.
        truncated: True when `max_seconds` stopped decoding before the end of the track.
    """

    waveform: np.ndarray
    sample_rate: int
    source_rate: int
    duration: float
    truncated: bool = False


@dataclass
class ClipMedia:
    """What one sample shows and sounds like, ready for the processor.

    Attributes:
        video: sampled frames, or None for a sample without video.
        audio: mono audio, or None for a sample without audio (or whose video has no audio track).
        audio_from_video: the audio is the video's own track (feed it interleaved, `use_audio_in_video=True`).
        notes: fallbacks taken, one line each.
    """

    video: VideoClip | None
    audio: AudioClip | None
    audio_from_video: bool
    notes: list[str] = field(default_factory=list)


TEMPORAL_PATCH = 2  # frames per video token step of the Qwen2.5-Omni vision tower (its temporal_patch_size)
_TOLERANCE = 1e-6  # seconds x rate products within this of an integer count as that integer (0.7 x 30 is 21)


def clip_seconds(frames: np.ndarray | None, fps: float, wave: np.ndarray | None, sample_rate: int) -> float:
    """A clip's length in seconds: the longer of its frames (`T / fps`) and its audio (`N / sample_rate`)."""
    video = 0.0 if frames is None else len(frames) / fps
    audio = 0.0 if wave is None else len(wave) / sample_rate
    return max(video, audio)


@dataclass(frozen=True)
class ClipSplit:
    """Where a clip is cut into the observed past and the future (docs/architecture.md §4.3 2026-12-02).

    The past is what a clip cut at `seconds` (t*) shows: video in whole temporal patches ending at or before t* (at
    least one; a last patch padded by the processor ends with its last real frame), audio samples before t*. The
    future is what follows, up to a horizon: the frames after the past's patches and the samples from t* on.

    Attributes:
        seconds: t*, seconds from the clip's start.
        past_frames / past_samples: frames and audio samples of the past (None: the clip has no video / audio).
        fps / sample_rate: the clip's frame and sample rates.
    """

    seconds: float
    past_frames: int | None
    past_samples: int | None
    fps: float
    sample_rate: int

    @classmethod
    def at(
        cls,
        seconds: float,
        frames: np.ndarray | None,
        fps: float,
        wave: np.ndarray | None,
        sample_rate: int,
        temporal_patch: int = TEMPORAL_PATCH,
    ) -> ClipSplit:
        """The split of a clip at `seconds` (clamped to the clip: at or past its end nothing is cut)."""
        if not seconds > 0:
            raise ValueError(f"the split time must be positive, got {seconds}")
        seconds = min(seconds, clip_seconds(frames, fps, wave, sample_rate))  # past the end: nothing is cut
        past_frames = past_samples = None
        if frames is not None:
            total = len(frames)
            whole = math.floor(seconds * fps + _TOLERANCE)  # frames that end at or before t*
            patches = min(whole, total) // temporal_patch
            past_frames = total if whole >= total else min(total, max(1, patches) * temporal_patch)
        if wave is not None:
            past_samples = min(len(wave), max(1, math.ceil(seconds * sample_rate - _TOLERANCE)))
        return cls(seconds, past_frames, past_samples, fps, sample_rate)

    @classmethod
    def of(
        cls,
        keep_ratio: float,
        frames: np.ndarray | None,
        fps: float,
        wave: np.ndarray | None,
        sample_rate: int,
        temporal_patch: int = TEMPORAL_PATCH,
    ) -> ClipSplit:
        """The split at t* = `keep_ratio` x the clip's length (`clip_seconds`): the keep-ratio protocol."""
        if not 0 < keep_ratio <= 1:
            raise ValueError(f"the keep ratio (the observed fraction) must lie in (0, 1], got {keep_ratio}")
        duration = clip_seconds(frames, fps, wave, sample_rate)
        if duration <= 0:
            raise ValueError("a clip without frames or audio samples cannot be split")
        return cls.at(keep_ratio * duration, frames, fps, wave, sample_rate, temporal_patch)

    def past(self, frames: np.ndarray | None, wave: np.ndarray | None):
        """`(frames, wave)` of the observed past."""
        return (
            None if frames is None else frames[: self.past_frames],
            None if wave is None else wave[: self.past_samples],
        )

    def future(self, frames: np.ndarray | None, wave: np.ndarray | None, horizon: float) -> FutureMedia:
        """The media after the past up to t* + `horizon` seconds (the imagination target's segment)."""
        end = self.seconds + horizon
        video = audio = None
        if frames is not None and self.past_frames < len(frames):
            stop = min(len(frames), max(self.past_frames, math.ceil(end * self.fps - _TOLERANCE)))
            video = frames[self.past_frames : stop] if stop > self.past_frames else None
        if wave is not None and self.past_samples < len(wave):
            stop = min(len(wave), math.ceil(end * self.sample_rate - _TOLERANCE))
            audio = wave[self.past_samples : stop] if stop > self.past_samples else None
        return FutureMedia(
            video,
            self.past_frames / self.fps if video is not None else None,
            audio,
            self.past_samples / self.sample_rate if audio is not None else None,
        )


@dataclass
class FutureMedia:
    """The media of a clip's future segment and where it starts (seconds from the clip's start)."""

    frames: np.ndarray | None
    video_start: float | None
    wave: np.ndarray | None
    audio_start: float | None


def observed_prefix(
    frames: np.ndarray | None,
    fps: float,
    wave: np.ndarray | None,
    sample_rate: int,
    keep_ratio: float,
    temporal_patch: int = TEMPORAL_PATCH,
):
    """The first `keep_ratio` of a clip, as every observed-prefix protocol sees it: the clip cut at
    t* = keep_ratio x its length (`ClipSplit`): whole temporal patches ending at or before t* (at least one), audio
    samples before t*. One rule for training's clip-level split, the evaluation runner's `--keep-ratios`, the belief
    trajectory and the Space."""
    if keep_ratio == 1:  # the whole clip (also one without media)
        return frames, wave
    return ClipSplit.of(keep_ratio, frames, fps, wave, sample_rate, temporal_patch).past(frames, wave)


def observed_media(media: ClipMedia, keep_ratio: float, temporal_patch: int = TEMPORAL_PATCH) -> ClipMedia:
    """`media` cut to its first `keep_ratio` (`observed_prefix`), frame times and durations following."""
    fps = media.video.fps if media.video is not None else 1.0
    rate = media.audio.sample_rate if media.audio is not None else 1
    frames, wave = observed_prefix(
        None if media.video is None else media.video.frames,
        fps,
        None if media.audio is None else media.audio.waveform,
        rate,
        keep_ratio,
        temporal_patch,
    )
    video = audio = None
    if media.video is not None:
        kept = len(frames)
        video = dataclasses.replace(
            media.video, frames=frames, timestamps=media.video.timestamps[:kept], duration=kept / media.video.fps
        )
    if media.audio is not None:
        audio = dataclasses.replace(media.audio, waveform=wave, duration=len(wave) / media.audio.sample_rate)
    return ClipMedia(video, audio, media.audio_from_video, list(media.notes))


@dataclass
class MediaInfo:
    """What a container holds, read from its header (no decoding)."""

    path: str
    has_video: bool
    has_audio: bool
    duration: float | None  # seconds, None when the container does not say


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    """Open a container, turning every failure into a typed `MediaError` that names the file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MediaNotFoundError(path, "file not found")
    if os.path.isdir(path):
        raise MediaNotFoundError(path, "is a directory, not a media file")
    if os.path.getsize(path) == 0:
        raise EmptyMediaError(path, "file is empty (0 bytes)")
    try:
        return av.open(path)
    except av.error.FFmpegError as err:
        raise CorruptMediaError(path, f"cannot be read as media ({err.strerror or err})") from err


def _seconds(value, time_base) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


def _stream_duration(container, stream) -> float | None:
    """Declared duration of a stream, else of the container (seconds)."""
    seconds = _seconds(stream.duration, stream.time_base)
    if seconds is None and container.duration is not None:
        seconds = container.duration / 1_000_000
    return seconds


def probe_media(path: str | os.PathLike) -> MediaInfo:
    """Read a container's header: which tracks it has and how long it claims to be. Raises `MediaError`."""
    with _open(path) as container:
        video, audio = container.streams.video, container.streams.audio
        stream = video[0] if video else audio[0] if audio else None
        duration = _stream_duration(container, stream) if stream is not None else None
        return MediaInfo(os.fspath(path), bool(video), bool(audio), duration)


def _check_not_truncated(path, covered: float, declared: float | None, what: str) -> None:
    """A file that decodes to less than half its declared length is truncated: raise rather than return a stub."""
    if declared is not None and declared > 0.5 and covered < 0.5 * declared:
        raise CorruptMediaError(path, f"truncated: {what} decodes to {covered:.2f} s of the declared {declared:.2f} s")


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that put a decoded frame upright: its display matrix (a phone's "rotate" tag)
    rotates the stored picture by `frame.rotation` degrees counter-clockwise for display."""
    return round((frame.rotation or 0) / 90) % 4


def _to_rgb(frame: av.VideoFrame, size: int, aspect: str) -> np.ndarray:
    """Scale one frame to `size x size` RGB, upright (its display rotation applied): letterbox (`pad`), centre
    `crop`, or `stretch`. Returns (size, size, 3)."""
    turns = _quarter_turns(frame)
    width, height = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)  # as displayed
    if aspect == "stretch":
        return np.ascontiguousarray(np.rot90(frame.to_ndarray(width=size, height=size, format="rgb24"), turns))
    scale = (min if aspect == "pad" else max)(size / width, size / height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    stored_w, stored_h = (new_h, new_w) if turns % 2 else (new_w, new_h)
    image = frame.to_ndarray(width=stored_w, height=stored_h, format="rgb24")
    image = np.rot90(image, turns) if turns else image  # (new_h, new_w, 3), upright
    if aspect == "crop":
        top, left = (new_h - size) // 2, (new_w - size) // 2
        return np.ascontiguousarray(image[top : top + size, left : left + size])
    canvas = np.zeros((size, size, 3), dtype=np.uint8)  # black bars, the image centred
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = image
    return canvas


def _sample_frames(container, stream, path, fps: float, size: int, aspect: str, start, end):
    """Decode `stream` and keep, for each sample time `t0 + k / fps`, the frame on screen then (converted to RGB).

    Returns `(frames, stamps, t0, stop, last_end)`: the sampled frames and their timestamps, the first sample time,
    where sampling stopped and where the last decoded frame ends."""
    frames, stamps = [], []
    t0 = start
    previous, previous_time, last_end = None, None, None
    try:
        for frame in container.decode(stream):
            time = frame.time if frame.time is not None else (0.0 if previous_time is None else previous_time)
            if start is not None and time <= start:  # before the segment: only the frame on screen at `start`
                previous, previous_time, last_end = frame, time, time + _frame_len(frame, stream)
                continue
            if end is not None and time >= end:
                break
            if t0 is None:
                t0 = time
            # emit the previous frame for every sample time it covered, up to this frame's start
            while previous is not None and t0 + len(frames) / fps < time - 1e-6:
                frames.append(_to_rgb(previous, size, aspect))
                stamps.append(previous_time)
            previous, previous_time = frame, time
            last_end = time + _frame_len(frame, stream)
    except av.error.FFmpegError as err:
        raise CorruptMediaError(path, f"decoding failed ({err.strerror or err})") from err
    if previous is None:
        raise CorruptMediaError(path, "video track holds no decodable frame")
    stop = last_end if end is None else min(last_end, end)
    while t0 + len(frames) / fps < stop - 1e-6:  # the last frame covers the remaining sample times
        frames.append(_to_rgb(previous, size, aspect))
        stamps.append(previous_time)
    if not frames:
        frames.append(_to_rgb(previous, size, aspect))
        stamps.append(previous_time)
    return frames, stamps, t0, stop, last_end


def _fitted_rate(fps: float, declared, start, end, max_frames: int | None, notes: list[str]) -> float:
    """The sampling rate for a segment of a video whose declared length is `declared` seconds: `fps`, lowered (and
    noted) when the segment would give more than `max_frames` frames."""
    span = None if declared is None else (min(end, declared) if end is not None else declared) - (start or 0.0)
    if max_frames is not None and span is not None and span * fps > max_frames:
        new_fps = max_frames / span
        notes.append(f"{span:.1f} s at {fps:g} fps exceeds max_frames={max_frames}: sampled at {new_fps:.3g} fps")
        return new_fps
    return fps


def decode_video(
    path: str | os.PathLike,
    fps: float = 3.0,
    size: int = 224,
    aspect: str = "pad",
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    min_frames: int = 2,
) -> VideoClip:
    """Sample RGB frames from a video file at a fixed rate.

    Frame k is the frame on screen at time `t0 + k / fps` (t0: `start`, or the first frame's timestamp), found from
    presentation timestamps, so variable-frame-rate files are sampled evenly in time. A clip of d seconds gives
    `ceil(d * fps)` frames. Only sampled frames are converted and kept.

    Args:
        path: any container `av` reads.
        fps: sampling rate (the paper's 3).
        size: output side; frames are square (the paper's 224).
        aspect: `pad` (default) scales the longer side to `size` and centres the image on black bars, keeping the
            whole frame undistorted; `crop` scales the shorter side and cuts the centre; `stretch` ignores aspect.
        start, end: optional segment in seconds (for annotations that index into a longer recording).
        max_frames: memory guard for long clips: when `duration * fps` would exceed it, the rate is lowered so the
            whole clip still fits (noted on the clip). The processor fits the token budget afterwards
            (docs/architecture.md §5).
        min_frames: clips shorter than this many frames are padded by repeating the last frame (the thinker's video
            patches span 2 frames), noted on the clip.

    Returns:
        A `VideoClip` with `(T, size, size, 3)` uint8 frames.

    Raises:
        MediaError: a subclass naming the file: missing, empty, corrupt or truncated, or without a video track.
    """
    if aspect not in ASPECT_MODES:
        raise ValueError(f"aspect must be one of {ASPECT_MODES}, got {aspect!r}")
    if fps <= 0 or size <= 0:
        raise ValueError(f"fps and size must be positive, got fps={fps}, size={size}")
    _check_segment(path, start, end)
    notes: list[str] = []
    with _open(path) as container:
        if not container.streams.video:
            raise MissingStreamError(path, "has no video track")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = _stream_duration(container, stream)
        if start is not None and declared is not None and start >= declared:
            raise SegmentError(
                path, f"segment [{start:g}, {end}] starts at or past the end of the video ({declared:.2f} s)"
            )
        fps = _fitted_rate(fps, declared, start, end, max_frames, notes)
        if start:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)

        frames, stamps, t0, stop, last_end = _sample_frames(container, stream, path, fps, size, aspect, start, end)
        if end is None:
            _check_not_truncated(path, last_end - t0, declared, "video track")

    if max_frames is not None and len(frames) > max_frames:  # the declared duration was short of the real one
        keep = np.round(np.linspace(0, len(frames) - 1, max_frames)).astype(int)
        frames, stamps = [frames[i] for i in keep], [stamps[i] for i in keep]
        fps = max_frames / (stop - t0)
    padded = max(0, min_frames - len(frames))
    if padded:
        notes.append(f"clip of {len(frames)} frame(s) padded to {min_frames} by repeating the last frame")
        frames.extend([frames[-1]] * padded)
        stamps.extend([stamps[-1]] * padded)
    for note in notes:
        warnings.warn(f"{os.fspath(path)}: {note}", stacklevel=2)
    return VideoClip(
        frames=np.stack(frames),
        fps=fps,
        timestamps=np.asarray(stamps, dtype=np.float64),
        duration=stop - t0,
        padded_frames=padded,
        notes=notes,
    )


def _check_segment(path, start: float | None, end: float | None) -> None:
    if start is not None and start < 0:
        raise SegmentError(path, f"segment starts at {start:g} s, before the file")
    if start is not None and end is not None and end <= start:
        raise SegmentError(path, f"segment [{start:g}, {end:g}] is reversed or empty")


def _frame_len(frame: av.VideoFrame, stream=None) -> float:
    """Display duration of one frame in seconds (the stream's average rate when the frame does not say)."""
    if frame.duration and frame.time_base is not None:
        return float(frame.duration * frame.time_base)
    rate = stream.average_rate if stream is not None else None
    return 1.0 / float(rate) if rate else 0.0


def decode_audio(
    path: str | os.PathLike,
    sample_rate: int = 16_000,
    start: float | None = None,
    end: float | None = None,
    max_seconds: float | None = None,
) -> AudioClip:
    """Decode the first audio track of a file to mono float32 at `sample_rate`.

    Works the same on a video container's audio track and on audio-only files (wav, mp3, flac, m4a, ...). Channels
    are averaged to mono (a plain mean, not ffmpeg's -3 dB downmix) at the source rate; torchaudio then resamples
    to `sample_rate`.

    Args:
        start, end: optional segment in seconds.
        max_seconds: stop decoding after this much audio (a memory guard for long files; marks the clip truncated).

    Raises:
        MediaError: a subclass naming the file: missing, empty, corrupt or truncated, or without an audio track.
    """
    _check_segment(path, start, end)
    with _open(path) as container:
        if not container.streams.audio:
            raise MissingStreamError(path, "has no audio track")
        stream = container.streams.audio[0]
        source_rate = stream.codec_context.sample_rate or stream.rate
        declared = _stream_duration(container, stream)
        if start is not None and declared is not None and start >= declared:
            raise SegmentError(
                path, f"segment [{start:g}, {end}] starts at or past the end of the audio ({declared:.2f} s)"
            )
        if start:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        to_float = av.AudioResampler(format="fltp", rate=source_rate)  # planar float, channels kept
        first = 0 if start is None else int(round(start * source_rate))  # sample offsets in the track
        last = math.inf if end is None else int(round(end * source_rate))
        cap = math.inf if max_seconds is None else first + int(round(max_seconds * source_rate))
        stop = min(last, cap)
        chunks, position = [], None
        try:
            for frame in container.decode(stream):
                if position is None:  # after a seek the first frame starts before `start`
                    position = 0 if start is None or frame.time is None else int(round(frame.time * source_rate))
                for planar in to_float.resample(frame):
                    samples = planar.to_ndarray().mean(axis=0)  # (C, n) -> (n,): the channels' mean
                    lo, hi = max(0, first - position), min(len(samples), stop - position)
                    if lo < hi:
                        chunks.append(samples[int(lo) : int(hi)])
                    position += len(samples)
                if position >= stop:
                    break
        except av.error.FFmpegError as err:
            raise CorruptMediaError(path, f"decoding failed ({err.strerror or err})") from err
    truncated = position is not None and position >= cap and cap < last
    waveform = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if waveform.size == 0:
        raise CorruptMediaError(path, "audio track holds no decodable samples")
    if declared is not None and end is None and not truncated:
        # codecs pad their last frame (AAC: to 1024 samples); the container's declared length says where the
        # audio really ends, so cut the padding, never more than 0.1 s
        expected = int(round((declared - (start or 0.0)) * source_rate))
        if 0 < waveform.size - expected <= 0.1 * source_rate:
            waveform = waveform[:expected]
    if start is None and end is None and max_seconds is None:
        _check_not_truncated(path, waveform.size / source_rate, declared, "audio track")
    if source_rate != sample_rate:
        waveform = AF.resample(torch.from_numpy(waveform), source_rate, sample_rate).numpy()
    waveform = np.ascontiguousarray(waveform, dtype=np.float32)
    return AudioClip(waveform, sample_rate, source_rate, waveform.size / sample_rate, truncated)


def augment_audio(
    waveform: np.ndarray,
    sample_rate: int = 16_000,
    snr_db: float | None = None,
    speed: float | None = None,
    gain_db: float | None = None,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Optional audio augmentation with torchaudio: white noise at `snr_db`, a `speed` factor, a gain in dB.

    Deterministic for a seeded `generator`. Returns a new float32 `(N',)` array (N' = N / speed).
    """
    audio = torch.from_numpy(np.asarray(waveform, dtype=np.float32)).unsqueeze(0)  # (1, N)
    if speed is not None and speed != 1.0:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        audio, _ = AF.speed(audio, sample_rate, speed)
    if gain_db is not None:
        audio = AF.gain(audio, gain_db)
    if snr_db is not None:
        noise = torch.randn(audio.shape, generator=generator)
        audio = AF.add_noise(audio, noise, torch.tensor([float(snr_db)]))
    return audio.squeeze(0).numpy().astype(np.float32, copy=False)


def decode_clip(
    video: str | os.PathLike | None,
    audio: str | os.PathLike | None,
    segment: tuple[float, float] | list[float] | None = None,
    fps: float = 3.0,
    size: int = 224,
    sample_rate: int = 16_000,
    max_frames: int | None = None,
    max_audio_seconds: float | None = None,
) -> ClipMedia:
    """Decode one sample's video and audio, as a manifest row names them.

    `audio` equal to `video` means the video's own audio track; `segment` ([start, end] seconds) cuts the video file
    and, for its own track, the audio. Documented fallback: when the video has no audio track, the sample goes on
    without audio (noted, warned). Anything else that cannot be decoded raises the `MediaError` naming the file.
    """
    start, end = segment if segment is not None else (None, None)
    notes: list[str] = []
    frames = None
    if video is not None:
        frames = decode_video(video, fps=fps, size=size, start=start, end=end, max_frames=max_frames)
    from_video = video is not None and audio is not None and os.fspath(audio) == os.fspath(video)
    sound = None
    if audio is not None:
        window = (start, end) if from_video else (None, None)
        try:
            sound = decode_audio(audio, sample_rate, start=window[0], end=window[1], max_seconds=max_audio_seconds)
        except MissingStreamError:
            if not from_video:
                raise
            notes.append(f"{os.fspath(video)}: no audio track, the sample is used without audio")
            warnings.warn(notes[-1], stacklevel=2)
            from_video = False
    return ClipMedia(frames, sound, from_video and sound is not None, notes)
