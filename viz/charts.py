"""Plotly figures of RunTraces, and the plain figure data they are drawn from.

Each figure has a data function that returns plain numbers; ``export.py`` draws the same data with
matplotlib, so the app and the slides never disagree about a value.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from statistics import mean

import numpy as np
import plotly.graph_objects as go

from lvspec.trace import PHASES, VERDICTS, RunTrace

from .tokens import PALETTES

PHASE_COLOURS = {"prefill": "#999999", "draft": "#E69F00", "verify": "#0072B2", "identify": "#CC79A7",
                 "other": "#CCCCCC"}  # Okabe–Ito
BAR_COLOUR, POINT_COLOUR = "#0072B2", "#D55E00"
HEIGHT = 360
TIMING_TITLE = "Wall time by phase"
SPEEDUP_NOTE = "per token: decode time a token vs vanilla's · wall: the whole run, prefill and answer length included"
MODEL_LABEL = "model E / (1 + K·c)"


# ---- figure data ----


@dataclass(frozen=True)
class TimingRow:
    label: str
    seconds: dict[str, float]  # phase -> wall seconds
    tokens_per_s: float
    mean_accepted_length: float
    speedup: float | None  # vs vanilla, per decoded token (as `bench`: answers differ in length); None without vanilla
    wall_speedup: float | None = None  # vanilla's whole wall time over this run's, prefill and length included

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @property
    def note(self) -> str:
        rate = f"{self.tokens_per_s:.1f} tok/s · E[T] {self.mean_accepted_length:.2f}"
        if self.speedup is None or self.wall_speedup is None:
            return rate
        return f"{rate} · {self.speedup:.2f}× per token, {self.wall_speedup:.2f}× wall"



@dataclass(frozen=True)
class RoundLengths:
    title: str
    subtitle: str
    rounds: list[int]
    committed: list[int]
    endings: list[str]  # verdict of each round's last committed token: correction, bonus, target, ...
    mean: float  # E[T]

    def by_ending(self) -> dict[str, tuple[list[int], list[int]]]:
        """Rounds and their committed counts grouped by how each round ended, one bar series per group."""
        groups: dict[str, tuple[list[int], list[int]]] = {}
        for r, n, ending in zip(self.rounds, self.committed, self.endings):
            xs, ys = groups.setdefault(ending, ([], []))
            xs.append(r)
            ys.append(n)
        return groups


@dataclass(frozen=True)
class AcceptanceCounts:
    title: str
    k: int
    counts: list[int]  # counts[n]: rounds whose first n draft tokens were accepted


@dataclass(frozen=True)
class SpeedupCurve:
    title: str
    k: int
    c: float
    e: list[float]  # mean accepted length E[T], 1..K+1
    speedup: list[float]  # E / (1 + K·c)
    ceiling: float  # (K+1) / (1 + K·c): every draft accepted
    points: dict[str, tuple[float, float]]  # method -> measured (E[T], speedup)

    @property
    def ceiling_label(self) -> str:
        return f"ceiling (K+1) / (1 + K·c) = {self.ceiling:.2f}"


def _vanilla(traces: list[RunTrace]) -> RunTrace | None:
    return next((t for t in traces if t.method == "vanilla"), None)


def _labels(traces: list[RunTrace]) -> list[str]:
    """Method names, numbered where a method appears twice so that bars do not stack into one."""
    total, seen, labels = Counter(t.method for t in traces), Counter(), []
    for t in traces:
        seen[t.method] += 1
        labels.append(t.method if total[t.method] == 1 else f"{t.method} #{seen[t.method]}")
    return labels


def timing_rows(traces: list[RunTrace]) -> list[TimingRow]:
    vanilla = _vanilla(traces)
    rows = []
    for label, t in zip(_labels(traces), traces):
        speedup = None
        if vanilla is not None and vanilla.stats.tokens_per_s > 0:
            speedup = t.stats.tokens_per_s / vanilla.stats.tokens_per_s
        seconds = {p: getattr(t.timing, f"{p}_s") for p in PHASES}
        wall = vanilla.timing.total_s / t.timing.total_s if vanilla is not None and t.timing.total_s > 0 else None
        rows.append(TimingRow(label, seconds, t.stats.tokens_per_s, t.stats.mean_accepted_length, speedup, wall))
    return rows


def speedup_points(traces: list[RunTrace]) -> dict[str, tuple[float, float]]:
    """Each drafting run's measured (E[T], speedup vs vanilla), for the speedup-curve chart."""
    return {
        row.label: (row.mean_accepted_length, row.speedup)
        for row, trace in zip(timing_rows(traces), traces)
        if trace.draft is not None and row.speedup is not None
    }


def verdict_counts(trace: RunTrace) -> dict[str, int]:
    """Committed tokens per verdict, every verdict present (zeros included), in the trace's order."""
    counts = Counter(t.verdict for t in trace.tokens)
    return {v: counts[v] for v in VERDICTS}


