"""AffectVerse performance suite: what the Emotion World Module costs against the plain / LoRA-only thinker.

    python -m benchmarks.run                    # CPU, a few minutes; writes benchmarks/results.json
    python -m benchmarks.run --gpu-7b           # on a GPU machine: the 7B-shaped random thinker in bf16

Every comparison runs both sides in one process, interleaved (A, B, B, A, ...), and reports medians and a ratio.
Not part of the test suite's pass/fail. Sections:

1. size: EWM parameters at the 7B preset (meta device) and FLOPs of the EWM (counted by torch's FlopCounterMode on
   a real forward at D=3584) versus the language model (analytic, 1024 tokens: 512 video, 384 audio, 128 text).
2. train_step: one optimizer step (forward, backward, AdamW) of AffectVerse (LoRA + EWM, imagination loss on, the
   clip cut at rho drawn as in training and its future encoded) versus the LoRA-only thinker on the whole clip, on
   `benchmarks/midsize.json` (hidden 768, 6 layers).
   Peak memory = parameters + gradients + optimizer states + tensors saved for backward (counted with
   `saved_tensors_hooks`; CPU has no allocator peak to read).
3. inference: prefill time and per-token decode time versus the plain thinker with the same weights.
4. data: clips per second for decode + preprocess (3 fps, 224 px) over the demo clips, with 1 and 2 workers.
5. syncs (issue 12): sync-inducing ops of a training step with and without the EWM, and the EWM forward alone.
6. wetr (issue 13): prefill time and peak memory with WETR's token refinement vs without, and the tokens left after
   each trigger. CPU peak memory is read from the profiler's allocation and free events (`profiled_peak_bytes`).
7. split (issue 21): one optimizer step with the clip split (the cut clip + its future segment, encoded for the
   targets) versus the paper's embedded split (the whole clip through the encoders, the future tokens dropped before
   the LLM), same weights, same rho, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import torch
from peft import LoraConfig, get_peft_model
from torch.utils.flop_counter import FlopCounterMode
from transformers import Qwen2_5OmniThinkerForConditionalGeneration

from benchmarks.syncs import count_ops, count_sync_ops, future_encoder_syncs
from modeling_affectverse import AffectVerseForConditionalGeneration
from modeling_affectverse.count_ewm import load_preset
from modeling_affectverse.ewm import EmotionWorldModule, count_parameters
from modeling_affectverse.media_affectverse import ClipSplit
from modeling_affectverse.modeling_affectverse import BatchLayout
from modeling_affectverse.partial_observation import FutureLayout, FutureSegments
from modeling_affectverse.processing_affectverse import task_question
from modeling_affectverse.tiny import MER_LABELS, build_tiny_processor, synthetic_clip, tiny_config
from modeling_affectverse.wetr import AUDIO, CONTENT, INSTRUCTION, QUERY_NEG, QUERY_POS, VISUAL, WETRConfig
from training.adapters import LLM_ATTENTION

HERE = os.path.dirname(os.path.abspath(__file__))
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LLM_ATTENTION)  # the paper's LoRA, every section
ROOT = os.path.dirname(HERE)
TARGETS = {
    "ewm_parameters": ("<=", 26e6),
    "ewm_flops_fraction": ("<=", 0.01),
    "train_step_time_ratio": ("<=", 1.10),
    "train_peak_memory_ratio": ("<=", 1.05),
    "prefill_time_ratio": ("<=", 1.05),
    "decode_time_per_token_ratio": ("<=", 1.02),
    "wetr_prefill_time_ratio": ("<=", 0.8),  # issue 13: "well below 1"
    "split_train_step_time_ratio": ("<=", 1.10),  # issue 21: the future segment costs encoder work, not LLM work
}


# -- 1. size ---------------------------------------------------------------------------------------------
def llm_flops(config, tokens: int) -> float:
    """Forward FLOPs of the thinker's language model over `tokens` tokens (matmuls + causal attention + LM head)."""
    text = config.get_text_config()
    d, ff, layers, vocab = text.hidden_size, text.intermediate_size, text.num_hidden_layers, text.vocab_size
    head_dim = d // text.num_attention_heads
    kv = text.num_key_value_heads * head_dim
    per_token_layer = 2 * (d * d + 2 * d * kv + d * d + 3 * d * ff)
    attention = 2 * 2 * d * tokens * tokens / 2  # QK^T and AV, causal: on average half the context
    return tokens * (layers * per_token_layer + 2 * d * vocab) + layers * attention


