"""Replay finished runs as a race at their recorded speeds: what each method had committed at time t.

Every token is placed at the moment its round committed (the prefill's token at the end of the prefill),
so a replay shows the measured timings, only scaled by the chosen slow-down.
"""

from __future__ import annotations

from dataclasses import replace
from html import escape

from lvspec.trace import RunTrace

from .tokens import tokens_html


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
    """The first commit after ``t`` (or the end of the longest run)."""
    later = [m for m in moments(traces) if m > t + 1e-9]
    return later[0] if later else max(trace.timing.total_s for trace in traces)


def race_html(traces: list[RunTrace], t: float, palette: str = "default") -> str:
    """One lane per run on a shared clock: a progress bar to the same scale and the tokens so far."""
    longest = max((trace.timing.total_s for trace in traces), default=0.0) or 1.0
    lanes = []
    for trace in traces:
        done = t >= trace.timing.total_s
        shown = min(t, trace.timing.total_s)
        state = "finished" if done else "prefill" if t < trace.timing.prefill_s else "decoding"
        head = (
            f"<b>{escape(trace.method)}</b> · {shown:.3f} s of {trace.timing.total_s:.3f} s · {state}"
            f" · {len(at(trace, t).tokens)}/{len(trace.tokens)} tokens"
        )
        bar = (
            '<div style="background:#E5E7EB;height:8px;border-radius:4px;margin:4px 0">'
            f'<div style="width:{100 * shown / longest:.2f}%;height:8px;border-radius:4px;'
            f'background:{"#059669" if done else "#2563EB"}"></div></div>'
        )
        lanes.append(f'<div class="lane" data-method="{escape(trace.method)}">{head}{bar}'
                     f"{tokens_html(at(trace, t), palette)}</div>")
    clock = f"<p><b>t = {t:.3f} s</b> (recorded time)</p>"
    return clock + "".join(lanes)
