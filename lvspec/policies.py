"""Acceptance policies: given one round's drafts and the target's verdict on them, which to keep.

Each policy is a small class with one method, ``decide``; the decode loop never asks for a name.
Verdicts per draft position: ``exact`` (draft == target), ``loose`` (filler accepted as drafted),
``shift`` (the same word sits within ``window`` positions in the other sequence), ``reject`` (the round
ends; the target's token is committed instead) and ``skip`` (after a reject, never examined). Each examined
position also gets the rule that decided it, in words (``Decision.why``), for the inspector to show.

Some tokens are strict by rule whatever their relevance (``RoundView.strict_ids``): a stop token, which
would end the answer, and the tokens that name an option of a multiple-choice prompt, whose one fact is the
option picked (`multiple_choice`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property

from .relevance import anchors
from .trace import accepted_prefix


SAME = "match"
STRICT = "strict token"


def before_anchor(anchor: list[bool], i: int) -> bool:
    """Whether a filler kept at ``i`` would be the context in which the next anchor was verified: what the
    commit guard refuses."""
    return i + 1 < len(anchor) and anchor[i + 1]


def match_or_strict(view: RoundView, i: int) -> tuple[str, str] | None:
    """What every loose policy rules first: a match is kept, and a mismatch at a strict token rejected."""
    if view.draft_ids[i] == view.target_ids[i]:
        return "exact", SAME
    return ("reject", STRICT) if view.strict[i] else None


@dataclass(frozen=True)
class RoundView:
    """What a policy may look at: all from this round's single verification pass."""

    draft_ids: list[int]  # d_1..d_K
    target_ids: list[int]  # t_1..t_{K+1}: the target's greedy token at each position and the bonus
    p_draft: list[float]  # p_i(d_i): the target's probability of the draft's token
    p_top: list[float]  # p_i(t_i)
    relevance: list[float]  # visual relevance of each draft position
    strict_ids: frozenset[int] = field(default_factory=frozenset)  # never relaxed, drafted or wanted
    entropy3: list[float] = field(default_factory=list)  # entropy (nats) of the target's top 3, renormalised

    @property
    def k(self) -> int:
        return len(self.draft_ids)

    @cached_property
    def strict(self) -> list[bool]:
        """Per draft position: whether a strict token is drafted or wanted there (computed once per round:
        the verdicts read it position by position)."""
        return [d in self.strict_ids or t in self.strict_ids for d, t in zip(self.draft_ids, self.target_ids)]


@dataclass(frozen=True)
class Decision:
    anchor: list[bool]
    verdicts: list[str]
    why: list[str]  # per position, the rule behind its verdict ("" where skipped)

    @property
    def accepted(self) -> int:
        """Length of the accepted prefix: the draft tokens this round commits."""
        return accepted_prefix(self.verdicts)


class Policy:
    """Walks the round left to right until the first reject; subclasses say what is an anchor and what passes.

    The defaults are exact-match speculative decoding: every position an anchor, only ``exact`` passes.
    """

    drafts = True  # whether rounds ask the draft for tokens at all

    def anchors(self, view: RoundView) -> list[bool]:
        """Exact matching has no anchor/filler split: every position is judged alike, none is marked."""
        return [False] * view.k

    def verdict(self, view: RoundView, i: int, anchor: list[bool]) -> tuple[str, str]:
        """Position ``i``'s verdict and why, knowing every position's anchor flag (a filler may depend on its
        neighbour)."""
        return ("exact", SAME) if view.draft_ids[i] == view.target_ids[i] else ("reject", "differs")

    def decide(self, view: RoundView) -> Decision:
        anchor = self.anchors(view)
        verdicts: list[str] = []
        why: list[str] = []
        for i in range(view.k):
            verdict, reason = self.verdict(view, i, anchor)
            verdicts.append(verdict)
            why.append(reason)
            if verdict == "reject":
                break
        skipped = view.k - len(verdicts)
        return Decision(anchor, verdicts + ["skip"] * skipped, why + [""] * skipped)


class Vanilla(Policy):
    """The target alone, one token per forward pass: the reference every other method is judged by."""

    drafts = False


