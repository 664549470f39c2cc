"""Issue 21: partial observation that is really partial.

With the clip split (the default) a training sample is the clip cut at t* BEFORE the processor: what the LLM and the
EWM see equals the cut clip processed alone, nothing after t* moves the answer or the beliefs, and nothing reveals the
clip's real length. The embedded split (the paper's) is tested to leak, as documented.

Media go through the collator's own path; `decode_clip` is replaced by in-memory clips so that a clip's future can be
replaced exactly (an mp4 re-encode would change its past too).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modeling_affectverse.data import collator as collator_module
from modeling_affectverse.data.collator import AffectVerseCollator
from modeling_affectverse.data.manifest import load_manifest
from modeling_affectverse.ewm import AUDIO, VIDEO
from modeling_affectverse.media_affectverse import AudioClip, ClipMedia, VideoClip, observed_prefix
from modeling_affectverse.tiny import MER_LABELS, build_tiny_model, synthetic_clip

RATE, FPS = 16000, 3.0
SETTINGS = {"audio-in-video": ("clip", "clip"), "video": ("clip", None), "audio": (None, "clip")}


def row(name: str, setting: str = "audio-in-video", label: str = "happy") -> dict:
    video, audio = SETTINGS[setting]
    path = f"{name}.mp4"
    return {"id": name, "dataset": "demo", "split": "train", "task": "emotion", "label": label,
            "label_set": list(MER_LABELS), "subtitle": "a clip", "video": video and path,
            "audio": audio and path}  # fmt: skip


def media(frames: np.ndarray | None, wave: np.ndarray | None, from_video: bool = True) -> ClipMedia:
    video = None if frames is None else VideoClip(frames, FPS, np.arange(len(frames)) / FPS, len(frames) / FPS)
    audio = None if wave is None else AudioClip(wave, RATE, RATE, len(wave) / RATE)
    return ClipMedia(video, audio, from_video and video is not None and audio is not None)


@pytest.fixture
def clips(monkeypatch):
    """`{row id: ClipMedia}` that the collator decodes instead of files."""
    library: dict[str, ClipMedia] = {}

    def decode(video, audio, segment=None, **kwargs):
        name = (video or audio).removesuffix(".mp4")
        clip = library[name]
        return media(None if video is None else clip.video.frames, None if audio is None else clip.audio.waveform,
                     clip.audio_from_video)  # fmt: skip

    monkeypatch.setattr(collator_module, "decode_clip", decode)
    return library


def capture(model):
    """Hooks that record what the language model and each rollout receive: `{"lm": kwargs, VIDEO: args, ...}`."""
    seen = {}
    model.model.language_model.register_forward_pre_hook(lambda m, a, kw: seen.update(lm=kw), with_kwargs=True)
    for modality, module in ((VIDEO, model.ewm.video_imagination), (AUDIO, model.ewm.audio_imagination)):
        module.register_forward_pre_hook(lambda m, args, modality=modality: seen.update({modality: args}))
    return seen


def training_collator(processor, rho: float) -> AffectVerseCollator:
    """The training collator with rho fixed (U(rho, rho)) and no modality dropout."""
    return AffectVerseCollator.for_training(processor, keep_ratio_range=(rho, rho), modality_dropout=0.0, seed=0)


def expected_cut(frames, wave, rho: float) -> tuple[int | None, int | None]:
    """The cut by hand: t* = rho x the clip's length; whole 2-frame patches ending at or before t* (at least one),
    audio samples before t*."""
    length = max(0 if frames is None else len(frames) / FPS, 0 if wave is None else len(wave) / RATE)
    t = rho * length
    past_frames = None if frames is None else min(len(frames), max(2, 2 * math.floor(t * FPS / 2 + 1e-9)))
    past_samples = None if wave is None else math.ceil(t * RATE - 1e-9)
    return past_frames, past_samples


@pytest.mark.parametrize("rho", [0.3, 0.5, 0.7])
def test_a_training_sample_is_the_cut_clip_processed_alone(demo_manifest, rho):
    """For demo clips as audio-in-video, video-only and audio-only samples in one training batch: the LLM's input
    embeddings, positions and attention mask, and the EWM's context tokens, equal those of the clip cut with
    `observed_prefix` at the same t* and processed alone (atol 1e-5)."""
    model, processor = build_tiny_model()
    model.train()
    rows = list(load_manifest(demo_manifest))[:3]
    batch_rows = [rows[0], {**rows[1], "audio": None}, {**rows[2], "video": None, "segment": None}]
    seen = capture(model)
    collator = training_collator(processor, rho)
    batch = collator(batch_rows)
    assert "future_layout" in batch and "keep_ratio" not in batch
    with torch.no_grad():
        model(**batch)
    together = {key: value for key, value in seen.items()}
    for b, item in enumerate(batch_rows):
        decoded = collator._decode(item)  # the whole clip, decoded as the collator decodes it
        frames, wave = observed_prefix(decoded.frames, decoded.fps, decoded.wave, RATE, rho)
        assert (None if frames is None else len(frames), None if wave is None else len(wave)) == expected_cut(
            decoded.frames, decoded.wave, rho
        )
        alone_collator = AffectVerseCollator.for_prediction(processor, keep_ratio=rho, with_answer=True)
        alone = alone_collator([item])
        assert not any(key.startswith("future_") for key in alone)
        if frames is not None:  # the cut clip's own frames reached the processor
            assert alone["video_grid_thw"][0, 0] == math.ceil(len(frames) / 2)
        seen.clear()
        with torch.no_grad():
            model(**alone)
        mask = batch["attention_mask"][b].bool()
        assert int(mask.sum()) == alone["attention_mask"].shape[1]  # no padding when alone
        lm, lm_alone = together["lm"], seen["lm"]
        torch.testing.assert_close(lm["inputs_embeds"][b][mask], lm_alone["inputs_embeds"][0], rtol=0, atol=1e-5)
        torch.testing.assert_close(lm["position_ids"][:, b][:, mask], lm_alone["position_ids"][:, 0])
        assert torch.equal(lm["attention_mask"][b][mask], lm_alone["attention_mask"][0])
        ran = [modality for modality in (VIDEO, AUDIO) if modality in seen]  # the sample's own modalities
        assert len(ran) == (2 if b == 0 else 1)
        for modality in ran:
            context, context_mask = together[modality][0][b], together[modality][1][b]
            context_alone, mask_alone = seen[modality][0][0], seen[modality][1][0]
            assert int(context_mask.sum()) == int(mask_alone.sum())
            torch.testing.assert_close(context[context_mask], context_alone[mask_alone], rtol=0, atol=1e-5)


def two_clips(seconds=2.0, seed=0, other_seed=9):
    """A clip and the same clip whose media after 1.0 s are another clip's."""
    frames, wave = synthetic_clip(seconds, seed=seed)
    other_frames, other_wave = synthetic_clip(seconds, seed=other_seed)
    changed_frames, changed_wave = frames.copy(), wave.copy()
    changed_frames[3:] = 255 - other_frames[3:]  # frames from 1.0 s on
    changed_wave[RATE:] = other_wave[RATE:] * -2.0
    return (frames, wave), (changed_frames, changed_wave)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_no_future_reaches_the_answer_or_the_beliefs(clips, setting):
    """Clip split, training mode: replacing the media after t* (1.0 s of 2.0) changes neither the LM loss, the
    logits nor the belief tokens (exactly), and does change the imagination target."""
    model, processor = build_tiny_model()
    model.train()
    (frames, wave), (changed_frames, changed_wave) = two_clips()
    clips["a"], clips["b"] = media(frames, wave), media(changed_frames, changed_wave)
    collator = training_collator(processor, 0.5)
    first, second = collator([row("a", setting)]), collator([row("b", setting)])
    outputs = [model(**first), model(**second)]
    assert torch.equal(outputs[0].logits, outputs[1].logits)
    assert torch.equal(outputs[0].loss, outputs[1].loss)
    assert torch.equal(outputs[0].belief_tokens, outputs[1].belief_tokens)
    targets = [model.imagine(**inputs).batch_pairs for inputs in (first, second)]
    for modality in targets[0]:  # what the imagination is scored against does see the new future
        assert not torch.allclose(targets[0][modality].target, targets[1][modality].target)
    assert outputs[0].imagination_loss != outputs[1].imagination_loss


