"""Tiny random-weight Qwen2.5-VL pairs saved as local folders, loaded back through ``load_pair``.

Weights are random but drawn wide (``initializer_range``) so greedy outputs vary instead of repeating one
token. Drafts: the target itself (everything accepted), a perturbed copy (some accepted), and a smaller
independent model (mostly rejected).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from lvspec.models import load_pair
from lvspec.toyworld.vocab import build_processor, build_tokenizer, tiny_config
from lvspec.video import Clip

WORDS = "a the red blue green circle square star moves slides left right up down and is it two three one".split()
PROMPTS = ["Describe the video.", "What colour is the square?", "Which way does the star move? Ünïcode ✓"]


def tiny_tokenizer():
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 8)) for _ in range(300)] + ["Ünïcode ✓ é ß"]
    return build_tokenizer(texts, vocab_size=320)


def perturb(model, source, noise: float) -> None:
    """``model`` becomes ``source`` with Gaussian noise on its language model: a draft that mostly agrees."""
    model.load_state_dict(source.state_dict())
    with torch.no_grad():
        for p in model.model.language_model.parameters():
            p.add_(noise * p.std() * torch.randn_like(p))


def save_model(folder, tokenizer, seed: int, layers: int, hidden: int = 64, perturb_from=None, noise: float = 0.0):
    config = tiny_config(tokenizer, layers=layers, hidden=hidden)
    config.text_config.initializer_range = 0.2
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    if perturb_from is not None:
        perturb(model, perturb_from, noise)
    model.save_pretrained(folder)
    build_processor(tokenizer).save_pretrained(folder)
    return model


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="session", params=[0, 1], ids=["seed0", "seed1"])
def folders(request, tmp_path_factory, tokenizer):
    """Target, perturbed-copy draft and independent draft folders for one seed."""
    root = tmp_path_factory.mktemp(f"pair{request.param}")
    target = save_model(root / "target", tokenizer, seed=request.param, layers=2)
    save_model(root / "near", tokenizer, seed=100, layers=2, perturb_from=target, noise=0.08)
    save_model(root / "far", tokenizer, seed=200 + request.param, layers=1, hidden=32)
    return root


@pytest.fixture(scope="session")
def pair(folders):
    return load_pair(str(folders / "target"), str(folders / "near"), device="cpu", dtype="float64")


def random_clip(seed: int, frames: int, height: int, width: int) -> Clip:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    return Clip(f"random-{seed}", pixels, list(range(frames)), frames, 8.0, (width, height))


CLIPS = [random_clip(1, 8, 56, 56), random_clip(2, 4, 56, 84), random_clip(3, 6, 84, 56)]
