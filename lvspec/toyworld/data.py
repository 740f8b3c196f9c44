"""Training samples from the world, batched through the real Qwen2.5-VL processor.

Every sample is a pure function of a seed tuple, so training resumes exactly and evaluation seeds
(namespace 1) never meet training seeds (namespace 0). A sample is a short conversation about one clip:
each extra question costs a few dozen tokens beside the clip's hundred-odd video tokens, so several
answers per clip give many times the visual supervision per step. The first turn is exactly the
single-question layout used at inference.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.video_utils import VideoMetadata

from ..video import sample_indices
from ..multiple_choice import LETTERS
from .answers import STYLES, anchor_words, answer, motion_verbs, parse_prompt, sample_prompt
from .longform import choice, mixed_detailed, mixed_medium
from .world import COLOURS, MOTIONS, SHAPES, Scene, render_labelled, sample_scene

TRAIN, EVAL, INIT = 0, 1, 2  # seed namespaces: training batches, held-out clips, data-dependent init
STYLES_DRAWN = ("default", "alt", "small")  # the renderers `Mix.render_styles` weighs, in its order


@dataclass(frozen=True)
class Turn:
    prompt: str
    reply: str
    kind: str
    given: str = ""  # the reply's first characters, worded by the other style: context, not trained on
    given_facts: bool = False  # ... but for its fact words: what the target says after the other's frames


@dataclass
class Sample:
    scene: Scene
    frames: np.ndarray
    masks: np.ndarray  # (T, H, W): which shape covers each pixel, 0 = background
    metadata: VideoMetadata
    turns: list[Turn]  # asked in order


def _jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    """Compression artefacts, as a decoded mp4 or a re-encoded upload would have them."""
    out = []
    for frame in frames:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return np.stack(out)


@dataclass(frozen=True)
class Mix:
    """What a training stage draws more of, to work on a weakness; None keeps the world's own mix."""

    multi_shape: float | None = None  # share of clips with 2 or 3 shapes (the world's: 2/3)
    describe: float | None = None  # share of questions that ask for a short description (the world's: 0.15)
    choice: float | None = None  # share of multiple-choice questions (the world's: 0.12)
    detailed: float | None = None  # share of requests for a detailed description (the world's: 0.3)
    medium: float | None = None  # share of open questions answered in a sentence or two (the world's: 0.15)
    mixed: float = 0.0  # share of detailed descriptions begun in the other style's words
    mixed_medium: float = 0.0  # share of medium answers begun in the other style's words (false starts in clips of one)
    interleave: float = 0.0  # share of the mixed descriptions whose sentences before the cut switch style at random
    given_facts: bool = False  # train the fact words inside a mixed description's given prefix too
    render_styles: tuple[float, ...] = (1.0,)  # how often each renderer of `world.STYLES` draws a clip
    repeat_choice: bool = False  # several multiple-choice questions per clip (`make_sample`)
    letter_drills: int = 0  # multiple-choice turns per clip whose option is given and only its letter trained

    @property
    def shares(self) -> dict[str, float]:
        """The question kinds drawn at a share of their own."""
        drawn = {"describe": self.describe, "choice": self.choice, "detailed": self.detailed, "medium": self.medium}
        return {k: v for k, v in drawn.items() if v is not None}


