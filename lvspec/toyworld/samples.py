"""The example clips shipped in assets/videos, chosen to cover the world's whole vocabulary."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .answers import PROMPTS
from .longform import choice
from .clipio import write_mp4
from .world import TRANSLATIONS, Scene, ShapeSpec, render_labelled

S = ShapeSpec
EXAMPLES: list[tuple[str, Scene, str]] = [
    ("red-circle-right", Scene((S("circle", "red", "right"),), "plain"), "default"),
    ("blue-square-yellow-star", Scene((S("square", "blue", "up"), S("star", "yellow", "left")), "gradient"), "default"),
    ("green-triangle-growing", Scene((S("triangle", "green", "growing"),), "noise"), "default"),
    ("three-shapes", Scene((S("circle", "orange", "still"), S("square", "white", "down"), S("star", "purple", "right")), "plain"), "default"),
    ("white-star-growing", Scene((S("star", "white", "growing"),), "gradient"), "default"),
    ("purple-square-and-circle", Scene((S("square", "purple", "left"), S("circle", "green", "down")), "noise"), "default"),
    ("orange-triangle-left-alt", Scene((S("triangle", "orange", "left"),), "gradient"), "alt"),
    ("star-triangle-circle", Scene((S("circle", "yellow", "up"), S("triangle", "blue", "right"), S("star", "red", "still")), "gradient"), "default"),
]


def prompts_for(scene: Scene, rng: np.random.Generator) -> list[str]:
    """One question of every kind, the detailed description first; each fits the clip (a shape that grows or
    stays still is asked what it does, not which way it moves)."""
    first, last = scene.shapes[0], scene.shapes[-1]
    motion = PROMPTS["motion"] if last.motion in TRANSLATIONS else "What does the {colour} {shape} do?"
    return [
        PROMPTS["detailed"],
        PROMPTS["describe"],
        PROMPTS["medium"].format(colour=first.colour, shape=first.shape),
        PROMPTS["colour"].format(shape=first.shape),
        motion.format(colour=last.colour, shape=last.shape),
        PROMPTS["shape"].format(colour=last.colour),
        PROMPTS["count"],
        choice(scene, rng, subject=last).prompt,
    ]


def compose(objects: list[tuple[str, str, str]], background: str) -> Scene:
    """The scene a teacher asks for: (colour, shape, motion) per object; refused, with the reason, where the
    world could not draw or name it (shapes and colours must differ, so "the square" names one object)."""
    from ..errors import UserError
    from .world import BACKGROUNDS, COLOURS, MOTIONS, SHAPES

    if not 1 <= len(objects) <= 3:
        raise UserError("a scene has 1 to 3 objects")
    for colour, shape, motion in objects:
        if colour not in COLOURS or shape not in SHAPES or motion not in MOTIONS:
            raise UserError(f"the built-in pair knows {', '.join(COLOURS)} {'/'.join(SHAPES)} that move "
                            f"{', '.join(MOTIONS)}: not '{colour} {shape} {motion}'")
    if len({c for c, _, _ in objects}) < len(objects) or len({s for _, s, _ in objects}) < len(objects):
        raise UserError("give each object its own colour and its own shape (the answers name objects by them)")
    if background not in BACKGROUNDS:
        raise UserError(f"the background is one of {', '.join(BACKGROUNDS)}")
    return Scene(tuple(ShapeSpec(s, c, m) for c, s, m in objects), background)


def labelled_clip(scene: Scene, rng: np.random.Generator, style: str = "default") -> tuple[np.ndarray, np.ndarray]:
    """``scene`` drawn as the example clips are (160×120, 16 frames) with its object masks (`render_labelled`)."""
    return render_labelled(scene, rng, 160, 120, 16, style=style)


def example_rng(i: int, seed: int = 7) -> np.random.Generator:
    """The draws behind shipped example ``i``: its clip, then its questions (re-drawn, they give its masks)."""
    return np.random.default_rng((2, seed, i))


def write_clip(scene: Scene, path: Path, seed: int = 0, style: str = "default") -> Path:
    """Render ``scene`` as the example clips are (at 8 fps) and write it as MP4; `composed_masks` redraws its
    object masks."""
    write_mp4(labelled_clip(scene, np.random.default_rng(seed), style)[0], path, fps=8)
    return path


def composed_masks(scene: Scene, seed: int = 0, style: str = "default") -> np.ndarray:
    return labelled_clip(scene, np.random.default_rng(seed), style)[1]


def example_masks(name: str) -> np.ndarray | None:
    """The object masks of the shipped example clip ``name`` (None for any other name)."""
    i = next((i for i, (n, _, _) in enumerate(EXAMPLES) if f"{n}.mp4" == name), None)
    return None if i is None else labelled_clip(EXAMPLES[i][1], example_rng(i), EXAMPLES[i][2])[1]


def write_samples(folder: Path, seed: int = 7) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    index = []
    for i, (name, scene, style) in enumerate(EXAMPLES):
        rng = example_rng(i, seed)
        frames = labelled_clip(scene, rng, style)[0]
        write_mp4(frames, folder / f"{name}.mp4", fps=8)
        index.append({"video": f"{name}.mp4", "prompts": prompts_for(scene, rng), "scene": asdict(scene)})
    path = folder / "examples.json"
    path.write_text(json.dumps(index, indent=1))
    return path
