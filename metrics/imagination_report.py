"""Is the imagination learning anything? Held-out statistics of the EWM's predictions (docs/architecture.md §4.5.

A falling imagination loss proves nothing by itself: when the target can drift towards a constant (the original
"detach after the trained down-projection"), the loss falls because the target stops depending on the clip. So the
report compares the EWM with two predictors that know nothing about dynamics, on the same held-out pairs:

- copy-last: predict every future bin as the last observed token (in target space);
- mean-of-past: predict every future bin as the mean observed token;
- set-mean: predict the mean target of the whole held-out set (a constant);
- ridge (with `fit_rows`, training clips): a ridge regression per future bin from [mean of the past, last observed
  token] to the bin's target, fit on the training clips' pairs (`fit_ridge`), scored on the held-out ones: a
  forecaster that knows linear dynamics and nothing else.

Under the clip split (the default) the report's pairs are also the inference regime: each clip is cut at rho and
processed as the short clip it then is, the rollout imagines the next `ewm_horizon_seconds`, and the target is the
real continuation of the full clip (docs/architecture.md §4.3: training and inference see the same input).

With `fit_rows` the report also probes for the final label at each rho (`label_probes`): a logistic regression on
the belief tokens and one on the pooled observed tokens, fit on the training clips. Beliefs no better than the pooled
tokens: the aggregation adds nothing a reader of the past lacks; both informative but the model's accuracy low: the
LLM does not use them.

Skill = EWM loss / baseline loss: below 1 beats that baseline. Target similarity is the mean cosine between the
targets of different clips (near 1: the targets have collapsed); prediction similarity is the same for the EWM's last
rollout step (near 1: it answers the same for every clip). Per-step cosine is the paper's Table 8.

    from metrics.imagination_report import imagination_report
    report = imagination_report(model, processor, rows, keep_ratios=(0.3, 0.5, 0.7))
"""

from __future__ import annotations

import torch

from modeling_affectverse.data.collator import AffectVerseCollator, MediaOptions
from modeling_affectverse.ewm import ImaginationPairs, imagination_loss_terms, mean_pairwise_cosine

MODALITY_NAMES = {0: "video", 1: "audio"}


def ridge_features(pairs: ImaginationPairs) -> torch.Tensor:
    """`(P, 2W + 1)`: the mean of the past, the last observed token and a constant 1 (the intercept)."""
    ones = pairs.copy_last.new_ones(pairs.copy_last.shape[0], 1)
    return torch.cat([pairs.past_mean.float(), pairs.copy_last.float(), ones], dim=1)


