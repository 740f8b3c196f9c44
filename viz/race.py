"""Replay finished runs as a race at their recorded speeds: what each method had committed at time t.

Every token is placed at the moment its round committed (the prefill's token at the end of the prefill),
so a replay shows the measured timings, only stretched so the race lasts as long as a viewer needs. Each
lane's bar is the share of its own answer committed: who is ahead is whose bar is longest.
"""

from __future__ import annotations

from dataclasses import replace
from html import escape

from lvspec.trace import RunTrace

from .tokens import tokens_html


AHEAD = ' · <b class="ahead">▶ ahead</b>'


def commit_times(trace: RunTrace) -> list[float]:
    """Seconds from the run's start to the commit of each token."""
    ends = {r.index: r.end_s for r in trace.rounds}
    return [trace.timing.prefill_s if t.round == 0 else ends[t.round] for t in trace.tokens]


def at(trace: RunTrace, t: float) -> RunTrace:
    """The trace as it stood ``t`` seconds into the run."""
    tokens = [tok for tok, when in zip(trace.tokens, commit_times(trace)) if when <= t]
    rounds = [r for r in trace.rounds if r.end_s <= t]
    return replace(trace, tokens=tokens, rounds=rounds, text="".join(tok.text for tok in tokens))


def moments(traces: list[RunTrace]) -> list[float]:
    """Every instant at which some method commits: the stops of a round-by-round step."""
    return sorted({when for trace in traces for when in commit_times(trace)})


def next_moment(traces: list[RunTrace], t: float) -> float:
    """The first commit after ``t`` in any run (or the end of the longest run): a step of one token or more."""
    later = [m for m in moments(traces) if m > t + 1e-9]
    return later[0] if later else max(trace.timing.total_s for trace in traces)


def next_round(traces: list[RunTrace], t: float) -> float:
    """The end of the next target pass after ``t`` of the first run that drafts (LVSpec in the app), else of
    the first run: a step of one round of the method being watched."""
    watched = next((trace for trace in traces if trace.draft is not None), traces[0])
    return next_moment([watched], t)


def leader(traces: list[RunTrace], t: float) -> int | None:
    """Index of the run furthest through its own answer at ``t`` (None while tied)."""
    shares = [len(at(trace, t).tokens) / max(1, len(trace.tokens)) for trace in traces]
    best = max(shares, default=0.0)
    return shares.index(best) if best > 0 and shares.count(best) == 1 else None


def race_html(traces: list[RunTrace], t: float, palette: str = "default") -> str:
    """One lane per run on a shared clock: how much of its own answer it has committed (a bar), the leader
    marked, and the tokens so far."""
    ahead = leader(traces, t)
    lanes = []
    for i, trace in enumerate(traces):
        done = t >= trace.timing.total_s
        committed = len(at(trace, t).tokens)
        share = committed / max(1, len(trace.tokens))
        state = "finished" if done else "prefill" if t < trace.timing.prefill_s else "decoding"
        head = (
            f"<b>{escape(trace.method)}</b>{AHEAD if i == ahead else ''}"
            f" · {committed}/{len(trace.tokens)} tokens ({share:.0%}) · {state}"
            f" at {min(t, trace.timing.total_s):.3f} s of {trace.timing.total_s:.3f} s"
        )
        bar = (
            '<div style="background:#E5E7EB;height:8px;border-radius:4px;margin:4px 0">'
            f'<div style="width:{100 * share:.2f}%;height:8px;border-radius:4px;'
            f'background:{"#059669" if done else "#2563EB"}"></div></div>'
        )
        lanes.append(f'<div class="lane" data-method="{escape(trace.method)}">{head}{bar}'
                     f"{tokens_html(at(trace, t), palette)}</div>")
    clock = f"<p><b>t = {t:.3f} s</b> (recorded time)</p>"
    return clock + "".join(lanes)