def size_section() -> dict:
    config = load_preset(os.path.join(ROOT, "configuration", "affectverse-7b.json"))
    with torch.device("meta"):
        parameters = count_parameters(EmotionWorldModule(config))
    torch.manual_seed(0)
    ewm = EmotionWorldModule(config).eval()
    tokens, video, audio = 1024, 512, 384
    hidden = torch.randn(1, tokens, config.ewm_hidden_size)
    video_mask = torch.zeros(1, tokens, dtype=torch.bool)
    video_mask[0, 64 : 64 + video] = True
    audio_mask = torch.zeros(1, tokens, dtype=torch.bool)
    audio_mask[0, 64 + video : 64 + video + audio] = True
    counter = FlopCounterMode(display=False)
    with counter:  # (under no_grad the counter's module tracker trips over parameters needing grad)
        ewm(hidden, video_mask, audio_mask, torch.tensor([0.5]))  # training shape: a past and a future
    ewm_flops = counter.get_total_flops()
    total = llm_flops(config, tokens)
    return {
        "ewm_parameters": parameters,
        "ewm_flops": ewm_flops,
        "llm_flops_1024_tokens": total,
        "ewm_flops_fraction": ewm_flops / total,
        "token_split": {"video": video, "audio": audio, "text": tokens - video - audio},
    }


# -- shared: the mid-size pair --------------------------------------------------------------------------
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


def interleaved(first, second, repeats: int) -> tuple[float, float]:
    """Median seconds of two callables, run alternately (ABBA...) after one warm-up each."""
    first(), second()
    times_a, times_b = [], []
    for i in range(repeats):
        order = ((first, times_a), (second, times_b)) if i % 2 == 0 else ((second, times_b), (first, times_a))
        for function, sink in order:
            start = time.perf_counter()
            function()
            sink.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


# -- 2. training step -------------------------------------------------------------------------------------
def saved_bytes(step) -> int:
    """Bytes of the tensors autograd saves for backward during `step()` (each storage counted once)."""
    seen, total = set(), [0]

    def pack(tensor):
        key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total[0] += key[1]
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total[0]


def state_bytes(model) -> int:
    """Parameters + gradients + AdamW's two moments of the trainable ones."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return params + 3 * sum(p.numel() * p.element_size() for p in trainable)


def total_loss(out) -> torch.Tensor:
    """The training objective of a forward's output: LM loss + imagination loss when there is one (lambda = 1)."""
    return out.loss if getattr(out, "imagination_loss", None) is None else out.loss + out.imagination_loss