def make_sample(seed: tuple[int, ...], answer_style: str, max_turns: int = 1, render_style: str | None = None,
                mix: Mix = Mix()) -> Sample:
    """A random clip at a random size, length and frame rate, with 1 to ``max_turns`` questions and answers.

    ``render_style`` None draws the renderer from ``mix.render_styles``. With ``mix.mixed``, a detailed
    description is sometimes begun in the other style's words and finished in ``answer_style``'s, as the
    target reads it mid-answer once LVSpec has kept the draft's fillers (and the draft, the target's); with
    ``mix.mixed_medium``, a medium answer (`longform.mixed_medium`)."""
    rng = np.random.default_rng(seed)
    n_shapes = None if mix.multi_shape is None else 1 if rng.random() >= mix.multi_shape else int(rng.integers(2, 4))
    scene = sample_scene(rng, n_shapes)
    n_frames = int(rng.integers(4, 17))
    # Real videos' shapes: landscape up to 16:9, sometimes portrait (a wider frame leaves the models too few rows).
    width = int(rng.integers(64, 193))
    height = int(width * rng.uniform(0.56, 1.0))
    if rng.random() < 0.2:
        width, height = height, width
    if render_style is None:
        weights = np.array(mix.render_styles + (0.0,) * (len(STYLES_DRAWN) - len(mix.render_styles)))
        render_style = STYLES_DRAWN[int(rng.choice(len(weights), p=weights / weights.sum()))]
    frames, masks = render_labelled(scene, rng, width, height, n_frames, style=render_style)
    if rng.random() < 0.3:
        frames = _jpeg(frames, int(rng.integers(25, 90)))
    # The frames stand for a uniform sample of a longer source clip at some frame rate.
    source = n_frames * int(rng.integers(1, 4))
    fps = float(rng.uniform(6.0, 30.0))
    metadata = VideoMetadata(
        total_num_frames=source, fps=fps, width=width, height=height, duration=source / fps,
        frames_indices=sample_indices(source, n_frames),
    )
    n_turns, turns, asked = int(rng.integers(1, max_turns + 1)), [], set()
    while len(turns) < n_turns:
        prompt, kind = sample_prompt(scene, rng, mix.shares)
        # A repeated kind would be answered from the earlier reply, not the clip; a multiple-choice question
        # may repeat where asked (``mix.repeat_choice``): its letter is looked up in its own options, a copy
        # a small model learns from many examples, and one per clip was too few.
        if kind in asked and not (kind == "choice" and mix.repeat_choice):
            continue
        asked.add(kind)
        if kind == "detailed" and rng.random() < mix.mixed:
            other = next(s for s in STYLES if s != answer_style)
            interleave = bool(mix.interleave) and rng.random() < mix.interleave  # no draw when off: streams unchanged
            plan = mixed_detailed(scene, rng, answer_style, other, interleave)
            turns.append(Turn(prompt, plan.text, kind, plan.given, mix.given_facts))
        elif kind == "medium" and mix.mixed_medium and rng.random() < mix.mixed_medium:
            other = next(s for s in STYLES if s != answer_style)
            plan = mixed_medium(scene, parse_prompt(scene, prompt).subject, rng, answer_style, other)
            turns.append(Turn(prompt, plan.text, kind, plan.given))
        else:
            turns.append(Turn(prompt, answer(scene, prompt, rng, style=answer_style), kind))
    turns += [letter_drill(scene, rng) for _ in range(mix.letter_drills)]
    return Sample(scene, frames, masks, metadata, turns)


def letter_drill(scene: Scene, rng: np.random.Generator) -> Turn:
    """A multiple-choice turn whose reply begins with one of its options, drawn at random, and is trained on
    the letter alone: the letter is then a look-up of the words just written, which no reading of the clip
    can shortcut. A model that names the right option from the clip but picks its letter at chance lacks
    exactly this look-up; the drills come after a clip's real questions, so none is answered after a wrong
    option."""
    asked = choice(scene, rng)
    i = int(rng.integers(len(asked.options)))
    given = f"{asked.options[i]} ("
    return Turn(asked.prompt, f"{given}{LETTERS[i]}).", "letter", given=given)


def conversation(processor, turns: list[Turn]) -> str:
    """The chat text of a conversation whose first question carries the video."""
    messages = []
    for i, turn in enumerate(turns):
        question = [{"type": "text", "text": turn.prompt}]
        messages.append({"role": "user", "content": ([{"type": "video"}] if i == 0 else []) + question})
        messages.append({"role": "assistant", "content": turn.reply})
    return processor.apply_chat_template(messages, tokenize=False)


