"""Did loose verification change what the answer says, or only how? For the toy world, where every
shipped clip's facts are known and an answer parses back to the facts it states (`answers.stated`).

The app shows this beside the word diff: a word diff cannot tell "slides" for "moves" (a rewording)
from "purple square" for "green circle" (a changed fact).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import VIDEOS
from .answers import _COLOUR_WORDS, _COUNT_WORDS, _MOTION_WORDS, _SHAPE_WORDS, stated
from .samples import composed_masks, example_masks
from .world import Scene, ShapeSpec


def shipped_scenes(folder: Path = VIDEOS) -> dict[str, Scene]:
    """The scene behind each shipped example clip, by file name."""
    index = folder / "examples.json"
    if not index.exists():
        return {}
    return {item["video"]: Scene(tuple(ShapeSpec(**s) for s in item["scene"]["shapes"]), item["scene"]["background"])
            for item in json.loads(index.read_text())}


_composed: dict[str, Scene] = {}  # clips composed in this process, by the digest of their bytes


def _digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def remember(path: str | Path, scene: Scene) -> None:
    """Know ``scene`` as the truth of the clip at ``path`` (one a user composed with `samples.write_clip`'s
    defaults), wherever it is copied to."""
    _composed[_digest(path)] = scene


def scene_of(path: str | None) -> Scene | None:
    """The scene of a shipped example clip (same name, same bytes) or of a composed one (same bytes),
    wherever the app keeps its copy; else None."""
    known = _known(path)
    return known[0] if known else None


def masks_of(path: str | None) -> np.ndarray | None:
    """Which object covers each pixel of a shipped or composed clip, (frames, H, W) with 0 the background and
    i the scene's object i, as the renderer drew it; else None."""
    known = _known(path)
    return known[1]() if known else None


def _known(path: str | None) -> tuple[Scene, Callable[[], np.ndarray]] | None:
    """Read once per file version: the live view asks at every redraw."""
    if not path or not Path(path).is_file():
        return None
    stat = Path(path).stat()
    return _known_at(str(path), stat.st_mtime_ns, stat.st_size, len(_composed))


@functools.lru_cache(maxsize=64)
def _known_at(path: str, mtime_ns: int, size: int, composed: int) -> tuple[Scene, Callable[[], np.ndarray]] | None:
    name = Path(path).name
    scene = shipped_scenes().get(name)
    if scene and Path(path).read_bytes() == (VIDEOS / name).read_bytes():
        return scene, functools.cache(lambda: example_masks(name))
    scene = _composed.get(_digest(path))
    return (scene, functools.cache(lambda: composed_masks(scene))) if scene else None


def false_words(texts: list[str], scene: Scene) -> set[int]:
    """Indices of the pieces of an answer (token texts, in order) that name what ``scene`` does not have: a
    colour, shape or motion no object of it has, or a count of shapes other than its own."""
    words = [t.strip(" .,;:!?\n").lower() for t in texts]
    colours, shapes = {s.colour for s in scene.shapes}, {s.shape for s in scene.shapes}
    motions = {s.motion for s in scene.shapes}
    false = set()
    for i, word in enumerate(words):
        following = next((w for w in words[i + 1 :] if w), "")
        if (word in _COLOUR_WORDS and _COLOUR_WORDS[word] not in colours
                or word in _SHAPE_WORDS and _SHAPE_WORDS[word] not in shapes
                or word in _MOTION_WORDS and _MOTION_WORDS[word] not in motions
                or word in _COUNT_WORDS and following in ("shape", "shapes") and _COUNT_WORDS[word] != len(scene.shapes)):
            false.add(i)
    return false


def _doing(motion: str) -> str:
    return {"still": "stays still", "growing": "grows"}.get(motion, f"moves {motion}")


def readable(facts: frozenset) -> list[str]:
    """The most specific statements of a fact set, as words: "green circle moves down", "3 shapes", "option B"
    (a colour or shape alone only where no object states it)."""
    moves = {f[1:3]: f[3] for f in facts if f[0] == "moves"}
    objects = {f[1:] for f in facts if f[0] == "object"} - set(moves)
    named = {w for pair in (*moves, *objects) for w in pair}
    out = [f"{c} {s} {_doing(m)}" for (c, s), m in sorted(moves.items())]
    out += [f"{c} {s}" for c, s in sorted(objects)]
    out += sorted(f[1] for f in facts if f[0] in ("colour", "shape") and f[1] not in named)
    out += [f"{n} shape{'s' * (n != 1)}" for kind, n, *_ in facts if kind == "count" and n is not None]
    out += [f"option {f[1]}" for f in facts if f[0] == "letter" and f[1]]
    return out


def fact_report(prompt: str, reference: str, other: str, scene: Scene | None = None, name: str = "LVSpec") -> str:
    """Markdown: whether ``other`` states the same facts as ``reference`` (vanilla's answer) and, with the
    clip's ``scene``, what the clip shows."""
    before, after = stated(prompt, reference), stated(prompt, other)
    if before == after:
        lines = [f"**Facts kept.** {name}'s answer states the same facts as vanilla's: what changed is wording."]
    else:
        lost, gained = readable(before - after), readable(after - before)
        lines = [f"**⚠ {name} changed the facts.** Vanilla's answer states " + (", ".join(lost) or "nothing more")
                 + f"; {name}'s states " + (", ".join(gained) or "nothing more") + " instead."]
    if scene is not None:
        truth = [f"{s.colour} {s.shape} {_doing(s.motion)}" for s in scene.shapes]
        lines.append(f"**The clip** (its facts known: a shipped or composed scene): {'; '.join(truth)}.")
    return "\n\n".join(lines)


def look_report(looks: list[int], grid: list[int], masks: np.ndarray, scene: Scene, word: str) -> str:
    """Markdown: how many of a drafted token's top-N video tokens (``looks``, indices into the LLM's ``grid``)
    lie on an object of the clip (``masks`` at the frames the model read), and, for a colour or shape word,
    whether they find the object it names."""
    from .data import ON_OBJECT, object_shares

    shares = object_shares(masks, len(scene.shapes), (grid[0], grid[1], grid[2]))[looks, 1:] >= ON_OBJECT
    names = [f"{s.colour} {s.shape}" for s in scene.shapes]
    n, background = len(looks), int((~shares.any(1)).sum())
    per = ", ".join(f"{names[i]} {int(c)}" for i, c in enumerate(shares.sum(0)) if c)
    word = word.strip().lower()
    canon = _COLOUR_WORDS.get(word) or _SHAPE_WORDS.get(word)
    named = next((i for i, s in enumerate(scene.shapes) if canon in (s.colour, s.shape)), None)
    if named is None:
        head = f"“{word}” names no object of this clip" if canon else "A phrasing word"
        return (f"**{head}:** {n - background} of its top {n} video tokens lie on an object"
                + (f" ({per})" if per else "") + f", {background} on the background.")
    hits = int(shares[:, named].sum())
    verdict = "finds its object" if hits * 2 >= n else "misses its object"
    return (f"**“{word}” {verdict}:** {hits} of its top {n} video tokens lie on the {names[named]} it names, "
            f"{n - hits - background} on other objects, {background} on the background.")
