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
import torch
from tqdm import tqdm

from ..decode import Settings, generate
from ..models import load_pair
from ..multiple_choice import LETTERS
from ..video import VideoLimits, read_video
from .answers import DESCRIPTIONS, OBJECT_FACTS, PROMPTS, TASKS, described, parse_facts, parse_prompt, prompt_for, score
from .clipio import write_mp4
from .data import EVAL, Mix, collate, make_sample, model_inputs, object_shares
from .vocab import set_frame_budget
from .world import render_labelled, sample_scene

FACTS = ("colour", "shape", "motion", "count", "choice")
KINDS = tuple(PROMPTS)
SHORT_KINDS = KINDS[:5]  # the kinds of the world before the long-form tasks
SIZE_EDGES = (0.0, 0.25, 0.5, 1.0, 2.0)  # bins of an object's area in merged video tokens (the last open)


@dataclass
class EvalItem:
    seed: int
    path: str
    prompt: str
    scene: object = field(repr=False)
    masks: np.ndarray | None = field(default=None, repr=False)  # (T, H, W) per source frame: which shape, 0 = none


def held_out(n: int, folder: Path, seed: int = 0, style: str = "default", kinds: tuple[str, ...] = KINDS
             ) -> list[EvalItem]:
    """``n`` clips, each asked one canonical prompt; ``kinds`` cycle so every task and fact type is asked."""
    items = []
    for i in range(n):
        rng = np.random.default_rng((EVAL, seed, i))
        scene = sample_scene(rng)
        size = int(rng.integers(80, 257))
        frames, masks = render_labelled(scene, rng, size, int(size * rng.uniform(0.6, 1.0)), int(rng.integers(8, 25)),
                                        style=style)
        path = folder / f"eval-{i:04d}.mp4"
        write_mp4(frames, path, fps=float(rng.uniform(8, 24)))
        subject = scene.shapes[int(rng.integers(len(scene.shapes)))]
        items.append(EvalItem(i, str(path), prompt_for(kinds[i % len(kinds)], scene, subject, rng), scene, masks))
    return items


def accuracy(model: str, items: list[EvalItem], frames: int = 16, max_side: int | None = None) -> dict:
    """Per fact type and per task: the share of asked facts the model states right; ``overall`` pools them.

    ``max_side`` reads the clips at another frame budget than the model's processor (more video tokens per
    object, the same weights): what a larger budget would give before any training at it."""
    pair = load_pair(model, device="cpu")
    if max_side:
        set_frame_budget(pair.processor, max_side)
    right, asked = defaultdict(int), defaultdict(int)
    task_right, task_asked = defaultdict(int), defaultdict(int)
    answers = []
    for item in tqdm(items, desc=Path(model).name, leave=False):
        clip = read_video(item.path, VideoLimits(max_frames=frames))
        run = generate(pair, clip, item.prompt, "vanilla", Settings(max_new_tokens=256))
        text = run.text
        verdict = score(item.scene, item.prompt, text)
        kind = parse_prompt(item.scene, item.prompt).kind
        task = TASKS[kind]
        for fact, ok in verdict.items():
            right[fact] += ok
            asked[fact] += 1
            task_right[task] += ok
            task_asked[task] += 1
        answers.append({"seed": item.seed, "prompt": item.prompt, "task": task, "answer": text, "score": verdict})
        if kind in DESCRIPTIONS and item.masks is not None:
            tokens = object_tokens(item.masks[clip.indices], len(item.scene.shapes), run.video.grid)
            each = described(item.scene, parse_facts(text)["bindings"])
            answers[-1]["objects"] = [o | {"tokens": t} for o, t in zip(each, tokens)]
    table = {fact: right[fact] / asked[fact] for fact in FACTS if asked[fact]}
    table["overall"] = sum(right.values()) / sum(asked.values())
    tasks = {task: task_right[task] / task_asked[task] for task in dict.fromkeys(TASKS.values()) if task_asked[task]}
    return {"accuracy": table, "tasks": tasks, "asked": dict(asked), "answers": answers,
            "by_size": by_size(answers)}