@pytest.mark.parametrize("setting", ["audio-in-video", "audio"])
def test_the_embedded_split_leaks_the_future_as_documented(clips, setting):
    """DOCUMENTS A LEAK (the paper's embedded split, kept for reproduction): the same replacement changes the logits,
    the loss and the belief tokens, because the audio encoder attends across the split within its 2-s chunks before
    the future tokens are dropped (docs/design-notes.md, issue 21)."""
    model, processor = build_tiny_model(ewm_split="embedded")
    model.train()
    (frames, wave), (changed_frames, changed_wave) = two_clips()
    clips["a"], clips["b"] = media(frames, wave), media(changed_frames, changed_wave)
    collator = training_collator(processor, 0.5)
    first, second = collator([row("a", setting)]), collator([row("b", setting)])
    assert float(first["keep_ratio"][0]) == 0.5 and "future_layout" not in first  # the model splits the embeddings
    outputs = [model(**first), model(**second)]
    assert outputs[0].kept_index is not None  # the future tokens were dropped for the LLM ...
    assert not torch.allclose(outputs[0].logits, outputs[1].logits)  # ... but the past ones had seen them
    assert outputs[0].loss != outputs[1].loss
    assert not torch.allclose(outputs[0].belief_tokens, outputs[1].belief_tokens)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_the_clip_length_does_not_leak(clips, setting):
    """Two clips identical up to t* = 1.2 s, 3.0 s and 2.0 s long: identical belief tokens, logits and query times in
    training mode (clip split); only the imagination targets (more future in the longer clip) may differ."""
    model, processor = build_tiny_model()
    model.train()
    frames, wave = synthetic_clip(3.0, seed=4)
    clips["long"] = media(frames, wave)
    clips["short"] = media(frames[:6], wave[: 2 * RATE])
    long = training_collator(processor, 0.4)([row("long", setting)])  # 0.4 x 3.0 s
    short = training_collator(processor, 0.6)([row("short", setting)])  # 0.6 x 2.0 s
    assert torch.equal(long["input_ids"], short["input_ids"])
    out_long, out_short = model(**long), model(**short)
    assert torch.equal(out_long.belief_tokens, out_short.belief_tokens)
    assert torch.equal(out_long.logits, out_short.logits)
    assert torch.equal(out_long.query_times, out_short.query_times)
    offsets = model.ewm.query_offsets()
    torch.testing.assert_close(out_long.query_times[0] - out_long.query_times[0, 0] + offsets[0], offsets)