def round_lengths(trace: RunTrace) -> RoundLengths:
    endings = {t.round: t.verdict for t in trace.tokens}  # the last token of each round wins
    committed = [r.committed for r in trace.rounds]
    e = mean(committed) if committed else 0.0
    subtitle = " · ".join(f"{n} {v}" for v, n in verdict_counts(trace).items() if n)
    return RoundLengths(
        title=f"{trace.method}: E[T] = {e:.2f} per target pass",
        subtitle=subtitle,
        rounds=[r.index for r in trace.rounds],
        committed=committed,
        endings=[endings.get(r.index, "target") for r in trace.rounds],
        mean=e,
    )


def acceptance_counts(trace: RunTrace) -> AcceptanceCounts:
    k = max([trace.params.k, *(len(r.draft_ids) for r in trace.rounds)])
    counts = [0] * (k + 1)
    for r in trace.rounds:
        counts[r.accepted] += 1
    return AcceptanceCounts(f"{trace.method}: accepted drafts (K = {k})", k, counts)


def speedup_curve(points: dict[str, tuple[float, float]], k: int, c: float, n: int = 60) -> SpeedupCurve:
    """Chain SD's speedup model: a round costs K draft steps (c each, in target steps) and one target pass."""
    if k < 1 or c < 0:
        raise ValueError(f"need K ≥ 1 and c ≥ 0, got K={k}, c={c}")
    e = np.linspace(1.0, k + 1.0, n)
    cost = 1.0 + k * c
    return SpeedupCurve(
        title=f"Speedup vs mean accepted length (K = {k}, c = {c:.3f})",
        k=k,
        c=c,
        e=e.tolist(),
        speedup=(e / cost).tolist(),
        ceiling=(k + 1) / cost,
        points=dict(points),
    )


def step_cost_ratio(traces: list[RunTrace]) -> float:
    """Estimate c, the draft's cost per token as a share of one target pass, from measured rounds.

    Numerator: all draft seconds ÷ all drafted tokens (a round's draft time also covers feeding the
    committed tokens the draft has not seen, which belongs to the same per-round cost). Denominator:
    the mean verify seconds of a vanilla trace's rounds, each exactly one single-token target pass. The
    model then treats a K+1-token verification as costing one such pass, which holds while decoding is
    memory-bound.
    """
    drafted = [r for t in traces for r in t.rounds if r.draft_ids]
    vanilla = _vanilla(traces)
    if not drafted or vanilla is None or not vanilla.rounds:
        raise ValueError("estimating c needs a vanilla trace and a trace with drafted tokens")
    per_draft_token = sum(r.draft_s for r in drafted) / sum(len(r.draft_ids) for r in drafted)
    per_target_pass = mean(r.verify_s for r in vanilla.rounds)
    return per_draft_token / per_target_pass


FRONTIER_TITLE = "Speed against quality kept"
FRONTIER_COLOURS = {"lvspec w=3": "#0072B2", "lvspec w=0": "#56B4E9", "lvspec w=3 unguarded": "#D55E00",
                    "random": "#E69F00", "fly": "#009E73", "exact": "#000000", "hf": "#CC79A7", "vanilla": "#999999"}


def frontier_series(result: dict) -> dict[str, list[tuple[float, float, str]]]:
    """A bench or sweep result as (speedup, retention, label) points per family, each family in λ order:
    LVSpec per shift window, the random peer, and single points for FLy, exact-match SD, hf and vanilla."""
    series: dict[str, list[tuple[float, float, float, str]]] = {}
    for label, config in result["configs"].items():
        figures = result["methods"][label]
        if figures["speedup"] is None or figures["retention"] is None:
            continue
        method = config["method"]
        family = method
        if method == "lvspec":  # the paper's rule (no ε guard, no τ floor, no commit guard) is a family of its own
            bare = not config.get("min_ratio") and config.get("tau") is None and not config.get("commit_guard")
            family = f"lvspec w={config['window']}" + (" unguarded" if bare else "")
        point_label = f"λ={config['lam']:g}" if method in ("lvspec", "random") else method
        series.setdefault(family, []).append((config["lam"], figures["speedup"], figures["retention"], point_label))
    return {family: [(x, y, name) for _, x, y, name in sorted(points)] for family, points in series.items()}


def frontier_labels(series: dict[str, list[tuple[float, float, str]]]) -> dict[str, list[str]]:
    """Each point's label, or "" where it would print over one already labelled: nearer than 8% of the
    speedup range and 1.5 points of retention (a sweep puts many configs on the 100% line)."""
    speedups = [x for points in series.values() for x, _, _ in points]
    span = max(speedups) - min(speedups) if speedups else 0.0
    near = 0.08 * (span or 1.0)
    placed: list[tuple[float, float]] = []
    labels = {}
    for family, points in series.items():
        labels[family] = []
        for x, y, name in points:
            free = all(abs(x - px) >= near or abs(100 * (y - py)) >= 1.5 for px, py in placed)
            if free:
                placed.append((x, y))
            labels[family].append(name if free else "")
    return labels


# ---- plotly figures ----


