"""Views of a RunTrace: HTML token streams (tokens), plotly charts (charts), static slide figures (export).

Renders from the trace alone, so a saved run can be shown without any model; nothing here imports gradio.
"""

from .charts import (
    accepted_length_figure,
    acceptance_histogram,
    frontier_figure,
    speedup_curve_figure,
    speedup_points,
    step_cost_ratio,
    timing_figure,
    verdict_counts,
)
from .export import (
    save_accepted_length,
    save_acceptance_histogram,
    save_all,
    save_bench_figure,
    save_speedup_curve,
    save_timing,
)
from .tokens import (
    PALETTES,
    drafted_positions,
    legend_html,
    round_table_html,
    run_label,
    tokens_html,
    word_diff,
    word_diff_html,
)

__all__ = [
    "PALETTES",
    "drafted_positions",
    "accepted_length_figure",
    "acceptance_histogram",
    "frontier_figure",
    "legend_html",
    "round_table_html",
    "run_label",
    "save_accepted_length",
    "save_acceptance_histogram",
    "save_all",
    "save_bench_figure",
    "save_speedup_curve",
    "save_timing",
    "speedup_curve_figure",
    "speedup_points",
    "step_cost_ratio",
    "timing_figure",
    "tokens_html",
    "verdict_counts",
    "word_diff",
    "word_diff_html",
]