def test_target_bins_cover_the_horizon_and_stop_at_the_clip_end(clips):
    """The 8 target bins cover [t_obs, t_obs + 2 s]; a clip that ends 0.8 s after the cut has targets in the first
    bins only (the rest masked in the loss and every statistic), and its loss is the mean over the filled bins."""
    model, processor = build_tiny_model()
    frames, wave = synthetic_clip(2.0, seed=4)
    clips["a"] = media(None, wave)
    batch = training_collator(processor, 0.6)([row("a", "audio")])  # t* = 1.2 s: 0.8 s of future audio
    segments = batch["future_layout"].audio
    assert segments.start == (1.2,) and segments.seconds == (0.8,)
    pairs = model.imagine(**batch).batch_pairs[AUDIO]
    filled = pairs.bins[0].tolist()
    assert filled == [True] * 3 + [False] * 5 or filled == [True] * 4 + [False] * 4  # 0.25 s bins up to ~0.8 s
    assert torch.all(pairs.target[0][~pairs.bins[0]] == 0)
    with torch.no_grad():
        out = model.imagine(**batch)
    cosine = torch.nn.functional.cosine_similarity(pairs.imagined[0], pairs.target[0][None], dim=-1)  # (K, Q)
    weight = pairs.bins[0].float()
    expected = ((pairs.imagined[0] - pairs.target[0]).pow(2).mean(-1) * weight).sum(-1) / weight.sum()
    expected = expected + model.config.ewm_cosine_weight * (1 - (cosine * weight).sum(-1) / weight.sum())
    torch.testing.assert_close(out.imagination_loss, expected.mean())