def optimizer_step(model, optimizer, batch: dict) -> None:
    """Forward (LM + imagination loss when there is one), backward, AdamW step."""
    total_loss(model(**batch)).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def train_section(repeats: int) -> dict:
    affectverse, thinker, processor, inputs = midsize_pair(seconds=8.0, frame_size=112)
    ours = get_peft_model(affectverse, LoraConfig(**LORA, modules_to_save=["ewm"])).train()
    base = get_peft_model(thinker, LoraConfig(**LORA)).train()
    plain = inputs(False, "happy")
    generator = torch.Generator().manual_seed(0)
    drawn = [inputs(True, "happy", cut=float(0.3 + 0.7 * torch.rand(1, generator=generator))) for _ in range(8)]
    worst = inputs(True, "happy", cut=0.95)  # worst case for the target: the LLM sees almost the whole clip
    optimizers = {
        id(m): torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-5) for m in (ours, base)
    }
    cycle = iter(drawn * (2 * repeats + 4))

    def step_base():
        optimizer_step(base, optimizers[id(base)], plain)

    time_base, time_ours = interleaved(
        step_base, lambda: optimizer_step(ours, optimizers[id(ours)], next(cycle)), repeats
    )
    time_base_2, time_worst = interleaved(step_base, lambda: optimizer_step(ours, optimizers[id(ours)], worst), repeats)

    def forward_backward(model, batch):
        total_loss(model(**batch)).backward()

    memory_ours = state_bytes(ours) + saved_bytes(lambda: forward_backward(ours, worst))
    memory_base = state_bytes(base) + saved_bytes(lambda: forward_backward(base, plain))
    ours.zero_grad(set_to_none=True), base.zero_grad(set_to_none=True)
    trainable_ours = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    trainable_base = sum(p.numel() for p in base.parameters() if p.requires_grad)
    return {
        "sequence_tokens": {
            "whole_clip": int(plain["input_ids"].shape[1]),
            "cut_at_0.95": int(worst["input_ids"].shape[1]),
        },
        "trainable_parameters": {"affectverse": trainable_ours, "lora_only": trainable_base},
        "step_seconds": {
            "affectverse_rho_0.95": time_worst,
            "affectverse_rho_training": time_ours,
            "lora_only": time_base_2,
        },
        "train_step_time_ratio": time_worst / time_base_2,
        "train_step_time_ratio_rho_training": time_ours / time_base,
        "peak_memory_bytes": {"affectverse": memory_ours, "lora_only": memory_base},
        "train_peak_memory_ratio": memory_ours / memory_base,
    }


def split_section(repeats: int) -> dict:
    """Issue 21: one optimizer step of AffectVerse with the clip split vs the paper's embedded split, the same
    weights (two copies), the same clip and rho, interleaved. Clip: the cut clip through the encoders and the LLM, the
    next 2 s through the encoders again (no gradient) for the targets. Embedded: the whole clip through the encoders,
    the future tokens dropped before the LLM."""
    figures = {}
    clip_model, _, _, clip_inputs = midsize_pair(seconds=8.0, frame_size=112)
    embedded_model, _, _, embedded_inputs = midsize_pair(seconds=8.0, frame_size=112, ewm_split="embedded")
    embedded_model.load_state_dict(clip_model.state_dict())
    models = {
        name: get_peft_model(model, LoraConfig(**LORA, modules_to_save=["ewm"])).train()
        for name, model in (("clip", clip_model), ("embedded", embedded_model))
    }
    optimizers = {
        name: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-5) for name, m in models.items()
    }
    for rho in (0.5, 0.95):
        clip_batch = clip_inputs(True, "happy", cut=rho)
        embedded_batch = {**embedded_inputs(True, "happy"), "keep_ratio": torch.tensor([rho])}
        seconds_embedded, seconds_clip = interleaved(
            lambda b=embedded_batch: optimizer_step(models["embedded"], optimizers["embedded"], b),
            lambda b=clip_batch: optimizer_step(models["clip"], optimizers["clip"], b),
            repeats,
        )
        figures[f"rho_{rho:g}"] = {
            "step_seconds": {"clip": seconds_clip, "embedded": seconds_embedded},
            "time_ratio": seconds_clip / seconds_embedded,
            "llm_tokens": int(clip_batch["input_ids"].shape[1]),
            "future_video_frames": int(clip_batch["future_video_grid_thw"][0, 0]) * 2,
        }
    figures["split_train_step_time_ratio"] = max(figures[f"rho_{r}"]["time_ratio"] for r in ("0.5", "0.95"))
    return figures