class Exact(Policy):
    """Exact-match speculative decoding: lossless, the target's greedy output token for token."""


@dataclass
class LVSpec(Policy):
    """Strict on visual anchors, loose on fillers, with position-shift salvage.

    ``lam``: share of each round's positions relaxed. ``tau``: relevance at or above which a position is
    an anchor whatever its rank. ``min_ratio`` ε: a filler mismatch passes only if
    p(d_i) ≥ ε·p(t_i). ``window`` w: shift tolerance (0 = off). ``shift_anchors``: whether shift may
    salvage anchors too, or only fillers. ``commit_guard``: a filler mismatch right before an anchor is
    judged strictly, because the target verified that anchor after the draft's filler, and a filler can
    choose the next fact (the draft's "a" where the target wrote "an" before "orange"; "The star" where it
    wrote "The white star"). A position where a strict token is drafted or wanted is an anchor that takes no
    slot of the λ split, and a mismatch there is never salvaged.
    """

    lam: float = 0.7
    tau: float | None = None
    min_ratio: float = 0.0
    window: int = 3
    shift_anchors: bool = True
    commit_guard: bool = False

    def ranked_anchors(self, view: RoundView) -> list[bool]:
        return anchors(view.relevance, self.lam, self.tau, view.strict)

    def anchors(self, view: RoundView) -> list[bool]:
        return [a or s for a, s in zip(self.ranked_anchors(view), view.strict)]

    def verdict(self, view: RoundView, i: int, anchor: list[bool]) -> tuple[str, str]:
        if settled := match_or_strict(view, i):
            return settled
        if (self.shift_anchors or not anchor[i]) and self.shifted(view, i):
            return "shift", f"within w = {self.window}"
        if anchor[i]:
            return "reject", "anchor differs"
        if view.p_draft[i] < self.min_ratio * view.p_top[i]:
            return "reject", f"p(d) < {self.min_ratio:g}·p(t)"
        if self.commits(anchor, i):
            return "reject", "commit guard"
        return "loose", "filler kept"

    def commits(self, anchor: list[bool], i: int) -> bool:
        return self.commit_guard and before_anchor(anchor, i)

    def shifted(self, view: RoundView, i: int) -> bool:
        """The target's word comes a little later in the draft, or the draft's word a little later in the target."""
        w = self.window
        return view.target_ids[i] in view.draft_ids[i + 1 : i + 1 + w] or view.draft_ids[i] in view.target_ids[
            i + 1 : i + 1 + w
        ]


@dataclass
class RandomRelax(LVSpec):
    """Peer baseline: relax a random λ share of positions, ignoring what the video shows."""

    seed: int = 0

    def __post_init__(self):
        self._rng = random.Random(self.seed)

    def ranked_anchors(self, view: RoundView) -> list[bool]:
        shuffled = [self._rng.random() for _ in range(view.k)]
        return anchors(shuffled, self.lam, ruled=view.strict)


@dataclass
class FLy(Policy):
    """Peer baseline FLy: trust the target where it is sure, defer judgement where it is not.

    A mismatch where the target's top-3 entropy is below ``gate`` (it knows what it wants) is rejected.
    Elsewhere it is accepted as drafted if the next ``defer`` draft tokens of the round all match the
    target (the wording diverged but the answer goes on the same way); with no later token left in the
    round to judge by, it is rejected. Positions under the gate, and those of strict tokens, are the
    strict ones (anchors).
    """

    gate: float = 0.3
    defer: int = 5

    def anchors(self, view: RoundView) -> list[bool]:
        return [h < self.gate or s for h, s in zip(view.entropy3, view.strict)]

    def verdict(self, view: RoundView, i: int, anchor: list[bool]) -> tuple[str, str]:
        if settled := match_or_strict(view, i):
            return settled
        if anchor[i]:
            return "reject", f"target sure (H < {self.gate:g})"
        later = range(i + 1, min(i + 1 + self.defer, view.k))
        if later and all(view.draft_ids[j] == view.target_ids[j] for j in later):
            return "loose", f"next {len(later)} match"
        return "reject", "a later one differs" if later else "none after it"
