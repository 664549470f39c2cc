"""AffectVerse configuration: the Qwen2.5-Omni thinker config plus the Emotion World Module sizes.

Imports no torch. Every EWM field defaults to the paper's value (Appendix B, Table 7); the
decisions the paper left open are the ones recorded in docs/architecture.md §4 and docs/design-notes.md.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniThinkerConfig

CONTEXT_MODES = ("full", "self", "cross")
BELIEF_CONSTRUCTIONS = ("ewm", "pooling", "random_tokens", "none")  # paper Table 4 (none = Table 3 row a)
AGGREGATIONS = ("mama", "mean")  # Table 3: rows (b)-(c) pool the imagined tokens, (d)-(f) use MAMA
INJECTIONS = ("interleaved", "single")  # Table 3: row (d) one position, (e)-(f) two
FORECASTS = ("absolute", "residual")  # issue 23: "residual" steps from the boundary state (copy-last at init)
IMAGINATION_TARGETS = ("frozen", "online")  # docs/architecture.md §4.5: online is the original, collapsing design
FACTORIZATIONS = ("joint", "emotion_first")  # LEWM's p(E'|h) p(S'|h, E') as an option
PREFUSIONS = ("none", "conv_attention")  # Emotion-LLaMAv2's Conv-Attention pre-fusion as an option
SPLITS = ("clip", "embedded")  # docs/architecture.md §4.3 2026-12-02: the clip cut before the processor, or the paper's
MER_LABELS = ("worried", "happy", "neutral", "angry", "surprise", "sad")  # MER2023 / MER2024, the prompt's order


@strict
class AffectVerseConfig(Qwen2_5OmniThinkerConfig):
    r"""Configuration of [`AffectVerseForConditionalGeneration`].

    Inherits every field of `Qwen2_5OmniThinkerConfig` (the backbone) and adds the Emotion
    World Module (EWM) fields below, all defaulting to the paper's sizes.

    Args:
        belief_token_id (`int`, *optional*):
            Id of the `<|belief|>` placeholder token. Set when the processor adds the token to the
            tokenizer; `None` means the model cannot inject belief tokens (EWM inactive).
        vision_start_token_id / vision_end_token_id (`int`):
            Ids of `<|vision_bos|>` / `<|vision_eos|>`; the thinker's 3D position code reads them.
        ewm_working_size (`int`, defaults to 512): working width W of the EWM (bottleneck D->W).
        ewm_num_future_queries (`int`, defaults to 8): learned future queries per rollout step,
            also the number of adaptive-pooling bins of the imagination target.
        ewm_rollout_steps (`int`, defaults to 3): K, imagination rollout steps.
        ewm_imagination_layers (`int`, defaults to 2): cross-attention layers per imagination block.
        ewm_aggregation_layers (`int`, defaults to 1): cross-attention layers of each MAMA module.
        ewm_num_heads (`int`, defaults to 8): attention heads of every EWM cross-attention.
        ewm_ffn_ratio (`int`, defaults to 4): FFN width multiplier (GELU FFN).
        ewm_belief_tokens_dual (`int`, defaults to 8): belief tokens when video and audio are present.
        ewm_belief_tokens_single (`int`, defaults to 4): belief tokens when one modality is present.
        ewm_num_type_embeddings (`int`, defaults to 6): rows of the MAMA type-embedding table
            (row 0 video, row 1 audio, the rest reserved, as in the paper).
        ewm_residual_scale_init (`float`, defaults to 0.1): initial alpha of the boundary residual.
        ewm_context_mode (`str`, defaults to `"full"`): imagination context, an ablation switch.
            `"full"`: own past + other modality's past (the paper); `"self"`: own past only;
            `"cross"`: other modality's past only (own past when the other is absent).
        ewm_split (`str`, defaults to `"clip"`): where a training sample is split into the observed past and the
            future (docs/architecture.md §4.3 2026-12-02). `"clip"`: the collator cuts the clip at t* = rho x its length
            BEFORE the processor (the model's input is the cut clip, processed as a short clip is) and passes the
            next `ewm_horizon_seconds` as separate future inputs, encoded only for the imagination target. It is
            the one rule of training, evaluation, the trajectory and the Space. `"embedded"`: the paper's token-level
            split of the merged embeddings after the encoders (`keep_ratio` in `forward`), kept for reproduction;
            it leaks the future into the past through the encoders' attention (docs/design-notes.md).
        ewm_horizon_seconds (`float`, defaults to 2.0): H, the imagination horizon: the rollout's queries stand for
            `ewm_num_future_queries` fixed bins over the H seconds after the end of what was observed, in training
            and at inference alike, and the targets are the future pooled into those bins (clip split).
        ewm_keep_ratio_min (`float`, defaults to 0.3): embedded split only: training keep ratio rho ~ U(min, 1)
            drawn in `forward` when the caller passes no `keep_ratio` (with the clip split the collator draws rho).
        ewm_cosine_weight (`float`, defaults to 0.5): weight of (1 - cos) in the imagination loss.
        ewm_min_modality_tokens (`int`, defaults to 2): a modality with fewer tokens is absent for the EWM.
        ewm_belief_construction (`str`, defaults to `"ewm"`): how belief tokens are built (paper Table 4).
            `"ewm"`: imagination + aggregation (the paper); `"pooling"`: the observed past of each modality
            mean-pooled into belief tokens, no imagination; `"random_tokens"`: learned free tokens, the same for
            every input; `"none"`: no EWM and no belief tokens at all, exactly the thinker (Table 3 row a).
        ewm_aggregation (`str`, defaults to `"mama"`): `"mama"` cross-attends learned belief queries to the memory
            bank (paper Eq. 7); `"mean"` mean-pools the imagined tokens into the belief tokens (Table 3 rows b-c).
        ewm_injection (`str`, defaults to `"interleaved"`): `"interleaved"` puts half of the belief tokens after the
            audio/video block and half before the answer (the paper); `"single"` puts all before the answer
            (Table 3 row d). Read by the processor, which places the placeholders.
        ewm_boundary_residual (`bool`, defaults to True): add alpha x Linear(last observed tokens) to every belief
            token (Table 3 row f).
        ewm_imagination_target (`str`, defaults to `"frozen"`): where the imagination target comes from.
            `"frozen"`: the future merged embeddings through a fixed random projection D -> W and a LayerNorm, which
            training cannot move; `"online"`: the trained down-projection, detached (the original design; its
            targets collapse to a constant, docs/architecture.md §4.5.
        ewm_forecast (`str`, defaults to `"absolute"`): how a rollout step's output is parameterised. `"absolute"`:
            the block's output is the imagined token (the paper's Eq. 4 as written); `"residual"`: the output is the
            boundary state (step 1: the last observed token of the modality in target space; step k: step k-1's
            output) plus a zero-initialised linear change, so copy-last is the forecaster's starting point and
            training can only improve on it (docs/design-notes.md, "Evidence v2"). The default is to be decided on
            the demo's validation split (issue 23); until that is measured it stays the forecast every figure so far
            was made with.
        ewm_shuffled_targets (`bool`, defaults to False): a negative control. In training, the imagination targets
            of the supervised samples are permuted across the batch (a derangement: no sample keeps its own), nothing
            else changes; a world model that still helps is not helping through its forecasts.
        ewm_time_embedding (`bool`, defaults to True): add a time embedding (seconds from the split boundary) to
            every context token and to the rollout queries (their future bin times); False is the original
            time-blind rollout (docs/architecture.md §4.4.
        ewm_factorization (`str`, defaults to `"joint"`): `"joint"` imagines the future directly (the paper);
            `"emotion_first"` (LEWM) first predicts an emotion distribution at every rollout step from the rollout
            context and conditions that step's future queries on it (docs/design-notes.md).
        ewm_emotion_labels (`list[str]`, *optional*): the emotion space of `emotion_first` (default: MER's six
            classes); a clip whose label is outside it trains the distribution as a latent only.
        ewm_emotion_consistency_weight (`float`, defaults to 0.1): beta of the consistency term (mean squared change
            of the emotion distribution between consecutive rollout steps) inside `emotion_loss`.
        ewm_prefusion (`str`, defaults to `"none"`): `"conv_attention"` (Emotion-LLaMAv2 §4.3) fuses the video and
            audio features with a convolutional and a cross-modal attention branch before the LLM (and the EWM)
            read them; residual with a zero-initialised output, so at initialisation it changes nothing.
        ewm_prefusion_size (`int`, defaults to 512): working width of the pre-fusion module.
        ewm_prefusion_conv_blocks (`int`, defaults to 2): residual convolution blocks of its convolutional branch.
    """

    model_type = "affectverse"

    belief_token_id: int | None = None
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    ewm_working_size: int = 512
    ewm_num_future_queries: int = 8
    ewm_rollout_steps: int = 3
    ewm_imagination_layers: int = 2
    ewm_aggregation_layers: int = 1
    ewm_num_heads: int = 8
    ewm_ffn_ratio: int = 4
    ewm_belief_tokens_dual: int = 8
    ewm_belief_tokens_single: int = 4
    ewm_num_type_embeddings: int = 6
    ewm_residual_scale_init: float | int = 0.1
    ewm_context_mode: str = "full"
    ewm_keep_ratio_min: float | int = 0.3
    ewm_cosine_weight: float | int = 0.5
    ewm_min_modality_tokens: int = 2
    ewm_belief_construction: str = "ewm"
    ewm_aggregation: str = "mama"
    ewm_injection: str = "interleaved"
    ewm_boundary_residual: bool = True
    ewm_imagination_target: str = "frozen"
    ewm_forecast: str = "absolute"
    ewm_shuffled_targets: bool = False
    ewm_time_embedding: bool = True
    ewm_split: str = "clip"
    ewm_horizon_seconds: float | int = 2.0
    ewm_factorization: str = "joint"
    ewm_emotion_labels: list[str] | None = None
    ewm_emotion_consistency_weight: float | int = 0.1
    ewm_prefusion: str = "none"
    ewm_prefusion_size: int = 512
    ewm_prefusion_conv_blocks: int = 2

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.check_ewm_fields()

    def to_thinker_config(self) -> Qwen2_5OmniThinkerConfig:
        """The plain Qwen2.5-Omni thinker config of this model: the backbone without the EWM fields (for baselines
        with the same weights, and for tests)."""
        extra = ("belief_token_id", "model_type", "architectures", "auto_map")
        return Qwen2_5OmniThinkerConfig(
            **{k: v for k, v in self.to_dict().items() if not k.startswith("ewm_") and k not in extra}
        )

    def check_ewm_fields(self) -> None:
        """Raise `ValueError` naming the field for EWM settings that cannot build a working module.

        Not named `validate_*`: `@strict` would wrap the error in its own exception type.
        """
        self._check_ewm_sizes()
        self._check_ewm_choices()
        self._check_ewm_numbers()

    def _check_ewm_sizes(self) -> None:
        """Widths, counts and token budgets: positive integers that fit together."""
        positive = (
            "ewm_working_size",
            "ewm_num_future_queries",
            "ewm_rollout_steps",
            "ewm_imagination_layers",
            "ewm_aggregation_layers",
            "ewm_num_heads",
            "ewm_ffn_ratio",
            "ewm_num_type_embeddings",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AffectVerseConfig.{name} must be a positive integer, got {value!r}")
        if self.ewm_working_size % self.ewm_num_heads:
            raise ValueError(
                f"AffectVerseConfig.ewm_working_size ({self.ewm_working_size}) must be divisible by "
                f"ewm_num_heads ({self.ewm_num_heads})"
            )
        for name in ("ewm_belief_tokens_dual", "ewm_belief_tokens_single"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2 or value % 2:
                raise ValueError(
                    f"AffectVerseConfig.{name} must be an even integer >= 2 (half go to each injection "
                    f"point), got {value!r}"
                )
        if self.ewm_num_type_embeddings < 2:
            raise ValueError(
                "AffectVerseConfig.ewm_num_type_embeddings must be >= 2 (video and audio rows), "
                f"got {self.ewm_num_type_embeddings}"
            )
        for name in ("ewm_prefusion_size", "ewm_prefusion_conv_blocks"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"AffectVerseConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.ewm_prefusion_size % self.ewm_num_heads:
            raise ValueError(
                f"AffectVerseConfig.ewm_prefusion_size ({self.ewm_prefusion_size}) must be divisible by "
                f"ewm_num_heads ({self.ewm_num_heads})"
            )
        if not isinstance(self.ewm_min_modality_tokens, int) or self.ewm_min_modality_tokens < 2:
            raise ValueError(
                "AffectVerseConfig.ewm_min_modality_tokens must be an integer >= 2 (a past and a future "
                f"token), got {self.ewm_min_modality_tokens!r}"
            )

    def _check_ewm_choices(self) -> None:
        """The options: each one of its allowed values (the ablation switches, the split, the pre-fusion)."""
        for name, allowed in (
            ("ewm_context_mode", CONTEXT_MODES),
            ("ewm_belief_construction", BELIEF_CONSTRUCTIONS),
            ("ewm_aggregation", AGGREGATIONS),
            ("ewm_injection", INJECTIONS),
            ("ewm_imagination_target", IMAGINATION_TARGETS),
            ("ewm_forecast", FORECASTS),
            ("ewm_factorization", FACTORIZATIONS),
            ("ewm_prefusion", PREFUSIONS),
            ("ewm_split", SPLITS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"AffectVerseConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("ewm_boundary_residual", "ewm_time_embedding", "ewm_shuffled_targets"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"AffectVerseConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.ewm_emotion_labels is not None and (
            not self.ewm_emotion_labels or len(set(self.ewm_emotion_labels)) != len(self.ewm_emotion_labels)
        ):
            raise ValueError(
                f"AffectVerseConfig.ewm_emotion_labels must be distinct labels, got {self.ewm_emotion_labels!r}"
            )

    def _check_ewm_numbers(self) -> None:
        """Horizon, ratios, weights and the belief token's id: values in their ranges."""
        if isinstance(self.ewm_horizon_seconds, bool) or not float(self.ewm_horizon_seconds) > 0:
            raise ValueError(f"AffectVerseConfig.ewm_horizon_seconds must be > 0, got {self.ewm_horizon_seconds!r}")
        if not 0.0 < float(self.ewm_keep_ratio_min) <= 1.0:
            raise ValueError(f"AffectVerseConfig.ewm_keep_ratio_min must be in (0, 1], got {self.ewm_keep_ratio_min!r}")
        if float(self.ewm_emotion_consistency_weight) < 0:
            raise ValueError(
                "AffectVerseConfig.ewm_emotion_consistency_weight must be >= 0, got "
                f"{self.ewm_emotion_consistency_weight!r}"
            )
        if float(self.ewm_cosine_weight) < 0:
            raise ValueError(f"AffectVerseConfig.ewm_cosine_weight must be >= 0, got {self.ewm_cosine_weight!r}")
        vocab_size = self.get_text_config().vocab_size
        if self.belief_token_id is not None and not 0 <= self.belief_token_id < vocab_size:
            raise ValueError(
                f"AffectVerseConfig.belief_token_id ({self.belief_token_id}) must lie in the text vocabulary "
                f"[0, {vocab_size})"
            )

    @property
    def has_ewm(self) -> bool:
        """Whether the model has an Emotion World Module and takes `<|belief|>` placeholders."""
        return self.ewm_belief_construction != "none"

    @property
    def imagines(self) -> bool:
        """Whether the EWM imagines futures (and so has an imagination loss): only `ewm_belief_construction="ewm"`."""
        return self.ewm_belief_construction == "ewm"

    @property
    def emotion_labels(self) -> list[str] | None:
        """The emotion space of `emotion_first` (None for `joint` or without imagination)."""
        if self.ewm_factorization != "emotion_first" or not self.imagines:
            return None
        return list(self.ewm_emotion_labels or MER_LABELS)

    @property
    def ewm_hidden_size(self) -> int:
        """D: the LLM width the EWM reads from and writes back to."""
        return self.get_text_config().hidden_size


__all__ = ["MER_LABELS", "AffectVerseConfig"]
