"""Training and evaluation samples from the world, batched through the real Qwen2.5-VL processor.

Every sample is a pure function of a seed tuple, so training resumes exactly and evaluation seeds
(namespace 1) never meet training seeds (namespace 0).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers.video_utils import VideoMetadata

from ..video import sample_indices
from .answers import answer, sample_prompt
from .world import Scene, render, sample_scene

TRAIN, EVAL = 0, 1


@dataclass
class Sample:
    scene: Scene
    frames: np.ndarray
    metadata: VideoMetadata
    prompt: str
    answer: str


def _jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    """Compression artefacts, as a decoded mp4 or a re-encoded upload would have them."""
    out = []
    for frame in frames:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return np.stack(out)


def make_sample(seed: tuple[int, ...], answer_style: str, render_style: str = "default") -> Sample:
    """A random clip at a random size, length and frame rate, with a prompt and its answer."""
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng)
    n_frames = int(rng.integers(4, 17))
    width, height = (int(v) for v in rng.integers(64, 193, size=2))
    frames = render(scene, rng, width, height, n_frames, style=render_style)
    if rng.random() < 0.3:
        frames = _jpeg(frames, int(rng.integers(25, 90)))
    # The frames stand for a uniform sample of a longer source clip at some frame rate.
    source = n_frames * int(rng.integers(1, 4))
    fps = float(rng.uniform(6.0, 30.0))
    metadata = VideoMetadata(
        total_num_frames=source, fps=fps, width=width, height=height, duration=source / fps,
        frames_indices=sample_indices(source, n_frames),
    )
    prompt, _ = sample_prompt(scene, rng)
    return Sample(scene, frames, metadata, prompt, answer(scene, prompt, rng, style=answer_style))


def prompt_text(processor, prompt: str) -> str:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def collate(processor, samples: list[Sample]) -> dict[str, torch.Tensor]:
    """Right-padded batch whose labels cover only the answer and its end token."""
    tokenizer = processor.tokenizer
    eos = tokenizer.eos_token
    texts = [prompt_text(processor, s.prompt) + s.answer + eos for s in samples]
    batch = processor(
        text=texts,
        videos=[s.frames for s in samples],
        video_metadata=[s.metadata for s in samples],
        do_sample_frames=False,
        padding=True,
        padding_side="right",
        return_tensors="pt",
    )
    labels = torch.full_like(batch["input_ids"], -100)
    lengths = batch["attention_mask"].sum(1)
    for i, s in enumerate(samples):
        n = len(tokenizer(s.answer + eos)["input_ids"])
        labels[i, lengths[i] - n : lengths[i]] = batch["input_ids"][i, lengths[i] - n : lengths[i]]
    batch["labels"] = labels
    return dict(batch)


class Batches(torch.utils.data.IterableDataset):
    """Batch ``step`` of a run is drawn from seeds (TRAIN, seed, step, i): resumable at any step."""

    def __init__(self, processor, seed: int, batch_size: int, answer_style: str, start: int, steps: int):
        self.processor, self.seed, self.batch_size = processor, seed, batch_size
        self.answer_style, self.start, self.steps = answer_style, start, steps

    def __iter__(self):
        torch.set_num_threads(1)
        for step in range(self.start, self.steps):
            samples = [make_sample((TRAIN, self.seed, step, i), self.answer_style) for i in range(self.batch_size)]
            yield collate(self.processor, samples)
