"""Figures (matplotlib, headless)."""
from .figures import group_heatmap, plot_attack_comparison

__all__ = ["group_heatmap", "plot_attack_comparison"]
