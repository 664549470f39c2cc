"""Media decoding on real files written through av: the demo clips, VFR video, audio-only files, and broken input."""

from __future__ import annotations

import math
import warnings

import av
import numpy as np
import pytest

from modeling_affectverse.data.demo_data import generate_demo_dataset
from modeling_affectverse.media_affectverse import (
    CorruptMediaError,
    EmptyMediaError,
    MediaNotFoundError,
    MissingStreamError,
    augment_audio,
    decode_audio,
    decode_clip,
    decode_video,
    probe_media,
)
from tests.media_fixtures import write_audio, write_constant_video, write_faststart_noise_video, write_video


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    generate_demo_dataset(str(folder), num_clips=2, seed=3, progress=False)
    return str(folder / "clips" / "demo_0000.mp4")


def test_demo_clip_decodes_to_the_paper_format(demo_clip):
    clip = decode_video(demo_clip, fps=3.0, size=224)
    with av.open(demo_clip) as container:
        video_seconds = float(container.streams.video[0].duration * container.streams.video[0].time_base)
        audio_stream = container.streams.audio[0]
        audio_seconds = float(audio_stream.duration * audio_stream.time_base)
    assert abs(len(clip.frames) - video_seconds * 3.0) <= 1
    assert clip.frames.shape[1:] == (224, 224, 3) and clip.frames.dtype == np.uint8
    audio = decode_audio(demo_clip)
    assert audio.sample_rate == 16_000 and audio.waveform.dtype == np.float32 and audio.waveform.ndim == 1
    assert audio.source_rate == 24_000  # resampled, not just relabelled
    assert abs(audio.waveform.size / 16_000 - audio_seconds) <= 0.05


def test_variable_frame_rate_is_sampled_by_timestamp(tmp_path):
    # 30 fps for one second, then 5 fps for one second; each frame's gray level names it
    times = [round(i / 30, 3) for i in range(30)] + [1 + i / 5 for i in range(5)]  # the file keeps milliseconds
    levels = [20 + 6 * i for i in range(35)]
    path = str(tmp_path / "vfr.mp4")
    write_video(path, times, levels)
    clip = decode_video(path, fps=3.0, size=32, aspect="stretch")
    assert len(clip.frames) == 6  # 2.0 s at 3 fps
    for sample, stamp in enumerate(clip.timestamps):
        shown = max(i for i, t in enumerate(times) if t <= sample / 3)  # the frame on screen at k/3 s
        assert stamp == pytest.approx(times[shown], abs=1e-6)
        assert abs(int(clip.frames[sample, 16, 16, 0]) - levels[shown]) <= 4


def test_aspect_modes(tmp_path):
    path = str(tmp_path / "wide.mp4")
    write_video(path, [0.0, 0.5], [200, 200], width=64, height=32)
    padded = decode_video(path, size=32, aspect="pad").frames[0]
    assert padded[:6].max() == 0 and padded[-6:].max() == 0  # black bars above and below: whole frame kept
    assert abs(int(padded[16, 16, 0]) - 200) <= 4
    cropped = decode_video(path, size=32, aspect="crop").frames[0]
    assert cropped.min() >= 190  # centre cut: no bars
    with pytest.raises(ValueError, match="aspect"):
        decode_video(path, aspect="squash")


def test_video_without_audio_track(tmp_path):
    path = str(tmp_path / "silent.mp4")
    write_constant_video(path, 1.0)
    info = probe_media(path)
    assert info.has_video and not info.has_audio
    assert len(decode_video(path).frames) == 3
    with pytest.raises(MissingStreamError, match="silent.mp4: has no audio track"):
        decode_audio(path)
    # a manifest row that takes its audio from this video: documented fallback, the sample goes on without audio
    with pytest.warns(UserWarning, match="silent.mp4: no audio track, the sample is used without audio"):
        media = decode_clip(path, path)
    assert media.audio is None and not media.audio_from_video and len(media.video.frames) == 3
    assert media.notes == [f"{path}: no audio track, the sample is used without audio"]
    # a separate audio file that is not there is an error, not a silent loss
    with pytest.raises(MediaNotFoundError, match="speech.wav: file not found"):
        decode_clip(path, str(tmp_path / "speech.wav"))


@pytest.mark.parametrize("extension", ["wav", "mp3", "flac", "m4a"])
def test_audio_only_files(tmp_path, extension):
    path = str(tmp_path / f"speech.{extension}")
    write_audio(path, 1.3, rate=44_100)
    audio = decode_audio(path)
    assert audio.sample_rate == 16_000 and abs(audio.duration - 1.3) <= 0.05
    assert 0.15 < float(np.abs(audio.waveform).max()) < 0.4  # the 0.3-amplitude tone, downmixed, not summed
    with pytest.raises(MissingStreamError, match=f"speech.{extension}: has no video track"):
        decode_video(path)


