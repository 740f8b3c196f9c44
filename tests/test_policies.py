"""Policies' verdicts. Hand-built rounds: fixed logits and relevances give the documented verdicts. Any
round: every policy gives one verdict per draft position, an accepted prefix then a reject then skips, never
more than K accepted, stop tokens never relaxed; each peer's strict setting is exact-match SD."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import PROB, ROUND_STOP, rounds
from lvspec.decode import Settings, make_policy, round_view
from lvspec.policies import Decision, Exact, FLy, LVSpec, Policy, RandomRelax, RoundView
from lvspec.relevance import anchor_count, anchors
from lvspec.trace import ACCEPTED

VOCAB = 12
STOP = 11


def logits_for(target_ids: list[int], second: list[int] | None = None, margin: float = 4.0) -> torch.Tensor:
    """Logits whose argmax at position i is target_ids[i]; optional runner-up second[i] at ``margin`` below."""
    x = torch.zeros(len(target_ids), VOCAB)
    for i, t in enumerate(target_ids):
        x[i, t] = margin
        if second is not None:
            x[i, second[i]] = margin / 2
    return x


def decide(method, drafts, targets, relevance, second=None, **settings) -> Decision:
    view = round_view(logits_for(targets, second), drafts, relevance, frozenset({STOP}))
    settings.setdefault("min_ratio", 0.0)  # the paper's rule unless a test sets a guard
    settings.setdefault("commit_guard", False)
    return make_policy(method, Settings(**settings)).decide(view)


def test_exact_accepts_the_matching_prefix_then_rejects_and_skips():
    d = decide("exact", [1, 2, 3, 4], [1, 2, 9, 4, 5], [0.0] * 4)
    assert d.verdicts == ["exact", "exact", "reject", "skip"]
    assert d.accepted == 2
    assert d.anchor == [False] * 4  # no anchor/filler split: nothing marked


def test_all_exact_accepts_every_draft_token():
    d = decide("exact", [1, 2, 3], [1, 2, 3, 7], [0.0] * 3)
    assert d.verdicts == ["exact"] * 3 and d.accepted == 3  # the loop commits t_4 = 7 as the bonus


def test_filler_mismatch_is_loose_anchor_mismatch_is_reject():
    # relevances: position 1 and 3 are the visual ones; λ = 0.5 of 4 → 2 anchors
    rel = [0.1, 0.9, 0.2, 0.8]
    d = decide("lvspec", [1, 2, 3, 4], [9, 2, 8, 7, 5], rel, lam=0.5, window=0)
    assert d.anchor == [False, True, False, True]
    assert d.verdicts == ["loose", "exact", "loose", "reject"]
    assert d.accepted == 3


def test_lambda_boundaries():
    rel = [0.5, 0.1, 0.9, 0.3]
    strict = decide("lvspec", [1, 2, 3, 4], [9, 2, 3, 4, 5], rel, lam=0.0, window=0)
    assert strict.anchor == [True] * 4 and strict.verdicts[0] == "reject"
    relaxed = decide("lvspec", [1, 2, 3, 4], [9, 8, 7, 6, 5], rel, lam=1.0, window=0)
    assert relaxed.anchor == [False] * 4 and relaxed.verdicts == ["loose"] * 4
    assert [anchor_count(10, lam) for lam in (0.0, 0.3, 0.7, 0.9, 1.0)] == [10, 7, 3, 1, 0]


def test_tau_floor_makes_anchors_whatever_the_rank():
    rel = [0.5, 0.6, 0.7, 0.1]
    assert anchors(rel, lam=1.0, tau=0.6) == [False, True, True, False]
    assert anchors(rel, lam=1.0, tau=None) == [False] * 4
    d = decide("lvspec", [1, 2, 3, 4], [1, 9, 3, 4, 5], rel, lam=1.0, tau=0.6, window=0)
    assert d.verdicts == ["exact", "reject", "skip", "skip"]


def test_min_ratio_guard_accepts_at_equality_and_rejects_below():
    # p(d) / p(t) = exp(2 - 4) for a runner-up two logits below the top
    ratio = float(torch.exp(torch.tensor(-2.0)))
    kw = dict(lam=1.0, window=0)
    at = decide("lvspec", [3], [9, 5], [0.0], second=[3, 0], min_ratio=ratio * (1 - 1e-6), **kw)
    above = decide("lvspec", [3], [9, 5], [0.0], second=[3, 0], min_ratio=ratio * 1.01, **kw)
    assert at.verdicts == ["loose"]
    assert above.verdicts == ["reject"] and above.why == [f"p(d) < {ratio * 1.01:g}·p(t)"]
    view = round_view(logits_for([9, 5], [3, 0]), [3], [0.0], frozenset())
    assert view.p_draft[0] == pytest.approx(ratio * view.p_top[0], rel=1e-6)


def test_commit_guard_judges_a_filler_strictly_only_right_before_an_anchor():
    """The draft's "a" where the target wrote "an" before its colour: kept, the target verified "red" after
    the draft's article, not after its own."""
    a, an, red, orange, shape = 1, 2, 3, 4, 5
    rel = [0.1, 0.9, 0.2]  # λ = 0.5 of 3 → 2 anchors: the colour and the next most relevant position
    guarded = decide("lvspec", [a, red, shape], [an, red, shape, 6], rel, lam=0.5, window=0, commit_guard=True)
    assert guarded.anchor == [False, True, True] and guarded.verdicts == ["reject", "skip", "skip"]
    assert guarded.why == ["commit guard", "", ""]
    paper = decide("lvspec", [a, red, shape], [an, red, shape, 6], rel, lam=0.5, window=0)
    assert paper.verdicts == ["loose", "exact", "exact"] and paper.why == ["filler kept", "match", "match"]
    # a filler before a filler, and a filler last in the round, pass as before
    rel = [0.1, 0.2, 0.9, 0.05]
    before_filler = decide("lvspec", [a, 7, red, 8], [an, 7, red, orange, 6], rel, lam=0.75, window=0, commit_guard=True)
    assert before_filler.anchor == [False, False, True, False]
    assert before_filler.verdicts == ["loose", "exact", "exact", "loose"]


