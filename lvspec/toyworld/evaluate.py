"""Attribute accuracy of each embedded model alone on held-out clips, through the normal video path.

Clips are rendered from evaluation seeds (never used in training), written as mp4, read back through the
app's own video reader and answered with vanilla greedy decoding; each answer is parsed back into facts and
scored per fact type.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..decode import Settings, generate
from ..models import load_pair
from ..video import VideoLimits, read_video
from .answers import PROMPTS, score
from .clipio import write_mp4
from .data import EVAL
from .world import render, sample_scene

FACTS = ("colour", "shape", "motion", "count")
KINDS = tuple(PROMPTS)


@dataclass
class EvalItem:
    seed: int
    path: str
    prompt: str
    scene: object = field(repr=False)


def held_out(n: int, folder: Path, seed: int = 0, style: str = "default") -> list[EvalItem]:
    """``n`` clips, each asked one canonical prompt; kinds cycle so every fact type is asked."""
    items = []
    for i in range(n):
        rng = np.random.default_rng((EVAL, seed, i))
        scene = sample_scene(rng)
        size = int(rng.integers(80, 257))
        frames = render(scene, rng, size, int(size * rng.uniform(0.6, 1.0)), int(rng.integers(8, 25)), style=style)
        path = folder / f"eval-{i:04d}.mp4"
        write_mp4(frames, path, fps=float(rng.uniform(8, 24)))
        subject = scene.shapes[int(rng.integers(len(scene.shapes)))]
        prompt = PROMPTS[KINDS[i % len(KINDS)]].format(shape=subject.shape, colour=subject.colour)
        items.append(EvalItem(i, str(path), prompt, scene))
    return items


def accuracy(model: str, items: list[EvalItem], frames: int = 16) -> dict:
    """Per fact type: the share of asked facts the model states right; ``overall`` pools them."""
    pair = load_pair(model, device="cpu")
    right, asked = defaultdict(int), defaultdict(int)
    answers = []
    for item in tqdm(items, desc=Path(model).name, leave=False):
        clip = read_video(item.path, VideoLimits(max_frames=frames))
        text = generate(pair, clip, item.prompt, "vanilla", Settings(max_new_tokens=64)).text
        verdict = score(item.scene, item.prompt, text)
        for fact, ok in verdict.items():
            right[fact] += ok
            asked[fact] += 1
        answers.append({"seed": item.seed, "prompt": item.prompt, "answer": text, "score": verdict})
    table = {fact: right[fact] / asked[fact] for fact in FACTS if asked[fact]}
    table["overall"] = sum(right.values()) / sum(asked.values())
    return {"accuracy": table, "asked": dict(asked), "answers": answers}


def evaluate(models: dict[str, str], n: int = 200, seed: int = 0, style: str = "default") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        items = held_out(n, Path(tmp), seed, style)
        return {name: accuracy(path, items) for name, path in models.items()}


def print_table(results: dict) -> None:
    print(f"{'model':<10}" + "".join(f"{f:>9}" for f in (*FACTS, "overall")))
    for name, r in results.items():
        a = r["accuracy"]
        print(f"{name:<10}" + "".join(f"{a.get(f, float('nan')):>9.1%}" for f in (*FACTS, "overall")))


def save(results: dict, path: str) -> None:
    Path(path).write_text(json.dumps(results, indent=1))
