"""WETR: training-free emotion-aware token refinement (seed 003, §3), the scoring core: NTS and STR as tensors.

At a trigger layer, with the layer's own query/key projections of the hidden states:

- NTS (Noise-suppressed Token Selection): two inserted instruction spans, an emotion-seeking Q_pos and an
  emotion-irrelevant Q_neg, attend to the sequence; d_i = Norm(a_pos->i - a_neg->i) (Eq. 4), plus a weak
  cross-modal support term (Eq. 5) gives s_i; the top ceil(p x n) tokens of each modality by s_i are kept
  (Eq. 6), instruction tokens always (Eq. 7).
- STR (State-strengthened Token Reweighting): each kept media token's key is reconstructed from the kept text
  tokens' keys by attention (and each kept text token's from the kept media tokens'), e_i = ||k_i - sum alpha_ij k_j||
  (Eq. 9), normalised to [0, 1]; gated by g_i = sigmoid(Norm(s_i)): r_i = (1 - g_i)(1 - e_i), c_i = g_i e_i
  (Eq. 10), b_i = c_i - r_i, gamma_i = 1 + delta b_i (Eq. 11); anchors (the top p_anc of each kept modality by s_i)
  are clamped to gamma >= gamma_anc; the hidden states are scaled h_i <- gamma_i h_i.

This module holds the configuration, its checks, these computations on explicit tensors (tested against values
computed by hand) and `refined_language_model`, the thinker's decoder run over a prefill with WETR at the trigger
layers (`AffectVerseForConditionalGeneration.enable_wetr`), and `refined_decode`, the decode steps that continue
from the cache of the refined sequence (each layer holds what it saw).

Shapes: B batch, L sequence, H heads, E head width. Token roles (`ROLES`, the `ROLE_*` constants; not the EWM's
modality indices `ewm.VIDEO` / `ewm.AUDIO`): 0 other/instruction, 1 visual, 2 audio, 3 text content (the subtitle),
4 Q_pos span, 5 Q_neg span.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache

from .ewm_layers import compaction, masked_positions

ROLE_INSTRUCTION, ROLE_VISUAL, ROLE_AUDIO, ROLE_CONTENT, ROLE_QUERY_POS, ROLE_QUERY_NEG = range(6)
ROLES = ("instruction", "visual", "audio", "content", "query_pos", "query_neg")
PROXIES = ("contrastive", "positive", "negative", "random")  # WETR Table 2
# the two inserted query spans (WETR §3.3 asks for an emotion-seeking and an emotion-irrelevant one)
QUERY_POS_TEXT = "Which facial expressions, voice cues and words show what this person feels?"
QUERY_NEG_TEXT = "What objects and colours are in the background of this clip?"


@dataclass
class WETRConfig:
    """WETR's settings (paper defaults) and the ablation switches of its Tables 2, 3 and 6.

    Attributes:
        trigger_interval: n_r; the trigger layers are l = n_r, 2 n_r, ... (0-based decoder-layer index, l > 0: the
            first layer has no processed context to score with).
        delta: STR's intervention strength.
        p_visual / p_text: kept fraction of visual / text-content tokens at each trigger layer.
        p_audio: kept fraction of audio tokens. Audio is scored and kept like video with its own ratio (decision:
            25 audio tokens per second are as redundant as video patches; the paper's backbones take no audio).
        p_anchor: fraction of each kept modality protected as anchors (not given by the paper: 0.1).
        gamma_anchor: lower bound of an anchor's gamma (>= 1 in the paper; 1.0 here: anchors are never weakened).
        proxy: NTS scoring proxy: contrastive (Eq. 4), positive (Q_pos only), negative (Q_neg only), random.
        select: NTS on (False: every token kept: "STR only").
        reweight: STR on (False: gamma = 1: "NTS only").
        anchors: STR's anchor protection on.
        seed: the random proxy's generator seed.
    """

    trigger_interval: int = 9
    delta: float = 4.0
    p_visual: float = 0.03
    p_text: float = 0.2
    p_audio: float = 0.03
    p_anchor: float = 0.1
    gamma_anchor: float = 1.0
    proxy: str = "contrastive"
    select: bool = True
    reweight: bool = True
    anchors: bool = True
    seed: int = 0

    def check(self, num_layers: int) -> None:
        """Raise `ValueError` naming the field for settings that cannot run on a decoder of `num_layers` layers."""
        for name in ("p_visual", "p_text", "p_audio", "p_anchor"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value <= 1):
                raise ValueError(f"WETRConfig.{name} must lie in (0, 1], got {value!r}")
        if not isinstance(self.trigger_interval, int) or self.trigger_interval < 1:
            raise ValueError(f"WETRConfig.trigger_interval must be a positive integer, got {self.trigger_interval!r}")
        if self.trigger_interval >= num_layers:
            raise ValueError(
                f"WETRConfig.trigger_interval ({self.trigger_interval}) must be smaller than the decoder depth "
                f"({num_layers} layers): no layer would trigger"
            )
        if self.delta < 0:
            raise ValueError(f"WETRConfig.delta must be >= 0, got {self.delta!r}")
        if self.gamma_anchor < 1:
            raise ValueError(f"WETRConfig.gamma_anchor must be >= 1, got {self.gamma_anchor!r}")
        if self.proxy not in PROXIES:
            raise ValueError(f"WETRConfig.proxy must be one of {PROXIES}, got {self.proxy!r}")

    def trigger_layers(self, num_layers: int) -> list[int]:
        self.check(num_layers)
        return list(range(self.trigger_interval, num_layers, self.trigger_interval))

    def keep_fraction(self, role: int) -> float:
        return {ROLE_VISUAL: self.p_visual, ROLE_AUDIO: self.p_audio, ROLE_CONTENT: self.p_text}[role]


def check_roles(roles: torch.Tensor) -> None:
    """A sequence without the two query spans cannot be scored: a clear error instead of a silent no-op."""
    for role, name in ((ROLE_QUERY_POS, "Q_pos"), (ROLE_QUERY_NEG, "Q_neg")):
        missing = (~(roles == role).any(1)).nonzero().flatten().tolist()
        if missing:
            raise ValueError(
                f"WETR is on but sample(s) {missing} have no {name} span: build the prompt with the processor's "
                "WETR query spans (the emotion-seeking and the emotion-irrelevant question)"
            )


def norm(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Min-max normalisation to [0, 1] over the positions of `mask`, per sample (`(B, L)`); 0 outside the mask and
    where every value is equal. The paper's Norm(.) is unspecified: min-max keeps the order and the [0, 1] range."""
    low = torch.where(mask, values, torch.inf).amin(1, keepdim=True)
    high = torch.where(mask, values, -torch.inf).amax(1, keepdim=True)
    span = (high - low).clamp(min=1e-12)
    scaled = torch.where(torch.isfinite(low) & (high > low), (values - low) / span, torch.zeros_like(values))
    return torch.where(mask, scaled, torch.zeros_like(values))


def span_attention(attention: torch.Tensor, row_roles: torch.Tensor, role: int) -> torch.Tensor:
    """`(B, L)` mean over the rows of one role of head-averaged attention rows `attention` `(B, R, L)`, whose roles
    are `row_roles` `(B, R)` (0 where the role has no row)."""
    rows = (row_roles == role).to(attention.dtype)  # (B, R)
    return (rows[:, :, None] * attention).sum(1) / rows.sum(1, keepdim=True).clamp(min=1)


def selection_scores(
    attention: torch.Tensor,
    roles: torch.Tensor,
    proxy: str = "contrastive",
    generator: torch.Generator | None = None,
    row_roles: torch.Tensor | None = None,
) -> torch.Tensor:
    """s_i for the media and content tokens (Eq. 4-5), 0 elsewhere. `attention` `(B, R, L)`: head-averaged
    attention probabilities of the trigger layer, rows of the query tokens whose roles are `row_roles` `(B, R)`
    (default: every row, R = L, `roles`). The scores read the rows of the two query spans, the content tokens (their
    support of the media) and the media tokens (their support of the content); rows of other roles are ignored."""
    row_roles = roles if row_roles is None else row_roles
    candidates = (roles == ROLE_VISUAL) | (roles == ROLE_AUDIO) | (roles == ROLE_CONTENT)
    positive = span_attention(attention, row_roles, ROLE_QUERY_POS)
    negative = span_attention(attention, row_roles, ROLE_QUERY_NEG)
    if proxy == "random":
        noise = torch.rand(roles.shape, generator=generator, device="cpu").to(attention.device, attention.dtype)
        return torch.where(candidates, noise, torch.zeros_like(noise))
    raw = {"contrastive": positive - negative, "positive": positive, "negative": -negative}[proxy]
    d = norm(raw, candidates)
    media = (roles == ROLE_VISUAL) | (roles == ROLE_AUDIO)
    content = roles == ROLE_CONTENT
    from_content = norm(span_attention(attention, row_roles, ROLE_CONTENT), media)  # content -> media support
    media_rows = ((row_roles == ROLE_VISUAL) | (row_roles == ROLE_AUDIO)).to(attention.dtype)
    from_media = (media_rows[:, :, None] * attention).sum(1) / media_rows.sum(1, keepdim=True).clamp(min=1)
    from_media = norm(from_media, content)  # media -> content support (0 under causal attention: media come first)
    return d + torch.where(media, from_content, torch.zeros_like(d)) + torch.where(content, from_media, 0.0)


def top_fraction(scores: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """`(B, L)` bool: the ceil(fraction x n) highest-scoring positions of `mask` per sample (ties: earlier first)."""
    counts = mask.sum(1)
    keep = torch.ceil(fraction * counts.double() - 1e-9).long().clamp(min=0)
    keep = torch.minimum(torch.where(counts > 0, keep.clamp(min=1), keep), counts)
    ranked = torch.where(mask, scores, -torch.inf)
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    )
    return mask & (rank < keep[:, None])


def select(scores: torch.Tensor, roles: torch.Tensor, config: WETRConfig) -> torch.Tensor:
    """NTS's kept set K (Eq. 6-7): top fractions of visual, audio and content tokens; every other token kept."""
    kept = ~((roles == ROLE_VISUAL) | (roles == ROLE_AUDIO) | (roles == ROLE_CONTENT))
    if not config.select:
        return torch.ones_like(kept)
    for role in (ROLE_VISUAL, ROLE_AUDIO, ROLE_CONTENT):
        kept = kept | top_fraction(scores, roles == role, config.keep_fraction(role))
    return kept


def _rows(values: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """`values` `(B, H, L, E)` at `positions` `(B, N)`: `(B, H, N, E)`."""
    return values.gather(2, positions[:, None, :, None].expand(-1, values.shape[1], -1, values.shape[-1]))


def reconstruction_errors(
    queries: torch.Tensor, keys: torch.Tensor, source: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """e_i (Eq. 9) for the tokens of `source` `(B, L)`: each one's key reconstructed from the keys of `target` by
    softmax(q_i . k_j / sqrt(E)) over j in target, per head, the error norm averaged over heads. `queries`, `keys`:
    `(B, H, L, E)`. 0 outside `source` (and where `target` is empty).

    Only the source rows and target columns are gathered and scored (after NTS a few percent of the media and a
    fifth of the subtitle): a (source x target) product per head, not the sequence's (L x L)."""
    sources, targets = int(source.sum(1).max()), int(target.sum(1).max())
    if sources == 0 or targets == 0:
        return torch.zeros(source.shape, device=keys.device)
    rows, columns = masked_positions(source, sources), masked_positions(target, targets)  # (B, S), (B, T)
    target_keys = _rows(keys, columns).float()  # (B, H, T, E); float32 after the gather: only these rows are cast
    logits = _rows(queries, rows).float() @ target_keys.transpose(-1, -2) / math.sqrt(queries.shape[-1])
    logits = logits.masked_fill(~target.gather(1, columns)[:, None, None, :], -torch.inf)
    weights = torch.nan_to_num(logits.softmax(-1))  # an empty target gives all -inf rows: zero weights
    error = (_rows(keys, rows).float() - weights @ target_keys).norm(dim=-1).mean(1)  # (B, S)
    # a row's slots past its own count hold other (distinct) positions: scattered there, then masked out
    full = torch.zeros(source.shape, dtype=error.dtype, device=error.device).scatter(1, rows, error)
    return torch.where(source & target.any(1, keepdim=True), full, torch.zeros_like(full))


def reweighting(
    queries: torch.Tensor,
    keys: torch.Tensor,
    scores: torch.Tensor,
    roles: torch.Tensor,
    kept: torch.Tensor,
    config: WETRConfig,
) -> dict[str, torch.Tensor]:
    """STR (Eq. 9-11): `{"e", "g", "r", "c", "gamma", "anchors"}`, each `(B, L)`; gamma is 1 outside the kept media
    and content tokens (instruction and query tokens are never rescaled)."""
    media = ((roles == ROLE_VISUAL) | (roles == ROLE_AUDIO)) & kept
    content = (roles == ROLE_CONTENT) & kept
    scored = media | content
    errors = reconstruction_errors(queries, keys, media, content) + reconstruction_errors(queries, keys, content, media)
    e = norm(errors, scored)
    g = torch.where(scored, torch.sigmoid(norm(scores, scored)), torch.zeros_like(e))
    r = torch.where(scored, (1 - g) * (1 - e), torch.zeros_like(e))
    c = torch.where(scored, g * e, torch.zeros_like(e))
    gamma = (
        torch.where(scored, 1 + config.delta * (c - r), torch.ones_like(e)) if config.reweight else torch.ones_like(e)
    )
    anchors = torch.zeros_like(kept)
    if config.anchors and config.reweight:
        for role in (ROLE_VISUAL, ROLE_AUDIO, ROLE_CONTENT):
            anchors = anchors | top_fraction(scores, (roles == role) & kept, config.p_anchor)
        gamma = torch.where(anchors, gamma.clamp(min=config.gamma_anchor), gamma)
    return {"e": e, "g": g, "r": r, "c": c, "gamma": gamma, "anchors": anchors}


def kept_visual_grid(record: dict, roles: torch.Tensor, grid_thw, merge: int, sample: int = 0):
    """Which of one video's merged patches a trigger layer kept, and their gamma, laid out over the video's grid
    (WETR Fig. 3): `(kept, gamma)`, each `(T, H / merge, W / merge)` (bool; gamma 0 where dropped).

    `record`: one entry of `wetr_record` (a forward with `enable_wetr(..., record=True)`); `roles`: the input's
    token roles `(B, L)` (`processor.token_roles`, before any trigger); `grid_thw`: the sample's row of
    `video_grid_thw`; `merge`: the vision config's `spatial_merge_size`. The visual tokens of a sample are its
    video's merged patches in raster order (time, row, column), also when interleaved with audio."""
    t, h, w = (int(x) for x in grid_thw)
    h, w = h // merge, w // merge
    visual = (roles[sample] == ROLE_VISUAL).nonzero().flatten().cpu()
    if visual.numel() != t * h * w:
        raise ValueError(
            f"sample {sample} has {visual.numel()} visual tokens but its video grid {t}x{h}x{w} (merged) has "
            f"{t * h * w}: pass the roles and the grid row of the same sample, with one video"
        )
    rank = torch.full((roles.shape[1],), -1, dtype=torch.long)
    rank[visual] = torch.arange(visual.numel())
    index, gamma = record["kept_index"][sample].cpu(), record["gamma"][sample].float().cpu()
    rows = rank[index.clamp(min=0)]
    chosen = (index >= 0) & (rows >= 0)  # kept positions that are visual tokens
    kept = torch.zeros(t * h * w, dtype=torch.bool)
    kept[rows[chosen]] = True
    weight = torch.zeros(t * h * w)
    weight[rows[chosen]] = gamma[chosen]
    return kept.view(t, h, w), weight.view(t, h, w)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of `x` `(B, H, L, E)` with the thinker's (multimodal) cos / sin `(B, L, E)`."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]


def _layer_queries_keys(layer, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """The layer's own rotated queries and keys `(B, H, L, E)` of `hidden` (keys repeated over query groups)."""
    attention = layer.self_attn
    normed = layer.input_layernorm(hidden)
    batch, length, _ = hidden.shape
    queries = attention.q_proj(normed).view(batch, length, -1, attention.head_dim).transpose(1, 2)
    keys = attention.k_proj(normed).view(batch, length, -1, attention.head_dim).transpose(1, 2)
    queries, keys = _rotate(queries, cos, sin), _rotate(keys, cos, sin)
    return queries, keys.repeat_interleave(queries.shape[1] // keys.shape[1], dim=1)


def span_rows_attention(queries: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor, roles: torch.Tensor):
    """Head-averaged causal attention of only the rows WETR reads, against all keys: `(rows (B, R, L), row_roles
    (B, R))`, the rows of the two query spans and the content tokens (-1: a padding row of a sample with fewer).
    No (L x L) matrix is formed. The media tokens' rows (their support of the content, Eq. 5) are left out: the
    processor puts every media token before the subtitle, so under causal attention those rows are 0 there."""
    needed = (roles == ROLE_QUERY_POS) | (roles == ROLE_QUERY_NEG) | (roles == ROLE_CONTENT)
    count = int(needed.sum(1).max())
    rows = masked_positions(needed, count)  # (B, R) positions
    picked = queries.gather(2, rows[:, None, :, None].expand(-1, queries.shape[1], -1, queries.shape[-1]))
    logits = picked @ keys.transpose(-1, -2) / math.sqrt(queries.shape[-1])  # (B, H, R, L)
    positions = torch.arange(keys.shape[2], device=keys.device)
    allowed = (positions[None, None, :] <= rows[:, :, None]) & valid[:, None, :]  # causal, no padding: (B, R, L)
    # slots past a sample's own count point at other positions, on left padding at padding ones whose row would be
    # empty (a NaN softmax, which the span means would spread over the whole sample): such a row sees itself only
    # and is zeroed below
    allowed |= positions[None, None, :] == rows[:, :, None]
    weights = logits.masked_fill(~allowed[:, None], -torch.inf).softmax(-1).mean(1)  # (B, R, L)
    real = needed.gather(1, rows)
    row_roles = torch.where(real, roles.gather(1, rows), -1)  # slots past a sample's count: -1
    return torch.where(real[..., None], weights, torch.zeros_like(weights)), row_roles


def _mask(keys_valid: torch.Tensor, queries: int, implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """The 4-D causal + padding mask `(B, 1, T, K)` of the last `queries` (T) positions over keys with valid
    positions `keys_valid` `(B, K)` (a prefill: T = K; a decode step: T new tokens after the cache). Each query may
    attend to itself, so a padding query's row is never empty (that would give NaN). Boolean for sdpa, additive
    for eager attention."""
    width = keys_valid.shape[1]
    own = width - queries + torch.arange(queries, device=keys_valid.device)  # each query's own key
    keys = torch.arange(width, device=keys_valid.device)
    allowed = ((keys[None, :] <= own[:, None])[None] & keys_valid[:, None, :]) | (keys[None, :] == own[:, None])[None]
    if implementation == "sdpa":
        return allowed[:, None]
    additive = torch.zeros(allowed.shape, dtype=dtype, device=keys_valid.device)
    return additive.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def refined_language_model(
    text_model,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor,
    roles: torch.Tensor,
    config: WETRConfig,
    record: list | None = None,
    past_key_values=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The thinker's language model (`text_model`: its decoder layers, rotary embedding and final norm) over a
    prefill with WETR at the trigger layers: before a trigger layer the tokens are scored with that layer's own
    queries and keys, the dropped ones leave the sequence (re-padded on the input's padding side, positions kept),
    the kept ones are scaled by gamma. With `past_key_values` each layer caches the sequence it saw (the layers after
    a trigger only the kept tokens) and the cache remembers each layer's valid positions (`wetr_state`), which
    `refined_decode` continues from.

    Returns the final hidden states `(B, L', D)` and `kept_index` `(B, L')`: each row's position in the input, -1
    on padding. `record`, when given, receives per trigger layer the kept positions, gamma and the scores.
    """
    layers = text_model.layers
    triggers = set(config.trigger_layers(len(layers)))
    check_roles(roles)
    implementation = text_model.config._attn_implementation
    if implementation not in ("sdpa", "eager"):
        raise ValueError(f"WETR runs with sdpa or eager attention, not {implementation!r}")
    batch, length, _ = inputs_embeds.shape
    valid = torch.ones(batch, length, dtype=torch.bool, device=inputs_embeds.device)
    if attention_mask is not None:
        valid = attention_mask.bool()
    left_padded = bool((~valid[:, 0]).any())
    rotary_positions = position_ids[1:] if position_ids.shape[0] == 4 else position_ids
    hidden = inputs_embeds
    cos, sin = text_model.rotary_emb(hidden, rotary_positions)
    index = torch.arange(length, device=hidden.device).expand(batch, -1)
    generator = torch.Generator().manual_seed(config.seed)
    valids = []  # per layer, the valid positions of the sequence it saw (what its cache holds)
    for number, layer in enumerate(layers):
        if number in triggers:
            queries, keys = _layer_queries_keys(layer, hidden, cos, sin)
            attention, row_roles = span_rows_attention(queries, keys, valid, roles)
            scores = selection_scores(attention.float(), roles, config.proxy, generator, row_roles)
            kept = select(scores, roles, config) & valid
            gamma = reweighting(queries, keys, scores, roles, kept, config)["gamma"]
            hidden = hidden * gamma[..., None].to(hidden.dtype)
            order, valid = compaction(kept, int(kept.sum(1).max()), left_padded)
            hidden = hidden.gather(1, order[..., None].expand(-1, -1, hidden.shape[-1]))
            cos = cos.gather(1, order[..., None].expand(-1, -1, cos.shape[-1]))
            sin = sin.gather(1, order[..., None].expand(-1, -1, sin.shape[-1]))
            roles = torch.where(valid, roles.gather(1, order), ROLE_INSTRUCTION)
            index = torch.where(valid, index.gather(1, order), -1)
            if record is not None:
                kept_gamma = torch.where(valid, gamma.gather(1, order), 1.0)
                record.append(
                    {"layer": number, "kept_index": index, "gamma": kept_gamma, "scores": scores, "kept": kept}
                )
        mask = _mask(valid, valid.shape[1], implementation, hidden.dtype)
        hidden = layer(
            hidden,
            attention_mask=mask,
            position_embeddings=(cos, sin),
            past_key_values=past_key_values,
            use_cache=past_key_values is not None,
        )
        valids.append(valid)
    if past_key_values is not None:
        past_key_values.wetr_state = {"prompt_length": length, "valid": valids}
    return text_model.norm(hidden), index


def refined_decode(
    text_model,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor,
    past_key_values,
) -> torch.Tensor:
    """Decode steps after a refined prefill (`refined_language_model` with a cache): every layer attends to what
    its own cache holds, the prompt positions it kept (`wetr_state`) plus the tokens generated since. Returns the
    final hidden states `(B, T, D)` of the new tokens."""
    state = getattr(past_key_values, "wetr_state", None)
    if state is None:
        raise ValueError("this KV cache does not come from a WETR prefill: run the prompt with WETR on first")
    implementation = text_model.config._attn_implementation
    batch, steps, _ = inputs_embeds.shape
    generated = past_key_values.get_seq_length() + steps - state["prompt_length"]  # layer 0 holds every token
    if attention_mask is None:
        new = torch.ones(batch, generated, dtype=torch.bool, device=inputs_embeds.device)
    else:
        new = attention_mask[:, state["prompt_length"] :].bool()
    rotary_positions = position_ids[1:] if position_ids.shape[0] == 4 else position_ids
    hidden = inputs_embeds
    cos, sin = text_model.rotary_emb(hidden, rotary_positions)
    for number, layer in enumerate(text_model.layers):
        mask = _mask(torch.cat([state["valid"][number], new], dim=1), steps, implementation, hidden.dtype)
        hidden = layer(
            hidden, attention_mask=mask, position_embeddings=(cos, sin), past_key_values=past_key_values, use_cache=True
        )
    return text_model.norm(hidden)


def wetr_language_model(
    text_model,
    config: WETRConfig,
    record: list | None,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor,
    past_key_values,
    use_cache: bool | None,
    prefill: bool,
    roles: torch.Tensor | None,
    text_config,
) -> tuple[torch.Tensor, object, torch.Tensor | None]:
    """The thinker's language model with WETR on: a prefill refined at the trigger layers
    (`refined_language_model`), or a decode step (also candidates continuing from a scored prompt) on the refined
    cache (`refined_decode`). Returns `(last_hidden_state, past_key_values, kept_index)`; `kept_index` is None on
    decode steps."""
    if not prefill:
        hidden = refined_decode(text_model, inputs_embeds, attention_mask, position_ids, past_key_values)
        return hidden, past_key_values, None
    if roles is None:
        raise ValueError(
            "WETR is on but no wetr_roles were given: build the prompts with processor.build_prompt(..., "
            "wetr_queries=True) and pass wetr_roles=processor.token_roles(input_ids)"
        )
    if use_cache and past_key_values is None:
        past_key_values = DynamicCache(config=text_config)
    roles = roles.to(inputs_embeds.device)
    if roles.shape[1] < inputs_embeds.shape[1]:  # uncached generation: the generated tokens are instruction
        roles = F.pad(roles, (0, inputs_embeds.shape[1] - roles.shape[1]), value=ROLE_INSTRUCTION)
    cache = past_key_values if use_cache or past_key_values is not None else None
    hidden, kept_index = refined_language_model(
        text_model, inputs_embeds, attention_mask, position_ids, roles, config, record, cache
    )
    return hidden, past_key_values, kept_index


__all__ = [
    "ROLE_AUDIO",
    "refined_decode",
    "refined_language_model",
    "span_rows_attention",
    "ROLE_CONTENT",
    "ROLE_INSTRUCTION",
    "PROXIES",
    "ROLE_QUERY_NEG",
    "QUERY_NEG_TEXT",
    "ROLE_QUERY_POS",
    "QUERY_POS_TEXT",
    "ROLES",
    "ROLE_VISUAL",
    "WETRConfig",
    "check_roles",
    "kept_visual_grid",
    "norm",
    "reconstruction_errors",
    "reweighting",
    "select",
    "selection_scores",
    "span_attention",
    "top_fraction",
    "wetr_language_model",
]
