"""Is the imagination learning anything? Held-out statistics of the EWM's predictions (docs/architecture.md §4.5.

A falling imagination loss proves nothing by itself: when the target can drift towards a constant (the original
"detach after the trained down-projection"), the loss falls because the target stops depending on the clip. So the
report compares the EWM with two predictors that know nothing about dynamics, on the same held-out pairs:

- copy-last: predict every future bin as the last observed token (in target space);
- set-mean: predict the mean target of the whole held-out set (a constant).

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


@torch.no_grad()
def imagination_report(
    model,
    processor,
    rows,
    keep_ratios: tuple[float, ...] = (0.3, 0.5, 0.7),
    batch_size: int = 8,
    fps: float = 3.0,
) -> dict | None:
    """Held-out imagination statistics of `model` (an AffectVerse model or a PEFT wrapper of one) on manifest rows.

    Each row is split at every keep ratio as training splits it (the model's `ewm_split`: by default the clip cut at
    rho x its length, scored against the next `ewm_horizon_seconds` in fixed time bins, the bins past the clip's end
    left out of every term). Returns None for a model that does not imagine.

    Returns:
        {"pairs": n, "ewm_loss", "copy_last_loss", "set_mean_loss", "skill_copy_last", "skill_set_mean",
         "target_similarity", "prediction_similarity", "cosine_per_step": [K], "by_modality": {name: {same keys}}}
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not base.config.imagines:
        return None
    model.eval()
    collected: dict[int, list[ImaginationPairs]] = {}
    for ratio in keep_ratios:
        collator = AffectVerseCollator.for_prediction(
            processor, keep_ratio=ratio, with_future=True, media=MediaOptions(fps=fps)
        )
        for start in range(0, len(rows), batch_size):
            batch = collator([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
            for modality, pairs in base.imagine(**batch).pairs.items():
                collected.setdefault(modality, []).append(pairs)
    if not collected:
        return None
    weight = float(base.config.ewm_cosine_weight)
    by_modality, totals = {}, {"ewm": [], "copy_last": [], "set_mean": [], "cosine": []}
    for modality in sorted(collected):
        pairs = ImaginationPairs.cat(collected[modality])
        imagined = pairs.imagined.float()  # (P, K, Q, W)
        bins = pairs.bins
        pairs = ImaginationPairs(imagined, pairs.target.float(), pairs.copy_last.float(), None, bins)
        ewm, cosine = imagination_loss_terms(
            imagined, pairs.target[:, None], weight, None if bins is None else bins[:, None]
        )  # (P, K) each
        copied, set_mean = pairs.baseline_losses(weight)  # (P,) each: the mean target over the whole held-out set
        totals["ewm"].append(ewm.mean(1))
        totals["copy_last"].append(copied)
        totals["set_mean"].append(set_mean)
        totals["cosine"].append(cosine)
        by_modality[MODALITY_NAMES[modality]] = _summary(
            ewm.mean(1),
            copied,
            set_mean,
            cosine,
            mean_pairwise_cosine(pairs.target, bins=bins),
            mean_pairwise_cosine(imagined[:, -1], bins=bins),
        )
    similarities = [by_modality[MODALITY_NAMES[m]] for m in sorted(collected)]
    report = _summary(
        torch.cat(totals["ewm"]),
        torch.cat(totals["copy_last"]),
        torch.cat(totals["set_mean"]),
        torch.cat(totals["cosine"]),
        _mean([s["target_similarity"] for s in similarities]),
        _mean([s["prediction_similarity"] for s in similarities]),
    )
    report["by_modality"] = by_modality
    report["keep_ratios"] = list(keep_ratios)
    return report


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _summary(ewm, copied, set_mean, cosine, target_similarity, prediction_similarity) -> dict:
    as_float = lambda value: None if value is None else float(value)  # noqa: E731
    return {
        "pairs": int(ewm.shape[0]),
        "ewm_loss": float(ewm.mean()),
        "copy_last_loss": float(copied.mean()),
        "set_mean_loss": float(set_mean.mean()),
        "skill_copy_last": float(ewm.mean() / copied.mean()),
        "skill_set_mean": float(ewm.mean() / set_mean.mean()),
        "target_similarity": as_float(target_similarity),
        "prediction_similarity": as_float(prediction_similarity),
        "cosine_per_step": [float(c) for c in cosine.mean(0)],
    }


__all__ = ["imagination_report"]
