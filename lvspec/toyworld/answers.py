"""Prompts, ground-truth answers, and the parser that scores any answer against a scene's facts.

Answers come in two template *styles*, "target" and "draft", that prefer different but overlapping
phrasings: two models trained on them state the same facts in different words, which is the situation
LVSpec's loose acceptance is built for. Every phrasing names its facts with a small set of visual words
(colour, shape, motion and number words), so `parse_facts` maps any wording back to canonical facts and
`anchor_words` says which tokens carry them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .longform import CHOICE_QUESTIONS, COUNT_OPTIONS, MOTION_OPTIONS, choice, chosen_letter, detailed, medium, parse_choice
from .wording import (NUMBER_WORDS, STYLES, _IN_PLACE, _MOVERS, _counting, _motion_phrase, _noun, _pick,
                      _sentence_case)
from .world import COLOURS, SHAPES, Scene, ShapeSpec, sample_scene

PROMPTS = {
    "describe": "Describe the video.",
    "colour": "What colour is the {shape}?",
    "shape": "What shape is the {colour} object?",
    "count": "How many shapes are there?",
    "motion": "Which way does the {colour} {shape} move?",
    "detailed": "Describe the video in detail.",
    "medium": "What is the {colour} {shape} doing, and what else is in the scene?",
    "choice": "{question}",  # a question with four lettered options (`longform.choice`)
}
PROMPT_VARIANTS = {
    "detailed": ("Provide a detailed description of the video.", "Give an elaborate description of what happens in "
                 "the clip.", "Describe this video in detail.", "Describe everything you see in the clip in detail.",
                 "Give a detailed account of the video.", "Write a detailed description of this clip."),
    "describe": ("Describe this video.", "What happens in the video?", "Describe what you see.",
                 "Give a caption for the video.", "What is shown in this clip?"),
    "medium": ("What does the {colour} {shape} do, and what else can be seen?",
               "Tell me what the {colour} {shape} is doing and what else is in the video.",
               "What is happening with the {colour} {shape}, and what else appears?",
               "What is the {shape} doing, and what else is in the scene?"),
    "colour": ("What color is the {shape}?", "Which colour is the {shape}?", "What is the colour of the {shape}?",
               "What color is the {shape} in the video?"),
    "shape": ("Which shape is {colour}?", "What is the {colour} shape?", "What kind of shape is the {colour} object?",
              "What shape is the {colour} thing?"),
    "count": ("How many shapes do you see?", "How many objects are in the video?", "Count the shapes.",
              "How many shapes appear in the clip?"),
    "motion": ("In which direction does the {colour} {shape} move?", "How does the {colour} {shape} move?",
               "What does the {colour} {shape} do?", "Which way does the {shape} move?", "How does the {shape} move?"),
    "choice": ("{question}",),
}
TASKS = {"detailed": "detailed", "describe": "describe", "medium": "medium", "choice": "choice",
         **dict.fromkeys(("colour", "shape", "count", "motion"), "short QA")}  # the paper's task of each kind
DESCRIPTIONS = ("detailed", "describe", "medium")  # the kinds whose answers name every object
OBJECT_FACTS = ("colour", "shape", "motion")  # what a description binds to each object (`described`)
_KIND_WEIGHTS = {"detailed": 0.3, "describe": 0.15, "medium": 0.15, "choice": 0.12, "colour": 0.06, "shape": 0.06,
                 "count": 0.06, "motion": 0.1}

# ---------------------------------------------------------------------------------------------------
# Visual words: the only words that carry facts. Templates use no other word from these tables.

_COUNT_WORDS = {w: i for i, w in enumerate(NUMBER_WORDS)} | {str(i): i for i in range(10)} | {"single": 1}
_COLOUR_WORDS = {c: c for c in COLOURS}
_SHAPE_WORDS = {s: s for s in SHAPES} | {s + "s": s for s in SHAPES}
_MOTION_WORDS = {
    **{w: "left" for w in ("left", "leftward", "leftwards")},
    **{w: "right" for w in ("right", "rightward", "rightwards")},
    **{w: "up" for w in ("up", "upward", "upwards")},
    **{w: "down" for w in ("down", "downward", "downwards")},
    **{w: "still" for w in ("still", "stationary", "motionless", "not")},
    **{w: "growing" for w in ("grow", "grows", "growing", "grew", "bigger", "larger", "expand", "expands",
                              "expanding")},
}

# ---------------------------------------------------------------------------------------------------
# Answer templates. Placeholders: {colour} {shape} {n} {shapes} {be} {appear} {moves} {moving} and, in
# captions, {clauses} {gclauses} {nps} {the_clauses} {each}. Sentences are capitalised afterwards.

_CAPTIONS = (
    "{clauses}.",
    "the video shows {gclauses}.",
    "there {be} {n} {shapes}: {nps}. {the_clauses}.",
    "in this clip, {clauses}.",
    "we see {gclauses}.",
    "{n} {shapes} {appear}. {the_clauses}.",
    "this video contains {nps}. {the_clauses}.",
    "{each}",
    "here, {clauses}.",
    "the clip features {n} {shapes}: {gclauses}.",
    "in the video, there is {gclauses}.",
    "{n} {shapes} can be seen. {each}",
    "the scene has {nps}; {the_clauses}.",
    "a short clip in which {clauses}.",
    "this is a video of {gclauses}.",
    "the video has {n} {shapes}. {each}",
)
_OBJECT_SENTENCES = (
    "there is {a_np} that {moves}.",
    "there is {a_np}, and it {moves}.",
    "{the_np} {moves}.",
    "{a_np} is {moving}.",
    "you can see {a_np} {moving}.",
)
_LAST_JOINERS = (" and ", ", and ", " while ", ", while ")
_COLOUR_ANSWERS = ("the {shape} is {colour}.", "it is {colour}.", "the {shape} is coloured {colour}.", "{colour}.",
                   "it's {colour}.", "the colour of the {shape} is {colour}.", "that {shape} is {colour}.",
                   "the {shape} appears {colour}.")
_SHAPE_ANSWERS = ("the {colour} object is a {shape}.", "it is a {shape}.", "it's a {shape}.", "a {shape}.",
                  "the {colour} shape is a {shape}.", "that is a {shape}.",
                  "the {colour} object is shaped like a {shape}.", "it has the form of a {shape}.")
_COUNT_ANSWERS = ("there {be} {n} {shapes}.", "{n}.", "I count {n} {shapes}.", "there {be} {n} {shapes} in the video.",
                  "the video has {n} {shapes}.", "{n} {shapes}.", "I see {n} {shapes}.",
                  "the clip contains {n} {shapes}.")
_MOTION_ANSWERS = ("it {moves}.", "the {colour} {shape} {moves}.", "it is {moving}.", "the {shape} {moves}.",
                   "{moving}.", "the {colour} {shape} is {moving}.", "in the video, it {moves}.")


def _join(items: list[str], rng: np.random.Generator, style: str, clauses: bool = False) -> str:
    """"x", "x and y", "x, y and z"; whole clauses may also be joined by "while" or a comma before "and"."""
    if len(items) == 1:
        return items[0]
    joiners = _LAST_JOINERS if clauses else _LAST_JOINERS[:1] if len(items) == 2 else _LAST_JOINERS[:2]
    return ", ".join(items[:-1]) + _pick(joiners, rng, style) + items[-1]


def _caption(scene: Scene, rng: np.random.Generator, style: str) -> str:
    specs = sorted(scene.shapes, key=lambda s: SHAPES.index(s.shape))  # a fixed order a model can learn
    template = _pick(_CAPTIONS, rng, style)
    phrases = [_motion_phrase(s.motion, rng) for s in specs]
    each = [_pick(_OBJECT_SENTENCES, rng, style).format(a_np=_noun(s, "a"), the_np=_noun(s, "the"), moves=f, moving=g)
            for s, (f, g) in zip(specs, phrases)]
    fields = _counting(len(specs)) | {
        "clauses": _join([f"{_noun(s, 'a')} {f}" for s, (f, _) in zip(specs, phrases)], rng, style, clauses=True),
        "gclauses": _join([f"{_noun(s, 'a')} {g}" for s, (_, g) in zip(specs, phrases)], rng, style),
        "nps": _join([_noun(s, "a") for s in specs], rng, style),
        "the_clauses": _join([f"{_noun(s, 'the')} {f}" for s, (f, _) in zip(specs, phrases)], rng, style, clauses=True),
        "each": " ".join(each),
    }
    return template.format(**fields)


# ---------------------------------------------------------------------------------------------------
# Prompts


@dataclass(frozen=True)
class Question:
    """What a prompt asks: its kind (a key of `PROMPTS`) and, for per-object kinds, which object; for a
    multiple-choice prompt, also the fact asked (``fact``) and the right option's letter (``letter``)."""

    kind: str
    subject: ShapeSpec | None = None
    fact: str | None = None
    letter: str | None = None