def reply_spans(input_ids: torch.Tensor, reply_start: list[int], eos_id: int) -> list[list[tuple[int, int]]]:
    """For each row, the (first, end) token positions of every assistant reply, its end token included."""
    spans = []
    n = len(reply_start)
    for ids in input_ids.tolist():
        starts = [j for j in range(n, len(ids)) if ids[j - n : j] == reply_start]
        spans.append([(j, ids.index(eos_id, j) + 1 if eos_id in ids[j:] else len(ids)) for j in starts])
    return spans


def fact_ids(tokenizer) -> torch.Tensor:
    """Ids of the tokens a model must look at the video to get: whole fact words, the motion verbs, and the
    first piece of any of them the tokenizer splits.

    The loss weights these tokens alike (``fact_weight``). A weighted cross-entropy's optimum scales each
    candidate's probability by its weight, so every token that can open a motion phrase must carry the same
    weight: weighting "grows" (a fact word) but not "moves" or "stays" taught the model to say "grows" for
    every clip whose motion it was unsure of.
    """
    words = anchor_words() | motion_verbs()
    whole = {i for i, word in enumerate(token_words(tokenizer)) if word in words}
    first = {tokenizer(" " + w, add_special_tokens=False)["input_ids"][0] for w in words}
    return torch.tensor(sorted(whole | {i for i in first if tokenizer.decode([i]).strip()}))


_fact_ids = lru_cache(maxsize=4)(fact_ids)


@lru_cache(maxsize=4)
def token_words(tokenizer) -> tuple[str, ...]:
    """Each token id's text, stripped and lower-cased."""
    return tuple(tokenizer.decode([i]).strip().lower() for i in range(len(tokenizer)))


def token_objects(tokenizer, ids: list[int], scene: Scene) -> list[int]:
    """For each token, which of ``scene``'s objects it names (a colour or shape word; shapes and colours are
    distinct within a scene), else -1."""
    names = {}
    for i, spec in enumerate(scene.shapes):
        names[spec.colour] = names[spec.shape] = i
    words = token_words(tokenizer)
    return [names.get(words[t], -1) for t in ids]


def collate(processor, samples: list[Sample]) -> dict[str, torch.Tensor]:
    """Right-padded batch whose labels cover only the answers and their end tokens."""
    tokenizer = processor.tokenizer
    texts = [conversation(processor, s.turns) for s in samples]
    batch = processor(
        text=texts,
        videos=[s.frames for s in samples],
        video_metadata=[s.metadata for s in samples],
        do_sample_frames=False,
        padding=True,
        padding_side="right",
        return_tensors="pt",
    )
    reply_start = tokenizer("<|im_start|>assistant\n")["input_ids"]
    ids = batch["input_ids"]
    answer = torch.zeros_like(ids, dtype=torch.bool)  # every reply token: what the alignment looks at
    trained = torch.zeros_like(answer)  # less each reply's given prefix: what the next-token loss trains
    facts = torch.isin(ids, _fact_ids(tokenizer))
    opening = torch.zeros_like(answer)  # a reply's first token: which task's form the reply takes
    objects = torch.full_like(ids, -1)
    first_object = 0
    for row, (sample, spans) in enumerate(zip(samples, reply_spans(ids, reply_start, tokenizer.eos_token_id))):
        for turn, (first, end) in zip(sample.turns, spans):
            given = len(tokenizer(turn.given, add_special_tokens=False)["input_ids"]) if turn.given else 0
            # A drill's given option may name what the clip does not show: no word of it is aligned.
            answer[row, first + given if turn.kind == "letter" else first : end] = True
            trained[row, first + given : end] = True
            if turn.given_facts:
                trained[row, first : first + given] |= facts[row, first : first + given]
            opening[row, first] = not given
            if turn.kind in ("choice", "letter"):
                facts[row, first:end] = True  # the option named and its letter are the whole answer
        named = torch.tensor(token_objects(tokenizer, ids[row].tolist(), sample.scene))
        objects[row] = torch.where(answer[row] & (named >= 0), named + first_object, -1)
        first_object += len(sample.scene.shapes)
    batch["labels"] = ids.masked_fill(~trained, -100)
    batch["answer_mask"] = answer
    batch["fact_mask"] = facts & answer
    batch["opening_mask"] = opening
    batch["token_objects"] = objects  # row of `object_weights` a colour or shape word names, else -1
    batch.update(object_targets(samples, batch["video_grid_thw"], processor.video_processor.merge_size))
    return dict(batch)