def test_the_future_is_encoded_by_the_base_encoders_without_gradient(clips):
    """The future inputs never carry gradient, and adapters on the encoders (the demo recipe's LoRA on the vision
    merger and the audio projection) are switched off for them: moving the adapter does not move the targets."""
    from peft import LoraConfig, get_peft_model

    model, processor = build_tiny_model()
    frames, wave = synthetic_clip(2.0, seed=2)
    clips["a"] = media(frames, wave)
    batch = training_collator(processor, 0.5)([row("a")])
    targets = r".*(visual\.merger\.mlp\.(0|2)|audio_tower\.proj)"
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, modules_to_save=["ewm"]))
    lora.train()
    base = lora.base_model.model
    start = base.imagine(**batch)
    before = start.batch_pairs
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # LoRA B starts at zero: now the adapters change the features
    moved = base.imagine(**batch)
    after = moved.batch_pairs
    assert before and not torch.allclose(moved.belief_tokens, start.belief_tokens)  # the EWM reads the adapted input
    for modality, pairs in before.items():
        assert torch.equal(after[modality].target, pairs.target)
        assert torch.equal(after[modality].copy_last, pairs.copy_last)
    out = lora(**batch)  # a training step: the targets carry no graph, the imagination loss does (through the past)
    assert out.imagination_loss.requires_grad
    assert all(pairs.target.grad_fn is None for pairs in base.imagine(**batch).batch_pairs.values())


def test_lora_cut_trains_on_cut_clips_and_its_adapter_holds_no_ewm(run_sft, demo_manifest, tmp_path):
    """`lora_cut` (no EWM, no placeholders, rho ~ U as the others): the batches of the collator its training run
    uses hold the cut clips' media tokens (the clip cut by `observed_prefix` at the batch's rho, alone) and no future
    inputs; its adapter holds no EWM weight. `lora_only` stays on whole clips (the paper's row a)."""
    from safetensors import safe_open

    from training.ablate import load_variants, variant_arguments

    variants = load_variants()
    assert variants["lora_cut"] == {"ewm_config": {"ewm_belief_construction": "none"}}
    assert variants["lora_only"]["keep_ratio_min"] == variants["lora_only"]["keep_ratio_max"] == 1.0
    output = str(tmp_path / "lora_cut")
    trainer = run_sft("--max_steps", "1", *variant_arguments(variants["lora_cut"]), output_dir=output)
    with safe_open(f"{output}/adapter_model.safetensors", "pt") as handle:
        keys = list(handle.keys())
    assert keys and not any(".ewm." in key for key in keys)
    collator, processor = trainer.data_collator, trainer.processing_class
    # the same truncation exposure as every EWM variant: the recipe's share of whole clips, nothing of its own
    assert collator.whole_clip_probability == trainer.args.whole_clip_probability == 0.75
    collator.modality_dropout = 0.0  # compare like with like (a dropped modality is a shorter clip too)
    collator.whole_clip_probability = 0.0  # here: the cut samples, every one of them
    rows = list(load_manifest(demo_manifest))[:4]
    batch = collator(rows)
    assert not any(key.startswith("future_") for key in batch) and "keep_ratio" not in batch
    assert not (batch["input_ids"] == processor.belief_token_id).any()
    video_id, audio_id = processor.tokenizer.convert_tokens_to_ids(["<|VIDEO|>", "<|AUDIO|>"])
    shorter = 0
    for b, (item, rho) in enumerate(zip(rows, collator.last_keep_ratio, strict=True)):
        alone = AffectVerseCollator.for_prediction(processor, keep_ratio=rho, with_answer=True)([item])
        for token in (video_id, audio_id):
            assert int((batch["input_ids"][b] == token).sum()) == int((alone["input_ids"] == token).sum())
        whole = AffectVerseCollator.for_prediction(processor, with_answer=True)([item])
        shorter += int((whole["input_ids"] == audio_id).sum()) > int((alone["input_ids"] == audio_id).sum())
    assert shorter >= 3  # rho < 1 really cut them (rho ~ U(0.3, 1))


def test_the_leak_report_finds_the_audio_leak_and_no_video_leak(demo_manifest):
    """`metrics.leak_report` on demo clips with random encoders: the embedded split's past video tokens (whole
    patches) equal the cut clip's, its past audio tokens do not (the audio encoder attends across the split); the
    start expression is read back from the reasoning text."""
    from metrics.leak_report import encoder_leak, start_expression

    model, processor = build_tiny_model()
    rows = list(load_manifest(demo_manifest))
    report = encoder_leak(model, processor, rows, [0.5])
    assert report["rho_0.5/video"]["relative_difference"] < 1e-6
    assert report["rho_0.5/audio"]["relative_difference"] > 0.05
    assert all(0 <= entry[key] <= 1 for entry in report.values() for key in ("probe_split", "probe_cut"))
    assert all(start_expression(r) in MER_LABELS and start_expression(r) != r["label"] for r in rows)
