"""Every policy, on any round: one verdict per draft position, an accepted prefix then a reject then skips,
never more than K accepted, stop tokens never relaxed; each peer's strict setting is exact-match SD."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from test_properties import PROB, STOP, rounds

from lvspec.policies import Exact, FLy, LVSpec, Policy, RandomRelax, RoundView
from lvspec.trace import ACCEPTED


@st.composite
def views(draw) -> RoundView:
    view = draw(rounds())
    return replace(view, entropy3=draw(st.lists(st.floats(0.0, math.log(3)), min_size=view.k, max_size=view.k)))


POLICIES = st.one_of(
    st.just(Exact()),
    st.builds(LVSpec, lam=PROB, min_ratio=PROB, window=st.integers(0, 4), shift_anchors=st.booleans()),
    st.builds(RandomRelax, lam=PROB, window=st.integers(0, 4), seed=st.integers(0, 99)),
    st.builds(FLy, gate=st.floats(0.0, 2.0), defer=st.integers(1, 6)),
)


@given(views(), POLICIES)
def test_every_policy_gives_a_well_formed_decision(view: RoundView, policy: Policy):
    decision = policy.decide(view)
    n = decision.accepted
    assert len(decision.verdicts) == len(decision.anchor) == view.k and 0 <= n <= view.k
    assert decision.verdicts[n:] == [] or (decision.verdicts[n] == "reject" and set(decision.verdicts[n + 1 :]) <= {"skip"})
    for i, verdict in enumerate(decision.verdicts[:n]):
        assert verdict in ACCEPTED
        assert (verdict == "exact") == (view.draft_ids[i] == view.target_ids[i])
        if STOP in (view.draft_ids[i], view.target_ids[i]):
            assert verdict == "exact"


@given(views(), st.integers(0, 99), st.integers(1, 6))
def test_strict_settings_of_the_peers_are_exact_match(view, seed, defer):
    exact = Exact().decide(view).verdicts
    assert RandomRelax(lam=0.0, window=0, seed=seed).decide(view).verdicts == exact
    assert FLy(gate=math.inf, defer=defer).decide(view).verdicts == exact


@given(views(), PROB, PROB, st.integers(0, 4), st.integers(0, 99))
def test_random_relaxation_never_accepts_fewer_with_a_larger_lam(view, lam_a, lam_b, window, seed):
    low, high = sorted((lam_a, lam_b))
    accepted = [RandomRelax(lam=lam, window=window, seed=seed).decide(view).accepted for lam in (low, high)]
    assert accepted[0] <= accepted[1]
