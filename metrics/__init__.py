"""Evaluation: the metric modules (one folder each, for `evaluate.load`), the runner that scores a model on
manifests (`evaluation.py`), and the reports and figures built on it."""