def test_shift_salvages_insertions_and_reorderings_within_the_window():
    # "multiple wooden deck and" against "wooden deck and multiple": all anchors (λ = 0)
    multiple, wooden, deck, and_ = 1, 2, 3, 4
    d = decide("lvspec", [multiple, wooden, deck, and_], [wooden, deck, and_, multiple, 5], [0.9] * 4, lam=0.0, window=3)
    assert d.verdicts == ["shift", "shift", "shift", "reject"]  # the window looks ahead, never back
    # the draft's word comes only 4 positions later in the target: outside w = 3
    far = decide("lvspec", [1, 5, 6, 7], [8, 9, 10, 2, 1], [0.9] * 4, lam=0.0, window=3)
    assert far.verdicts[0] == "reject"
    off = decide("lvspec", [multiple, wooden], [wooden, multiple, 5], [0.9] * 2, lam=0.0, window=0)
    assert off.verdicts == ["reject", "skip"]


def test_stop_tokens_are_never_relaxed():
    d = decide("lvspec", [STOP, 2], [1, 2, 3], [0.0, 0.0], lam=1.0, window=3)
    assert d.anchor[0] and d.verdicts[0] == "reject"
    wanted = decide("lvspec", [1, 2], [STOP, 2, 3], [0.0, 0.0], lam=1.0, window=3)
    assert wanted.verdicts[0] == "reject"


def test_a_stop_token_never_takes_a_ranked_anchor_slot():
    """"… moving upwards.<end>" where the target says "left": one anchor in a round of three (λ = 0.7). The
    stop token is an anchor by rule and scores most relevant here; the slot goes to the motion word."""
    upwards, left, full_stop = 1, 9, 2
    d = decide("lvspec", [upwards, full_stop, STOP], [left, full_stop, STOP, 0], [0.42, -0.44, 0.43], lam=0.7)
    assert d.anchor == [True, False, True] and d.verdicts == ["reject", "skip", "skip"] and d.why[0] == "anchor differs"
    assert anchors([0.42, -0.44, 0.43], lam=0.7) == [False, False, True]  # ranked alone, the stop token won


@pytest.mark.parametrize("method", ["lvspec", "random", "fly"])
def test_strict_tokens_are_anchors_that_neither_loose_nor_shift_keeps(method):
    """Two option letters (5, 6) swapped: a filler's loose pass or a shift would keep the draft's letter,
    unless the letters are strict."""
    flat = logits_for([6, 5, 3], second=[5, 6, 9], margin=0.5)  # an unsure target: FLy defers judgement
    policy = make_policy(method, Settings(lam=1.0, window=3, min_ratio=0.0))
    relaxed = policy.decide(round_view(flat, [5, 6], [0.0, 0.0], frozenset({STOP})))
    assert relaxed.verdicts[0] in ("loose", "shift") or method == "fly"
    strict = policy.decide(round_view(flat, [5, 6], [0.0, 0.0], frozenset({STOP, 5, 6})))
    assert strict.verdicts == ["reject", "skip"] and strict.anchor[0]