TRAINING_ONLY = ("labels", "answer_mask", "fact_mask", "opening_mask", "token_objects")


def model_inputs(batch: dict) -> dict:
    """The entries of a `collate` batch the model reads: everything but the training targets."""
    return {k: v for k, v in batch.items() if k not in TRAINING_ONLY and not k.startswith("object_")}


# What each object is, one head per fact the video alone tells.
OBJECT_HEADS = {"colour": list(COLOURS), "shape": list(SHAPES), "motion": list(MOTIONS)}


ON_OBJECT = 0.25  # a video token is on an object when the object covers at least this share of it


def object_shares(masks: np.ndarray, n_objects: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """(tokens, 1 + n_objects): how much of each video token the background and each object cover, for
    frame masks (T, H, W) and the LLM's grid of (time, rows, columns) merged tokens; a token spans two
    consecutive frames, and an odd frame count is padded with the last frame, as the processor does."""
    t, rows, cols = grid
    share = F.one_hot(torch.from_numpy(np.asarray(masks)).long(), n_objects + 1).permute(0, 3, 1, 2).float()
    share = F.adaptive_avg_pool2d(share, (rows, cols))
    share = torch.cat([share, share[-1:].expand(2 * t - len(share), -1, -1, -1)])
    return share.view(t, 2, n_objects + 1, rows, cols).mean(1).permute(0, 2, 3, 1).flatten(0, 2)


def object_targets(samples: list[Sample], grids: torch.Tensor, merge: int) -> dict[str, torch.Tensor]:
    """Where every object of the batch is among the batch's video tokens, and what it is.

    ``object_weights`` (objects, video tokens): each row spreads 1 over the tokens in proportion to how much
    of the object each shows, so a row times the video features is the object's pooled feature.
    ``object_<head>`` (objects,): its colour, shape and motion as indices into `OBJECT_HEADS`. A merged token
    covers ``merge``×``merge`` patches of two consecutive frames; the processor orders merged tokens by
    (time, row, column) and pads an odd frame count with the last frame.
    """
    rows, labels, offset = [], {head: [] for head in OBJECT_HEADS}, 0
    for sample, (t, h, w) in zip(samples, grids.tolist()):
        share = object_shares(sample.masks, len(sample.scene.shapes), (t, h // merge, w // merge))
        for i, spec in enumerate(sample.scene.shapes, start=1):
            rows.append((offset, share[:, i] / share[:, i].sum()))
            for head, names in OBJECT_HEADS.items():
                labels[head].append(names.index(getattr(spec, head)))
        offset += len(share)
    weights = torch.zeros(len(rows), offset)
    for row, (start, w) in enumerate(rows):
        weights[row, start : start + len(w)] = w
    return {"object_weights": weights, **{f"object_{head}": torch.tensor(v) for head, v in labels.items()}}


class Batches(torch.utils.data.IterableDataset):
    """Batch ``step`` of a run is drawn from seeds (TRAIN, seed, step, i): resumable at any step."""

    def __init__(self, processor, seed: int, batch_size: int, answer_style: str, max_turns: int, start: int,
                 steps: int, mix: Mix = Mix()):
        self.processor, self.seed, self.batch_size = processor, seed, batch_size
        self.answer_style, self.max_turns, self.start, self.steps, self.mix = answer_style, max_turns, start, steps, mix

    def __iter__(self):
        torch.set_num_threads(1)
        for step in range(self.start, self.steps):
            samples = [make_sample((TRAIN, self.seed, step, i), self.answer_style, self.max_turns, mix=self.mix)
                       for i in range(self.batch_size)]
            yield collate(self.processor, samples)
