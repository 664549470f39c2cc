"""Issue 24: the belief stream. Each update equals the one-shot closed-set scoring of the clip cut at the same time
(observed-prefix rule, no token budget); the media prefix is prefilled once; bad chunks are refused without loss."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from peft import get_peft_model

from modeling_affectverse.belief_stream import CandidateTree, StreamError, play
from modeling_affectverse.loading import load
from modeling_affectverse.media_affectverse import AudioClip, ClipMedia, VideoClip, observed_media
from modeling_affectverse.processing_affectverse import MER_LABELS, task_question
from modeling_affectverse.scoring_affectverse import candidate_log_likelihoods, candidate_token_ids
from modeling_affectverse.stream import main
from modeling_affectverse.tiny import build_tiny_model, synthetic_clip
from tests.media_fixtures import write_constant_video
from training.adapters import affectverse_lora_config

FRACTIONS = (0.1, 0.2, 0.35, 0.5, 0.7, 0.85, 1.0)
DEMO_TARGETS = (  # the demo recipe's LoRA targets: the LLM, the vision merger and the audio projection
    r".*(language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
    r"|visual\.merger\.mlp\.(0|2)|audio_tower\.proj)"
)


def adapted_tiny():
    """The tiny model under the demo recipe's PEFT adapter with random (non-zero) LoRA weights: every path a trained
    adapter takes (LoRA on the encoders, the belief row's token adapter, the EWM as modules_to_save) changes the
    outputs, as training would."""
    model, processor = build_tiny_model(seed=0)
    config = affectverse_lora_config(processor.belief_token_id, target_modules=DEMO_TARGETS)
    config.init_lora_weights = False
    torch.manual_seed(1)
    return get_peft_model(model, config).eval(), processor


def trained_demo(manifest: str, folder: str):
    """A demo adapter trained by training/sft.py's main (the demo recipe, 6 steps of 4 clips, the clip split at
    rho in [0.3, 1]), saved, and loaded back onto a fresh base as a user loads it (`loading.load`)."""
    from tests.training.conftest import parse_recipe
    from training.sft import main as sft_main

    overrides = ["--train_manifest", manifest, "--output_dir", folder, "--max_steps", "6"]
    sft_main(*parse_recipe(*overrides, "--per_device_train_batch_size", "4", "--logging_steps", "6"))
    model, processor = load(folder)
    lora = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora and all(bool(p.abs().sum() > 0) for p in lora)  # trained: LoRA's B starts at zero
    return model.eval(), processor


@pytest.fixture(scope="module", params=["tiny", "adapted", "trained"])
def loaded(request, demo_manifest, tmp_path_factory):
    if request.param == "tiny":
        model, processor = build_tiny_model(seed=0)
        return model.eval(), processor
    if request.param == "trained":
        return trained_demo(demo_manifest, str(tmp_path_factory.mktemp("trained-demo")))
    return adapted_tiny()


def clip(kind: str, seconds: float = 5.0):
    """A synthetic clip whose sound grows louder (Whisper's floor moves as it arrives): video, audio or both."""
    frames, wave = synthetic_clip(seconds, seed=1)
    wave = wave * np.linspace(0.2, 1.5, wave.size, dtype=np.float32)
    video = VideoClip(frames, 3.0, np.arange(len(frames)) / 3.0, len(frames) / 3.0) if kind != "audio" else None
    audio = AudioClip(wave, 16000, 16000, wave.size / 16000) if kind != "video" else None
    return ClipMedia(video, audio, kind == "av")


def one_shot(model, processor, prompt: str, media: ClipMedia):
    """The reference: the clip so far processed as a clip (no budget), scored in one prefill."""
    inputs = dict(processor.from_clips([prompt], [media], max_length=None))
    ids = candidate_token_ids(processor.tokenizer, list(MER_LABELS))
    probabilities = candidate_log_likelihoods(model, inputs, ids).softmax(-1)[0]
    with torch.no_grad():
        beliefs = model(**inputs).belief_tokens
    return probabilities, None if beliefs is None else beliefs[0], inputs


def cuts(media: ClipMedia, fractions=FRACTIONS):
    """`(frames, wave)` pushed at each fraction: what the cut at that fraction adds to the previous cut."""
    seen_frames = seen_samples = 0
    for fraction in fractions:
        cut = observed_media(media, fraction) if fraction < 1 else media
        frames = 0 if cut.video is None else len(cut.video.frames)
        samples = 0 if cut.audio is None else cut.audio.waveform.size
        if (frames, samples) == (seen_frames, seen_samples):
            continue
        new_frames = None if frames == seen_frames else media.video.frames[seen_frames:frames]
        new_wave = None if samples == seen_samples else media.audio.waveform[seen_samples:samples]
        yield cut, new_frames, new_wave
        seen_frames, seen_samples = frames, samples


@pytest.mark.parametrize("kind", ["video", "audio", "av"])
def test_each_update_equals_the_one_shot_scoring_of_the_clip_so_far(loaded, kind):
    model, processor = loaded
    media = clip(kind)
    prompt = processor.build_prompt(
        task_question("emotion", list(MER_LABELS)), video=kind != "audio", audio=kind == "audio"
    )
    stream = model.belief_stream(processor, video=kind != "audio", audio=kind != "video")
    updates = 0
    for cut, frames, wave in cuts(media):
        update = stream.push(frames, wave)
        probabilities, beliefs, inputs = one_shot(model, processor, prompt, cut)
        got = torch.tensor([update.probabilities[label] for label in MER_LABELS])
        torch.testing.assert_close(got, probabilities, rtol=0, atol=1e-4)
        torch.testing.assert_close(update.belief_tokens, beliefs, rtol=0, atol=1e-5)
        media_ids = (inputs["input_ids"] == model.config.video_token_id) | (
            inputs["input_ids"] == model.config.audio_token_id
        )
        assert update.media_tokens == int(media_ids.sum())
        updates += 1
    assert updates >= 5


@pytest.mark.parametrize("kind", ["bool", "float", None])
def test_candidates_scored_in_the_prefill_equal_their_continuation(monkeypatch, kind):
    """The candidates ride along with the suffix's prefill (tree rows: sdpa's boolean mask, eager's additive one);
    where the attention takes no custom mask they continue from a repeated cache. Labels of 2 to 9 tokens (the
    tree's rows of one candidate attend to each other): each way equals the one-shot scoring at every update."""
    model, processor = build_tiny_model(seed=0)
    model.eval()
    labels = ["happy", "sad", "surprised and worried", "an angry neutral face"]
    monkeypatch.setattr(CandidateTree, "mask_kind", staticmethod(lambda base: kind))
    if kind == "float":
        model.config.get_text_config()._attn_implementation = "eager"
    media = clip("av", seconds=4.0)
    prompt = processor.build_prompt(task_question("emotion", labels), video=True)
    ids = candidate_token_ids(processor.tokenizer, labels)
    assert max(map(len, ids)) > 2  # a candidate's rows attend to each other (measured lengths 2, 2, 6, 9)
    stream = model.belief_stream(processor, label_set=labels)
    for cut, frames, wave in cuts(media, (0.25, 0.6, 1.0)):
        update = stream.push(frames, wave)
        inputs = dict(processor.from_clips([prompt], [cut], max_length=None))
        expected = candidate_log_likelihoods(model, inputs, ids).softmax(-1)[0]
        got = torch.tensor([update.probabilities[label] for label in labels])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
        assert stream.cache.get_seq_length() == stream.sources.numel()  # the tree's rows were cropped off


def test_odd_frames_and_a_louder_chunk_are_encoded_again(loaded):
    """Chunks of 3 frames end inside a temporal patch (the padded patch is encoded again with its second frame);
    a chunk 8x louder moves Whisper's floor (the earlier windows it changes are encoded again): still equal."""
    model, processor = loaded
    frames, wave = synthetic_clip(6.0, seed=2)
    wave = wave.copy()
    wave[8000:12000] = 0.0  # a silent moment in the first window: below any floor, so a moving floor changes it
    wave[3 * 16000 :] *= 8.0
    prompt = processor.build_prompt(task_question("emotion", list(MER_LABELS)), video=True)
    stream = model.belief_stream(processor)
    redone = {"video_patches": 0, "audio_windows": 0}
    for k in range(1, 7):
        update = stream.push(frames[3 * (k - 1) : 3 * k], wave[16000 * (k - 1) : 16000 * k])
        cut = ClipMedia(
            VideoClip(frames[: 3 * k], 3.0, np.arange(3 * k) / 3.0, k),
            AudioClip(wave[: 16000 * k], 16000, 16000, float(k)),
            True,
        )
        probabilities, beliefs, _ = one_shot(model, processor, prompt, cut)
        got = torch.tensor([update.probabilities[label] for label in MER_LABELS])
        torch.testing.assert_close(got, probabilities, rtol=0, atol=1e-4)
        torch.testing.assert_close(update.belief_tokens, beliefs, rtol=0, atol=1e-5)
        for key, value in update.reencoded.items():
            redone[key] += value
        if k == 4:  # the louder second: the finished window of the first two seconds is encoded again too
            assert update.reencoded["audio_windows"] == 2
    assert redone["video_patches"] == 3  # after chunks 1, 3, 5 (odd frame counts 3, 9, 15)


def test_the_media_prefix_is_prefilled_once(loaded):
    """A hook on the language model counts the tokens each update prefills: the media tokens prefilled over the
    stream are the clip's media tokens plus those prefilled again, and what is prefilled again lies in the 2-s chunk
    that was still open (its audio window not final)."""
    model, processor = loaded
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    fed: list[int] = []
    handle = base.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: fed.append(kwargs["inputs_embeds"].shape[1]), with_kwargs=True
    )
    media = clip("av", seconds=8.0)
    media.audio.waveform[:] = media.audio.waveform / np.linspace(0.2, 1.5, media.audio.waveform.size)  # level sound
    media.audio.waveform[:800] *= 4.0  # the loudest moment first: the floor never moves
    stream = model.belief_stream(processor)
    seconds_per_chunk = model.config.seconds_per_chunk
    try:
        previous_media, total_prefilled, one_shot_total = 0, 0, 0
        for k in range(1, 5):  # 2-s pushes, the Omni chunk
            fed.clear()
            frames = media.video.frames[6 * (k - 1) : 6 * k]
            update = stream.push(frames, media.audio.waveform[32000 * (k - 1) : 32000 * k])
            assert sum(fed) >= update.prefilled_tokens  # the candidates' continuation is the rest
            if k > 1:  # the first call prefills media only (the first update's also the text before them)
                assert fed[0] == update.prefilled_media_tokens
            again = update.prefilled_media_tokens - (update.media_tokens - previous_media)
            assert 0 <= again <= seconds_per_chunk * model.config.position_id_per_seconds  # one open chunk's audio
            if k > 1:
                assert again > 0  # the last window of the previous push was not final (its STFT support)
            assert update.reencoded["audio_windows"] == (1 if k > 1 else 0)
            total_prefilled += update.prefilled_media_tokens
            one_shot_total += update.media_tokens  # a one-shot scoring prefills the whole prefix
            previous_media = update.media_tokens
        assert total_prefilled < 0.7 * one_shot_total  # measured: 398 of 620 (the tiny model: 4 tokens a patch)
    finally:
        handle.remove()