def object_tokens(masks: np.ndarray, n_objects: int, grid: list[int]) -> list[float]:
    """Each object's area in the model's merged video tokens, per time step: how much of the clip it sees."""
    t = grid[0]
    return (object_shares(masks, n_objects, tuple(grid))[:, 1:].sum(0) / t).tolist()


def by_size(answers: list[dict]) -> list[dict]:
    """The objects of the descriptions, binned by their area in video tokens: how often each fact of one is
    bound right. Small objects are what a 28-pixel merged token blurs, so this separates seeing from binding."""
    objects = [o for a in answers for o in a.get("objects", ())]
    rows = []
    for lo, hi in zip(SIZE_EDGES, SIZE_EDGES[1:] + (None,)):
        inside = [o for o in objects if lo <= o["tokens"] and (hi is None or o["tokens"] < hi)]
        if inside:
            rows.append({"tokens": [lo, hi], "objects": len(inside)}
                        | {fact: sum(o[fact] for o in inside) / len(inside) for fact in OBJECT_FACTS})
    return rows


def letter_lookup(model: str, n: int = 128, seed: int = 0) -> float:
    """The share of ``n`` held-out letter drills (`data.letter_drill`) whose letter the model gives, the option
    handed to it: the look-up a multiple-choice answer ends with, measured apart from reading the clip."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model)
    net = AutoModelForImageTextToText.from_pretrained(model, dtype=torch.float32).eval()  # as `accuracy` reads
    letters = torch.tensor(processor.tokenizer.convert_tokens_to_ids(list(LETTERS[:4])))
    right = asked = 0
    for start in range(0, n, 8):
        samples = [make_sample((EVAL, seed, 1, i), "target", mix=Mix(letter_drills=1))
                   for i in range(start, min(start + 8, n))]
        batch = collate(processor, samples)
        with torch.no_grad():
            logits = net(**model_inputs(batch)).logits
        # a row's last trained tokens are its drill's letter, ")", "." and the end token
        position = (batch["labels"] != -100).int().cumsum(1).argmax(1) - 3
        wanted = batch["labels"][torch.arange(len(samples)), position]
        assert torch.isin(wanted, letters).all()
        right += int((logits[torch.arange(len(samples)), position - 1].argmax(-1) == wanted).sum())
        asked += len(samples)
    return right / asked


def evaluate(models: dict[str, str], n: int = 200, seed: int = 0, style: str = "default",
             max_side: int | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        items = held_out(n, Path(tmp), seed, style)
        return {name: accuracy(path, items, max_side=max_side) for name, path in models.items()}


def print_table(results: dict) -> None:
    for key, columns in (("accuracy", (*FACTS, "overall")), ("tasks", tuple(dict.fromkeys(TASKS.values())))):
        print(f"{'model':<10}" + "".join(f"{c:>10}" for c in columns))
        for name, r in results.items():
            print(f"{name:<10}" + "".join(f"{r[key].get(c, float('nan')):>10.1%}" for c in columns))
        print()
    for name, r in results.items():
        if r.get("by_size"):
            print(f"{name}: objects of descriptions by area in merged video tokens, share bound right")
            print(f"{'tokens':<10}{'objects':>10}" + "".join(f"{f:>10}" for f in OBJECT_FACTS))
            for row in r["by_size"]:
                lo, hi = row["tokens"]
                print(f"{f'{lo:g}–{hi:g}' if hi is not None else f'≥ {lo:g}':<10}{row['objects']:>10}"
                      + "".join(f"{row[f]:>10.1%}" for f in OBJECT_FACTS))
            print()
    for name, r in results.items():
        if "letter_lookup" in r:
            print(f"{name}: the letter of the option given, on letter drills: {r['letter_lookup']:.1%}")


def save(results: dict, path: str) -> None:
    Path(path).write_text(json.dumps(results, indent=1))