def test_option_tokens_are_the_letters_and_words_of_a_multiple_choice_prompt():
    from transformers import AutoTokenizer

    from lvspec.multiple_choice import lettered_options, option_token_ids
    from lvspec.toyworld import TARGET

    tok = AutoTokenizer.from_pretrained(TARGET)
    prompt = "What colour is the circle?\nA. red\nB. blue\nC. it moves up\nD. green\nAnswer with the option's letter."
    assert lettered_options(prompt) == {"A": "red", "B": "blue", "C": "it moves up", "D": "green"}
    ids = option_token_ids(tok, prompt)
    named = {tok.decode([i]).strip() for i in ids}
    assert {"A", "B", "C", "D", "red", "blue", "moves", "up", "green"} <= named
    assert not named & {"(", ")", ".", "", "circle", "colour"}  # punctuation and the question's words stay free
    assert tok.encode(" B", add_special_tokens=False)[0] in ids and tok.encode("B", add_special_tokens=False)[0] in ids
    for prompt in ("Describe the video in detail.", "Which is it?\nB. red\nC. blue", "A. only one option"):
        assert lettered_options(prompt) == {} and option_token_ids(tok, prompt) == frozenset()


def test_random_relaxes_the_same_share_without_relevance():
    d = decide("random", [1] * 10, [2] * 11, [1.0] * 10, lam=0.7, window=0)
    assert sum(d.anchor) == 3


def test_fly_rejects_sure_mismatches_and_defers_unsure_ones():
    # Position 1: the target is sure (one dominant logit) → a mismatch is rejected.
    sure = decide("fly", [1, 2, 3, 4], [9, 2, 3, 4, 5], [0.0] * 4)
    assert sure.anchor[0] and sure.verdicts == ["reject", "skip", "skip", "skip"]
    # Unsure target (runner-up close) at every position: a mismatch passes if every later draft matches…
    flat = logits_for([9, 2, 3, 4, 5], second=[1, 1, 1, 1, 1], margin=0.5)
    view = round_view(flat, [1, 2, 3, 4], [0.0] * 4, frozenset({STOP}))
    assert all(h >= 0.3 for h in view.entropy3)
    fly = make_policy("fly", Settings())
    assert fly.decide(view).verdicts == ["loose", "exact", "exact", "exact"]
    # …and is rejected when a later draft token disagrees, or when no later token is left to judge by.
    view = round_view(flat, [1, 2, 8, 4], [0.0] * 4, frozenset({STOP}))
    assert fly.decide(view).verdicts[0] == "reject"
    view = round_view(logits_for([1, 2, 3, 9, 5], second=[0, 0, 0, 1, 0], margin=0.5), [1, 2, 3, 4], [0.0] * 4,
                      frozenset({STOP}))
    assert fly.decide(view).verdicts == ["exact", "exact", "exact", "reject"]


@st.composite
def views(draw) -> RoundView:
    view = draw(rounds())
    return replace(view, entropy3=draw(st.lists(st.floats(0.0, math.log(3)), min_size=view.k, max_size=view.k)))


POLICIES = st.one_of(
    st.just(Exact()),
    st.builds(LVSpec, lam=PROB, min_ratio=PROB, window=st.integers(0, 4), shift_anchors=st.booleans(),
              commit_guard=st.booleans()),
    st.builds(RandomRelax, lam=PROB, window=st.integers(0, 4), seed=st.integers(0, 99)),
    st.builds(FLy, gate=st.floats(0.0, 2.0), defer=st.integers(1, 6)),
)


@given(views(), POLICIES)
def test_every_policy_gives_a_well_formed_decision(view: RoundView, policy: Policy):
    decision = policy.decide(view)
    n = decision.accepted
    assert len(decision.verdicts) == len(decision.anchor) == len(decision.why) == view.k and 0 <= n <= view.k
    assert all((w == "") == (v == "skip") for v, w in zip(decision.verdicts, decision.why))
    assert decision.verdicts[n:] == [] or (decision.verdicts[n] == "reject" and set(decision.verdicts[n + 1 :]) <= {"skip"})
    for i, verdict in enumerate(decision.verdicts[:n]):
        assert verdict in ACCEPTED
        assert (verdict == "exact") == (view.draft_ids[i] == view.target_ids[i])
        if ROUND_STOP in (view.draft_ids[i], view.target_ids[i]):
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