def test_bad_chunks_are_refused_by_name_and_nothing_is_lost():
    model, processor = build_tiny_model(seed=0)
    frames, wave = synthetic_clip(4.0, seed=3)
    stream = model.belief_stream(processor)
    first = stream.push(frames[:6], wave[:32000])
    with pytest.raises(StreamError, match=r"chunk 1: frames are 28x28, the stream's first were 56x56"):
        stream.push(frames[6:9, ::2, ::2], wave[32000:48000])
    with pytest.raises(StreamError, match=r"chunk 1: audio at 44100 Hz, the stream's is 16000 Hz"):
        stream.push(frames[6:9], wave[32000:48000], sample_rate=44100)
    with pytest.raises(StreamError, match=r"chunk 1: empty chunk \(no frames and no audio\)"):
        stream.push()
    with pytest.raises(StreamError, match=r"chunk 1: empty chunk \(0 frames\)"):
        stream.push(frames[:0], wave[32000:48000])
    with pytest.raises(StreamError, match=r"chunk 1: empty chunk \(0 audio samples\)"):
        stream.push(frames[6:9], wave[:0])
    second = stream.push(frames[6:12], wave[32000:64000])  # the stream continues where it was
    assert second.seconds == pytest.approx(4.0) and second.media_tokens > first.media_tokens
    stream.close()
    with pytest.raises(StreamError, match=r"chunk 2: the stream was closed"):
        stream.push(frames[:1])
    silent = model.belief_stream(processor, audio=False)
    with pytest.raises(StreamError, match=r"audio pushed to a stream opened without audio \(video only\)"):
        silent.push(frames[:2], wave[:16000])
    update = silent.push(frames[:2])
    assert update.seconds == pytest.approx(2 / 3)
    with pytest.raises(StreamError, match=r"task 'emotion' or 'sentiment'"):
        model.belief_stream(processor, task="open_vocabulary")


