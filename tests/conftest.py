"""What several test files share.

Tiny random-weight Qwen2.5-VL pairs saved as local folders, loaded back through ``load_pair``: weights are
random but drawn wide (``initializer_range``) so greedy outputs vary instead of repeating one token. Drafts:
the target itself (everything accepted), a perturbed copy (some accepted), and a smaller independent model
(mostly rejected). With them: a greedy reference run and a stop token it never meets (the lossless tests).

Also: generated policy rounds (hypothesis), a hand-built trace whose model text is hostile markup, a free
port, the bad and unusual media files (``media.py`` writes them), and a headless Chromium (Playwright) for
the browser tests.
"""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import contextmanager

import media
import numpy as np
import pytest
import torch
from hypothesis import strategies as st
from transformers import Qwen2_5_VLForConditionalGeneration

from lvspec.decode import generate
from lvspec.models import load_pair
from lvspec.policies import RoundView
from lvspec.toyworld.vocab import build_processor, build_tokenizer, tiny_config
from lvspec.trace import Round, RunTrace, Settings, Stats, Timing, TokenEvent, VideoInfo
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

# Greedy references for the lossless tests.

MAX_NEW = 24


@contextmanager
def stop_token(pair, token: int):
    """Make ``token`` the target's end-of-answer id for the duration."""
    config = pair.target.generation_config
    saved, config.eos_token_id = config.eos_token_id, token
    try:
        yield
    finally:
        config.eos_token_id = saved


def free_run(pair, clip, prompt) -> tuple[list[int], int]:
    """Vanilla's first MAX_NEW tokens when no stop token interrupts them, and a stop id they never contain."""
    stop = pair.tokenizer.eos_token_id
    while True:
        with stop_token(pair, stop):
            tokens = generate(pair, clip, prompt, "vanilla", Settings(max_new_tokens=MAX_NEW)).token_ids
        if stop not in tokens:
            return tokens, stop
        stop = next(i for i in range(len(pair.tokenizer)) if i not in tokens)


def hf_tokens(pair, clip, prompt, **kwargs) -> list[int]:
    inputs = pair.inputs(clip, prompt)
    pair.reset()
    out = pair.target.generate(**inputs, max_new_tokens=MAX_NEW, do_sample=False, **kwargs)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


# Generated rounds for the policies' properties.

ROUND_VOCAB = st.integers(0, 6)  # a small vocabulary makes matches, shifts and stops frequent
ROUND_STOP = 6  # the stop token of generated rounds
PROB = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def rounds(draw) -> RoundView:
    k = draw(st.integers(1, 8))
    drafts = draw(st.lists(ROUND_VOCAB, min_size=k, max_size=k))
    targets = draw(st.lists(ROUND_VOCAB, min_size=k + 1, max_size=k + 1))
    p_draft = draw(st.lists(PROB, min_size=k, max_size=k))
    p_top = [max(p, q) for p, q in zip(p_draft, draw(st.lists(PROB, min_size=k, max_size=k)))]
    relevance = draw(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=k, max_size=k))
    return RoundView(drafts, targets, p_draft, p_top, relevance, frozenset({ROUND_STOP}))


def hand_built_trace() -> RunTrace:
    """One LVSpec round of four tokens, one of them a ``<script>`` tag; its video file does not exist."""
    evil = "<script>alert(1)</script>"
    tokens = [TokenEvent(1, "A", "target", False, None, 0),
              TokenEvent(2, " " + evil, "loose", False, 0.1, 1),
              TokenEvent(3, " red", "exact", True, 0.9, 1),
              TokenEvent(4, " star", "correction", True, None, 1)]
    rnd = Round(1, [2, 3, 5], [6, 3, 4, 7], [0.2, 0.9, 0.1], [0.5, 0.9, 0.8], [0.1, 0.9, 0.8], [False, True, True],
                ["loose", "exact", "reject"], 3, 0.01, 0.02, 0.08, [[0, 1], [3, 0], [2]])
    return RunTrace(method="lvspec", params=Settings(k=3), target="t", draft="d", prompt="Describe.",
                    video=VideoInfo("gone.mp4", 4, grid=[2, 1, 2]), text="A " + evil + " red star",
                    tokens=tokens, rounds=[rnd], timing=Timing(prefill_s=0.05, draft_s=0.01, verify_s=0.02, total_s=0.08),
                    stats=Stats(4, 1, 3.0, 40.0), vocab={"2": " " + evil, "3": " red", "5": " big", "6": " a",
                                                         "4": " star", "7": "."})


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    """Every bad or unusual upload of ``media.bad_files``, by kind; the tests only read them."""
    return media.bad_files(tmp_path_factory.mktemp("bad"))


# The files of ``files`` that the video reader refuses, with the reason its one-line error gives (a regex).
REFUSED = {
    "zero-byte": "is empty",
    "truncated": r"breaks off at \d\.\d s of its 3\.0 s",
    "truncated, index lost": "cannot read",
    "text": "cannot read",
    "image": "still image",
    "pdf": "cannot read",
    "audio-only": "no video stream .*audio",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT = 120_000  # ms: a browser action's or assertion's patience on a busy CPU


@pytest.fixture
def open_page():
    """A headless Chromium for one test: ``open_page(url, **page_options)`` opens a page of ``url``.

    Debian's chromium, driven by Playwright; ``.ci/run`` installs it, and with ``CI`` set a missing browser
    is a failure, not a skip."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium on this machine")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

        def open_page(url: str, **options):
            page = browser.new_page(**options)
            page.set_default_timeout(WAIT)
            expect.set_options(timeout=WAIT)  # Playwright's 5 s default for assertions fails on a busy CPU
            page.goto(url)
            return page

        yield open_page
        browser.close()