# -- 3. inference -----------------------------------------------------------------------------------------
def inference_section(repeats: int, new_tokens: int = 32) -> dict:
    affectverse, thinker, _, inputs = midsize_pair(seconds=8.0, frame_size=112)
    affectverse.eval(), thinker.eval()
    with_beliefs, plain = inputs(True, None), inputs(False, None)

    @torch.no_grad()
    def prefill(model, batch):
        model(**batch, use_cache=True)

    @torch.no_grad()
    def generate_seconds(model, batch, n) -> float:
        start = time.perf_counter()
        model.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        return time.perf_counter() - start

    def per_token(model, batch) -> float:
        """Decode seconds per token: (N + 1 new tokens) - (1 new token), measured back to back, over N."""
        return (generate_seconds(model, batch, new_tokens + 1) - generate_seconds(model, batch, 1)) / new_tokens

    prefill_base, prefill_ours = interleaved(
        lambda: prefill(thinker, plain), lambda: prefill(affectverse, with_beliefs), repeats
    )
    decode = {"plain": [], "affectverse": []}
    for i in range(repeats):  # interleaved, alternating which goes first
        pairs = [("plain", thinker, plain), ("affectverse", affectverse, with_beliefs)]
        for name, model, batch in pairs if i % 2 == 0 else pairs[::-1]:
            decode[name].append(per_token(model, batch))
    decode_base, decode_ours = statistics.median(decode["plain"]), statistics.median(decode["affectverse"])
    return {
        "prompt_tokens": {
            "affectverse": int(with_beliefs["input_ids"].shape[1]),
            "plain": int(plain["input_ids"].shape[1]),
        },
        "prefill_seconds": {"affectverse": prefill_ours, "plain": prefill_base},
        "prefill_time_ratio": prefill_ours / prefill_base,
        "decode_seconds_per_token": {"affectverse": decode_ours, "plain": decode_base},
        "decode_time_per_token_ratio": decode_ours / decode_base,
    }