def test_a_model_without_ewm_streams_as_incremental_scoring():
    model, processor = build_tiny_model(seed=0, ewm_belief_construction="none")
    media = clip("av", 4.0)
    prompt = processor.build_prompt(task_question("emotion", list(MER_LABELS)), video=True)
    stream = model.belief_stream(processor)
    for cut, frames, wave in cuts(media, (0.25, 0.5, 1.0)):
        update = stream.push(frames, wave)
        probabilities, _, inputs = one_shot(model, processor, prompt, cut)
        assert update.belief_tokens is None and not (inputs["input_ids"] == processor.belief_token_id).any()
        got = torch.tensor([update.probabilities[label] for label in MER_LABELS])
        torch.testing.assert_close(got, probabilities, rtol=0, atol=1e-4)


def test_play_decodes_the_file_chunk_by_chunk(tmp_path):
    path = str(tmp_path / "clip.mp4")
    write_constant_video(path, 5.0, audio_seconds=5.0)
    chunks = list(play(path, fps=3.0, size=56, sample_rate=16000, chunk_seconds=2.0))
    assert [len(f) for f, _ in chunks] == [6, 6, 3]  # 15 frames at 3 fps, in 2-s chunks
    assert [w.size for _, w in chunks[:2]] == [32000, 32000] and 0 < chunks[2][1].size <= 16000 + 2048
    assert all(f.shape[1:] == (56, 56, 3) and f.dtype == np.uint8 for f, _ in chunks)


@pytest.mark.slow
def test_the_command_plays_a_long_file_to_the_end(tmp_path, capsys):
    """75 s of video with sound through `python -m modeling_affectverse.stream`: a row per update, the trajectory
    JSON (one entry per 5-s update) and its plot."""
    path = str(tmp_path / "long.mp4")
    write_constant_video(path, 75.0, audio_seconds=75.0)
    output = str(tmp_path / "out")
    assert main([path, "--model", "tiny", "--chunk-seconds", "5", "--output", output]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") >= 15 + 2 and "75.0s" in printed
    with open(os.path.join(output, "trajectory.json"), encoding="utf-8") as handle:
        record = json.load(handle)
    assert record["seconds"] == pytest.approx([5.0 * k for k in range(1, 16)], abs=0.05)
    assert all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in record["probabilities"])
    assert os.path.getsize(os.path.join(output, "trajectory.png")) > 1000