def sample_prompt(scene: Scene, rng: np.random.Generator, shares: dict[str, float] | None = None) -> tuple[str, str]:
    """A prompt that applies to ``scene`` and its kind; half the time the canonical wording, else a variant.

    ``shares``: kinds drawn at these shares instead of the usual mix, the other kinds keeping their proportions.
    """
    shares = shares or {}
    rest = {k: w for k, w in _KIND_WEIGHTS.items() if k not in shares}
    scale = (1 - sum(shares.values())) / sum(rest.values())
    weights = {k: shares.get(k, w * scale) for k, w in _KIND_WEIGHTS.items()}
    kinds = list(weights)
    kind = kinds[int(rng.choice(len(kinds), p=list(weights.values())))]
    subject = scene.shapes[int(rng.integers(len(scene.shapes)))]
    if kind == "choice":
        return choice(scene, rng, subject=subject).prompt, kind
    variants = PROMPT_VARIANTS[kind]
    template = PROMPTS[kind] if rng.random() < 0.5 else variants[int(rng.integers(len(variants)))]
    return template.format(shape=subject.shape, colour=subject.colour), kind


def prompt_for(kind: str, scene: Scene, subject: ShapeSpec, rng: np.random.Generator) -> str:
    """The canonical prompt of ``kind`` about ``subject`` (a multiple-choice one about a random fact)."""
    if kind == "choice":
        return choice(scene, rng, subject=subject).prompt
    return PROMPTS[kind].format(shape=subject.shape, colour=subject.colour)