# -- 5. host syncs and the EWM alone (issue 12) ------------------------------------------------------------
def capture_ewm_call(model, batch: dict, **extra) -> tuple[tuple, dict]:
    """The arguments the model passes to its EWM in one forward of `batch` (captured by a pre-hook)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    captured = {}

    def hook(_, args, kwargs):
        captured["args"], captured["kwargs"] = args, kwargs

    handle = base.ewm.register_forward_pre_hook(hook, with_kwargs=True)
    with torch.no_grad():
        model(**batch, **extra)
    handle.remove()
    args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in captured["args"])
    return args, captured["kwargs"]


def ewm_alone(ewm, args, kwargs, device: str, repeats: int) -> dict:
    """Median forward and forward + backward seconds of the EWM on captured arguments, its top-level aten op count
    (a proxy for kernel launches) and its sync-inducing ops."""

    def forward():
        with torch.no_grad():
            ewm(*args, **kwargs)

    def forward_backward():
        out = ewm(*args, **kwargs)
        loss = out.belief_tokens.float().sum()
        if out.imagination_loss is not None:
            loss = loss + out.imagination_loss
        loss.backward()

    def timed(function) -> float:
        function()
        times = []
        for _ in range(repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            function()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    ops, _ = count_ops(forward)
    syncs, _ = count_sync_ops(forward)
    return {
        "forward_seconds": timed(forward),
        "forward_backward_seconds": timed(forward_backward),
        "forward_aten_ops": ops,
        "forward_sync_ops": syncs,
    }


def step_syncs(model, batch: dict, **extra) -> dict:
    """Sync-inducing ops in one forward + backward of `batch` (LM loss + imagination loss when there is one)."""

    def step():
        total_loss(model(**batch, **extra)).backward()

    counts, _ = count_sync_ops(step)
    model.zero_grad(set_to_none=True)
    return counts


def with_layout(batch: dict, config, keep_ratio=None) -> dict:
    """`batch` plus the host-side `BatchLayout` the collator adds (computed from CPU copies: no device read)."""
    ids, mask = batch["input_ids"].cpu(), batch["attention_mask"].cpu()
    rho = None if keep_ratio is None else torch.as_tensor(keep_ratio).cpu()
    grid = batch.get("video_grid_thw")
    layout = BatchLayout.read(
        ids,
        mask,
        BatchLayout.token_ids(config),
        rho,
        None if grid is None else grid.cpu(),
        config.vision_config.spatial_merge_size,
    )
    return {**batch, "batch_layout": layout}


def sync_section(repeats: int) -> dict:
    """Issue 12 on CPU, mid-size model, one 8 s clip: sync-inducing ops in one training step of AffectVerse (with the
    collator's layout, and without it) and of the same model fed no placeholders; the EWM forward alone (time,
    forward + backward time, aten ops, syncs) on the arguments one training forward gives it."""
    affectverse, _, processor, inputs = midsize_pair(seconds=8.0, frame_size=112)
    model = get_peft_model(affectverse, LoraConfig(**LORA, modules_to_save=["ewm"])).train()
    with_beliefs, plain = inputs(True, "happy", cut=0.5), inputs(False, "happy", cut=0.5)  # the clip cut at 4 s
    config = affectverse.config
    counts = {
        "affectverse_collator_layout": step_syncs(model, with_layout(with_beliefs, config)),
        "affectverse_no_layout": step_syncs(model, with_beliefs),
        "same_model_no_placeholders": step_syncs(model, plain),
        "encoders_on_the_future_segment": future_encoder_syncs(affectverse, with_beliefs),
    }
    args, kwargs = capture_ewm_call(model, with_beliefs)
    return {
        "training_step_sync_ops": counts,
        "ewm_alone_cut_at_0.5": ewm_alone(model.get_base_model().ewm, args, kwargs, "cpu", max(repeats, 20)),
        "sequence_tokens": int(with_beliefs["input_ids"].shape[1]),
    }


# -- 6. WETR (issue 13) ------------------------------------------------------------------------------------
def profiled_peak_bytes(function) -> int:
    """Peak bytes allocated on the CPU above the start while `function()` runs: the running sum of every
    allocation and free the profiler records (`profile_memory=True`), in time order. CPU has no allocator peak
    counter like `torch.cuda.max_memory_allocated`; this reads the same quantity from the events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        function()
    live = peak = 0
    for event in sorted(profiler.events(), key=lambda event: event.time_range.start):
        live += event.self_cpu_memory_usage  # an op's own allocations (+), a free event's release (-)
        peak = max(peak, live)
    return peak


def wetr_section(repeats: int) -> dict:
    """Prefill time and peak memory with WETR at the paper's ratios and delta vs without, on the mid-size model (6
    layers, so the trigger interval is 2: layers 2 and 4 refine; the 7B default of 9 needs more layers), the same
    prompt with the query spans, interleaved; and how many tokens the layers after each trigger see."""
    affectverse, _, processor, inputs = midsize_pair(seconds=8.0, frame_size=112)
    affectverse.eval()
    prompt = inputs(True, None, wetr_queries=True)
    roles = processor.token_roles(prompt["input_ids"])
    figures = wetr_prefill(affectverse, prompt, roles, WETRConfig(trigger_interval=2), repeats)
    return {"sequence_tokens": int(prompt["input_ids"].shape[1]), **figures}


# -- 4. data path -----------------------------------------------------------------------------------------
def data_section() -> dict:
    from torch.utils.data import DataLoader

    from modeling_affectverse.data.collator import AffectVerseCollator, MediaOptions
    from modeling_affectverse.data.demo_data import generate_demo_dataset
    from modeling_affectverse.data.manifest import load_manifest

    with tempfile.TemporaryDirectory() as folder:
        manifest = generate_demo_dataset(folder, num_clips=48, seed=0, progress=False)["emotion"]
        rows = load_manifest(manifest, cache_dir=os.path.join(folder, "cache"))
        processor = build_tiny_processor()
        processor.frame_size = 224
        collator = AffectVerseCollator.for_prediction(processor, with_answer=True, media=MediaOptions(fps=3.0))
        result = {}
        for workers in (1, 2):
            loader = DataLoader(rows, batch_size=4, num_workers=workers, collate_fn=collator)
            start = time.perf_counter()
            count = sum(batch["input_ids"].shape[0] for batch in loader)
            result[f"clips_per_second_{workers}_workers"] = count / (time.perf_counter() - start)
        return result


