"""Properties of the policies' verdicts and of the trace's JSON form, over generated rounds and traces."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import PROB, rounds
from lvspec.policies import Exact, LVSpec
from lvspec.trace import Round, RunTrace, Settings, Stats, Timing, TokenEvent, VideoInfo


@given(rounds(), PROB, st.booleans())
def test_lam_zero_without_shift_accepts_exactly_what_exact_match_does(view, eps, commit_guard):
    lossless = LVSpec(lam=0.0, window=0, min_ratio=eps, commit_guard=commit_guard).decide(view)
    assert lossless.verdicts == Exact().decide(view).verdicts
    assert set(lossless.verdicts) <= {"exact", "reject", "skip"}


@given(rounds(), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(0, 4), PROB, st.booleans())
def test_a_larger_lam_never_accepts_fewer(view, lam_a, lam_b, window, eps, commit_guard):
    low, high = sorted((lam_a, lam_b))
    accepted = [LVSpec(lam=lam, window=window, min_ratio=eps, commit_guard=commit_guard).decide(view).accepted
                for lam in (low, high)]
    assert accepted[0] <= accepted[1]


@given(rounds(), PROB, st.integers(0, 4), PROB)
def test_the_commit_guard_never_accepts_more(view, lam, window, eps):
    accepted = [LVSpec(lam=lam, window=window, min_ratio=eps, commit_guard=g).decide(view).accepted for g in (True, False)]
    assert accepted[0] <= accepted[1]


TEXT = st.text(st.characters(codec="utf-8"), max_size=6)
FLOAT = st.floats(-1e6, 1e6, allow_nan=False)


@st.composite
def traces(draw) -> RunTrace:
    tokens = draw(st.lists(st.builds(TokenEvent, st.integers(0, 10**6), TEXT,
                                     st.sampled_from(["target", "exact", "loose", "shift", "correction", "bonus"]),
                                     st.booleans(), st.none() | FLOAT, st.integers(0, 50)), max_size=8))
    k = draw(st.integers(0, 4))
    ids = st.lists(st.integers(0, 10**6), min_size=k, max_size=k)
    floats = st.lists(FLOAT, min_size=k, max_size=k)
    round_ = st.builds(Round, st.integers(1, 50), ids, st.lists(st.integers(0, 10**6), min_size=k + 1, max_size=k + 1),
                       floats, floats, floats, st.lists(st.booleans(), min_size=k, max_size=k),
                       st.lists(st.sampled_from(["exact", "loose", "shift", "reject", "skip"]), min_size=k, max_size=k),
                       st.integers(0, k + 1), FLOAT, FLOAT, FLOAT)
    return RunTrace(
        method=draw(st.sampled_from(["vanilla", "exact", "lvspec"])), params=Settings(k=k, lam=draw(PROB)),
        target=draw(TEXT), draft=draw(st.none() | TEXT), prompt=draw(TEXT), video=VideoInfo(grid=[1, 2, 2]),
        text=draw(TEXT), tokens=tokens, rounds=draw(st.lists(round_, max_size=3)),
        timing=Timing(*draw(st.lists(FLOAT, min_size=6, max_size=6))),
        stats=Stats(draw(st.integers(0, 99)), draw(st.integers(0, 99)), draw(FLOAT), draw(FLOAT)),
        vocab=draw(st.dictionaries(st.integers(0, 999).map(str), TEXT, max_size=4)),
    )


@settings(max_examples=60)
@given(traces())
def test_trace_json_round_trip_is_exact(trace):
    assert RunTrace.from_json(trace.to_json()) == trace