def _prompt_kind(prompt: str) -> str:
    if parse_choice(prompt):
        return "choice"
    p = prompt.lower()
    if "what else" in p:
        return "medium"
    if "detail" in p or "elaborate" in p:
        return "detailed"
    if "how many" in p or p.startswith("count"):
        return "count"
    if any(k in p for k in ("describe", "what happens", "caption", "what is shown")):
        return "describe"
    if any(k in p for k in ("which way", "direction", "move", "what does")):
        return "motion"
    if "colour" in p or "color" in p:
        return "colour"
    if "shape" in p or "kind" in p:
        return "shape"
    raise ValueError(f"cannot tell what the prompt asks: {prompt!r}")


def parse_prompt(scene: Scene, prompt: str) -> Question:
    """Which fact ``prompt`` asks about, and of which of ``scene``'s objects (ValueError if none fits)."""
    kind = _prompt_kind(prompt)
    if kind == "choice":
        question, options = parse_choice(prompt)
        asked = parse_prompt(scene, question)
        if asked.kind not in CHOICE_QUESTIONS:
            raise ValueError(f"prompt {prompt!r} asks a kind of question that has no options")
        s = asked.subject
        right = (COUNT_OPTIONS[len(scene.shapes) - 1] if asked.kind == "count" else
                 MOTION_OPTIONS[s.motion] if asked.kind == "motion" else getattr(s, asked.kind))
        letters = [letter for letter, option in options.items() if option.lower() == right]
        if len(letters) != 1:
            raise ValueError(f"prompt {prompt!r} has no single right option for this scene")
        return Question(kind, asked.subject, asked.kind, letters[0])
    if kind in ("detailed", "describe", "count"):
        return Question(kind)
    words = _words(prompt)
    colours = [_COLOUR_WORDS[w] for w in words if w in _COLOUR_WORDS]
    shapes = [_SHAPE_WORDS[w] for w in words if w in _SHAPE_WORDS]
    named = {"colour": shapes, "shape": colours, "motion": shapes or colours, "medium": shapes or colours}[kind]
    matches = [s for s in scene.shapes
               if (not shapes or s.shape == shapes[0]) and (kind == "colour" or not colours or s.colour == colours[0])]
    if not named or len(matches) != 1:
        raise ValueError(f"prompt {prompt!r} names no single object of the scene")
    return Question(kind, matches[0])


