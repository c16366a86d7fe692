"""Scoring predictions against the solver: per-experiment metrics, the cross-experiment summary
and the figures (``evaluate``, ``summary``, ``figures``)."""

from piff.evaluation.evaluate import THRESHOLDS_M, evaluate, evaluate_files
from piff.evaluation.summary import summary_table, write_summary

__all__ = ["THRESHOLDS_M", "evaluate", "evaluate_files", "summary_table", "write_summary"]