def fit_ridge(features: torch.Tensor, target: torch.Tensor, bins: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """Ridge weights `(Q, F, W)`: per bin q, argmin_B ||X_q B - Y_q||^2 + alpha ||B without its last row||^2 over the
    rows that have bin q (X `(P, F)` with a constant last column, the intercept, which is not penalised)."""
    count, width = features.shape[1], target.shape[-1]
    penalty = alpha * torch.eye(count, dtype=torch.float64)
    penalty[-1, -1] = 0.0
    weights = []
    for q in range(target.shape[1]):
        rows = torch.ones(target.shape[0], dtype=torch.bool) if bins is None else bins[:, q]
        x, y = features[rows].double(), target[rows, q].double()
        if x.shape[0] == 0:
            weights.append(torch.zeros(count, width, dtype=torch.float64))
            continue
        weights.append(torch.linalg.solve(x.T @ x + penalty, x.T @ y))
    return torch.stack(weights).float()


def ridge_predict(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`(P, Q, W)` predictions of `fit_ridge`'s weights."""
    return torch.einsum("pf,qfw->pqw", features.float(), weights)


@torch.no_grad()
def collect_pairs(model, processor, rows, keep_ratios, batch_size: int = 8, fps: float = 3.0) -> dict:
    """Modality -> the pairs of `rows` cut at every keep ratio (as `imagine` produces them, supervised rows only)."""
    return collect(model, processor, rows, keep_ratios, batch_size, MediaOptions(fps=fps))[0]


@torch.no_grad()
def collect(model, processor, rows, keep_ratios, batch_size: int = 8, media: MediaOptions | None = None) -> tuple:
    """One `imagine` pass over `rows` cut at every keep ratio: (modality -> supervised pairs, rho -> probe features).

    Probe features per clip, in row order: "belief", the belief tokens the LLM would receive, flattened `(n x D)`;
    "pooled", the mean observed (past) token of each stream in target space, video then audio (zeros for a stream a
    clip lacks): what a reader of the cut clip's tokens has without any imagination.
    `media`: decoding options (with a `store`, each clip is decoded once for all ratios and calls).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    collected: dict[int, list[ImaginationPairs]] = {}
    features: dict[str, dict[str, list]] = {}
    for ratio in keep_ratios:
        collator = AffectVerseCollator.for_prediction(processor, keep_ratio=ratio, with_future=True, media=media)
        per_ratio = features.setdefault(f"{float(ratio):g}", {"belief": [], "pooled": []})
        for start in range(0, len(rows), batch_size):
            batch = collator([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
            output = base.imagine(**batch)
            for modality, pairs in output.pairs.items():
                collected.setdefault(modality, []).append(pairs)
            per_ratio["belief"].append(output.belief_tokens.float().flatten(1))
            per_ratio["pooled"].append(_pooled(output, batch["input_ids"].shape[0]))
    merged = {modality: ImaginationPairs.cat(parts) for modality, parts in collected.items()}
    stacked = {rho: {name: _stack(parts) for name, parts in kinds.items()} for rho, kinds in features.items()}
    return merged, stacked


def _pooled(output, size: int) -> torch.Tensor | None:
    """`(B, 2W)`: each sample's mean observed token per stream (video, audio), zeros where a stream is absent."""
    pairs = output.batch_pairs or {}
    widths = {m: p.past_mean.shape[-1] for m, p in pairs.items() if p.past_mean is not None}
    if not widths:
        return None
    width = next(iter(widths.values()))
    parts = []
    for modality in MODALITY_NAMES:
        past = pairs[modality].past_mean if modality in widths else None
        parts.append(past.float() if past is not None else torch.zeros(size, width))
    return torch.cat(parts, dim=1)


def _stack(parts: list) -> torch.Tensor | None:
    """Rows of every batch, or None when a batch had none (e.g. no stream with a past)."""
    if any(part is None for part in parts):
        return None
    width = max(part.shape[1] for part in parts)  # belief rows are padded to the batch's n_max
    return torch.cat([torch.nn.functional.pad(part, (0, width - part.shape[1])) for part in parts])


def _same_width(*features: torch.Tensor) -> list:
    """Arrays padded with zeros to one width (belief rows of a set without dual-belief clips are narrower)."""
    width = max(x.shape[1] for x in features)
    return [torch.nn.functional.pad(x, (0, width - x.shape[1])).numpy() for x in features]


def label_probes(train_features: dict, train_labels, held_out_features: dict, held_out_labels) -> dict:
    """`{rho: {"belief": acc, "pooled": acc}}`: a logistic-regression probe per rho and feature kind, fit on the
    training clips' features, scored on the held-out clips' final labels (`metrics.ceilings.probe_accuracy`)."""
    from metrics.ceilings import probe_accuracy

    probes = {}
    for rho, kinds in held_out_features.items():
        probes[rho] = {}
        for name, held_out in kinds.items():
            train = train_features.get(rho, {}).get(name)
            if train is None or held_out is None:
                probes[rho][name] = None
                continue
            train, held_out = _same_width(train, held_out)
            probes[rho][name] = probe_accuracy(train, list(train_labels), held_out, list(held_out_labels))
    return probes


@torch.no_grad()
def imagination_report(
    model,
    processor,
    rows,
    keep_ratios: tuple[float, ...] = (0.3, 0.5, 0.7),
    batch_size: int = 8,
    fps: float = 3.0,
    fit_rows=None,
    ridge_alpha: float = 1.0,
    media_store: dict | None = None,
) -> dict | None:
    """Held-out imagination statistics of `model` (an AffectVerse model or a PEFT wrapper of one) on manifest rows.

    Each row is split at every keep ratio as training splits it (the model's `ewm_split`: by default the clip cut at
    rho x its length, scored against the next `ewm_horizon_seconds` in fixed time bins, the bins past the clip's end
    left out of every term). Returns None for a model that does not imagine.

    `fit_rows` (training clips): also fit the ridge forecaster on their pairs and score it (`ridge_alpha`), and fit
    the label probes on their belief tokens and pooled observed tokens (`label_probes`): `"probes"`.
    `media_store`: a dict kept across calls as the decoded-media cache (`MediaOptions.store`).

    Returns:
        {"pairs": n, "ewm_loss", "<baseline>_loss" and "skill_<baseline>" for copy_last, set_mean, mean_of_past
         (and ridge with `fit_rows`), "target_similarity", "prediction_similarity", "cosine_per_step": [K],
         "by_modality": {name: {same keys}}, "keep_ratios", with `fit_rows` "probes": {rho: {"belief", "pooled"}}}
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not base.config.imagines:
        return None
    model.eval()
    media = MediaOptions(fps=fps, store=media_store)
    collected, features = collect(model, processor, rows, keep_ratios, batch_size, media)
    if not collected:
        return None
    fitted, fit_features = collect(model, processor, fit_rows, keep_ratios, batch_size, media) if fit_rows else ({}, {})
    weight = float(base.config.ewm_cosine_weight)
    by_modality, totals = {}, {name: [] for name in ("ewm", "copy_last", "set_mean", "mean_of_past", "ridge", "cosine")}
    for modality in sorted(collected):
        pairs = collected[modality]
        imagined, bins = pairs.imagined.float(), pairs.bins
        pairs = ImaginationPairs(imagined, pairs.target.float(), pairs.copy_last.float(), None, bins, pairs.past_mean)
        ewm, cosine = imagination_loss_terms(
            imagined, pairs.target[:, None], weight, None if bins is None else bins[:, None]
        )  # (P, K) each
        copied, set_mean = pairs.baseline_losses(weight)  # (P,) each: the mean target over the whole held-out set
        losses = {"ewm": ewm.mean(1), "copy_last": copied, "set_mean": set_mean, "cosine": cosine}
        losses["mean_of_past"] = _loss(pairs.past_mean.float()[:, None].expand_as(pairs.target), pairs, weight)
        if modality in fitted:
            train = fitted[modality]
            ridge = fit_ridge(ridge_features(train), train.target.float(), train.bins, ridge_alpha)
            losses["ridge"] = _loss(ridge_predict(ridge_features(pairs), ridge), pairs, weight)
        for name, value in losses.items():
            totals[name].append(value)
        by_modality[MODALITY_NAMES[modality]] = _summary(
            losses,
            mean_pairwise_cosine(pairs.target, bins=bins),
            mean_pairwise_cosine(imagined[:, -1], bins=bins),
        )
    similarities = [by_modality[MODALITY_NAMES[m]] for m in sorted(collected)]
    merged = {name: torch.cat(values) for name, values in totals.items() if len(values) == len(collected)}
    report = _summary(
        merged,
        _mean([s["target_similarity"] for s in similarities]),
        _mean([s["prediction_similarity"] for s in similarities]),
    )
    report["by_modality"] = by_modality
    report["keep_ratios"] = list(keep_ratios)
    if fit_rows:
        labels = lambda clips: [clips[i]["label"] for i in range(len(clips))]  # noqa: E731
        report["probes"] = label_probes(fit_features, labels(fit_rows), features, labels(rows))
    return report


def _loss(prediction: torch.Tensor, pairs: ImaginationPairs, weight: float) -> torch.Tensor:
    """Per-pair loss `(P,)` of a baseline's prediction `(P, Q, W)`, over the bins that exist."""
    return imagination_loss_terms(prediction, pairs.target, weight, pairs.bins)[0]


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _summary(losses: dict, target_similarity, prediction_similarity) -> dict:
    """Mean losses, the EWM's skill against each baseline (EWM loss / baseline loss), similarities, per-step cosine."""
    as_float = lambda value: None if value is None else float(value)  # noqa: E731
    ewm = losses["ewm"].mean()
    report = {"pairs": int(losses["ewm"].shape[0]), "ewm_loss": float(ewm)}
    for name in ("copy_last", "set_mean", "mean_of_past", "ridge"):
        if name in losses:
            report[f"{name}_loss"] = float(losses[name].mean())
            report[f"skill_{name}"] = float(ewm / losses[name].mean())
    report.update(
        target_similarity=as_float(target_similarity),
        prediction_similarity=as_float(prediction_similarity),
        cosine_per_step=[float(c) for c in losses["cosine"].mean(0)],
    )
    return report


__all__ = [
    "collect",
    "collect_pairs",
    "fit_ridge",
    "imagination_report",
    "label_probes",
    "ridge_features",
    "ridge_predict",
]