def answer(scene: Scene, prompt: str, rng: np.random.Generator, style: str = "target") -> str:
    """The ground-truth answer to ``prompt`` about ``scene``, worded in ``style``'s preferred templates."""
    q = parse_prompt(scene, prompt)
    if q.kind == "choice":
        return f"{parse_choice(prompt)[1][q.letter]} ({q.letter})."
    if q.kind == "detailed":
        return _sentence_case(" ".join(detailed(scene, rng, style)))
    if q.kind == "medium":
        return _sentence_case(medium(scene, q.subject, rng, style))
    if q.kind == "describe":
        return _sentence_case(_caption(scene, rng, style))
    if q.kind == "count":
        return _sentence_case(_pick(_COUNT_ANSWERS, rng, style).format(**_counting(len(scene.shapes))))
    s = q.subject
    if q.kind == "motion":
        finite, gerund = _motion_phrase(s.motion, rng)
        text = _pick(_MOTION_ANSWERS, rng, style).format(colour=s.colour, shape=s.shape, moves=finite, moving=gerund)
    else:
        text = _pick(_COLOUR_ANSWERS if q.kind == "colour" else _SHAPE_ANSWERS, rng, style)
        text = text.format(colour=s.colour, shape=s.shape)
    return _sentence_case(text)


# ---------------------------------------------------------------------------------------------------
# Parsing and scoring

Binding = tuple[str | None, str | None, str | None]  # (colour, shape, motion) stated together


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def parse_facts(text: str) -> dict:
    """Canonical facts stated in ``text``: colours, shapes, motions (in order of first mention), the count,
    and bindings — one (colour, shape, motion) triple per object mentioned in a clause. A clause with a
    motion but no object ("and it moves left") completes the previous object's motion.
    """
    colours, shapes, motions, bindings = [], [], [], []
    count = None
    for clause in re.split(r"[.;:!?,]|\b(?:and|while|whereas|but)\b", text.lower()):
        words = _words(clause)
        cs = [_COLOUR_WORDS[w] for w in words if w in _COLOUR_WORDS]
        ss = [_SHAPE_WORDS[w] for w in words if w in _SHAPE_WORDS]
        ms = list(dict.fromkeys(_MOTION_WORDS[w] for w in words if w in _MOTION_WORDS))
        if count is None:
            count = next((_COUNT_WORDS[w] for w in words if w in _COUNT_WORDS), None)
        colours += [c for c in cs if c not in colours]
        shapes += [s for s in ss if s not in shapes]
        motions += [m for m in ms if m not in motions]
        motion = ms[0] if len(ms) == 1 else None
        if cs or ss:
            n = max(len(cs), len(ss))
            bindings += [(cs[i] if i < len(cs) else None, ss[i] if i < len(ss) else None, motion if n == 1 else None)
                         for i in range(n)]
        elif motion and bindings and bindings[-1][2] is None:
            bindings[-1] = (*bindings[-1][:2], motion)
        elif motion:
            bindings.append((None, None, motion))
    return {"colours": colours, "shapes": shapes, "motions": motions, "count": count, "bindings": bindings}