# -- 5. GPU: the 7B shape --------------------------------------------------------------------------------------
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
    roles = torch.full_like(input_ids, INSTRUCTION)
    roles[input_ids == config.video_token_id] = VISUAL
    roles[input_ids == config.audio_token_id] = AUDIO
    for b, ids in enumerate(input_ids.tolist()):
        beliefs = [i for i, token in enumerate(ids) if token == config.belief_token_id]
        first_end = next(i for i in beliefs if i + 1 not in beliefs)  # the first belief block's last position
        words = list(range(first_end + 1, beliefs[-1] - len(beliefs) // 2 + 1))
        content, spans = words[: -2 * span], words[-2 * span :]
        roles[b, content], roles[b, spans[:span]], roles[b, spans[span:]] = CONTENT, QUERY_POS, QUERY_NEG
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


def gpu_section(
    preset: str,
    device: str,
    dtype: torch.dtype,
    repeats: int,
    video_grid=(8, 16, 16),
    audio_frames: int = 1536,
    text: int = 120,
    train_batches=(1, 4),
    generate_batches=(1, 8, 32),
    new_tokens: int = 8,
    compile_ewm: bool = False,
) -> dict:
    """Issue 12's table on a random model of `preset`'s shape at ~1036 tokens (512 video, 384 audio with the
    defaults), all on ONE model (LoRA + EWM) so that A/B differ only in the input: with belief placeholders (the EWM
    runs, imagination loss on: the input stands for a cut clip, and a 2-s future segment is encoded for the targets,
    issue 21) or the same tokens without them and without a future (the thinker's path).

    Training step time and peak memory at each batch size (interleaved ABBA), the EWM forward and forward + backward
    alone, prefill and per-token decode ratios, greedy-generate samples/s, and sync-inducing ops per training step.
    `compile_ewm`: then also the EWM alone and the batch-1 training step with `compile_ewm()` (torch.compile).
    """
    config = load_preset(preset, belief_token_id=min(1023, load_preset(preset).get_text_config().vocab_size - 1))
    one = synthetic_batch(config, video_grid, audio_frames, text, device, dtype)
    future_grid = (min(3, video_grid[0]), video_grid[1], video_grid[2])  # 2 s at 3 fps: 3 temporal patches
    future_one = synthetic_future(config, future_grid, min(200, audio_frames), device, dtype)
    plain_one = {**one, "input_ids": one["input_ids"].clone()}
    plain_one["input_ids"][plain_one["input_ids"] == config.belief_token_id] = 20  # same length, no placeholders
    torch.manual_seed(0)
    model = AffectVerseForConditionalGeneration(config).to(device, dtype)
    model = get_peft_model(model, LoraConfig(**LORA, modules_to_save=["ewm"])).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    cuda = device == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def train_step(batch, extra):
        total_loss(model(**batch, **extra)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()

    def peak(function) -> int | None:
        if not cuda:
            return None
        sync()
        torch.cuda.reset_peak_memory_stats()
        function()
        return torch.cuda.max_memory_allocated()

    results = {
        "preset": preset,
        "device": torch.cuda.get_device_name() if cuda else device,
        "dtype": str(dtype),
        "sequence_tokens": int(one["input_ids"].shape[1]),
        "torch": torch.__version__,
    }

    def train_pair(size: int) -> dict:
        ours = with_layout(repeat_batch(one, size), config)
        future = repeat_future(future_one, size)
        plain = with_layout(repeat_batch(plain_one, size), config)
        seconds_plain, seconds_ours = interleaved(
            lambda: train_step(plain, {}), lambda: train_step(ours, future), repeats
        )
        memory_ours = peak(lambda: train_step(ours, future))
        memory_plain = peak(lambda: train_step(plain, {}))
        return {
            "step_seconds": {"affectverse": seconds_ours, "no_placeholders": seconds_plain},
            "step_time_ratio": seconds_ours / seconds_plain,
            "tokens_per_second": size * results["sequence_tokens"] / seconds_ours,
            "peak_memory_bytes": {"affectverse": memory_ours, "no_placeholders": memory_plain},
            "peak_memory_ratio": None if memory_plain is None else memory_ours / memory_plain,
        }

    for size in train_batches:
        results[f"train_batch_{size}"] = train_pair(size)
    base = model.get_base_model()
    results["training_step_sync_ops"] = {
        "affectverse": step_syncs(model, with_layout(one, config), **future_one),
        "no_placeholders": step_syncs(model, plain_one),
        "encoders_on_the_future_segment": future_encoder_syncs(base, future_one),
    }
    args, kwargs = capture_ewm_call(model, one, **future_one)
    results["ewm_alone"] = ewm_alone(model.get_base_model().ewm, args, kwargs, device, max(repeats, 20))

    model.eval()
    prompt = {k: v for k, v in one.items() if k != "labels"}
    plain_prompt = {k: v for k, v in plain_one.items() if k != "labels"}

    @torch.no_grad()
    def prefill(batch):
        model(**batch, use_cache=True)
        sync()

    @torch.no_grad()
    def generate_seconds(batch, n) -> float:
        sync()
        start = time.perf_counter()
        model.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        sync()
        return time.perf_counter() - start

    seconds_plain, seconds_ours = interleaved(lambda: prefill(plain_prompt), lambda: prefill(prompt), repeats)
    decode = {"ours": [], "plain": []}
    for i in range(repeats):
        pairs = [("plain", plain_prompt), ("ours", prompt)]
        for name, batch in pairs if i % 2 == 0 else pairs[::-1]:
            decode[name].append((generate_seconds(batch, new_tokens + 1) - generate_seconds(batch, 1)) / new_tokens)
    results["prefill"] = {
        "seconds": {"affectverse": seconds_ours, "no_placeholders": seconds_plain},
        "time_ratio": seconds_ours / seconds_plain,
    }
    ours_token, plain_token = statistics.median(decode["ours"]), statistics.median(decode["plain"])
    results["decode_per_token"] = {
        "seconds": {"affectverse": ours_token, "no_placeholders": plain_token},
        "time_ratio": ours_token / plain_token,
    }
    results["generate_samples_per_second"] = {}
    for size in generate_batches:
        batch = repeat_batch(prompt, size)
        generate_seconds(batch, new_tokens)  # warm-up at this shape
        seconds = statistics.median(generate_seconds(batch, new_tokens) for _ in range(max(1, repeats // 3)))
        results["generate_samples_per_second"][str(size)] = size / seconds
    # WETR at the preset's shape: n_r = 9, or the depth - 1 on a shallower preset
    wetr = WETRConfig(trigger_interval=min(9, len(base.model.language_model.layers) - 1))
    roles = synthetic_roles(config, prompt["input_ids"])
    results["wetr_prefill"] = wetr_prefill(base, prompt, roles, wetr, repeats, sync, peak)
    if compile_ewm:
        model.get_base_model().compile_ewm()
        model.train()
        results["compiled_ewm"] = {
            "ewm_alone": ewm_alone(model.get_base_model().ewm, args, kwargs, device, max(repeats, 20)),
            "train_batch_1": train_pair(1),
        }
    return results


def wetr_prefill(
    model,
    prompt: dict,
    roles: torch.Tensor,
    wetr: WETRConfig,
    repeats: int,
    sync=lambda: None,
    peak=profiled_peak_bytes,
) -> dict:
    """Issue 13: prefill of `prompt` with WETR (`wetr`, the prompt's token `roles`) vs without, interleaved; the
    peak memory of each (`peak(function)`: bytes, or None where it cannot be read); and the tokens the layers after
    each trigger see."""
    refined = {**prompt, "wetr_roles": roles}

    @torch.no_grad()
    def prefill(with_wetr: bool):
        if with_wetr:
            model.enable_wetr(wetr)
            model(**refined, use_cache=True)
            model.disable_wetr()
        else:
            model(**prompt, use_cache=True)
        sync()

    seconds_off, seconds_wetr = interleaved(lambda: prefill(False), lambda: prefill(True), repeats)
    memory_off, memory_wetr = peak(lambda: prefill(False)), peak(lambda: prefill(True))
    model.enable_wetr(wetr, record=True)
    with torch.no_grad():
        model(**refined)
    seen = [int((record["kept_index"] >= 0).sum()) for record in model.wetr_record]
    model.disable_wetr()
    return {
        "trigger_layers": wetr.trigger_layers(len(model.model.language_model.layers)),
        "tokens_after_each_trigger": seen,
        "seconds": {"wetr": seconds_wetr, "off": seconds_off},
        "time_ratio": seconds_wetr / seconds_off,
        "peak_memory_bytes": {"wetr": memory_wetr, "off": memory_off},
        "peak_memory_ratio": None if memory_off is None else memory_wetr / memory_off,
    }


def verdicts(figures: dict) -> dict:
    flat = {**figures.get("size", {}), **figures.get("train_step", {}), **figures.get("inference", {})}
    if "time_ratio" in figures.get("wetr", {}):
        flat["wetr_prefill_time_ratio"] = figures["wetr"]["time_ratio"]
    if "split_train_step_time_ratio" in figures.get("split", {}):
        flat["split_train_step_time_ratio"] = figures["split"]["split_train_step_time_ratio"]
    out = {}
    for name, (op, target) in TARGETS.items():
        if name in flat:
            out[name] = {"value": flat[name], "target": f"{op} {target:g}", "met": bool(flat[name] <= target)}
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--output", default=os.path.join(HERE, "results.json"))
    parser.add_argument(
        "--only", nargs="+", choices=["size", "train_step", "inference", "syncs", "wetr", "data", "split"]
    )
    parser.add_argument("--gpu-7b", action="store_true", help="run only the 7B-shaped bf16 comparison on CUDA")
    parser.add_argument("--compile-ewm", action="store_true", help="--gpu-7b: also measure with compile_ewm()")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    sections = {
        "size": size_section,
        "train_step": lambda: train_section(args.repeats),
        "inference": lambda: inference_section(args.repeats),
        "syncs": lambda: sync_section(args.repeats),
        "wetr": lambda: wetr_section(args.repeats),
        "data": data_section,
        "split": lambda: split_section(args.repeats),
    }
    figures = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or "unknown",
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": "cpu",
        }
    }
    if args.gpu_7b:
        if not torch.cuda.is_available():
            parser.error("--gpu-7b needs a CUDA device")
        preset = os.path.join(ROOT, "configuration", "affectverse-7b.json")
        figures = {"gpu_7b": gpu_section(preset, "cuda", torch.bfloat16, args.repeats, compile_ewm=args.compile_ewm)}
        print(json.dumps(figures, indent=1))
        with open(args.output.replace("results.json", "results-gpu.json"), "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
        return 0
    for name in args.only or sections:
        start = time.perf_counter()
        figures[name] = sections[name]()
        print(f"{name}: {json.dumps(figures[name], indent=1)}  ({time.perf_counter() - start:.0f} s)", flush=True)
    if args.only and os.path.isfile(args.output):  # a partial run updates its sections, keeps the others
        with open(args.output, encoding="utf-8") as handle:
            figures = {**json.load(handle), **figures}
    figures["targets"] = verdicts(figures)
    print("\n| target | value | goal | met |\n|---|---|---|---|")
    for name, verdict in figures["targets"].items():
        print(f"| {name} | {verdict['value']:.4g} | {verdict['target']} | {'yes' if verdict['met'] else 'NO'} |")
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(figures, handle, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
