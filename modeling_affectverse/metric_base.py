"""The base class of the `metrics/` modules: `evaluate.Metric` with one input check for all of them."""

from __future__ import annotations

import evaluate


class CheckedMetric(evaluate.Metric):
    """`evaluate.Metric` whose `compute` refuses empty or unequally long inputs with an error naming the metric,
    before evaluate's own format inference (which fails on an empty list with an IndexError) and instead of a
    division by zero or a silently shortened zip."""

    def compute(self, *, predictions=None, references=None, **kwargs):
        """`evaluate.Metric.compute` after the input check (evaluate appends the module's input description here)."""
        predictions = [] if predictions is None else list(predictions)
        references = [] if references is None else list(references)
        if not predictions or not references:
            raise ValueError(f"{self.name}: predictions and references must not be empty")
        if len(predictions) != len(references):
            raise ValueError(f"{self.name}: {len(predictions)} predictions but {len(references)} references")
        return super().compute(predictions=predictions, references=references, **kwargs)


__all__ = ["CheckedMetric"]
