"""Evaluation: metrics and summaries of attack results."""
from .metrics import perturbation_metrics
from .summary import markdown_table, summarize

__all__ = ["markdown_table", "perturbation_metrics", "summarize"]
