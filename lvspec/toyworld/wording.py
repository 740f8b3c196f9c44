"""The wording both answer styles share: which template a style picks, how a motion and an object are
named, and the number words. `answers` (short tasks) and `longform` (the long-form tasks) both word with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from .world import TRANSLATIONS, ShapeSpec

T = TypeVar("T")

STYLES = ("target", "draft")
FAVOURITE_MASS = 0.6  # share of a style's picks that go to its favourite templates
_FAVOURITES = {"target": (0, 1), "draft": (2, 3)}  # favourite template indices, modulo 5: disjoint, so each
# style's greedy wording is one the other rates likely but not first (a 7B and a 32B of one family)
WORD_MASS = 0.65  # how often a style takes its own word where a frame offers two ("[shows|presents]")
_FACT_STYLE = "target"  # whose favourites word a motion, for both styles (`_motion_phrase`)

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")

# Motion phrases as (finite, gerund): "the square {moves left}" / "a square {moving left}".
_MOVERS = (("moves", "moving"), ("slides", "sliding"), ("drifts", "drifting"), ("travels", "travelling"),
           ("heads", "heading"), ("glides", "gliding"), ("goes", "going"))
_DIRECTIONS = {
    "left": ("left", "to the left", "leftward", "leftwards", "towards the left"),
    "right": ("right", "to the right", "rightward", "rightwards", "towards the right"),
    "up": ("up", "upward", "upwards"),
    "down": ("down", "downward", "downwards"),
}
_IN_PLACE = {
    "still": (("stays still", "staying still"), ("does not move", "not moving"), ("remains still", "remaining still"),
              ("holds still", "holding still"), ("stands still", "standing still"),
              ("sits still", "sitting still"), ("stays motionless", "staying motionless"),
              ("keeps still", "keeping still"), ("stays stationary", "staying stationary")),
    "growing": (("grows", "growing"), ("gets bigger", "getting bigger"), ("grows larger", "growing larger"),
                ("expands", "expanding"), ("becomes larger", "becoming larger"), ("grows bigger", "growing bigger"),
                ("gets larger", "getting larger"), ("grows in size", "growing in size")),
}


def _pick(options: Sequence[T], rng: np.random.Generator, style: str) -> T:
    """One option, with `FAVOURITE_MASS` of the probability on ``style``'s favourites and the rest spread evenly."""
    if style not in _FAVOURITES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    fav = np.array([i % 5 in _FAVOURITES[style] for i in range(len(options))])
    if fav.all() or not fav.any():
        return options[int(rng.integers(len(options)))]
    weights = np.where(fav, FAVOURITE_MASS / fav.sum(), (1 - FAVOURITE_MASS) / (~fav).sum())
    return options[int(rng.choice(len(options), p=weights))]


def _choose_words(frame: str, rng: np.random.Generator, style: str) -> str:
    """``frame`` with each "[target's|draft's]" choice resolved: each style takes its own word `WORD_MASS` of the
    time. Word-level choices inside a shared sentence frame are where two sizes of one family part most often."""
    own = STYLES.index(style)
    return re.sub(r"\[([^|\]]*)\|([^\]]*)\]",
                  lambda m: m.group(1 + (own if rng.random() < WORD_MASS else 1 - own)), frame)


def _sentence_case(text: str) -> str:
    return re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def _motion_phrase(motion: str, rng: np.random.Generator) -> tuple[str, str]:
    """(finite, gerund) wording of ``motion``, e.g. ("slides to the left", "sliding to the left").

    Both styles prefer the same wordings here: two sizes of one model family name a fact alike and differ
    in the phrasing around it, so the pair's mismatches fall on fillers and on the facts the draft misreads.
    """
    if motion in TRANSLATIONS:
        finite, gerund = _pick(_MOVERS, rng, _FACT_STYLE)
        where = _pick(_DIRECTIONS[motion], rng, _FACT_STYLE)
        return f"{finite} {where}", f"{gerund} {where}"
    return _pick(_IN_PLACE[motion], rng, _FACT_STYLE)


def _noun(spec: ShapeSpec, article: str) -> str:
    if article == "a" and spec.colour[0] in "aeiou":
        article = "an"
    return f"{article} {spec.colour} {spec.shape}"


def _counting(n: int) -> dict[str, str]:
    return {"n": NUMBER_WORDS[n], "shapes": "shape" if n == 1 else "shapes", "be": "is" if n == 1 else "are",
            "appear": "appears" if n == 1 else "appear"}
