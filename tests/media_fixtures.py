"""Writers for test media: real files through `av`, in the shapes real datasets come in (and break in)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


def tone(seconds: float, rate: int, pitch: float = 220.0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32)


def gray_frame(level: int, width: int = 64, height: int = 48) -> np.ndarray:
    """A flat frame whose gray level identifies it after lossy coding (levels far apart survive H.264)."""
    return np.full((height, width, 3), level, dtype=np.uint8)


def write_video(
    path: str,
    times: list[float],
    levels: list[int],
    audio_seconds: float | None = None,
    audio_rate: int = 44_100,
    width: int = 64,
    height: int = 48,
) -> None:
    """An mp4 (H.264) whose frame i is shown from `times[i]` (variable frame rate allowed), gray level `levels[i]`;
    with an AAC track of `audio_seconds` when given, none otherwise."""
    with av.open(path, "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = Fraction(1, 1000)
        video.codec_context.time_base = Fraction(1, 1000)
        audio = None
        if audio_seconds is not None:
            audio = container.add_stream("aac", rate=audio_rate, layout="stereo")
        for t, level in zip(times, levels, strict=True):
            frame = av.VideoFrame.from_ndarray(gray_frame(level, width, height), format="rgb24")
            frame.pts, frame.time_base = int(round(t * 1000)), Fraction(1, 1000)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            wave = tone(audio_seconds, audio_rate)
            chunk = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts = audio_rate, 0
            container.mux(audio.encode(chunk))
            container.mux(audio.encode())


def write_constant_video(path: str, seconds: float, fps: int = 25, **kwargs) -> None:
    count = int(round(seconds * fps))
    write_video(path, [i / fps for i in range(count)], [(i * 37) % 256 for i in range(count)], **kwargs)


AUDIO_CODECS = {"wav": "pcm_s16le", "mp3": "libmp3lame", "flac": "flac", "m4a": "aac"}


def write_audio(path: str, seconds: float, rate: int = 44_100, channels: int = 2) -> np.ndarray:
    """An audio-only file; the codec follows the extension (wav, mp3, flac, m4a). Returns the mono wave written."""
    codec = AUDIO_CODECS[path.rsplit(".", 1)[1]]
    layout = "stereo" if channels == 2 else "mono"
    wave = tone(seconds, rate)
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        chunk = av.AudioFrame.from_ndarray(np.stack([wave] * channels), format="fltp", layout=layout)
        chunk.sample_rate, chunk.pts = rate, 0
        container.mux(stream.encode(chunk))
        container.mux(stream.encode())
    return wave


def write_faststart_noise_video(path: str, seconds: float, fps: int = 25) -> None:
    """An mp4 with its index (moov) before the data: cutting the file keeps a header that declares the full length."""
    rng = np.random.default_rng(0)
    with av.open(path, "w", options={"movflags": "faststart"}) as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for _ in range(int(round(seconds * fps))):
            noise = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)  # incompressible: data dwarfs the header
            container.mux(video.encode(av.VideoFrame.from_ndarray(noise, format="rgb24")))
        container.mux(video.encode())
