"""The base class of the `metrics/` modules: `evaluate.Metric` with one input check for all of them."""

from __future__ import annotations

import functools
import inspect

import evaluate


def _checked(compute):
    """`_compute` after the check of what it is given: the lists evaluate gathered from `add` / `add_batch` (or
    the ones `compute` was called with) must be non-empty and equally long."""

    @functools.wraps(compute)
    def run(self, predictions, references, **kwargs):
        self._check_lists(list(predictions), list(references))
        return compute(self, predictions, references, **kwargs)

    return run


class CheckedMetric(evaluate.Metric):
    """`evaluate.Metric` whose `compute` refuses, with an error naming the metric: empty or unequally long inputs
    (before evaluate's own format inference, which fails on an empty list with an IndexError, and instead of a
    division by zero or a silently shortened zip), and arguments the module does not take (which is how
    `evaluate.combine` fails: it passes one set of arguments to every module). Inputs gathered with `add` /
    `add_batch` are checked when they are scored."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "_compute" in cls.__dict__:
            cls._compute = _checked(cls.__dict__["_compute"])

    def compute(self, *, predictions=None, references=None, **kwargs):
        """`evaluate.Metric.compute` after the input check (evaluate appends the module's input description here)."""
        self._check_arguments(kwargs)
        if predictions is None and references is None:  # score what add / add_batch gathered
            return super().compute(**kwargs)
        predictions = [] if predictions is None else list(predictions)
        references = [] if references is None else list(references)
        self._check_lists(predictions, references)
        return super().compute(predictions=predictions, references=references, **kwargs)

    def _check_lists(self, predictions: list, references: list) -> None:
        if not predictions or not references:
            raise ValueError(f"{self.name}: predictions and references must not be empty")
        if len(predictions) != len(references):
            raise ValueError(f"{self.name}: {len(predictions)} predictions but {len(references)} references")

    def _check_arguments(self, kwargs: dict) -> None:
        taken = [
            name for name in inspect.signature(self._compute).parameters if name not in ("predictions", "references")
        ]
        unknown = sorted(set(kwargs) - set(taken))
        if unknown:
            raise ValueError(
                f"{self.name} does not take {unknown} (it takes {taken or 'no other argument'}). evaluate.combine is "
                "not supported: it passes one set of arguments to every module; call each module's compute"
            )


__all__ = ["CheckedMetric"]
