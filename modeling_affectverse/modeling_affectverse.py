"""AffectVerse: the Qwen2.5-Omni thinker with the Emotion World Module inside `forward` / `generate`.

Three classes, split the way transformers splits its multimodal models (docs/architecture.md §2, "The model"):

- `AffectVersePreTrainedModel`: the weights (the thinker's, `ewm.*`, `prefusion.*`), their initialisation, loading
  from Qwen2.5-Omni checkpoints, and the thinker's own input mechanics (merging encoder outputs, 3D positions);
- `AffectVerseModel`: `forward` reads straight down, merge -> EWM -> inject -> language model, and returns the last
  hidden states (docs/architecture.md §4). In training the input is already the cut clip and the media after the
  cut arrive as separate `future_*` inputs, encoded only to score the imagination (§4.3). The paper's embedded split
  (`ewm_split="embedded"`) adds one step before the language model: `_drop_future`;
- `AffectVerseForConditionalGeneration`: the LM head, the loss and `generate`.

This file is copied as Hub remote code by `save_pretrained`: everything needed at load time (auto-class
registration, checkpoint-key conversion) lives here or in the files it imports with `from .x import Y`.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniThinkerForConditionalGeneration
from transformers.utils import ModelOutput, cached_file, can_return_tuple

from .batch_layout import BatchLayout, count_imagination_targets, labels_at
from .configuration_affectverse import AffectVerseConfig
from .ewm import AUDIO, VIDEO, BeliefAggregator, EmotionWorldModule, EWMOutput, TemporalImagination
from .partial_observation import (
    FutureLayout,
    audio_feature_length,
    drop_positions,
    encoder_adapters_active,
    frozen_encoders,
    future_segment,
    future_token_mask,
    to_device,
)
from .prefusion import ConvAttentionPrefusion, ZeroInitLinear
from .wetr import WETRConfig, wetr_language_model


@dataclass
class AffectVerseModelOutputWithPast(ModelOutput):
    """Output of [`AffectVerseModel.forward`].

    Attributes:
        last_hidden_state: `(B, L', D)` the language model's last hidden states; L' is shorter than the input when
            tokens were removed (the embedded split's future, WETR).
        past_key_values / hidden_states / attentions: as for the thinker.
        labels: the labels aligned with `last_hidden_state` (shortened with it), None when none were given.
        kept_index: `(B, L')` index into the input of each position the LLM saw (-1 on padding) when tokens were
            removed; None otherwise.
        ewm: what the Emotion World Module produced ([`EWMOutput`]), None when it did not run (no `<|belief|>`
            placeholders in the input: decode steps, plain-thinker use).
    """

    last_hidden_state: torch.FloatTensor | None = None
    past_key_values: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    labels: torch.LongTensor | None = None
    kept_index: torch.LongTensor | None = None
    ewm: EWMOutput | None = None


@dataclass
class AffectVerseCausalLMOutputWithPast(ModelOutput):
    """Output of [`AffectVerseForConditionalGeneration.forward`].

    Attributes:
        loss: LM cross-entropy on the label tokens (the imagination loss is NOT added; the trainer
            adds `lambda * imagination_loss`, docs/architecture.md §4.10).
        imagination_loss: MSE + w * (1 - cos) of the imagined vs. the pooled real future
            (None when nothing was held out as future, e.g. at inference).
        logits: `(B, L', V)`; L' is the truncated length when future tokens were dropped.
        past_key_values / hidden_states / attentions: as for the thinker.
        belief_tokens: `(B, n_max, D)` belief tokens (zero rows past `belief_counts`), None when the
            EWM did not run (no placeholders in the input: decode steps, plain-thinker use).
        belief_counts: `(B,)` belief tokens per sample (dual / single / 0).
        imagination_cosine: `(K,)` mean cosine of each rollout step with the real future.
        imagination_baselines: `(2,)` loss of copying the last observed token and of predicting the batch's mean
            target, on the same pairs as `imagination_loss` (skill: imagination_loss / baseline, below 1 is better).
        imagination_target_similarity: mean cosine between different samples' targets (near 1: collapsed targets).
        emotion_trajectory: `ewm_factorization="emotion_first"`: `(B, K, E)` the emotion distribution the rollout
            predicts at each step (the belief trajectory); None otherwise.
        emotion_loss: emotion-first: cross-entropy of the last step against `emotion_labels` + beta x consistency
            (not added to `loss`: the trainer adds `emotion_loss_weight x emotion_loss`).
        kept_index: `(B, L')` index into the input sequence of each position the LLM saw (-1 for
            padding), when tokens were removed (the embedded split's future, WETR); None otherwise.
        query_times: `(B, Q)` seconds from the clip's start of the future bins the EWM's rollout imagined: the end of
            what was observed plus fixed offsets over `ewm_horizon_seconds` (None when the EWM did not run).
    """

    loss: torch.FloatTensor | None = None
    imagination_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    belief_tokens: torch.FloatTensor | None = None
    belief_counts: torch.LongTensor | None = None
    imagination_cosine: torch.FloatTensor | None = None
    imagination_baselines: torch.FloatTensor | None = None
    imagination_target_similarity: torch.FloatTensor | None = None
    kept_index: torch.LongTensor | None = None
    emotion_trajectory: torch.FloatTensor | None = None
    emotion_loss: torch.FloatTensor | None = None
    query_times: torch.FloatTensor | None = None

    @staticmethod
    def ewm_fields(ewm_out: EWMOutput | None) -> dict:
        """The output fields an EWM pass fills (all None when it did not run)."""
        if ewm_out is None:
            return {}
        return {
            "imagination_loss": ewm_out.imagination_loss,
            "belief_tokens": ewm_out.belief_tokens,
            "belief_counts": ewm_out.belief_counts,
            "imagination_cosine": ewm_out.imagination_cosine,
            "imagination_baselines": ewm_out.imagination_baselines,
            "imagination_target_similarity": ewm_out.target_similarity,
            "emotion_trajectory": ewm_out.emotion_trajectory,
            "emotion_loss": ewm_out.emotion_loss,
            "query_times": ewm_out.query_times,
        }


INPUTS_DOCSTRING = r"""
        Arguments as for the thinker, plus the ones below. With the clip split (`ewm_split="clip"`, the default) the
        input is what was observed: in training the collator has already cut each clip at t* (docs/architecture.md
        §4.3), and the media after it arrive as the `future_*` inputs, encoded only to score the imagination (the LLM
        never sees them, nothing of them reaches the belief tokens). Without `<|belief|>` placeholders the model is
        exactly the thinker.

        keep_ratio (`float` or `torch.Tensor` of shape `(batch_size,)`, *optional*):
            Embedded split only (`ewm_split="embedded"`, the paper's token-level split): fraction rho of each
            video/audio stream kept as observed past; the rest is the imagination target and is removed from the
            LLM input. Default: U(ewm_keep_ratio_min, 1) per sample in training, 1 in eval. Refused below 1 with the
            clip split, where the clip is cut before the processor instead.
        batch_layout (`BatchLayout`, *optional*):
            Host-side counts of the batch (the collator's), so that the EWM, the injection and the truncation make
            the host wait for the device nowhere; read once per prefill when not given.
        emotion_labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Emotion-first factorization: each clip's label as an index into `config.emotion_labels` (-100: none),
            the target of `emotion_loss` (the collator adds it).
        wetr_roles (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            With WETR enabled (`enable_wetr`): each token's role (`processor.token_roles`). The logits then cover the
            refined sequence, `kept_index` maps it back to the input.
        future_pixel_values_videos / future_video_grid_thw (*optional*):
            Clip split: the processed video of each sample's future segment (the frames after the observed past, up
            to t* + `ewm_horizon_seconds`), one grid row per segment.
        future_input_features / future_feature_attention_mask (*optional*):
            Clip split: the processed audio of each sample's future segment (the samples from t* on, up to the
            horizon).
        future_layout (`FutureLayout`, *optional*):
            Which sample each future segment belongs to, where it starts and how long it is (the collator's).
"""


# the fields of the model's output the head passes on unchanged
PASSED_THROUGH = ("past_key_values", "hidden_states", "attentions", "kept_index")


def add_inputs_docstring(forward):
    """Append the description of AffectVerse's own forward arguments to a `forward`'s docstring."""
    forward.__doc__ = (forward.__doc__ or "") + "\n" + INPUTS_DOCSTRING
    return forward


MEDIA_INPUTS = (
    "input_features",
    "pixel_values",
    "pixel_values_videos",
    "image_grid_thw",
    "video_grid_thw",
    "feature_attention_mask",
    "audio_feature_lengths",
    "mm_encoder_outputs",
)
FUTURE_INPUTS = (
    "future_pixel_values_videos",
    "future_video_grid_thw",
    "future_input_features",
    "future_feature_attention_mask",
)


def media_of(arguments: dict) -> dict:
    """The observed media among a call's arguments, by the names the thinker's merge takes them under."""
    return {name: arguments.get(name) for name in MEDIA_INPUTS}


def future_of(arguments: dict) -> dict:
    """The clip split's `future_*` arguments, by the names of the media they are (no `future_`)."""
    return {name.removeprefix("future_"): arguments.get(name) for name in FUTURE_INPUTS}


def named_arguments(local_variables: dict) -> dict:
    """A forward's named arguments, from its `locals()` taken as its first statement (not `self`, not `kwargs`)."""
    return {k: v for k, v in local_variables.items() if k not in ("self", "kwargs", "__class__")}


@dataclass
class ForwardStep:
    """What one call of `AffectVerseModel.forward` knows of its input, decided once and read by each of its steps."""

    input_ids: torch.Tensor | None
    attention_mask: torch.Tensor | None
    media: dict
    prefill: bool  # no cache yet: the prompt (the EWM runs only here), not a decode step
    layout: BatchLayout | None  # read at prefill only
    use_audio_in_video: bool | None
    video_second_per_grid: torch.Tensor | None


HUB_KWARGS = ("cache_dir", "revision", "token", "local_files_only", "force_download")


def checkpoint_config(checkpoint: str | os.PathLike, **hub_kwargs) -> dict:
    """The raw `config.json` of a checkpoint folder or Hub id, through the Hub cache (offline mode honoured)."""
    path = cached_file(os.fspath(checkpoint), "config.json", **hub_kwargs)
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class AffectVersePreTrainedModel(Qwen2_5OmniThinkerForConditionalGeneration):
    """Qwen2.5-Omni thinker + Emotion World Module (`self.ewm`) + the optional pre-fusion (`self.prefusion`): the
    weights, their initialisation and loading, and the thinker's input mechanics. Every EWM weight is under `ewm.`.

    With `ewm_belief_construction="none"` there is no EWM (`self.ewm` is None): the model is the thinker.
    """

    config: AffectVerseConfig
    config_class = AffectVerseConfig
    _keys_to_ignore_on_load_unexpected = [r"^talker", r"^token2wav"]
    every_module_runs: bool = False  # sharded training: run_every_module

    def __init__(self, config: AffectVerseConfig):
        super().__init__(config)
        self.ewm = EmotionWorldModule(config) if config.has_ewm else None
        self.wetr: WETRConfig | None = None  # enable_wetr: a run-time option, not part of the checkpoint
        self.wetr_record: list | None = None
        self.prefusion = None
        if config.ewm_prefusion == "conv_attention":  # Emotion-LLaMAv2's pre-fusion, as an option
            self.prefusion = ConvAttentionPrefusion(
                config.ewm_hidden_size,
                config.ewm_prefusion_size,
                config.ewm_num_heads,
                config.ewm_prefusion_conv_blocks,
            )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, ZeroInitLinear):  # before the generic Linear init, which would draw it at random
            init.zeros_(module.weight)
            init.zeros_(module.bias)
            return
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, TemporalImagination):
            init.normal_(module.future_queries, mean=0.0, std=std)
        elif isinstance(module, BeliefAggregator):
            init.normal_(module.belief_queries, mean=0.0, std=std)
        elif isinstance(module, EmotionWorldModule):
            for name, how in module.own_inits:  # the tensors the EWM holds itself, as its options built them
                tensor = getattr(module, name)
                if how == "residual":
                    init.constant_(tensor, float(self.config.ewm_residual_scale_init))
                elif how == "normal":
                    init.normal_(tensor, mean=0.0, std=std)
                else:  # "projection": a fixed random projection, unit-norm rows on average
                    init.normal_(tensor, mean=0.0, std=1.0 / math.sqrt(tensor.shape[-1]))

    @classmethod
    def from_qwen_omni(
        cls, checkpoint: str | os.PathLike, belief_token_id: int | None = None, **kwargs
    ) -> AffectVerseForConditionalGeneration:
        """Build AffectVerse from a Qwen2.5-Omni checkpoint: full (thinker/talker) or thinker-only, a local folder or a
        Hub id (resolved through the Hub cache: `HF_HUB_OFFLINE=1` with a populated cache works offline).

        The config is built from the (nested) thinker config, so no backbone field silently falls
        back to a default (docs/architecture.md §7). Every backbone weight must come from the checkpoint: if any
        weight other than `ewm.*` is missing, this raises instead of leaving it random.

        Args:
            checkpoint: folder or Hub id with `config.json` and safetensors weights.
            belief_token_id: id of `<|belief|>` in the tokenizer (see `AffectVerseProcessor`); the
                input embeddings are resized if the id lies past the vocabulary.
            **kwargs: EWM config fields (`ewm_*`) and `from_pretrained` keyword arguments.
        """
        raw = checkpoint_config(checkpoint, **{k: kwargs[k] for k in HUB_KWARGS if k in kwargs})
        thinker = raw.get("thinker_config", raw)
        if thinker.get("model_type") not in ("qwen2_5_omni_thinker", "affectverse", None):
            raise ValueError(
                f"{checkpoint}/config.json is neither a Qwen2.5-Omni nor a thinker config "
                f"(model_type={raw.get('model_type')!r})"
            )
        thinker = {k: v for k, v in thinker.items() if k not in ("model_type", "architectures", "auto_map")}
        config_fields = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("ewm_")}
        config = AffectVerseConfig(**thinker, **config_fields)
        kwargs["output_loading_info"] = True
        model, info = super().from_pretrained(checkpoint, config=config, **kwargs)
        foreign = sorted(k for k in info["missing_keys"] if not k.startswith(("ewm.", "prefusion.")))
        if foreign:
            raise ValueError(
                f"{checkpoint}: {len(foreign)} backbone weights were not found in the checkpoint and would be "
                f"left random, e.g. {foreign[:5]}"
            )
        model.loading_info = info
        if belief_token_id is not None:
            model.set_belief_token_id(belief_token_id)
        return model

    def init_ewm(self, seed: int | None = None) -> None:
        """Re-initialise every EWM weight (as `post_init` does), drawn from `seed` when given.

        Training runs call it with their seed: a base built with a fixed seed (the tiny default) would otherwise give
        every run the same EWM start, and seeds would differ only in LoRA and data order.
        """
        if self.ewm is None and self.prefusion is None:
            return
        if seed is not None:
            torch.manual_seed(seed)
        modules = [
            *(self.ewm.modules() if self.ewm is not None else []),
            *(self.prefusion.modules() if self.prefusion is not None else []),
        ]
        for module in modules:
            for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
                if hasattr(tensor, "_is_hf_initialized"):
                    del tensor._is_hf_initialized  # the init functions skip flagged tensors
            self._init_weights(module)

    def set_belief_token_id(self, belief_token_id: int) -> None:
        """Record the `<|belief|>` id, growing the input/output embeddings if it lies past the vocabulary."""
        vocab_size = self.config.get_text_config().vocab_size
        if belief_token_id >= vocab_size:
            self.resize_token_embeddings(belief_token_id + 1)
        self.config.belief_token_id = int(belief_token_id)

    def _encoders(self) -> list[nn.Module]:
        return [self.model.audio_tower, self.model.visual]

    def run_every_module(self, enabled: bool = True) -> None:
        """Sharded training (DeepSpeed ZeRO-3, FSDP): every process must call the same modules in the same order on
        every micro-batch, because each call gathers that module's weight shards from all processes. With this on,
        a micro-batch without video or audio still runs that encoder once on a minimal placeholder input (its output
        enters the sequence times 0), the encoders run for the imagination's targets whatever the batch holds, and
        the EWM adds 0 x each of its trainable parameters, so every process produces every gradient, and a
        micro-batch without a future returns an imagination loss of 0 on the graph, so every process's backward
        passes the same outputs (docs/architecture.md §7, "Scale-out"). Nothing a loss or an output sees changes."""
        self.every_module_runs = enabled
        for module in self.modules():
            if isinstance(module, EmotionWorldModule):  # PEFT's modules_to_save copy too
                module.every_parameter_used = enabled

    def _idle_audio(self) -> torch.Tensor:
        """0 x the audio encoder's output on one window of silence (a scalar): the call a micro-batch without audio
        makes in sharded training, where the real call would be. Device and dtype are read off the encoder's own
        weight attributes, which gather nothing under ZeRO-3."""
        weight = next(self.model.audio_tower.parameters())
        window = 2 * self.config.audio_config.n_window
        features = weight.new_zeros(1, self.config.audio_config.num_mel_bins, window)
        mask = torch.ones(1, window, dtype=torch.long, device=weight.device)
        return 0.0 * self.model.get_audio_features(features, mask, return_dict=True).last_hidden_state.sum()

    def _idle_video(self) -> torch.Tensor:
        """0 x the vision encoder's output on one black merged patch: as `_idle_audio`, for video."""
        weight = next(self.model.visual.parameters())
        vision, merge = self.config.vision_config, self.config.vision_config.spatial_merge_size
        patch = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
        pixels = weight.new_zeros(merge * merge, patch)
        grid = torch.tensor([[1, merge, merge]], device=weight.device)
        return 0.0 * torch.cat(self.model.get_video_features(pixels, grid, return_dict=True).pooler_output).sum()

    def _merge_multimodal(
        self,
        input_ids,
        input_features,
        pixel_values,
        pixel_values_videos,
        image_grid_thw,
        video_grid_thw,
        feature_attention_mask,
        audio_feature_lengths,
        mm_encoder_outputs,
        **kwargs,
    ) -> torch.Tensor:
        """Token embeddings with the encoders' outputs placed at their placeholders (the thinker's methods)."""
        thinker = self.model
        inputs_embeds = thinker.get_input_embeddings()(input_ids)
        idle = 0.0  # sharded training: each encoder is called in its place, on a placeholder when the batch has none
        if input_features is None and self.every_module_runs:
            idle = idle + self._idle_audio()
        if input_features is not None:
            audio = thinker.get_audio_features(
                input_features, feature_attention_mask, audio_feature_lengths, return_dict=True, **kwargs
            ).last_hidden_state
            _, _, audio_mask = thinker.get_placeholder_mask(input_ids, inputs_embeds=inputs_embeds)
            if int(audio_mask.sum()) != audio.shape[0]:
                raise ValueError(
                    f"input_features give {audio.shape[0]} audio tokens but input_ids hold "
                    f"{int(audio_mask.sum())} audio placeholders"
                )
            inputs_embeds = inputs_embeds.masked_scatter(audio_mask, audio.to(inputs_embeds.dtype))
        encoded = dict(mm_encoder_outputs or {})
        if encoded.get("image") is None and pixel_values is not None:
            encoded["image"] = thinker.get_image_features(pixel_values, image_grid_thw, return_dict=True, **kwargs)
        if encoded.get("video") is None and pixel_values_videos is not None:
            encoded["video"] = thinker.get_video_features(
                pixel_values_videos, video_grid_thw, return_dict=True, **kwargs
            )
        elif encoded.get("video") is None and self.every_module_runs:
            idle = idle + self._idle_video()
        for name, index in (("image", 0), ("video", 1)):
            if encoded.get(name) is None:
                continue
            features = torch.cat(encoded[name].pooler_output, dim=0).to(inputs_embeds.dtype)
            masks = thinker.get_placeholder_mask(
                input_ids, inputs_embeds=inputs_embeds, **{f"{name}_features": features}
            )
            inputs_embeds = inputs_embeds.masked_scatter(masks[index], features)
        return inputs_embeds if isinstance(idle, float) else inputs_embeds + idle.to(inputs_embeds.dtype)

    def _position_ids(
        self,
        input_ids,
        attention_mask,
        media: dict,
        use_audio_in_video,
        video_second_per_grid,
        layout=None,
        prefill=True,
        past_key_values=None,
        inputs_embeds=None,
    ) -> torch.Tensor | None:
        """3D positions: the thinker's, except for a batch mixing interleaved audio-in-video samples with plain
        (silent) video samples.

        The thinker takes one `use_audio_in_video` flag per call, and under it a video without its audio gets text
        positions, silently. Modality dropout and silent clips make such batches in training, so each sample is
        positioned alone with its own layout (read from its tokens: `<|vision_bos|><|audio_bos|>` is interleaved).
        """
        video_grid_thw, audio_lengths = media["video_grid_thw"], media["audio_feature_lengths"]
        if media["feature_attention_mask"] is not None:
            audio_lengths = media["feature_attention_mask"].sum(1)
        mixed = bool(use_audio_in_video) and input_ids is not None and attention_mask is not None
        mixed = mixed and video_grid_thw is not None and prefill
        config = self.config
        if mixed:
            if layout is None:
                layout = BatchLayout.read(input_ids, attention_mask, BatchLayout.token_ids(config))
            plain, interleaved = layout.plain_video, layout.interleaved
            mixed = any(plain) and any(interleaved)
        if not mixed:
            return self.model.compute_3d_position_ids(
                input_ids=input_ids,
                image_grid_thw=media["image_grid_thw"],
                video_grid_thw=video_grid_thw,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                past_key_values=past_key_values,
                use_audio_in_video=use_audio_in_video,
                audio_feature_lengths=audio_lengths,
                video_second_per_grid=video_second_per_grid,
            )
        if media["pixel_values"] is not None:
            raise ValueError("images cannot be mixed into a batch of interleaved and plain video samples")
        videos = (input_ids == config.vision_start_token_id).sum(1).tolist()  # per sample
        audios = (input_ids == config.audio_start_token_id).sum(1).tolist()
        positions, deltas, v0, a0 = [], [], 0, 0
        for i, (nv, na) in enumerate(zip(videos, audios, strict=True)):
            position, delta = self.model.get_rope_index(
                input_ids[i : i + 1],
                None,
                video_grid_thw[v0 : v0 + nv] if nv else None,
                attention_mask[i : i + 1],
                interleaved[i],
                audio_lengths[a0 : a0 + na] if na else None,
                video_second_per_grid[v0 : v0 + nv] if nv and video_second_per_grid is not None else None,
            )
            positions.append(position)  # (3, 1, L)
            deltas.append(delta.reshape(1, 1))
            v0, a0 = v0 + nv, a0 + na
        self.model.rope_deltas = torch.cat(deltas).to(input_ids.device)  # what decode steps continue from
        return torch.cat(positions, dim=1)

    def _check_inputs(self, input_ids, inputs_embeds, media: dict, attention_mask, position_ids, prefill: bool) -> None:
        """Clear errors for inputs that the thinker would otherwise mis-handle silently or cryptically."""
        if media["pixel_values_videos"] is not None and media["video_grid_thw"] is None:
            raise ValueError("pixel_values_videos were given without video_grid_thw: the video token grid is unknown")
        if media["pixel_values"] is not None and media["image_grid_thw"] is None:
            raise ValueError("pixel_values were given without image_grid_thw: the image token grid is unknown")
        if input_ids is None and inputs_embeds is not None and self.ewm is not None and prefill:
            raise ValueError(
                "AffectVerse needs input_ids at prefill: the <|belief|>, video and audio positions the Emotion "
                "World Module reads are found in them (inputs_embeds alone would skip it silently). Pass "
                "input_ids, with or without inputs_embeds"
            )
        if attention_mask is None and position_ids is None and prefill and input_ids is not None:
            cfg = self.config
            multimodal = (input_ids == cfg.video_token_id) | (input_ids == cfg.audio_token_id)
            multimodal |= input_ids == cfg.image_token_id
            if multimodal.any():
                raise ValueError(
                    "attention_mask is required for inputs with video/audio/image tokens: without it the thinker "
                    "silently falls back to 1-D positions instead of 3D mRoPE"
                )

    def enable_wetr(self, config: WETRConfig | None = None, record: bool = False) -> None:
        """Turn on WETR (training-free token refinement, seed 003) for forward passes: at the trigger layers the
        tokens that carry no emotion evidence leave the sequence and the kept ones are reweighted. `record=True`
        keeps, per forward, the kept positions and gamma of every trigger layer in `wetr_record`. `generate`
        refines the prompt once and decodes from the refined cache."""
        config = config or WETRConfig()
        config.check(len(self.model.language_model.layers))
        self.wetr = config
        self.wetr_record = [] if record else None

    def disable_wetr(self) -> None:
        self.wetr, self.wetr_record = None, None

    def belief_stream(self, processor, **kwargs):
        """A `belief_stream.BeliefStream` on this model: belief updates as a clip arrives chunk by chunk, reusing the KV
        cache of the media already seen; each update equals the one-shot scoring of the clip so far."""
        from .belief_stream import BeliefStream

        return BeliefStream(self, processor, **kwargs)

    def compile_ewm(self, **compile_kwargs) -> int:
        """`torch.compile` the EWM's numeric cores (`EmotionWorldModule.compile_cores`), also inside a PEFT wrapper
        (every EWM copy: `modules_to_save` keeps one per adapter). Off by default; returns how many EWMs were
        compiled."""
        ewms = [m for m in self.modules() if isinstance(m, EmotionWorldModule)]
        for ewm in ewms:
            ewm.compile_cores(**compile_kwargs)
        return len(ewms)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`save_pretrained` that also lists the extra auto classes in `config.auto_map` (docs/architecture.md §7)."""
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.setdefault("AutoConfig", "configuration_affectverse.AffectVerseConfig")
        for auto_class in ("AutoModel", "AutoModelForCausalLM"):
            auto_map[auto_class] = "modeling_affectverse.AffectVerseForConditionalGeneration"
        self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)


class AffectVerseModel(AffectVersePreTrainedModel):
    """The thinker with the EWM in its forward: merge -> EWM -> inject -> language model, returning the last hidden
    states (no LM head: `AffectVerseForConditionalGeneration` adds it and the loss)."""

    @can_return_tuple
    @add_inputs_docstring
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        input_features: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        audio_feature_lengths: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        use_audio_in_video: bool | None = None,
        video_second_per_grid: torch.LongTensor | None = None,
        mm_encoder_outputs: dict | None = None,
        keep_ratio: torch.Tensor | float | None = None,
        batch_layout: BatchLayout | None = None,
        emotion_labels: torch.LongTensor | None = None,
        wetr_roles: torch.LongTensor | None = None,
        future_pixel_values_videos: torch.Tensor | None = None,
        future_video_grid_thw: torch.LongTensor | None = None,
        future_input_features: torch.Tensor | None = None,
        future_feature_attention_mask: torch.Tensor | None = None,
        future_layout: FutureLayout | None = None,
        **kwargs,
    ) -> AffectVerseModelOutputWithPast:
        """Merge -> EWM -> inject -> language model: the last hidden states, with what the EWM produced."""
        arguments = named_arguments(locals())
        step = self._step(arguments)
        self._check_inputs(input_ids, inputs_embeds, step.media, attention_mask, position_ids, step.prefill)
        inputs_embeds, position_ids, unfused = self._embed(step, inputs_embeds, position_ids, past_key_values, **kwargs)
        ewm_out = kept_index = None
        if self.every_module_runs and self.ewm is not None and step.layout is not None and not any(step.layout.belief):
            raise ValueError(
                "sharded training (run_every_module) runs the EWM on every micro-batch, but this one has no "
                "<|belief|> placeholder (text-only rows only): leave text-only rows out of a sharded run"
            )
        if step.layout is not None and self.config.belief_token_id is not None and any(step.layout.belief):
            ewm_out, rho_host = self._observe(
                step,
                inputs_embeds,
                position_ids,
                unfused,
                keep_ratio,
                future_of(arguments),
                future_layout,
                emotion_labels,
            )
            inputs_embeds = self._inject_beliefs(step, inputs_embeds, ewm_out)
            if rho_host is not None:  # the embedded split: the LLM sees only the past tokens
                shortened = self._drop_future(step, inputs_embeds, labels, rho_host, ewm_out)
                if shortened is not None:
                    inputs_embeds, attention_mask, position_ids, labels, kept_index = shortened
                    use_cache, past_key_values = False, None
        hidden, past_key_values, hidden_states, attentions, refined_index = self._language_model(
            inputs_embeds, attention_mask, position_ids, past_key_values, use_cache, step.prefill, wetr_roles, **kwargs
        )
        if refined_index is not None:  # WETR: the labels of the refined sequence's positions
            kept_index, labels = refined_index, None if labels is None else labels_at(labels, refined_index)
        return AffectVerseModelOutputWithPast(
            last_hidden_state=hidden,
            past_key_values=past_key_values,
            hidden_states=hidden_states,
            attentions=attentions,
            labels=labels,
            kept_index=kept_index,
            ewm=ewm_out,
        )

    def _step(self, arguments: dict) -> ForwardStep:
        """What this call is: prefill or a decode step (decided here, once), its media, the batch's layout at prefill,
        and `use_audio_in_video` read from the tokens when the caller left it out."""
        input_ids, attention_mask = arguments["input_ids"], arguments["attention_mask"]
        cache = arguments["past_key_values"]
        prefill = cache is None or cache.get_seq_length() == 0
        media = media_of(arguments)
        layout = self._layout(
            input_ids,
            attention_mask,
            prefill,
            arguments["keep_ratio"],
            arguments["batch_layout"],
            media["video_grid_thw"],
        )
        use_audio_in_video = arguments["use_audio_in_video"]
        if use_audio_in_video is None and layout is not None and media["video_grid_thw"] is not None:
            # left out, the thinker would silently position an interleaved clip as plain video
            use_audio_in_video = any(layout.interleaved)
        return ForwardStep(
            input_ids, attention_mask, media, prefill, layout, use_audio_in_video, arguments["video_second_per_grid"]
        )

    def _layout(
        self, input_ids, attention_mask, prefill: bool, keep_ratio, given: BatchLayout | None, video_grid_thw=None
    ) -> BatchLayout | None:
        """The batch's `BatchLayout` at prefill (the caller's when it fits, else read once), None on decode steps.

        The embedded split keeps whole video patches, so it needs the layout's video patch sizes."""
        if input_ids is None or not prefill:
            return None
        embedded = self.config.ewm_split == "embedded" and video_grid_thw is not None
        fits = given is not None and given.batch_size == input_ids.shape[0]
        if fits and (keep_ratio is None or given.keep_ratio is not None):
            if not embedded or given.video_patch is not None:
                return given
        merge = self.config.vision_config.spatial_merge_size
        token_ids = BatchLayout.token_ids(self.config)
        grid = video_grid_thw if embedded else None
        return BatchLayout.read(input_ids, attention_mask, token_ids, keep_ratio, grid, merge)

    def _embed(self, step: ForwardStep, inputs_embeds, position_ids, past_key_values, **kwargs):
        """Merged input embeddings and 3D positions of the full sequence (the thinker's own methods), and the
        embeddings before the pre-fusion when it ran (None otherwise): the EWM's frozen targets are read there."""
        unfused, input_ids, layout = None, step.input_ids, step.layout
        if inputs_embeds is None:
            inputs_embeds = self._merge_multimodal(input_ids, **step.media, **kwargs)
            if self.prefusion is not None and layout is not None and (any(layout.video) or any(layout.audio)):
                masks = [input_ids == self.config.video_token_id, input_ids == self.config.audio_token_id]
                unfused = inputs_embeds
                inputs_embeds = self.prefusion(inputs_embeds, masks, [max(layout.video), max(layout.audio)])
        if position_ids is None:
            position_ids = self._position_ids(
                input_ids,
                step.attention_mask,
                step.media,
                step.use_audio_in_video,
                step.video_second_per_grid,
                layout,
                step.prefill,
                past_key_values,
                inputs_embeds,
            )
        return inputs_embeds, position_ids, unfused

    def _observe(
        self,
        step: ForwardStep,
        inputs_embeds,
        position_ids,
        unfused,
        keep_ratio,
        future: dict,
        future_layout,
        emotion_labels=None,
    ) -> tuple[EWMOutput, tuple | None]:
        """The EWM on the merged embeddings of a prefill, each token's time read off the thinker's temporal
        positions; scored against the embedded split's held-out tokens (rho) or the clip split's encoded future, with
        the frozen target states when there is something to score. Returns `(EWMOutput, rho on the host or None)`."""
        if self.ewm is None:
            raise ValueError(
                "the input holds <|belief|> placeholders but this model has no Emotion World Module "
                "(ewm_belief_construction='none'): build its inputs with a processor that inserts none "
                "(AffectVerseProcessor.follow_model_config(config), or belief_placeholders=False)"
            )
        config, layout, input_ids = self.config, step.layout, step.input_ids
        rho, rho_host = self._keep_ratio(keep_ratio, layout, input_ids.device)
        segments = self._future_segments(future, future_layout, layout.batch_size) if config.imagines else None
        target_states = unfused
        if config.imagines and (rho is not None or segments is not None or self.every_module_runs):
            target_states = self._target_states(step, inputs_embeds if unfused is None else unfused)
        # the temporal row of the 3D positions counts 1 / position_id_per_seconds per step for audio and video alike
        times = None if position_ids is None else position_ids[-3].float() / config.position_id_per_seconds
        plan = layout.stream_plan(rho_host, None if segments is None else future_layout)
        seconds = layout.token_seconds(step.video_second_per_grid, config.position_id_per_seconds, input_ids.device)
        video_mask, audio_mask = input_ids == config.video_token_id, input_ids == config.audio_token_id
        out = self.ewm(
            inputs_embeds,
            video_mask,
            audio_mask,
            rho,
            times,
            plan,
            emotion_labels,
            None,
            target_states,
            segments,
            seconds,
        )
        return out, rho_host

    def _keep_ratio(self, keep_ratio, layout: BatchLayout, device) -> tuple[torch.Tensor | None, tuple | None]:
        """Embedded split: rho per sample on the device and on the host: given by the caller (its host copy from the
        layout), else U(rho_min, 1) drawn on the host in training (so its split is known without a read), else None
        (= 1). Clip split: the input is already the cut clip, there is nothing to split (None); rho < 1 is refused."""
        if self.config.ewm_split == "clip":
            if keep_ratio is not None and any(rho < 1 for rho in layout.keep_ratio):
                raise ValueError(
                    "keep_ratio < 1 splits the merged embeddings (ewm_split='embedded'); this model splits the clip "
                    "before the processor (ewm_split='clip'): cut the clip (media_affectverse.observed_prefix, the "
                    "collator's keep_ratio / training draws) and pass its future as future_* inputs"
                )
            return None, None
        if keep_ratio is None:
            if not self.training:
                return None, None
            low = float(self.config.ewm_keep_ratio_min)
            drawn = low + (1.0 - low) * torch.rand(layout.batch_size)  # the CPU generator
            return to_device(drawn, device), tuple(drawn.tolist())
        host = layout.keep_ratio
        if any(not 0 < rho <= 1 for rho in host):
            raise ValueError(f"keep_ratio must lie in (0, 1], got {list(host)}")
        return torch.as_tensor(keep_ratio, dtype=torch.float32, device=device).expand(layout.batch_size), host

    @torch.no_grad()
    def _future_segments(self, future: dict, future_layout: FutureLayout | None, batch_size: int) -> dict | None:
        """Clip split: the future inputs encoded by the base encoders (no gradient, adapters off) and laid out per
        sample (`partial_observation.future_segment`): the imagination's targets. The LLM never sees them."""
        given = {name: value for name, value in future.items() if value is not None}
        if not given:
            if self.every_module_runs and self.config.ewm_split == "clip":  # the calls a batch with a future makes
                with frozen_encoders(self._encoders()):
                    self._idle_video()
                    self._idle_audio()
            return None
        if future_layout is None or future_layout.batch_size != batch_size:
            raise ValueError(
                "future inputs need the future_layout that describes them (which sample each segment belongs to, where "
                "it starts): the collator adds it (AffectVerseCollator with the clip split)"
            )
        if self.config.ewm_split != "clip":
            raise ValueError("future inputs are the clip split's (ewm_split='clip'); this model splits the embeddings")
        segments = {}
        with frozen_encoders(self._encoders()):
            if given.get("pixel_values_videos") is not None:
                if given.get("video_grid_thw") is None:
                    raise ValueError("future_pixel_values_videos were given without future_video_grid_thw")
                pixels, grid = given["pixel_values_videos"], given["video_grid_thw"]
                videos = self.model.get_video_features(pixels, grid, return_dict=True)
                features = torch.cat(videos.pooler_output, dim=0)
                segments[VIDEO] = future_segment(features, future_layout.video, batch_size)
            elif self.every_module_runs:  # sharded training: each encoder is called in its place
                self._idle_video()
            if given.get("input_features") is not None:
                features, mask = given["input_features"], given.get("feature_attention_mask")
                audio = self.model.get_audio_features(features, mask, return_dict=True)
                segments[AUDIO] = future_segment(audio.last_hidden_state, future_layout.audio, batch_size)
            elif self.every_module_runs:
                self._idle_audio()
        return segments

    def _target_states(self, step: ForwardStep, unfused: torch.Tensor) -> torch.Tensor:
        """The embeddings the frozen imagination targets of the observed past are read from (the copy-last baseline,
        the embedded split's future): the merged embeddings before any trained module (`unfused`: before the
        pre-fusion). With adapters on the encoders (a recipe's LoRA on the vision merger or the audio projection) they
        are merged again from the base encoders, without gradient (docs/architecture.md §4.5)."""
        if not encoder_adapters_active(self._encoders()):
            return unfused
        with torch.no_grad(), frozen_encoders(self._encoders()):
            return self._merge_multimodal(step.input_ids, **step.media)

    def _inject_beliefs(self, step: ForwardStep, inputs_embeds, ewm_out: EWMOutput) -> torch.Tensor:
        """Scatter belief tokens into their placeholders: first half after the AV block, second before the answer.

        The placeholder count is checked on the host (the layout); each placeholder takes the belief row of its rank
        in the sample (a gather, not boolean indexing), so nothing waits for the device."""
        step.layout.check_belief_placeholders(self.config)
        belief_mask = step.input_ids == self.config.belief_token_id
        rank = (belief_mask.long().cumsum(1) - 1).clamp(min=0)  # (B, L): which belief row a placeholder takes
        beliefs = ewm_out.belief_tokens.to(inputs_embeds.dtype)
        gathered = beliefs.gather(1, rank[..., None].expand(-1, -1, beliefs.shape[-1]))  # (B, L, D)
        return torch.where(belief_mask[..., None], gathered, inputs_embeds)

    def _drop_future(self, step: ForwardStep, inputs_embeds, labels, rho_host, ewm_out):
        """Embedded split only: remove the future video/audio tokens from the LLM input (the EWM's split: whole video
        patches, ceil(rho N) audio tokens) and position the kept sequence as the processor positions a clip that
        long: the thinker's 3D positions of the kept ids with the video grid cut to the kept patches and the audio
        lengths to the kept tokens (docs/architecture.md §4.8; the paper's gathered positions left a gap after the
        media that revealed the clip's length).

        Returns `(inputs_embeds, attention_mask, position_ids, labels, kept_index)`; None when nothing is dropped."""
        if self.wetr is not None:
            raise ValueError("WETR refines a whole prompt: it takes no keep_ratio < 1")
        config, layout, input_ids = self.config, step.layout, step.input_ids
        min_tokens = config.ewm_min_modality_tokens
        dropped = layout.dropped(rho_host, min_tokens)
        if not any(dropped):
            return None
        drop = future_token_mask(input_ids == config.video_token_id, ewm_out.video_past_len, ewm_out.video_present)
        drop |= future_token_mask(input_ids == config.audio_token_id, ewm_out.audio_past_len, ewm_out.audio_present)
        attention_mask = torch.ones_like(input_ids) if step.attention_mask is None else step.attention_mask
        new_len = max(length - n for length, n in zip(layout.lengths, dropped, strict=True))
        inputs_embeds, attention_mask, labels, kept_index, kept_ids = drop_positions(
            drop, attention_mask, inputs_embeds, labels, new_len, layout.left_padded, input_ids
        )
        kept = layout.past_tokens(rho_host, min_tokens)  # host: (video, audio) tokens kept per sample
        media = {**step.media, "feature_attention_mask": None, "audio_feature_lengths": None}
        if media["video_grid_thw"] is not None:
            patches = [v // k for (v, _), n, k in zip(kept, layout.video, layout.video_patch, strict=True) if n > 0]
            media["video_grid_thw"] = media["video_grid_thw"].clone()
            media["video_grid_thw"][:, 0] = torch.tensor(patches, dtype=media["video_grid_thw"].dtype)
        if media["input_features"] is not None:
            lengths = [audio_feature_length(a) for (_, a), n in zip(kept, layout.audio, strict=True) if n > 0]
            media["audio_feature_lengths"] = torch.tensor(lengths, device=input_ids.device)
        position_ids = self._position_ids(
            kept_ids, attention_mask, media, step.use_audio_in_video, step.video_second_per_grid, layout
        )
        return inputs_embeds, attention_mask, position_ids, labels, kept_index

    def _language_model(
        self,
        inputs_embeds,
        attention_mask,
        position_ids,
        past_key_values,
        use_cache,
        prefill: bool,
        wetr_roles,
        **kwargs,
    ) -> tuple:
        """The decoder layers: the thinker's language model, or with WETR on the refined prefill / decode
        (`wetr.wetr_language_model`). Returns `(last_hidden_state, past_key_values, hidden_states, attentions,
        kept_index)`; `kept_index` maps WETR's refined sequence back to the input (None without WETR)."""
        if self.wetr is not None:
            hidden, past_key_values, kept_index = wetr_language_model(
                self.model.language_model,
                self.wetr,
                self.wetr_record,
                inputs_embeds,
                attention_mask,
                position_ids,
                past_key_values,
                use_cache,
                prefill,
                wetr_roles,
                self.config.get_text_config(),
            )
            return hidden, past_key_values, None, None, kept_index
        outputs = self.model(
            input_ids=None,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return outputs.last_hidden_state, outputs.past_key_values, outputs.hidden_states, outputs.attentions, None

    @torch.no_grad()
    def imagine(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        input_features: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        use_audio_in_video: bool | None = None,
        video_second_per_grid: torch.Tensor | None = None,
        keep_ratio: torch.Tensor | float | None = None,
        future_pixel_values_videos: torch.Tensor | None = None,
        future_video_grid_thw: torch.LongTensor | None = None,
        future_input_features: torch.Tensor | None = None,
        future_feature_attention_mask: torch.Tensor | None = None,
        future_layout: FutureLayout | None = None,
        **kwargs,
    ) -> EWMOutput:
        """The EWM's pass on a batch exactly as `forward` runs it, without the language model: belief tokens, and with
        something to score against (the clip split's future inputs, the embedded split's keep_ratio < 1) the imagined
        tokens, their targets and the copy-last baseline (`pairs`). For diagnostics (the ablation runner's held-out
        imagination report); extra processor outputs are ignored."""
        arguments = {**named_arguments(locals()), "past_key_values": None, "batch_layout": None}
        step = self._step(arguments)
        inputs_embeds, position_ids, unfused = self._embed(step, None, None, None)
        return self._observe(
            step, inputs_embeds, position_ids, unfused, keep_ratio, future_of(arguments), future_layout
        )[0]


class AffectVerseForConditionalGeneration(AffectVerseModel, GenerationMixin):
    """AffectVerse with the LM head: logits, the LM loss and `generate` (the Hub's `AutoModel` class)."""

    @can_return_tuple
    @add_inputs_docstring
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        input_features: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        audio_feature_lengths: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        use_audio_in_video: bool | None = None,
        video_second_per_grid: torch.LongTensor | None = None,
        mm_encoder_outputs: dict | None = None,
        keep_ratio: torch.Tensor | float | None = None,
        batch_layout: BatchLayout | None = None,
        emotion_labels: torch.LongTensor | None = None,
        wetr_roles: torch.LongTensor | None = None,
        future_pixel_values_videos: torch.Tensor | None = None,
        future_video_grid_thw: torch.LongTensor | None = None,
        future_input_features: torch.Tensor | None = None,
        future_feature_attention_mask: torch.Tensor | None = None,
        future_layout: FutureLayout | None = None,
        **kwargs,
    ) -> AffectVerseCausalLMOutputWithPast:
        """`AffectVerseModel.forward`, then the LM head and the LM loss (the imagination loss is reported apart)."""
        outputs = super().forward(**named_arguments(locals()), return_dict=True, **kwargs)
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if outputs.labels is not None:
            vocab_size = self.config.get_text_config().vocab_size
            loss = self.loss_function(logits=logits, labels=outputs.labels, vocab_size=vocab_size, **kwargs)
        return AffectVerseCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **{name: getattr(outputs, name) for name in PASSED_THROUGH},
            **AffectVerseCausalLMOutputWithPast.ewm_fields(outputs.ewm),
        )

    def generate(self, *args, **kwargs):
        """The thinker's `generate`, with the placeholder ids suppressed so they are never produced.

        `<|belief|>`, `<|VIDEO|>`, `<|AUDIO|>` and `<|IMAGE|>` stand for features that only the input can supply: a
        generated one would be an answer made of a placeholder, and uncached decoding (which re-reads the whole
        sequence) would then find more placeholders than features. Belief tokens are computed at prefill only:
        decode steps carry no placeholders, so the EWM does not run on them (see `forward`).
        """
        keep_ratio = kwargs.get("keep_ratio")
        if keep_ratio is not None and bool((torch.as_tensor(keep_ratio) < 1).any()):
            raise ValueError(
                "generate does not take keep_ratio < 1: dropping the future at prefill would leave the decode steps "
                "without the prompt's cache. To observe only the first part of a clip, cut the media before the "
                "processor (AffectVerseCollator.for_prediction(keep_ratio=...), the evaluation runner's --keep-ratios)"
            )
        placeholders = self._placeholder_ids()
        if kwargs.get("generation_config") is not None:
            generation_config = copy.deepcopy(kwargs["generation_config"])
            generation_config.suppress_tokens = sorted(set(generation_config.suppress_tokens or []) | placeholders)
            kwargs["generation_config"] = generation_config
        else:
            suppress = kwargs.get("suppress_tokens") or self.generation_config.suppress_tokens or []
            kwargs["suppress_tokens"] = sorted(set(suppress) | placeholders)
        return super().generate(*args, **kwargs)

    def configure_generation(self, tokenizer) -> None:
        """Write the stop and padding ids into `generation_config`, so every checkpoint saved from this model stops
        generating at the end of its answer (`<|im_end|>`, the chat template's end of turn) and pads with the
        tokenizer's pad token; the placeholder ids are suppressed (see `generate`)."""
        end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
        eos = end_of_turn if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id else None
        eos = eos if eos is not None else tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has neither <|im_end|> nor an eos token: generation could never stop")
        generation_config = self.generation_config
        generation_config.eos_token_id = eos
        generation_config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        suppress = set(generation_config.suppress_tokens or []) | self._placeholder_ids()
        generation_config.suppress_tokens = sorted(suppress)

    def _placeholder_ids(self) -> set[int]:
        """Ids that stand for features only the input supplies (belief, video, audio, image): never generated."""
        config = self.config
        return {
            i
            for i in (config.belief_token_id, config.video_token_id, config.audio_token_id, config.image_token_id)
            if i is not None
        }

    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        """The thinker's prefill positions for `generate`, except for a batch mixing interleaved audio-in-video
        samples with plain (silent) video samples: the thinker positions every sample under one `use_audio_in_video`
        flag (a plain video then gets text positions), so such a batch takes `_position_ids`' per-sample layout, as
        in `forward`. Without this a mixed batch generated differently from its samples one by one."""
        position_ids = super()._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)
        input_ids = model_kwargs.get("input_ids", inputs_tensor)
        cache = model_kwargs.get("past_key_values")
        prefill = cache is None or cache.get_seq_length() == 0
        attention_mask, video_grid_thw = model_kwargs.get("attention_mask"), model_kwargs.get("video_grid_thw")
        if not (
            prefill
            and model_kwargs.get("use_audio_in_video")
            and video_grid_thw is not None
            and attention_mask is not None
            and input_ids.dim() == 2
            and position_ids.shape[0] == 4
        ):
            return position_ids
        layout = BatchLayout.read(input_ids, attention_mask, BatchLayout.token_ids(self.config))  # once per call
        if not (any(layout.plain_video) and any(layout.interleaved)):
            return position_ids
        media = media_of(model_kwargs)
        video_second_per_grid = model_kwargs.get("video_second_per_grid")
        vision = self._position_ids(input_ids, attention_mask, media, True, video_second_per_grid, layout)
        return torch.cat([position_ids[:1], vision.to(position_ids.dtype)], dim=0)


# Registration that must also happen when this file is loaded as remote code.
AffectVerseConfig.register_for_auto_class()
AffectVerseForConditionalGeneration.register_for_auto_class("AutoModel")
for _name in ("AffectVersePreTrainedModel", "AffectVerseModel", "AffectVerseForConditionalGeneration"):
    register_checkpoint_conversion_mapping(
        _name, get_checkpoint_conversion_mapping("Qwen2_5OmniThinkerForConditionalGeneration"), overwrite=True
    )

__all__ = [
    "AffectVerseCausalLMOutputWithPast",
    "AffectVerseForConditionalGeneration",
    "AffectVerseModel",
    "AffectVerseModelOutputWithPast",
    "AffectVersePreTrainedModel",
    "BatchLayout",
    "checkpoint_config",
    "count_imagination_targets",
    "drop_positions",
    "labels_at",
]