def stated(prompt: str, text: str) -> frozenset:
    """What an answer to ``prompt`` commits to, whatever its wording, order or repetitions: the letter it
    picks for a multiple-choice prompt, else the colours, shapes, motions and count it states, which colour
    goes with which shape, and which motion with which object (`parse_facts`). Two answers that state the
    same set are the same answer to a scorer."""
    if parse_choice(prompt):
        return frozenset({("letter", chosen_letter(text))})
    f = parse_facts(text)
    return frozenset({("colour", c) for c in f["colours"]} | {("shape", s) for s in f["shapes"]}
                     | {("motion", m) for m in f["motions"]} | {("count", f["count"])}
                     | {("object", c, s) for c, s, _ in f["bindings"] if c and s}
                     | {("moves", c, s, m) for c, s, m in f["bindings"] if c and s and m})


def score(scene: Scene, prompt: str, text: str) -> dict[str, bool]:
    """Whether ``text`` states the right facts for ``prompt``: one entry per fact type the prompt asks about.

    For a description, "colour", "shape" and "motion" are right when every object is bound to its own
    value and no other, and "count" when exactly as many objects are mentioned as there are (and any number
    stated is that count). Stating several values for one asked fact is wrong.
    """
    q = parse_prompt(scene, prompt)
    facts = parse_facts(text)
    b = facts["bindings"]
    n = len(scene.shapes)
    if q.kind == "choice":
        return {"choice": chosen_letter(text) == q.letter}
    if q.kind == "count":
        return {"count": facts["count"] == n}
    if q.kind in DESCRIPTIONS:
        objects = {(c, s) for c, s, _ in b if c and s}
        each = described(scene, b)
        return {fact: all(o[fact] for o in each) for fact in OBJECT_FACTS} | {
            "count": len(objects) == n and facts["count"] in (None, n)}
    s = q.subject
    if q.kind == "colour":
        return {"colour": {c for c, sh, _ in b if c and sh in (s.shape, None)} == {s.colour}}
    if q.kind == "shape":
        return {"shape": {sh for c, sh, _ in b if sh and c in (s.colour, None)} == {s.shape}}
    return {"motion": _motions_of(b, s, require_object=False) == {s.motion}}


def described(scene: Scene, b: list[Binding]) -> list[dict[str, bool]]:
    """Per object of ``scene``, whether a description's bindings (`parse_facts`) give it its own colour, shape
    and motion and no other."""
    return [{"colour": {c for c, sh, _ in b if c and sh == s.shape} == {s.colour},
             "shape": {sh for c, sh, _ in b if sh and c == s.colour} == {s.shape},
             "motion": _motions_of(b, s, require_object=True) == {s.motion}} for s in scene.shapes]


def _motions_of(bindings: list[Binding], spec: ShapeSpec, require_object: bool) -> set[str]:
    """Motions stated of ``spec``: bound to its colour and/or shape (and to nothing else named)."""
    return {m for c, sh, m in bindings
            if m and c in (spec.colour, None) and sh in (spec.shape, None) and (c or sh or not require_object)}


def anchor_words() -> set[str]:
    """Lower-case words that carry visual facts (colour, shape, motion and count words with their inflections)."""
    return set(_COLOUR_WORDS) | set(_SHAPE_WORDS) | set(_MOTION_WORDS) | set(_COUNT_WORDS)


def motion_verbs() -> set[str]:
    """Words that open a motion phrase ("moves", "slides", "stays", "does", "grows", "gets"): the verb alone
    already tells a translation from standing still or growing, so it states part of the motion fact."""
    phrases = [*_MOVERS, *(pair for pairs in _IN_PLACE.values() for pair in pairs)]
    return {form.split()[0] for pair in phrases for form in pair}


def corpus(n: int, rng: np.random.Generator) -> Iterator[str]:
    """``n`` prompt-and-answer texts, alternating the two answer styles, for training a tokenizer."""
    for i in range(n):
        scene = sample_scene(rng)
        prompt, _ = sample_prompt(scene, rng)
        yield f"{prompt}\n{answer(scene, prompt, rng, STYLES[i % 2])}"
