"""The Emotion World Module (paper §3.2, Appendix D; docs/architecture.md §4): pure torch.

Reads the merged multimodal input embeddings of the thinker, imagines each modality's future
from the observed past (cross-modal temporal imagination, K-step rollout), aggregates the
imagined tokens into belief tokens (MAMA, separate modules for the dual- and single-modality
regimes) and projects them back to the LLM width. Knows nothing of transformers models: it
takes a config object with the `ewm_*` fields and `ewm_hidden_size`, and tensors.

The paper's ablations are config switches (README, "Ablations"): how belief tokens are built
(`ewm_belief_construction`: imagination, pooled past, free learned tokens), how imagined tokens
are aggregated (`ewm_aggregation`: MAMA or mean pooling), the boundary residual, the context mode,
and the two revisions of 2026-11-23 (docs/architecture.md §4.4-4.5): time embeddings and targets from a frozen
projection. Only the modules a setting uses are built, so an adapter holds nothing unused.

Shapes: B batch, L sequence, D LLM width, W working width, N tokens of one modality stream,
K rollout steps, Q future queries per step, n belief tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .ewm_layers import (
    CrossAttentionBlock,
    TimeEmbedding,
    ZeroInitLinear,
    bin_by_time,
    masked_positions,
    past_length,
    pool_future,
    split_lengths,
)

VIDEO, AUDIO = 0, 1  # rows of the type-embedding table; the other rows are reserved (paper D.3)
DEFAULT_TOKEN_SECONDS = 0.04  # token spacing assumed when no times are given: the thinker's 25 audio tokens per second


@dataclass
class ImaginationPairs:
    """The (sample, modality) pairs of one modality in one pass, detached (for diagnostics).

    Attributes:
        imagined: `(P, K, Q, W)` the rollout's tokens.
        target: `(P, Q, W)` the pooled real future in target space.
        copy_last: `(P, W)` the last observed token in target space (the copy-last baseline's prediction).
        scored: `(P,)` bool, which rows are supervised pairs; None when every row is one. The EWM returns whole-batch
            rows with this mask (selecting them would make the host wait for the device); `compact` selects them.
        bins: `(P, Q)` bool, which target bins exist (clip split: a bin past the clip's end has none); None: all.
        past_mean: `(P, W)` the mean observed token in target space (the mean-of-past baseline's prediction, and with
            `copy_last` the ridge forecaster's input); None where not computed.
    """

    imagined: torch.Tensor
    target: torch.Tensor
    copy_last: torch.Tensor
    scored: torch.Tensor | None = None
    bins: torch.Tensor | None = None
    past_mean: torch.Tensor | None = None

    def compact(self) -> ImaginationPairs:
        """Only the supervised rows (one device-to-host read of the mask)."""
        if self.scored is None:
            return self
        keep = self.scored.nonzero().squeeze(1)
        bins = None if self.bins is None else self.bins[keep]
        past_mean = None if self.past_mean is None else self.past_mean[keep]
        return ImaginationPairs(self.imagined[keep], self.target[keep], self.copy_last[keep], None, bins, past_mean)

    @classmethod
    def cat(cls, parts: list[ImaginationPairs]) -> ImaginationPairs:
        """The supervised pairs of several passes as one set."""
        parts = [p.compact() for p in parts]
        tensors = (torch.cat([getattr(p, name) for p in parts]) for name in ("imagined", "target", "copy_last"))
        bins = None
        if any(p.bins is not None for p in parts):
            bins = torch.cat(
                [p.target.new_ones(p.target.shape[:2], dtype=torch.bool) if p.bins is None else p.bins for p in parts]
            )
        past_mean = None
        if all(p.past_mean is not None for p in parts):
            past_mean = torch.cat([p.past_mean for p in parts])
        return cls(*tensors, None, bins, past_mean)

    def baseline_losses(self, cosine_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row loss `(P,)` of two predictors that know nothing of dynamics: copying the last observed token, and
        predicting the mean target of the supervised rows (the batch's in training, the held-out set's in the report),
        bin by bin over the rows that have the bin. Rows outside `scored` get a loss too; the caller weighs them out."""
        copied = imagination_loss_terms(
            self.copy_last[:, None].expand_as(self.target), self.target, cosine_weight, self.bins
        )
        weight = self.target.new_ones(self.target.shape[0])
        if self.scored is not None:
            weight = self.scored.to(self.target.dtype)
        if self.bins is None and self.scored is None:
            mean = self.target.mean(0, keepdim=True)
        elif self.bins is None:
            mean = (weight[:, None, None] * self.target).sum(0, keepdim=True) / weight.sum().clamp(min=1)
        else:
            per_bin = weight[:, None] * self.bins.to(self.target.dtype)  # (P, Q)
            mean = (per_bin[..., None] * self.target).sum(0, keepdim=True) / per_bin.sum(0).clamp(min=1)[None, :, None]
        mean_loss = imagination_loss_terms(mean.expand_as(self.target), self.target, cosine_weight, self.bins)
        return copied[0], mean_loss[0]


@dataclass
class EWMOutput(ModelOutput):
    """What one EWM pass produces. A `ModelOutput` (a dict as well as a dataclass), so that DeepSpeed ZeRO-3 finds
    its tensors and hooks them: it re-gathers the EWM's weights for backward from hooks on the module's outputs.

    Attributes:
        belief_tokens: `(B, n_max, D)` belief tokens in LLM width, zero rows past `belief_counts`.
        belief_counts: `(B,)` belief tokens per sample: dual, single or 0 (no usable modality).
        imagination_loss: scalar, or None when no sample has a future to supervise (rho = 1), or the belief
            construction does not imagine. In sharded training (`every_parameter_used`) a micro-batch without a
            future gets a 0 on the graph instead (its cosine stays None: nothing was scored).
        imagination_cosine: `(K,)` detached mean cosine per rollout step, or None like the loss.
        imagination_baselines: `(2,)` detached loss of two trivial predictors on the same pairs: copying the last
            observed token, and predicting the batch's mean target; None like the loss.
        target_similarity: detached mean cosine between the targets of different samples (per modality, then
            averaged): near 1 means the targets are collapsing to a constant. None with fewer than 2 pairs.
        batch_pairs: per modality (VIDEO, AUDIO) with supervised pairs, every sample's rows and the `scored` mask,
            detached; `pairs` selects the supervised rows.
        video_present / audio_present: `(B,)` which modalities the EWM used per sample.
        video_past_len / audio_past_len: `(B,)` tokens of each stream kept as past (0 if absent).
        emotion_trajectory: emotion-first only: `(B, K, E)` the predicted emotion distribution per rollout step,
            averaged over the modalities a sample has (uniform without any): the belief trajectory.
        emotion_loss: emotion-first only: cross-entropy of the last step's prediction against `emotion_labels`
            (samples with a label in the emotion space) + beta x the step-to-step consistency term.
        query_times: `(B, Q)` seconds (from the clip's start) of the future bins the rollout's queries stand for: the
            end of what was observed plus fixed offsets over `ewm_horizon_seconds` (nothing of the real future).
    """

    belief_tokens: torch.Tensor | None = None
    belief_counts: torch.Tensor | None = None
    imagination_loss: torch.Tensor | None = None
    imagination_cosine: torch.Tensor | None = None
    video_present: torch.Tensor | None = None
    audio_present: torch.Tensor | None = None
    video_past_len: torch.Tensor | None = None
    audio_past_len: torch.Tensor | None = None
    imagination_baselines: torch.Tensor | None = None
    target_similarity: torch.Tensor | None = None
    batch_pairs: dict[int, ImaginationPairs] | None = None
    emotion_trajectory: torch.Tensor | None = None
    emotion_loss: torch.Tensor | None = None
    query_times: torch.Tensor | None = None

    @property
    def pairs(self) -> dict[int, ImaginationPairs]:
        """Per modality the supervised pairs only (reads the masks back to the host: for diagnostics)."""
        return {modality: pairs.compact() for modality, pairs in (self.batch_pairs or {}).items()}


@dataclass(frozen=True)
class StreamPlan:
    """What the host must know of a batch to launch the EWM without reading the device: the stream sizes that set
    tensor shapes, and which branches run (regimes present, supervised pairs per modality).

    Built once per batch, from the collator's CPU tensors (free) or by `read` (one device-to-host copy). Everything
    per sample that the computation itself uses stays on the device; the plan must describe the same batch.
    """

    video_counts: tuple[int, ...]
    audio_counts: tuple[int, ...]
    keep_ratio: tuple[float, ...] | None  # None: rho = 1
    video_patch: tuple[int, ...] | None = None  # embedded split: video tokens per temporal patch (whole patches kept)
    future_counts: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # clip split: future tokens per modality

    @classmethod
    def read(cls, video_mask: torch.Tensor, audio_mask: torch.Tensor, keep_ratio: torch.Tensor | None) -> StreamPlan:
        """The plan of a batch from its masks `(B, L)` and rho `(B,)`: a single device-to-host copy."""
        values = [video_mask.sum(1).float(), audio_mask.sum(1).float()]
        if keep_ratio is not None:
            values.append(keep_ratio.float().expand(video_mask.shape[0]))
        host = torch.stack(values, dim=1).cpu()
        return cls(
            tuple(host[:, 0].long().tolist()),
            tuple(host[:, 1].long().tolist()),
            None if keep_ratio is None else tuple(host[:, 2].tolist()),
        )

    def streams(self, min_tokens: int) -> list[dict]:
        """Per modality (VIDEO, AUDIO): `present` (list of bool), `size` (longest present stream) and `pairs`
        (samples whose stream has a future: past tokens held out by rho in the embedded split, a future segment in
        the clip split), by the device's rules (docs/architecture.md §4.3) in plain Python."""
        batch = len(self.video_counts)
        rho = self.keep_ratio or (None,) * batch
        result = []
        for modality, counts in enumerate((self.video_counts, self.audio_counts)):
            count = [n if n >= min_tokens else 0 for n in counts]
            patch = self.video_patch if modality == VIDEO and self.video_patch is not None else (1,) * batch
            past = [past_length(n, r, k) for n, r, k in zip(count, rho, patch, strict=True)]
            if self.future_counts is None:
                pairs = sum(n > p for n, p in zip(count, past, strict=True))
            else:
                pairs = sum(n > 0 and f > 0 for n, f in zip(count, self.future_counts[modality], strict=True))
            result.append({"present": [n > 0 for n in count], "size": max(count, default=0), "pairs": pairs})
        return result


@dataclass
class FutureSegment:
    """One modality's future segment per sample (clip split, docs/architecture.md §4.3: the media after the cut, encoded
    apart from the input (no gradient, no adapter) only to score the imagination against.

    Attributes:
        features: `(B, F, D)` the encoders' output tokens, in time order, zero rows past `count`.
        times: `(B, F)` each token's start, seconds from the clip's start (the stream clock of the past tokens).
        span: `(B,)` seconds one token step covers (a video patch its frames, an audio token 40 ms).
        end: `(B,)` where the segment's real media end, seconds from the clip's start (nothing is scored past it).
        count: `(B,)` tokens per sample (0: no future segment: nothing to score).
    """

    features: torch.Tensor
    times: torch.Tensor
    span: torch.Tensor
    end: torch.Tensor
    count: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:  # (B, F)
        return torch.arange(self.features.shape[1], device=self.count.device) < self.count[:, None]


@dataclass
class ModalityStream:
    """One modality's tokens gathered from the sequence, in time (= sequence) order."""

    tokens: torch.Tensor  # (B, N_max, W) in working space, zero rows past `count`
    targets: torch.Tensor | None  # (B, N_max, W) the same tokens in target space (detached), None if not needed
    times: torch.Tensor  # (B, N_max) seconds from the stream's first token
    count: torch.Tensor  # (B,)
    past_len: torch.Tensor  # (B,)
    present: torch.Tensor  # (B,) bool
    step: torch.Tensor  # (B,) seconds one token step covers (a video patch: its frames; an audio token: 40 ms)

    @property
    def past_mask(self) -> torch.Tensor:  # (B, N_max)
        return torch.arange(self.tokens.shape[1], device=self.tokens.device) < self.past_len[:, None]

    @property
    def future_len(self) -> torch.Tensor:  # (B,)
        return self.count - self.past_len

    @property
    def observed_end(self) -> torch.Tensor:
        """`(B,)` seconds at which the observed past ends: its last token's time plus the step it covers."""
        return self.last_past(self.times) + self.step * self.present.to(self.step.dtype)

    def last_past(self, values: torch.Tensor) -> torch.Tensor:
        """`values[b, past_len[b] - 1]` per sample, `(B, …)`; zeros where the modality is absent."""
        if values.shape[1] == 0:  # absent in the whole batch
            return values.new_zeros(values.shape[0], *values.shape[2:])
        index = (self.past_len - 1).clamp(min=0)
        last = values[torch.arange(values.shape[0], device=index.device), index]
        return last * self.present.view(-1, *([1] * (last.dim() - 1))).to(last.dtype)


@dataclass
class RolloutTerms:
    """What one pass's rollouts scored, per modality with a future: loss and cosine `(B, K)`, the pairs (for
    diagnostics), and emotion-first's step logits."""

    losses: list = field(default_factory=list)
    cosines: list = field(default_factory=list)
    pairs: dict = field(default_factory=dict)
    emotion_logits: dict = field(default_factory=dict)

    def add(self, modality: int, loss: torch.Tensor, cosine: torch.Tensor, pairs: ImaginationPairs) -> None:
        self.losses.append(loss)
        self.cosines.append(cosine)
        self.pairs[modality] = pairs


class TemporalImagination(nn.Module):
    """K-step rollout for one target modality (paper Eq. 4, D.2): blocks shared across steps.

    With `num_emotions` (LEWM's emotion-first factorization) each step first resolves an emotion state: an
    emotion query reads the step's context through the same block, a head gives a distribution over the emotions,
    and its embedding is added to the step's future queries, so the step's imagined state is conditioned on it.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        ffn_ratio: int,
        num_layers: int,
        num_queries: int,
        steps: int,
        num_emotions: int = 0,
        residual: bool = False,
    ):
        super().__init__()
        self.future_queries = nn.Parameter(torch.randn(num_queries, width) * 0.02)  # (Q, W), shared by all steps
        self.step_embedding = nn.Embedding(steps, width)
        self.block = CrossAttentionBlock(width, num_heads, ffn_ratio, num_layers)
        if num_emotions:  # built after the joint modules, so a joint model draws the same weights as before
            self.emotion_query = nn.Parameter(torch.randn(1, width) * 0.02)
            self.emotion_head = nn.Linear(width, num_emotions)
            self.emotion_embedding = nn.Linear(num_emotions, width, bias=False)
        self.emotion_first = bool(num_emotions)
        # "residual" forecast: each step = its boundary state + a change that starts at zero (copy-last at init)
        self.delta = ZeroInitLinear(width, width) if residual else None
        self.last_emotion_logits: torch.Tensor | None = None  # (B, K, E) of the latest forward (emotion-first)

    def forward(
        self,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        tag_self: torch.Tensor,
        query_time: torch.Tensor | None = None,
        emotion_override: torch.Tensor | None = None,
        anchor: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """context `(B, C, W)` with mask `(B, C)`; returns the imagined tokens `(B, K, Q, W)`.

        `anchor` `(B, W)` (the residual forecast, required then): the last observed token in target space. Step 1's
        tokens are `anchor + delta(block output)`, step k's are step k-1's plus its own change.

        Emotion-first: the step logits `(B, K, E)` are left in `last_emotion_logits`; `emotion_override` `(B, K, E)`
        replaces the predicted distributions (to check that the conditioning is real, or to steer a rollout).

        `query_time` `(B, Q, W)`: time embedding of the future bins each query stands for, added to every step's
        queries and to the imagined tokens as they join the context (they sit at those times). None: no time.

        Each step's context is the previous one plus the step's output, so every layer's keys and values of the
        context are projected once and extended step by step (the same numbers as re-projecting the whole context,
        without redoing the past tokens K times).
        """
        layers = self.block.layers
        projected = [layer.project_context(context) for layer in layers]  # per layer: (B, H, C, W/H) keys, values
        outputs = []
        ones = context_mask.new_ones(context.shape[0], self.future_queries.shape[0])
        logits = []
        previous = None if self.delta is None else anchor[:, None, :].expand(-1, self.future_queries.shape[0], -1)
        for step in range(self.step_embedding.num_embeddings):
            imagined = (self.future_queries + self.step_embedding.weight[step]).expand(context.shape[0], -1, -1)
            if query_time is not None:
                imagined = imagined + query_time
            if self.emotion_first:  # p(E_k | context) first, then the step's queries conditioned on it
                emotion = (self.emotion_query + self.step_embedding.weight[step]).expand(context.shape[0], -1, -1)
                for layer, (keys, values) in zip(layers, projected, strict=True):
                    emotion = layer.attend(emotion, keys, values, context_mask)  # (B, 1, W)
                logits.append(self.emotion_head(emotion[:, 0]))  # (B, E)
                belief = logits[-1].softmax(-1) if emotion_override is None else emotion_override[:, step]
                imagined = imagined + self.emotion_embedding(belief.to(imagined.dtype))[:, None]
            for layer, (keys, values) in zip(layers, projected, strict=True):
                imagined = layer.attend(imagined, keys, values, context_mask)  # (B, Q, W)
            if previous is not None:
                imagined = previous = previous + self.delta(imagined)
            outputs.append(imagined)
            joining = imagined + tag_self if query_time is None else imagined + tag_self + query_time
            grown = [layer.project_context(joining) for layer in layers]  # the rollout extends its context
            projected = [
                (torch.cat([k, gk], dim=2), torch.cat([v, gv], dim=2))
                for (k, v), (gk, gv) in zip(projected, grown, strict=True)
            ]
            context_mask = torch.cat([context_mask, ones], dim=1)
        self.last_emotion_logits = torch.stack(logits, dim=1) if logits else None
        return torch.stack(outputs, dim=1)


class BeliefAggregator(nn.Module):
    """One MAMA module (paper Eq. 7, D.3): learned belief queries cross-attend to the memory bank."""

    def __init__(self, width: int, num_heads: int, ffn_ratio: int, num_layers: int, num_beliefs: int):
        super().__init__()
        self.belief_queries = nn.Parameter(torch.randn(num_beliefs, width) * 0.02)  # (n, W)
        self.block = CrossAttentionBlock(width, num_heads, ffn_ratio, num_layers)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        """memory `(B, M, W)` -> belief `(B, n, W)`."""
        queries = self.belief_queries.expand(memory.shape[0], -1, -1)
        return self.block(queries, memory, None)


def imagination_loss_terms(
    predicted: torch.Tensor, target: torch.Tensor, cosine_weight: float, bins: torch.Tensor | None = None
):
    """MSE + w * (1 - cos) between `predicted (…, Q, W)` and `target (…, Q, W)`, averaged over Q: `(loss, cosine)`.

    `bins` `(…, Q)` bool (broadcast like the inputs): only these bins count (a bin without a target is left out of
    the mean); None: all."""
    cosine = F.cosine_similarity(predicted, target, dim=-1)  # (…, Q)
    if bins is None:
        mse = (predicted - target).pow(2).mean(dim=(-2, -1))
        cosine = cosine.mean(dim=-1)
    else:
        weight = bins.to(predicted.dtype)
        count = weight.sum(-1).clamp(min=1)
        mse = ((predicted - target).pow(2).mean(-1) * weight).sum(-1) / count
        cosine = (cosine * weight).sum(-1) / count
    return mse + cosine_weight * (1.0 - cosine), cosine


def shuffle_across_samples(
    target: torch.Tensor, filled: torch.Tensor | None, scored: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The targets `(B, Q, W)` (and their bins `(B, Q)`) of the `scored` rows permuted among those rows so that no
    row keeps its own (a random cyclic derangement); the other rows unchanged. Fewer than two scored rows: unchanged.
    `ewm_shuffled_targets`' negative control: what the loss asks for is a real future, just not this clip's."""
    rows = scored.nonzero().squeeze(1)
    if rows.numel() < 2:
        return target, filled
    order = rows[torch.randperm(rows.numel(), device=rows.device)]
    index = torch.arange(target.shape[0], device=target.device)
    index[order] = order.roll(-1)  # row order[i] takes the target of row order[i + 1]
    return target[index], None if filled is None else filled[index]


def mean_pairwise_cosine(
    vectors: torch.Tensor, weight: torch.Tensor | None = None, bins: torch.Tensor | None = None
) -> torch.Tensor | None:
    """Mean cosine between different rows of `vectors (P, …)` (flattened); None with fewer than 2 rows.

    `weight` `(P,)` of 0/1 selects the rows without indexing (the caller knows there are at least 2). `bins` `(P, Q)`
    bool, for `(P, Q, W)` targets: bins without a target are zeroed before flattening (left out of both norms)."""
    if bins is not None:
        vectors = vectors * bins[..., None].to(vectors.dtype)
    if weight is None:
        if vectors.shape[0] < 2:
            return None
        weight = vectors.new_ones(vectors.shape[0])
    unit = F.normalize(vectors.flatten(1).float(), dim=-1) * weight.float()[:, None]
    gram = unit @ unit.T
    count = weight.float().sum()
    return (gram.sum() - gram.diagonal().sum()) / (count * (count - 1))


class EmotionWorldModule(nn.Module):
    """Bottleneck, temporal split, cross-modal imagination, imagination loss, MAMA, up-projection."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.every_parameter_used = False  # set by the model's run_every_module (sharded training)
        width, hidden = config.ewm_working_size, config.ewm_hidden_size
        construction = config.ewm_belief_construction
        # Every option is resolved here, once: into the parts built (only those a setting uses, so an adapter holds
        # nothing unused) and the methods that run; `forward` checks no option.
        self.make_beliefs = {
            "ewm": self._imagined_beliefs,
            "pooling": self._pooled_past_beliefs,
            "random_tokens": self._free_beliefs,
        }[construction]
        self.imagines = construction == "ewm"
        self.residual_forecast = self.imagines and config.ewm_forecast == "residual"  # needs the target-space past
        self.cores: tuple[str, ...] = ()  # the numeric cores `compile_cores` compiles
        self.own_inits: tuple[tuple[str, str], ...] = ()  # (tensor, how) the model's `_init_weights` initialises
        if construction == "random_tokens":  # Table 4: free learned tokens, the same for every input
            n_tokens = config.ewm_belief_tokens_dual + config.ewm_belief_tokens_single  # dual rows, then single
            self.free_beliefs = nn.Parameter(torch.randn(n_tokens, width) * 0.02)
            self.own_inits += (("free_beliefs", "normal"),)
            self.down = None
        else:
            self.video_down = nn.Linear(hidden, width)
            self.audio_down = nn.Linear(hidden, width)
            self.down = (self.video_down, self.audio_down)
        if self.imagines:
            self._build_imagination(config)
        self.up_proj = nn.Linear(width, hidden)

    def _build_imagination(self, config) -> None:
        """The imagination's parts and the choices among them: context mode, time embedding, target, aggregation,
        boundary residual (the paper's ablations, README "Ablations")."""
        width, hidden = config.ewm_working_size, config.ewm_hidden_size
        heads, ratio, steps = config.ewm_num_heads, config.ewm_ffn_ratio, config.ewm_rollout_steps
        n_dual, n_single = config.ewm_belief_tokens_dual, config.ewm_belief_tokens_single
        self.tag_embedding = nn.Embedding(2, width)  # row 0: self, row 1: cross
        emotions = len(config.emotion_labels or [])  # 0 for the joint factorization
        imagination = (
            width,
            heads,
            ratio,
            config.ewm_imagination_layers,
            config.ewm_num_future_queries,
            steps,
            emotions,
            config.ewm_forecast == "residual",
        )
        self.video_imagination = TemporalImagination(*imagination)
        self.audio_imagination = TemporalImagination(*imagination)
        self.cores = ("video_imagination", "audio_imagination")
        self.context_masks = {"full": self._full_context, "self": self._self_context, "cross": self._cross_context}[
            config.ewm_context_mode
        ]
        self.time_embedding = TimeEmbedding(width) if config.ewm_time_embedding else None
        if config.ewm_imagination_target == "frozen":
            # a fixed random projection D -> W per modality, never trained (docs/architecture.md §4.5)
            self.register_buffer("target_projection", torch.randn(2, width, hidden) / math.sqrt(hidden))
            self.own_inits += (("target_projection", "projection"),)
            self.target_space, self.stream_targets = self._frozen_target_space, self._frozen_stream_targets
        else:
            self.target_space, self.stream_targets = self._online_target_space, self._online_stream_targets
        if config.ewm_aggregation == "mama":
            self.type_embedding = nn.Embedding(config.ewm_num_type_embeddings, width)
            self.memory_step_embedding = nn.Embedding(steps, width)
            layers = config.ewm_aggregation_layers
            self.aggregate_dual = BeliefAggregator(width, heads, ratio, layers, n_dual)
            self.aggregate_single = BeliefAggregator(width, heads, ratio, layers, n_single)
            self.cores += ("aggregate_dual", "aggregate_single")
            self.memory, self.aggregate = self._memory, self._mama_beliefs
        else:  # Table 3 rows (b)-(c): the imagined tokens mean-pooled into belief tokens
            self.memory, self.aggregate = self._flat_memory, self._mean_beliefs
        self.boundary_residual = None
        if config.ewm_boundary_residual:
            self.boundary_proj = nn.Linear(width, width)
            # shape (1,), not (): DeepSpeed broadcasts parameters as byte views and FSDP2 shards dim 0, both of
            # which refuse a 0-dim tensor (docs/architecture.md §7); checkpoints with the old () alpha still load
            self.residual_scale = nn.Parameter(torch.full((1,), float(config.ewm_residual_scale_init)))
            self.own_inits += (("residual_scale", "residual"),)
            self.boundary_residual = self._boundary_residual

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Reads a 0-dim `residual_scale` (adapters saved before it became `(1,)`) as `(1,)`."""
        key = prefix + "residual_scale"
        if key in state_dict and state_dict[key].dim() == 0:
            state_dict[key] = state_dict[key].reshape(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def compile_cores(self, **compile_kwargs) -> list[str]:
        """`torch.compile` the numeric cores in place (the rollouts and the MAMA aggregators: tensors in, tensors out,
        shapes dynamic), leaving the host-side logic eager. Weights and state-dict keys are unchanged. Fewer, fused
        kernels for a module that is launch-bound on a GPU; off unless asked for: it costs compile time.
        Returns the names of the compiled submodules."""
        compile_kwargs.setdefault("dynamic", True)
        for name in self.cores:
            getattr(self, name).compile(**compile_kwargs)
        return list(self.cores)

    # -- preparation -------------------------------------------------------------------------
    def _frozen_target_space(self, states: torch.Tensor, modality: int, valid: torch.Tensor) -> torch.Tensor:
        """Tokens `(B, N, D)` in the imagination's target space `(B, N, W)`, detached: the frozen random projection and
        a LayerNorm (docs/architecture.md §4.5)."""
        projected = states.detach() @ self.target_projection[modality].to(states.dtype).T
        projected = F.layer_norm(projected, (self.config.ewm_working_size,))  # unit scale: no |h| dependence
        return torch.where(valid[..., None], projected, 0.0)

    def _online_target_space(self, states: torch.Tensor, modality: int, valid: torch.Tensor) -> torch.Tensor:
        """`"online"` targets: the trained down-projection, detached (the original design; it collapses)."""
        projected = self.down[modality](states.detach()).detach()
        return torch.where(valid[..., None], projected, 0.0)

    def _frozen_stream_targets(self, tokens, selected, target_states, order, modality: int, valid) -> torch.Tensor:
        """The observed stream in target space: read from `target_states` (the frozen features) when given."""
        if target_states is not None:
            selected = target_states.gather(1, order[..., None].expand(-1, -1, target_states.shape[-1]))
        return self._frozen_target_space(selected, modality, valid)

    def _online_stream_targets(self, tokens, selected, target_states, order, modality: int, valid) -> torch.Tensor:
        """`"online"`: the stream's own down-projected tokens, detached."""
        return tokens.detach()

    def _stream(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        modality: int,
        keep_ratio,
        times,
        size: int | None = None,
        target_states: torch.Tensor | None = None,
        with_targets: bool = False,
        patch: torch.Tensor | None = None,
        step: torch.Tensor | None = None,
    ) -> ModalityStream:
        """Gather one modality's tokens in sequence order, project them D -> W, split them.

        `target_states`: where the frozen imagination targets are read (default `hidden`): the encoders' features
        before any trainable module (the pre-fusion, adapters on the encoders), so that training cannot move them.
        `with_targets`: also the tokens in target space (a future to score against exists).

        `size`: the longest present stream of the batch (from the `StreamPlan`); None reads it from the device.
        `patch` `(B,)`: tokens per temporal step (embedded split: whole video patches). `step` `(B,)`: seconds one
        token step covers (default 40 ms). Tokens are gathered at `masked_positions`, not by boolean indexing.
        """
        count = mask.sum(1)  # (B,)
        present = count >= self.config.ewm_min_modality_tokens
        count = count * present  # a stream too short for past + future is absent (docs/architecture.md §4.3)
        mask = mask & present[:, None]
        n_max = (int(count.max()) if count.numel() else 0) if size is None else size
        valid = torch.arange(n_max, device=hidden.device) < count[:, None]  # (B, N_max)
        order = masked_positions(mask, n_max)  # (B, N_max) positions
        width = self.config.ewm_working_size
        tokens = hidden.new_zeros(hidden.shape[0], n_max, width)
        targets = None
        if n_max and self.down is not None:
            selected = hidden.gather(1, order[..., None].expand(-1, -1, hidden.shape[-1]))  # (B, N_max, D)
            tokens = torch.where(valid[..., None], self.down[modality](selected), 0.0)
            if self.imagines and (with_targets or self.residual_forecast):  # scored, or the forecast's anchor
                targets = self.stream_targets(tokens, selected, target_states, order, modality, valid)
        stream_times = hidden.new_zeros(hidden.shape[0], n_max, dtype=torch.float32)
        if n_max:
            if times is None:  # no clock given: the stream's token index at the audio token rate
                seconds = (mask.long().cumsum(1) - 1).float() * DEFAULT_TOKEN_SECONDS
            else:
                first = torch.where(mask, times.float(), torch.inf).amin(1, keepdim=True)
                seconds = times.float() - torch.where(torch.isfinite(first), first, 0.0)
            stream_times = torch.where(valid, seconds.gather(1, order), 0.0)
        past_len = split_lengths(count, keep_ratio, patch) * present
        if step is None:
            step = torch.full_like(stream_times[:, 0] if n_max else count.float(), DEFAULT_TOKEN_SECONDS)
        return ModalityStream(tokens, targets, stream_times, count, past_len, present, step.float())

    # -- imagination ---------------------------------------------------------------------------
    def _context(self, own: ModalityStream, other: ModalityStream, boundary: torch.Tensor | None):
        """Rollout context of every sample for the target modality `own` (paper Eq. 3).

        With time embeddings, every context token also carries its time relative to `boundary` `(B,)`, the end of what
        was observed (docs/architecture.md §4.4: without it cross-attention cannot tell past order.
        A sample without the own modality attends to its first slot only, so its (discarded) rows stay finite.
        """
        tag_self, tag_cross = self.tag_embedding.weight
        own_mask, other_mask = self.context_masks(own, other)
        own_tokens, other_tokens = own.tokens + tag_self, other.tokens + tag_cross
        if boundary is not None:
            own_tokens = own_tokens + self.time_embedding(own.times - boundary[:, None])
            other_tokens = other_tokens + self.time_embedding(other.times - boundary[:, None])
        mask = torch.cat([own_mask, other_mask], dim=1)
        absent = F.pad(~own.present[:, None], (0, mask.shape[1] - 1))  # (B, C): True at slot 0 of absent samples
        return torch.cat([own_tokens, other_tokens], dim=1), mask | absent

    @staticmethod
    def _full_context(own: ModalityStream, other: ModalityStream) -> tuple[torch.Tensor, torch.Tensor]:
        """The context of `"full"` (the paper's): the own past and the other modality's."""
        return own.past_mask, other.past_mask & other.present[:, None]

    @staticmethod
    def _self_context(own: ModalityStream, other: ModalityStream) -> tuple[torch.Tensor, torch.Tensor]:
        """`"self"`: the own past only."""
        return own.past_mask, torch.zeros_like(other.past_mask)

    @staticmethod
    def _cross_context(own: ModalityStream, other: ModalityStream) -> tuple[torch.Tensor, torch.Tensor]:
        """`"cross"`: the other modality's past, the own past only where the other modality is absent."""
        return own.past_mask & ~other.present[:, None], other.past_mask & other.present[:, None]

    def query_offsets(self, device=None) -> torch.Tensor:
        """`(Q,)` seconds after the end of the observation of the future bins the rollout queries stand for: the
        centres of `ewm_num_future_queries` equal bins over `ewm_horizon_seconds` (docs/architecture.md §4.4-4.5. Fixed:
        the same in training and at inference, nothing read off the real future (which would reveal the clip's
        length)."""
        bins = self.config.ewm_num_future_queries
        horizon = float(self.config.ewm_horizon_seconds)
        return (torch.arange(bins, device=device, dtype=torch.float32) + 0.5) * horizon / bins

    def _imagine(
        self, own: ModalityStream, other: ModalityStream, module: TemporalImagination, boundary, override=None
    ):
        """Run one modality's rollout on the whole batch; returns `(present (B,), imagined (B, K, Q, W))`, the rows
        of samples without the modality finite and meaningless (the callers mask them out). `boundary` `(B,)`: the end
        of the observation, the origin of the context's and the queries' times."""
        query_time = None
        if self.time_embedding is not None:
            query_time = self.time_embedding(self.query_offsets(own.tokens.device))[None]  # (1, Q, W)
        else:
            boundary = None
        context, context_mask = self._context(own, other, boundary)
        anchor = None if module.delta is None else own.last_past(own.targets)  # (B, W) copy-last's prediction
        return own.present, module(context, context_mask, self.tag_embedding.weight[0], query_time, override, anchor)

    def _imagination_terms(
        self,
        own: ModalityStream,
        imagined: torch.Tensor,
        modality: int,
        future: FutureSegment | None,
        boundary: torch.Tensor,
    ):
        """Per-(sample, step) loss and cosine `(B, K)` against the real future in target space, zero for samples
        without a future, and the batch's pairs with the `scored` mask (for diagnostics).

        Embedded split (`future` None): the stream's own tokens after the split, adaptively pooled into the Q bins (the
        paper's target). Clip split: the future segment's tokens pooled into Q fixed time bins over the horizon after
        `boundary`; a bin no token covers (past the clip's end) has no target and is left out of every term."""
        bins = imagined.shape[2]
        if future is None:
            target = pool_future(own.targets, own.past_len, own.future_len, bins)  # (B, Q, W), detached
            filled, scored = None, own.present & (own.future_len > 0)
        else:
            tokens = self.target_space(future.features, modality, future.valid)  # (B, F, W)
            target, filled = bin_by_time(
                tokens,
                future.times,
                future.span,
                future.end,
                future.valid,
                boundary,
                float(self.config.ewm_horizon_seconds),
                bins,
            )
            scored = own.present & (future.count > 0)
        if self.config.ewm_shuffled_targets and self.training:  # the negative control: another clip's future
            target, filled = shuffle_across_samples(target, filled, scored)
        loss, cosine = imagination_loss_terms(
            imagined, target[:, None], self.config.ewm_cosine_weight, None if filled is None else filled[:, None]
        )  # (B, K) each
        past = own.past_mask[..., None].to(own.targets.dtype)
        past_mean = (own.targets * past).sum(1) / own.past_len.clamp(min=1)[:, None].to(own.targets.dtype)
        pairs = ImaginationPairs(imagined.detach(), target, own.last_past(own.targets), scored, filled, past_mean)
        keep = scored[:, None]
        return torch.where(keep, loss, 0.0), torch.where(keep, cosine, 0.0).detach(), pairs

    # -- aggregation: `memory` and `aggregate` are chosen at build -------------------------------------------------
    def _memory(self, imagined: torch.Tensor, modality: int) -> torch.Tensor:
        """Imagined tokens + type + step embeddings, flattened to a memory bank `(B', K*Q, W)`."""
        steps = self.memory_step_embedding.weight[:, None, :]  # (K, 1, W)
        return (imagined + self.type_embedding.weight[modality] + steps).flatten(1, 2)

    @staticmethod
    def _flat_memory(imagined: torch.Tensor, modality: int) -> torch.Tensor:
        """Mean aggregation's bank: the imagined tokens as they are, `(B', K*Q, W)`."""
        return imagined.flatten(1, 2)

    def _mama_beliefs(self, video: ModalityStream, audio: ModalityStream, memories, facts) -> torch.Tensor:
        """MAMA over the two banks, each aggregator run when some sample of the batch is in its regime."""
        present = [(v, a) for v, a in zip(facts[VIDEO]["present"], facts[AUDIO]["present"], strict=True)]
        regimes = (any(v and a for v, a in present), any(v != a for v, a in present))
        return self._mama(video, audio, *memories, regimes)

    def _mean_beliefs(self, video: ModalityStream, audio: ModalityStream, memories, facts) -> torch.Tensor:
        """Table 3 rows (b)-(c): the imagined tokens mean-pooled into belief tokens."""
        full = torch.full_like(video.count, memories[0].shape[1])
        return self._pooled_beliefs(video, audio, memories, (full * video.present, full * audio.present))

    def _pooled_beliefs(self, video: ModalityStream, audio: ModalityStream, banks, lengths) -> torch.Tensor:
        """Belief tokens `(B, n_dual, W)` as adaptive means of per-modality banks `(B, M, W)` (first `lengths` rows):
        n_dual / 2 from each with both modalities, n_single from the one present. No attention, no learned queries."""
        n_dual, n_single = self.config.ewm_belief_tokens_dual, self.config.ewm_belief_tokens_single
        start = torch.zeros_like(lengths[0])
        half = [pool_future(bank, start, length, n_dual // 2) for bank, length in zip(banks, lengths, strict=True)]
        single = [pool_future(bank, start, length, n_single) for bank, length in zip(banks, lengths, strict=True)]
        dual = torch.cat(half, dim=1)  # (B, n_dual, W)
        single = torch.where(video.present[:, None, None], single[VIDEO], single[AUDIO])  # (B, n_single, W)
        single = F.pad(single, (0, 0, 0, n_dual - n_single))
        return torch.where((video.present & audio.present)[:, None, None], dual, single)

    def _mama(self, video: ModalityStream, audio: ModalityStream, video_memory, audio_memory, regimes) -> torch.Tensor:
        """MAMA per regime, selected per sample (paper Eq. 7). Each aggregator runs on the whole batch (when some
        sample is in its regime, `regimes` = (any dual, any single) from the plan) and its rows are kept where the
        sample is in that regime: no index set for the host to read."""
        n_dual = self.config.ewm_belief_tokens_dual
        beliefs = video_memory.new_zeros(video_memory.shape[0], n_dual, video_memory.shape[-1])
        if regimes[0]:
            dual = self.aggregate_dual(torch.cat([video_memory, audio_memory], dim=1))
            beliefs = torch.where((video.present & audio.present)[:, None, None], dual, beliefs)
        if regimes[1]:
            memory = torch.where(video.present[:, None, None], video_memory, audio_memory)
            single = self.aggregate_single(memory)  # (B, n_single, W)
            single = F.pad(single, (0, 0, 0, n_dual - single.shape[1]))
            beliefs = torch.where((video.present ^ audio.present)[:, None, None], single, beliefs)
        return beliefs

    def _boundary_residual(self, video: ModalityStream, audio: ModalityStream) -> torch.Tensor:
        """alpha * Linear(mean of the last past token of each available modality), `(B, 1, W)` (paper Eq. 7)."""
        available = video.present.to(video.tokens.dtype) + audio.present.to(video.tokens.dtype)  # (B,)
        boundary = (video.last_past(video.tokens) + audio.last_past(audio.tokens)) / available.clamp(min=1)[:, None]
        return self.residual_scale * self.boundary_proj(boundary)[:, None, :]

    def forward(
        self,
        hidden_states: torch.Tensor,
        video_mask: torch.Tensor,
        audio_mask: torch.Tensor,
        keep_ratio: torch.Tensor | None = None,
        token_times: torch.Tensor | None = None,
        plan: StreamPlan | None = None,
        emotion_labels: torch.Tensor | None = None,
        emotion_override: torch.Tensor | None = None,
        target_states: torch.Tensor | None = None,
        future: dict[int, FutureSegment] | None = None,
        token_seconds: dict[int, torch.Tensor] | None = None,
    ) -> EWMOutput:
        """Run the EWM on a batch.

        Args:
            hidden_states: `(B, L, D)` merged multimodal input embeddings.
            video_mask / audio_mask: `(B, L)` bool, positions of video / audio tokens.
            keep_ratio: embedded split: `(B,)` rho per sample, the first part of each stream is the past and the rest
                the future it is scored against; None for rho = 1 (everything observed: the clip split's input, or
                inference).
            token_times: `(B, L)` time of each token in seconds (the thinker's temporal grid); only differences
                within a sample matter. None: each stream's token index x 0.04 s.
            plan: the batch's `StreamPlan` (shapes and branches, on the host). Given, the pass makes the host wait
                for the device nowhere; None: it is read once from the masks (one device-to-host copy).
            emotion_labels: emotion-first: `(B,)` index of each clip's label in the emotion space, -100 for none.
            emotion_override: emotion-first: `(B, K, E)` distributions that replace the predicted ones.
            target_states: `(B, L, D)` the embeddings the frozen targets are read from (default `hidden_states`):
                the encoders' features before any trained module (a pre-fusion, adapters on the encoders), which no
                training moves (docs/architecture.md §4.5.
            future: clip split: per modality (VIDEO, AUDIO) the future segment after the cut, the imagination's
                target (targets pooled into fixed time bins after the end of the observation). Not with keep_ratio.
            token_seconds: per modality `(B,)` seconds one token step covers (video: the processor's
                `video_second_per_grid`; default 40 ms): where the observation ends after its last token.
        """
        if future is not None and keep_ratio is not None:
            raise ValueError("the EWM takes a keep_ratio (embedded split) or a future segment (clip split), not both")
        if plan is None:
            plan = StreamPlan.read(video_mask, audio_mask, keep_ratio)
        facts = plan.streams(self.config.ewm_min_modality_tokens)
        video, audio = self._streams(
            hidden_states,
            video_mask,
            audio_mask,
            keep_ratio,
            token_times,
            plan,
            facts,
            target_states,
            keep_ratio is not None or future is not None,
            token_seconds,
        )
        boundary = torch.maximum(video.observed_end, audio.observed_end)  # (B,) the end of what was observed
        terms = RolloutTerms()
        beliefs = self.make_beliefs(hidden_states, video, audio, facts, boundary, future, emotion_override, terms)
        if self.every_parameter_used:  # sharded training: every process produces every gradient (run_every_module)
            touched = [p.sum().to(beliefs.dtype) for p in self.parameters() if p.requires_grad]
            beliefs = beliefs + 0.0 * torch.stack(touched).sum() if touched else beliefs
        return self._output(beliefs, terms, video, audio, facts, boundary, emotion_labels)

    def _streams(
        self,
        hidden_states,
        video_mask,
        audio_mask,
        keep_ratio,
        token_times,
        plan: StreamPlan,
        facts,
        target_states,
        with_targets: bool,
        token_seconds,
    ) -> tuple[ModalityStream, ModalityStream]:
        """Both modalities' streams (`_stream`), sized by the plan."""
        patch = None if plan.video_patch is None else torch.tensor(plan.video_patch, device=hidden_states.device)
        seconds = token_seconds or {}
        video = self._stream(
            hidden_states,
            video_mask,
            VIDEO,
            keep_ratio,
            token_times,
            facts[VIDEO]["size"],
            target_states,
            with_targets,
            patch,
            seconds.get(VIDEO),
        )
        audio = self._stream(
            hidden_states,
            audio_mask,
            AUDIO,
            keep_ratio,
            token_times,
            facts[AUDIO]["size"],
            target_states,
            with_targets,
            None,
            seconds.get(AUDIO),
        )
        return video, audio

    # -- belief construction: one of these is `make_beliefs` ------------------------------------------------------
    def _free_beliefs(self, hidden_states, video, audio, facts, boundary, future, emotion_override, terms):
        """Table 4's "random tokens": learned free tokens `(B, n_dual, W)`, the same for every input of a regime."""
        n_dual, n_single = self.config.ewm_belief_tokens_dual, self.config.ewm_belief_tokens_single
        dual = self.free_beliefs[:n_dual]
        single = F.pad(self.free_beliefs[n_dual:], (0, 0, 0, n_dual - n_single))
        both = (video.present & audio.present)[:, None, None]
        return torch.where(both, dual, single)

    def _pooled_past_beliefs(self, hidden_states, video, audio, facts, boundary, future, emotion_override, terms):
        """Table 4's "pooling": the mean-pooled observed past, no imagination."""
        return self._pooled_beliefs(video, audio, (video.tokens, audio.tokens), (video.past_len, audio.past_len))

    def _imagined_beliefs(self, hidden_states, video, audio, facts, boundary, future, emotion_override, terms):
        """The EWM's own: each modality's rollout (scored into `terms` when there is a future), its imagined tokens
        aggregated into belief tokens (`aggregate`: MAMA or mean pooling), plus the boundary residual when built."""
        memories = []
        for modality, own, other, module in (
            (VIDEO, video, audio, self.video_imagination),
            (AUDIO, audio, video, self.audio_imagination),
        ):
            config = self.config
            bank = hidden_states.new_zeros(
                hidden_states.shape[0],
                config.ewm_rollout_steps * config.ewm_num_future_queries,
                config.ewm_working_size,
            )
            if any(facts[modality]["present"]):
                present, imagined = self._imagine(own, other, module, boundary, emotion_override)
                if module.last_emotion_logits is not None:
                    terms.emotion_logits[modality] = (present, module.last_emotion_logits)
                bank = torch.where(present[:, None, None], self.memory(imagined, modality), 0.0)
                if own.targets is not None and facts[modality]["pairs"]:  # a split was asked for, with a future
                    segment = None if future is None else future.get(modality)
                    terms.add(modality, *self._imagination_terms(own, imagined, modality, segment, boundary))
            memories.append(bank)
        beliefs = self.aggregate(video, audio, memories, facts)
        if self.boundary_residual is not None:
            beliefs = beliefs + self.boundary_residual(video, audio)
        return beliefs

    def _output(
        self,
        beliefs,
        terms: RolloutTerms,
        video: ModalityStream,
        audio: ModalityStream,
        facts,
        boundary,
        emotion_labels,
    ) -> EWMOutput:
        """The pass's `EWMOutput`: belief tokens up-projected (zero rows past each sample's count), the imagination's
        loss, cosine, baselines and target similarity over the scored pairs, the emotion terms (emotion-first)."""
        config, device = self.config, beliefs.device
        imagination_loss = imagination_cosine = imagination_baselines = target_similarity = None
        if terms.pairs:
            count = sum(facts[modality]["pairs"] for modality in terms.pairs)  # samples x modalities with a future
            imagination_loss = sum(loss.sum() for loss in terms.losses) / (count * config.ewm_rollout_steps)
            imagination_cosine = sum(cosine.sum(0) for cosine in terms.cosines) / count  # (K,)
            imagination_baselines, target_similarity = self._baselines(terms.pairs, facts)
        elif self.every_parameter_used and config.imagines:
            # sharded training, no future in this micro-batch (whole clips): a 0 on the graph in the loss's place, so
            # that every process's backward passes the same module outputs (ZeRO-3 records and compares that order)
            imagination_loss = 0.0 * beliefs.sum()
        emotion_trajectory = emotion_loss = None
        if config.emotion_labels is not None:
            emotion_trajectory, emotion_loss = self._emotion_terms(
                terms.emotion_logits, emotion_labels, batch=video.count
            )
        n_dual, n_single = config.ewm_belief_tokens_dual, config.ewm_belief_tokens_single
        dual, single = video.present & audio.present, video.present ^ audio.present
        counts = torch.where(dual, n_dual, torch.where(single, n_single, 0)).to(device)
        return EWMOutput(
            belief_tokens=self.up_proj(beliefs) * (torch.arange(n_dual, device=device) < counts[:, None])[..., None],
            belief_counts=counts,
            imagination_loss=imagination_loss,
            imagination_cosine=imagination_cosine,
            video_present=video.present,
            audio_present=audio.present,
            video_past_len=video.past_len,
            audio_past_len=audio.past_len,
            imagination_baselines=imagination_baselines,
            target_similarity=target_similarity,
            batch_pairs=terms.pairs,
            emotion_trajectory=emotion_trajectory,
            emotion_loss=emotion_loss,
            query_times=boundary[:, None] + self.query_offsets(device)[None],
        )

    def _emotion_terms(self, logits: dict, labels: torch.Tensor | None, batch: torch.Tensor):
        """The belief trajectory `(B, K, E)` and the emotion loss (docs/design-notes.md):

        L_emo = CE(last step's logits, label) over the (sample, modality) pairs whose clip has a label in the space,
        C = mean over pairs and steps k >= 1 of ||p_k - p_{k-1}||^2, emotion_loss = L_emo + beta x C. Masks, not
        index sets, and sums over device counts: nothing is read back to the host.
        """
        emotions = len(self.config.emotion_labels)
        steps = self.config.ewm_rollout_steps
        total = batch.new_zeros(batch.shape[0], steps, emotions, dtype=torch.float32)
        count = batch.new_zeros(batch.shape[0], dtype=torch.float32)
        cross_entropy = consistency = torch.zeros((), device=batch.device)
        ce_pairs = pair_count = torch.zeros((), device=batch.device)
        for present, step_logits in logits.values():
            weight = present.float()
            probabilities = step_logits.float().softmax(-1)  # (B, K, E)
            total = total + probabilities * weight[:, None, None]
            count = count + weight
            if steps > 1:
                change = (probabilities[:, 1:] - probabilities[:, :-1]).pow(2).sum(-1).mean(1)  # (B,)
                consistency = consistency + (change * weight).sum()
            pair_count = pair_count + weight.sum()
            if labels is not None:
                valid = present & (labels >= 0)
                target = torch.where(valid, labels, 0)
                ce = F.cross_entropy(step_logits[:, -1].float(), target, reduction="none")  # (B,)
                cross_entropy = cross_entropy + torch.where(valid, ce, 0.0).sum()
                ce_pairs = ce_pairs + valid.float().sum()
        uniform = torch.full_like(total, 1.0 / emotions)
        trajectory = torch.where(count[:, None, None] > 0, total / count.clamp(min=1)[:, None, None], uniform)
        beta = float(self.config.ewm_emotion_consistency_weight)
        loss = cross_entropy / ce_pairs.clamp(min=1) + beta * consistency / pair_count.clamp(min=1)
        return trajectory, loss

    def _baselines(
        self, pairs: dict[int, ImaginationPairs], facts: list[dict]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Loss of copy-last and batch-mean predictors on the supervised pairs (same averaging as the imagination
        loss), and the targets' mean cross-sample cosine (averaged over modalities with at least 2 pairs)."""
        copy_last = batch_mean = 0.0
        similarity = []
        for modality, item in pairs.items():
            weight = item.scored.to(item.target.dtype)
            copied, mean = item.baseline_losses(self.config.ewm_cosine_weight)
            copy_last = copy_last + (copied * weight).sum()
            batch_mean = batch_mean + (mean * weight).sum()
            if facts[modality]["pairs"] >= 2:
                similarity.append(mean_pairwise_cosine(item.target, weight, item.bins))
        count = sum(facts[modality]["pairs"] for modality in pairs)
        baselines = (torch.stack([copy_last, batch_mean]) / count).detach()
        return baselines, torch.stack(similarity).mean().detach() if similarity else None


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of `module` (works on the meta device)."""
    return sum(math.prod(p.shape) for p in module.parameters())


__all__ = [
    "EWMOutput",
    "EmotionWorldModule",
    "FutureSegment",
    "ImaginationPairs",
    "StreamPlan",
    "count_parameters",
    "imagination_loss_terms",
    "mean_pairwise_cosine",
    "pool_future",
    "split_lengths",
]
