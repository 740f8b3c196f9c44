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

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.video_utils import VideoMetadata

from ..video import sample_indices
from .answers import answer, sample_prompt
from .world import COLOURS, MOTIONS, SHAPES, Scene, render_labelled, sample_scene

TRAIN, EVAL, INIT = 0, 1, 2  # seed namespaces: training batches, held-out clips, data-dependent init


@dataclass
class Sample:
    scene: Scene
    frames: np.ndarray
    masks: np.ndarray  # (T, H, W): which shape covers each pixel, 0 = background
    metadata: VideoMetadata
    turns: list[tuple[str, str]]  # (prompt, answer) pairs, asked in order


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
    describe: float | None = None  # share of questions that ask for a description (the world's: 0.4)


def make_sample(seed: tuple[int, ...], answer_style: str, max_turns: int = 1, render_style: str = "default",
                mix: Mix = Mix()) -> Sample:
    """A random clip at a random size, length and frame rate, with 1 to ``max_turns`` questions and answers."""
    rng = np.random.default_rng(seed)
    n_shapes = None if mix.multi_shape is None else 1 if rng.random() >= mix.multi_shape else int(rng.integers(2, 4))
    scene = sample_scene(rng, n_shapes)
    n_frames = int(rng.integers(4, 17))
    # Real videos' shapes: landscape up to 16:9, sometimes portrait (a wider frame leaves the models too few rows).
    width = int(rng.integers(64, 193))
    height = int(width * rng.uniform(0.56, 1.0))
    if rng.random() < 0.2:
        width, height = height, width
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
        prompt, kind = sample_prompt(scene, rng, mix.describe)
        if kind not in asked:  # a repeated kind would be answered from the earlier reply, not the clip
            asked.add(kind)
            turns.append((prompt, answer(scene, prompt, rng, style=answer_style)))
    return Sample(scene, frames, masks, metadata, turns)


def conversation(processor, turns: list[tuple[str, str]]) -> str:
    """The chat text of a conversation whose first question carries the video."""
    messages = []
    for i, (prompt, reply) in enumerate(turns):
        question = [{"type": "text", "text": prompt}]
        messages.append({"role": "user", "content": ([{"type": "video"}] if i == 0 else []) + question})
        messages.append({"role": "assistant", "content": reply})
    return processor.apply_chat_template(messages, tokenize=False)


def answer_mask(input_ids: torch.Tensor, reply_start: list[int], eos_id: int) -> torch.Tensor:
    """True on every token of every assistant reply, its end token included."""
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    n = len(reply_start)
    for row, ids in enumerate(input_ids.tolist()):
        inside = False
        for j, token in enumerate(ids):
            if inside:
                mask[row, j] = True
                inside = token != eos_id
            elif j >= n and ids[j - n : j] == reply_start:
                mask[row, j] = True
                inside = token != eos_id
    return mask


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
    mask = answer_mask(batch["input_ids"], reply_start, tokenizer.eos_token_id)
    batch["labels"] = batch["input_ids"].masked_fill(~mask, -100)
    batch.update(object_targets(samples, batch["video_grid_thw"], processor.video_processor.merge_size))
    return dict(batch)


# What each object is, one head per fact the video alone tells.
OBJECT_HEADS = {"colour": list(COLOURS), "shape": list(SHAPES), "motion": list(MOTIONS)}


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
        n = len(sample.scene.shapes)
        share = F.one_hot(torch.from_numpy(sample.masks).long(), n + 1).permute(0, 3, 1, 2).float()
        share = F.adaptive_avg_pool2d(share, (h // merge, w // merge))
        share = torch.cat([share, share[-1:].expand(2 * t - len(share), -1, -1, -1)])
        share = share.view(t, 2, n + 1, h // merge, w // merge).mean(1).permute(0, 2, 3, 1).flatten(0, 2)
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
