"""The paper's long-form tasks in the toy world: detailed descriptions, medium open answers, multiple choice.

LVSpec's gains live in long answers where visual words are sparse (the paper: about 15–20% of generated
tokens, on detailed video captioning); a short caption is dense with them. A detailed description here is
a *plan* of sentences (an opening that counts the shapes, one sentence naming each object and its motion and
one more about its look, how the objects share the scene, the background, a closing remark), each sentence
worded from one style's frames. The two styles differ in sentence frames, connectives and clause order, and
place the background sentence early or late, and each prefers its own word wherever a frame offers two
("[shows|presents]"), while naming every fact with the same words.

Filler words never carry a fact: no word of the parser's tables (`answers.anchor_words`) appears in a frame,
so an answer parses back to exactly the facts its slots were given. Every frame is true of every clip the
renderer draws (backgrounds are dark and static, shapes stay whole in view and never change colour or form).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..multiple_choice import lettered_options
from .wording import _choose_words, _counting, _motion_phrase, _noun, _pick, _sentence_case
from .world import SHAPES, Scene, ShapeSpec

LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Plan:
    """A long answer as sentences (a medium answer: one item); ``given`` (characters) is a prefix worded by
    the other style, which a training sample shows as context and does not train on (empty: all its own)."""

    sentences: tuple[str, ...]
    given: str = ""

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


# Frames of each slot, in the order `wording._pick` reads favourites from (index mod 5: target 0–1, draft
# 2–3); "[a|b]": the target's word, then the draft's (`wording._choose_words`).
# Placeholders: {n} {shapes} {be} {a_np} {the_np} {colour} {shape} {moves} {moving} {ordinal} {nps}.
OPENINGS = (
    "the video [shows|presents] {n} {shapes} on a dark background.",
    "this clip [contains|holds] {n} {shapes} set against a dark backdrop.",
    "in this [short|brief] clip, we can see {n} {shapes} on a dark background.",
    "there {be} {n} {shapes} in this video, [shown|set] over a dark background.",
    "the scene is [made of|formed by] {n} {shapes} placed on a dark background.",
)
OBJECTS = (
    "the {ordinal} [object|item] is {a_np}, and it {moves}.",
    "the {ordinal} [object|item] is {a_np}, which {moves}.",
    "as the {ordinal} object, we [see|notice] {a_np} that {moves}.",
    "the {ordinal} shape in the scene is {a_np}; [over the course of|during] the clip it {moves}.",
    "for the {ordinal} [object|item], there is {a_np} that {moves}.",
    "there is {a_np} {moving} as the {ordinal} object.",
    "[looking at|turning to] the {ordinal} object, it is {a_np} that {moves}.",
)
LOOKS = (
    "the {shape} keeps its {colour} colour from start to [end|finish].",
    "the {colour} {shape} stands out [clearly|well] against the background.",
    "the {colour} {shape} has [clean|crisp], sharp edges and is easy to spot.",
    "[throughout|for all of] the video, the {shape} stays {colour}.",
    "you can [easily|clearly] tell that the {shape} is {colour}.",
    "the {colour} {shape} is [clearly|plainly] visible in every frame.",
)
TOGETHER = (
    "all {n} shapes stay in view from the [first|opening] frame to the last.",
    "{nps} appear together in [every|each] frame.",
    "none of the {n} shapes leaves the frame at any [point|time].",
    "together, {nps} fill the [whole|entire] scene.",
    "{nps} share the same scene for the [whole|entire] video.",
)
ALONE = (
    "no other [object|item] shares the scene with the {colour} {shape}.",
    "there is nothing else in the frame [besides|apart from] the {colour} {shape}.",
    "the {colour} {shape} is the only [object|item] in the clip.",
    "[apart from|besides] the {colour} {shape}, the frame is empty.",
    "the {colour} {shape} has the scene [entirely|all] to itself.",
)
BACKGROUNDS = (
    "the background is dark and [muted|plain], and it stays the same throughout the clip.",
    "behind everything, the background is a dark, [muted|plain] tone that never changes.",
    "the backdrop is [simple|plain] and dark, so the shapes are easy to see.",
    "the dark background stays [fixed|the same] for the whole video.",
    "there is a dark, [quiet|calm] background behind everything, and it stays the same from start to finish.",
)
CLOSINGS = (
    "nothing else [happens|takes place] in the video.",
    "overall, it is a [simple|plain] and calm scene.",
    "that is everything that happens in this [short|brief] clip.",
    "apart from this, the video shows no other [activity|action].",
    "in short, the clip is [simple|plain] and easy to follow.",
)
BACKGROUND_EARLY = {"target": 0.2, "draft": 0.6}  # how often a style describes the background second
CLOSING = 0.5  # how often a description ends with a closing remark

ORDINALS = {1: ("main",), 2: ("first", "second"), 3: ("first", "second", "third")}

# Medium answers: the asked object and its motion, then what else is in the scene.
MEDIUM_MAIN = (
    "the {colour} {shape} {moves}",
    "[at the moment|for now], the {colour} {shape} is {moving}",
    "the {colour} {shape} is {moving} in the [clip|video]",
    "in the video, the {colour} {shape} {moves}",
    "what the {colour} {shape} does is that it [simply|just] {moves}",
)
MEDIUM_OTHER = (
    "there is also {a_np} [that|which] {moves}",
    "{a_np} {moves} [as well|too]",
    "[besides|beside] it, {a_np} is {moving}",
    "the scene also has {a_np}, which {moves}",
    "[next to|near] it, {a_np} {moves}",
)
MEDIUM_NOTHING = (
    "there is nothing else in the scene apart from the dark background",
    "nothing else is in the [scene|frame]",
    "the rest of the scene is just the dark background",
    "no other [object|item] is in the scene",
    "it is [alone|by itself] on the dark background",
)

# Multiple choice: how each fact reads as an option.
MOTION_OPTIONS = {"left": "it moves to the left", "right": "it moves to the right", "up": "it moves up",
                  "down": "it moves down", "still": "it stays still", "growing": "it grows"}
COUNT_OPTIONS = ("one", "two", "three", "four")


def _frame(frames: tuple[str, ...], rng: np.random.Generator, style: str, **fields: str) -> str:
    """One of ``frames`` as ``style`` words it: its favourite frame, its own word at each choice, the slots filled."""
    return _choose_words(_pick(frames, rng, style), rng, style).format(**fields)


def _subject_fields(spec: ShapeSpec, finite: str, gerund: str) -> dict[str, str]:
    return {"a_np": _noun(spec, "a"), "the_np": _noun(spec, "the"), "colour": spec.colour, "shape": spec.shape,
            "moves": finite, "moving": gerund}


def _nps(specs: list[ShapeSpec]) -> str:
    names = [f"the {s.colour} {s.shape}" for s in specs]
    return " and ".join(names) if len(names) == 2 else ", ".join(names[:-1]) + " and " + names[-1]


def detailed(scene: Scene, rng: np.random.Generator, style: str, plan_style: str | None = None) -> list[str]:
    """A detailed description as sentences (not yet capitalised), every sentence worded in ``style``;
    ``plan_style`` (default ``style``) decides where the background sentence goes."""
    specs = sorted(scene.shapes, key=lambda s: SHAPES.index(s.shape))
    n = len(specs)
    counting = _counting(n)
    early = rng.random() < BACKGROUND_EARLY[plan_style or style]
    sentences = [_frame(OPENINGS, rng, style, **counting)]
    background = _frame(BACKGROUNDS, rng, style)
    if early:
        sentences.append(background)
    for spec, ordinal in zip(specs, ORDINALS[n]):
        fields = _subject_fields(spec, *_motion_phrase(spec.motion, rng)) | {"ordinal": ordinal}
        sentences.append(_frame(OBJECTS, rng, style, **fields))
        sentences.append(_frame(LOOKS, rng, style, **fields))
    if n == 1:
        sentences.append(_frame(ALONE, rng, style, shape=specs[0].shape, colour=specs[0].colour))
    else:
        sentences.append(_frame(TOGETHER, rng, style, nps=_nps(specs), **counting))
    if not early:
        sentences.append(background)
    closing = _frame(CLOSINGS, rng, style)
    if rng.random() < CLOSING:
        sentences.append(closing)
    return sentences


def mixed_detailed(scene: Scene, rng: np.random.Generator, style: str, other: str, interleave: bool = False) -> Plan:
    """A detailed description that ``other`` began and ``style`` finishes, as LVSpec's accepted fillers leave it:
    the same plan and facts, sentences up to a cut (inside a sentence, at a word) in ``other``'s wording, the
    rest in ``style``'s. ``given`` is the part before the cut. With ``interleave`` each sentence before the cut
    is worded by either style at random, as LVSpec's answers switch wording sentence by sentence: the cut
    sentence stays ``other``'s, so what is trained is going on after the other's frame in a mixed answer."""
    seed = int(rng.integers(2**31))
    theirs = detailed(scene, np.random.default_rng(seed), other)
    ours = detailed(scene, np.random.default_rng(seed), style, plan_style=other)
    cut = int(rng.integers(len(theirs)))
    words = theirs[cut].split(" ")
    at = int(rng.integers(1, len(words))) if len(words) > 1 else 1
    before = [o if interleave and rng.random() < 0.5 else t for t, o in zip(theirs[:cut], ours)]
    head = [_capitalised(s) for s in before] + [_capitalised(" ".join(words[:at]))]
    tail = " ".join(words[at:])
    sentences = (*head[:-1], " ".join([head[-1], tail]).strip(), *(_capitalised(s) for s in ours[cut + 1 :]))
    return Plan(sentences, given=" ".join(head))


def _capitalised(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def medium(scene: Scene, subject: ShapeSpec, rng: np.random.Generator, style: str) -> str:
    return "".join(_medium_parts(scene, subject, rng, style)) + "."


def _medium_parts(scene: Scene, subject: ShapeSpec, rng: np.random.Generator, style: str) -> list[str]:
    """A medium answer as its clauses and the joins between them: the asked object's, then one per other object
    (or a remark that there is none)."""
    main = _frame(MEDIUM_MAIN, rng, style, **_subject_fields(subject, *_motion_phrase(subject.motion, rng)))
    others = [s for s in sorted(scene.shapes, key=lambda s: SHAPES.index(s.shape)) if s != subject]
    if not others:
        return [main, ", and ", _frame(MEDIUM_NOTHING, rng, style)]
    clauses = [_frame(MEDIUM_OTHER, rng, style, **_subject_fields(s, *_motion_phrase(s.motion, rng)))
               for s in others]
    joiner = ". " if _pick((True, False, False, True, True), rng, style) else ", and "  # one or two sentences
    return [main, joiner, *(part for clause in clauses for part in (clause, " and "))][:-1]


def mixed_medium(scene: Scene, subject: ShapeSpec, rng: np.random.Generator, style: str, other: str) -> Plan:
    """A medium answer that ``other`` began and ``style`` finishes, as LVSpec's kept fillers leave it.

    Where the clip has more than one object the prefix is ``other``'s own answer cut at a word. Where it has one,
    it is a false start: the asked object's clause in ``other``'s words, then the opening of a clause about one
    more object ("the scene also has", "besides it,"), as a draft that misreads the clip words it. Its fillers
    pass a loose check and commit the target to an object the clip does not have, so the target learns a true
    way out ("the scene also has no other object"), and learns it only where no other object is there."""
    seed = int(rng.integers(2**31))
    theirs = _medium_parts(scene, subject, np.random.default_rng(seed), other)
    if len(scene.shapes) > 1:
        ours = _medium_parts(scene, subject, np.random.default_rng(seed), style)  # the same draws, own words
        cut = 2 * int(rng.integers((len(theirs) + 1) // 2))  # a clause, not a join
        words = theirs[cut].split(" ")
        at = int(rng.integers(1, len(words))) if len(words) > 1 else 1
        given = "".join(theirs[:cut]) + " ".join(words[:at])
        text = "".join(theirs[: cut + 1]) + "".join(ours[cut + 1 :]) + "."
    else:
        head, way_out = FALSE_STARTS[int(rng.integers(len(FALSE_STARTS)))]
        join = (". ", ", and ")[int(rng.integers(2))]
        given = theirs[0] + join + _choose_words(head, rng, other)
        text = f"{given} {way_out}."
    text = _sentence_case(text)
    return Plan((text,), given=text[: len(given)])


# The openings of `MEDIUM_OTHER`'s clauses that come before the object they name, each with a true way to
# finish it when no object is left to name.
FALSE_STARTS = (
    ("there is also", "nothing else in the scene"),
    ("[besides|beside] it,", "there is nothing else in the scene"),
    ("the scene also has", "no other object"),
    ("[next to|near] it,", "there is only the dark background"),
)


# ---------------------------------------------------------------------------------------------------
# Multiple choice

CHOICE_QUESTIONS = {
    "colour": "What colour is the {shape}?",
    "shape": "What shape is the {colour} object?",
    "motion": "What does the {colour} {shape} do?",
    "count": "How many shapes are there?",
}
CHOICE_TAIL = "Answer with the option's letter."


@dataclass(frozen=True)
class Choice:
    question: str
    options: tuple[str, ...]
    right: str  # the right option's letter

    @property
    def prompt(self) -> str:
        lines = [f"{letter}. {option}" for letter, option in zip(LETTERS, self.options)]
        return "\n".join([self.question, *lines, CHOICE_TAIL])


def choice(scene: Scene, rng: np.random.Generator, fact: str | None = None, subject: ShapeSpec | None = None) -> Choice:
    """A four-option question about one fact of ``scene``, the right option at a random letter."""
    from .world import COLOURS, MOTIONS

    fact = fact or str(rng.choice(list(CHOICE_QUESTIONS)))
    subject = subject or scene.shapes[int(rng.integers(len(scene.shapes)))]
    pool, right = {
        "colour": (list(COLOURS), subject.colour),
        "shape": (list(SHAPES), subject.shape),
        "motion": ([MOTION_OPTIONS[m] for m in MOTIONS], MOTION_OPTIONS[subject.motion]),
        "count": (list(COUNT_OPTIONS), COUNT_OPTIONS[len(scene.shapes) - 1]),
    }[fact]
    wrong = [o for o in pool if o != right]
    options = [right, *(wrong[i] for i in rng.choice(len(wrong), 3, replace=False))]
    order = rng.permutation(4)
    options = [options[i] for i in order]
    question = CHOICE_QUESTIONS[fact].format(colour=subject.colour, shape=subject.shape)
    return Choice(question, tuple(options), LETTERS[int(np.argmax(order == 0))])


def parse_choice(prompt: str) -> tuple[str, dict[str, str]] | None:
    """The question line and the lettered options of a multiple-choice prompt (None if it is not one)."""
    options = lettered_options(prompt)
    return (prompt.strip().splitlines()[0], options) if options else None


def chosen_letter(text: str) -> str | None:
    """The letter an answer picks: a leading A–D (``B``, ``B.``, ``(B)``, ``B. blue``) or, after the option's
    text, one in brackets (``blue (B).``, the embedded pair's form)."""
    m = re.match(r"\s*(?:the answer is\s*)?\(?([A-D])(?:[.):]|\s*$)", text, flags=re.I) or re.search(
        r"\(([A-D])\)", text, flags=re.I)
    return m.group(1).upper() if m else None
