"""The charts as static PNG or SVG for slides and papers, drawn with matplotlib from the same figure data.

Figures are built on ``matplotlib.figure.Figure`` (rendered by Agg), never through pyplot, so exporting
from a web server thread touches no global state. The format follows the path's suffix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lvspec.trace import RunTrace, save_runs

from .charts import (
    BAR_COLOUR,
    FRONTIER_COLOURS,
    FRONTIER_TITLE,
    MODEL_LABEL,
    PHASE_COLOURS,
    PHASES,
    POINT_COLOUR,
    TIMING_TITLE,
    acceptance_counts,
    frontier_labels,
    frontier_series,
    round_lengths,
    speedup_curve,
    speedup_points,
    step_cost_ratio,
    timing_rows,
)
from .tokens import PALETTES

SIZE = (8.0, 4.5)  # inches: a 16:9 slide
DPI = 150
_RC = {"font.size": 11, "axes.titlesize": 13, "axes.spines.top": False, "axes.spines.right": False}


@contextmanager
def _slide(path: str | Path, title: str) -> Iterator[Axes]:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=SIZE, layout="constrained")
        ax = fig.add_subplot()
        ax.set_title(title)
        yield ax
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 4), frameon=False,
                       fontsize=9)
        fig.savefig(path, dpi=DPI)


def save_timing(traces: list[RunTrace], path: str | Path) -> None:
    rows = timing_rows(traces)
    with _slide(path, TIMING_TITLE) as ax:
        labels = [r.label for r in rows]
        left = [0.0] * len(rows)
        for p in PHASES:
            widths = [r.seconds[p] for r in rows]
            ax.barh(labels, widths, left=left, label=p, color=PHASE_COLOURS[p])
            left = [a + b for a, b in zip(left, widths)]
        for y, r in enumerate(rows):
            ax.annotate(r.note, (r.total, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=10)
        ax.set_xlim(0, (max((r.total for r in rows), default=0.0) or 1.0) * 1.8)
        ax.invert_yaxis()
        ax.set_xlabel("seconds")


def save_accepted_length(trace: RunTrace, path: str | Path, palette: str = "default") -> None:
    data = round_lengths(trace)
    with _slide(path, f"{data.title}\n{data.subtitle}") as ax:
        for ending, (xs, ys) in data.by_ending().items():
            ax.bar(
                xs,
                ys,
                color=PALETTES[palette][ending],
                edgecolor="#374151",
                linewidth=0.5,
                label=f"ended with {ending}",
            )
        ax.axhline(data.mean, linestyle="--", color="#374151", label=f"E[T] = {data.mean:.2f}")
        ax.set_xlabel("round")
        ax.set_ylabel("tokens committed")


def save_acceptance_histogram(trace: RunTrace, path: str | Path) -> None:
    data = acceptance_counts(trace)
    with _slide(path, data.title) as ax:
        ax.bar(range(data.k + 1), data.counts, color=BAR_COLOUR)
        ax.set_xticks(range(data.k + 1))
        ax.set_xlabel("accepted draft tokens")
        ax.set_ylabel("rounds")


def save_speedup_curve(points: dict[str, tuple[float, float]], k: int, c: float, path: str | Path) -> None:
    data = speedup_curve(points, k, c)
    with _slide(path, data.title) as ax:
        ax.plot(data.e, data.speedup, label=MODEL_LABEL, color=BAR_COLOUR)
        ax.axhline(data.ceiling, linestyle="--", color="#6B7280", label=data.ceiling_label)
        measured = list(data.points.values())
        ax.plot([e for e, _ in measured], [s for _, s in measured], "o", color=POINT_COLOUR, label="measured")
        for name, (e, s) in data.points.items():
            ax.annotate(name, (e, s), xytext=(0, 7), textcoords="offset points", ha="center")
        ax.set_ylim(0, max([data.ceiling, *(s for _, s in measured)]) * 1.12)
        ax.set_xlabel("mean accepted length E[T]")
        ax.set_ylabel("speedup vs vanilla")


def save_all(traces: list[RunTrace], folder: Path, palette: str = "default") -> list[str]:
    """A comparison's downloads: its traces as JSON and every chart that applies to it as PNG; their paths."""
    save_runs(traces, folder / "runs.json")
    save_timing(traces, folder / "timing.png")
    runs = {t.method: t for t in traces}
    main = runs.get("lvspec") or traces[-1]
    if main.draft is not None:
        save_accepted_length(main, folder / f"accepted-length-{main.method}.png", palette)
        save_acceptance_histogram(main, folder / f"acceptance-histogram-{main.method}.png")
    points = speedup_points(traces)
    if points and "vanilla" in runs:
        save_speedup_curve(points, main.params.k, step_cost_ratio(traces), folder / "speedup-curve.png")
    return sorted(str(p) for p in folder.iterdir())


def save_bench_figure(result: dict, path: str | Path) -> None:
    """A bench or sweep result: the speed/retention frontier."""
    series = frontier_series(result)
    labels = frontier_labels(series)
    with _slide(path, FRONTIER_TITLE) as ax:
        for family, points in series.items():
            xs, ys = [p[0] for p in points], [100 * p[1] for p in points]
            ax.plot(xs, ys, "o-" if len(points) > 1 else "o", color=FRONTIER_COLOURS.get(family), label=family)
            for x, y, name in zip(xs, ys, labels[family]):
                if name:
                    ax.annotate(name, (x, y), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8)
        ax.set_xlabel("decode speedup vs vanilla (×)")
        ax.set_ylabel("retention (% of the target's quality)")