def _layout(fig: go.Figure, title: str, height: int = HEIGHT, subtitle: str = "") -> go.Figure:
    fig.update_layout(
        title=dict(text=title, subtitle=dict(text=subtitle)),
        height=height,
        template="plotly_white",
        margin=dict(l=60, r=20, t=80 if subtitle else 60, b=50),
    )
    return fig


def timing_figure(traces: list[RunTrace]) -> go.Figure:
    """One stacked bar per method: where the wall time went, with rate, E[T] and speedup beside it."""
    rows = timing_rows(traces)
    labels = [r.label for r in rows]
    fig = go.Figure(
        [
            go.Bar(name=p, y=labels, x=[r.seconds[p] for r in rows], orientation="h", marker_color=PHASE_COLOURS[p])
            for p in PHASES
        ]
    )
    for r in rows:
        fig.add_annotation(x=r.total, y=r.label, text=r.note, showarrow=False, xanchor="left", xshift=6)
    longest = max((r.total for r in rows), default=0.0) or 1.0
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="seconds", range=[0, longest * 1.8])
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, TIMING_TITLE, subtitle=SPEEDUP_NOTE if any(r.speedup for r in rows) else "",
                   height=max(320, min(420, 180 + 60 * len(rows))))


def accepted_length_figure(trace: RunTrace, palette: str = "default") -> go.Figure:
    """Tokens each target pass committed, coloured by how the round ended, with E[T] as a line."""
    data = round_lengths(trace)
    colours = PALETTES[palette]
    fig = go.Figure(
        [
            go.Bar(
                name=f"ended with {ending}",
                x=xs,
                y=ys,
                marker=dict(color=colours[ending], line=dict(color="#374151", width=0.5)),
            )
            for ending, (xs, ys) in data.by_ending().items()
        ]
    )
    fig.add_hline(y=data.mean, line_dash="dash", annotation_text=f"E[T] = {data.mean:.2f}")
    fig.update_xaxes(title="round", **whole_ticks(len(trace.rounds)))
    fig.update_yaxes(title="tokens committed", rangemode="tozero",
                     **whole_ticks(max((r.committed for r in trace.rounds), default=1)))
    return _layout(fig, data.title, subtitle=data.subtitle)


def whole_ticks(largest: int, most: int = 10) -> dict:
    """Axis ticks on whole numbers only, at most about ``most`` of them: rounds and counts have no halves."""
    return dict(tick0=0, dtick=max(1, -(-largest // most)), tickformat="d")


def acceptance_histogram(trace: RunTrace) -> go.Figure:
    """How many rounds accepted 0, 1, …, K draft tokens before the first reject."""
    data = acceptance_counts(trace)
    fig = go.Figure(go.Bar(name="rounds", x=list(range(data.k + 1)), y=data.counts, marker_color=BAR_COLOUR))
    fig.update_xaxes(title="accepted draft tokens", dtick=1)
    fig.update_yaxes(title="rounds", **whole_ticks(max(data.counts, default=1)))
    return _layout(fig, data.title)


def speedup_curve_figure(points: dict[str, tuple[float, float]], k: int, c: float) -> go.Figure:
    """Measured speedups against what chain SD's cost model allows at their E[T]."""
    data = speedup_curve(points, k, c)
    fig = go.Figure(go.Scatter(name=MODEL_LABEL, x=data.e, y=data.speedup, mode="lines"))
    fig.add_trace(
        go.Scatter(
            name=data.ceiling_label,
            x=[1, k + 1],
            y=[data.ceiling, data.ceiling],
            mode="lines",
            line=dict(dash="dash", color="#6B7280"),
        )
    )
    fig.add_trace(
        go.Scatter(
            name="measured",
            x=[e for e, _ in data.points.values()],
            y=[s for _, s in data.points.values()],
            text=list(data.points),
            mode="markers+text",
            textposition="top center",
            marker=dict(size=10, color=POINT_COLOUR),
        )
    )
    fig.update_xaxes(title="mean accepted length E[T]")
    fig.update_yaxes(title="speedup vs vanilla", rangemode="tozero")
    return _layout(fig, data.title)


def frontier_figure(result: dict) -> go.Figure:
    """Each config of a bench or sweep as a point: decode speedup against retention (the paper's Figure 7)."""
    fig = go.Figure()
    series = frontier_series(result)
    labels = frontier_labels(series)
    for family, points in series.items():
        fig.add_scatter(x=[p[0] for p in points], y=[100 * p[1] for p in points], text=labels[family],
                        customdata=[p[2] for p in points], name=family,
                        mode="lines+markers+text" if len(points) > 1 else "markers+text", textposition="top center",
                        hovertemplate="%{customdata}: %{x:.2f}×, %{y:.1f}%",
                        marker=dict(size=9, color=FRONTIER_COLOURS.get(family)),
                        line=dict(color=FRONTIER_COLOURS.get(family)))
    fig.update_xaxes(title="decode speedup vs vanilla (×)")
    fig.update_yaxes(title="retention (% of the target's quality)")
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))  # under the chart, not over it
    return _layout(fig, FRONTIER_TITLE, height=480)