def test_clip_shorter_than_half_a_second(tmp_path):
    path = str(tmp_path / "blink.mp4")
    write_constant_video(path, 0.3, audio_seconds=0.3)
    with pytest.warns(UserWarning, match="blink.mp4: clip of 1 frame"):
        clip = decode_video(path)
    assert len(clip.frames) == 2 and clip.padded_frames == 1  # documented: padded to one temporal patch
    np.testing.assert_array_equal(clip.frames[0], clip.frames[1])
    assert abs(decode_audio(path).duration - 0.3) <= 0.05


def test_long_clip_is_capped_then_fitted_to_the_token_budget(tmp_path, processor):
    path = str(tmp_path / "long.mp4")
    write_constant_video(path, 20.0, fps=5, audio_seconds=20.0)
    with pytest.warns(UserWarning, match="exceeds max_frames=24"):
        clip = decode_video(path, fps=3.0, size=56, max_frames=24)
    assert len(clip.frames) <= 24 and clip.fps < 3.0 and clip.duration == pytest.approx(20.0, abs=0.05)
    audio = decode_audio(path, max_seconds=8.0)
    assert audio.truncated and audio.duration == pytest.approx(8.0, abs=1e-3)
    text = processor.build_prompt("What emotion?", subtitle="long", video=True, audio=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = processor(
            text=[text],
            videos=[clip.frames],
            audio=[audio.waveform],
            max_length=160,
            videos_kwargs={"fps": clip.fps},
            return_tensors="pt",
        )
    assert batch["input_ids"].shape[1] <= 160
    assert any("to fit 160 tokens" in str(w.message) for w in caught)


def test_segment_of_a_longer_recording(tmp_path):
    path = str(tmp_path / "dialog.mp4")
    write_constant_video(path, 4.0, audio_seconds=4.0)
    clip = decode_video(path, start=1.0, end=2.5)
    assert len(clip.frames) == math.ceil(1.5 * 3) and clip.timestamps[0] == pytest.approx(1.0)
    assert decode_audio(path, start=1.0, end=2.5).duration == pytest.approx(1.5, abs=1e-3)
    media = decode_clip(path, path, segment=[1.0, 2.5])  # a manifest row with a segment and the video's own audio
    assert media.audio_from_video and media.audio.duration == pytest.approx(1.5, abs=1e-3)
    np.testing.assert_array_equal(media.video.frames, clip.frames)
    separate = str(tmp_path / "utterance.wav")
    write_audio(separate, 1.2)
    media = decode_clip(path, separate, segment=[1.0, 2.5])  # IEMOCAP: the segment cuts the video, not the wav
    assert not media.audio_from_video and media.audio.duration == pytest.approx(1.2, abs=0.01)


def test_zero_byte_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(EmptyMediaError, match="empty.mp4: file is empty"):
        decode_video(str(empty))
    with pytest.raises(EmptyMediaError, match="empty.mp4: file is empty"):
        probe_media(str(empty))


def test_missing_file(tmp_path):
    with pytest.raises(MediaNotFoundError, match="absent.mp4: file not found"):
        decode_audio(str(tmp_path / "absent.mp4"))


def test_truncated_file(tmp_path, demo_clip):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(open(demo_clip, "rb").read()[:4000])  # the index (moov, written last) is cut off
    with pytest.raises(CorruptMediaError, match="truncated.mp4: cannot be read as media"):
        decode_video(str(truncated))


def test_corrupt_file(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptMediaError, match="garbage.mp4: cannot be read as media"):
        decode_audio(str(garbage))


def test_truncated_data_with_header_intact(tmp_path):
    """A file cut mid-data whose index survives (fast-start mp4) must not pass as a short clip."""
    path = str(tmp_path / "cut.mp4")
    write_faststart_noise_video(path, 4.0)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])
    assert probe_media(path).duration == pytest.approx(4.0)  # the header still declares 4 s
    with pytest.raises(CorruptMediaError, match="cut.mp4: truncated: video track decodes to"):
        decode_video(path)


def test_augmentation_is_deterministic_and_does_what_it_says():
    import torch

    wave = np.sin(np.linspace(0, 200 * np.pi, 16_000)).astype(np.float32)
    louder = augment_audio(wave, gain_db=6.0)
    assert np.abs(louder).max() == pytest.approx(np.abs(wave).max() * 10 ** (6 / 20), rel=1e-3)
    faster = augment_audio(wave, speed=2.0)
    assert abs(faster.size - wave.size / 2) <= 2
    noisy_a = augment_audio(wave, snr_db=10.0, generator=torch.Generator().manual_seed(0))
    noisy_b = augment_audio(wave, snr_db=10.0, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(noisy_a, noisy_b)
    noise = noisy_a - wave
    snr = 10 * np.log10(np.mean(wave**2) / np.mean(noise**2))
    assert snr == pytest.approx(10.0, abs=0.3)
