"""Lossless methods reproduce the target's greedy decoding token for token."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from conftest import CLIPS, MAX_NEW, PROMPTS, free_run, hf_tokens, stop_token
from lvspec.decode import Settings, generate
from lvspec.models import load_pair
from lvspec.toyworld.vocab import build_processor


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: c.path)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_exact_and_lvspec_at_zero_equal_vanilla_and_generate(pair, clip, prompt):
    vanilla, stop = free_run(pair, clip, prompt)
    assert len(vanilla) == MAX_NEW
    with stop_token(pair, stop):
        exact = generate(pair, clip, prompt, "exact", Settings(k=4, max_new_tokens=MAX_NEW))  # 4 ∤ 23: last round cut
        strict = generate(pair, clip, prompt, "lvspec", Settings(k=4, lam=0.0, window=0, max_new_tokens=MAX_NEW))
        assert exact.token_ids == vanilla
        assert strict.token_ids == vanilla
        assert hf_tokens(pair, clip, prompt) == vanilla
        assert hf_tokens(pair, clip, prompt, assistant_model=pair.draft) == vanilla
    # the perturbed draft is right sometimes and wrong sometimes: both branches of the loop ran
    verdicts = {v for r in exact.rounds for v in r.verdicts}
    assert {"exact", "reject"} <= verdicts


@pytest.mark.parametrize("clip", CLIPS[:2], ids=lambda c: c.path)
def test_stop_token_in_the_middle_of_a_round(pair, clip):
    prompt = PROMPTS[0]
    free, _ = free_run(pair, clip, prompt)
    stop = next(t for t in free[5:] if t not in free[:5])  # a token first emitted mid-answer
    expected = free[: free.index(stop) + 1]
    with stop_token(pair, stop):
        for method in ("vanilla", "exact"):
            assert generate(pair, clip, prompt, method, Settings(k=5, max_new_tokens=MAX_NEW)).token_ids == expected
        strict = Settings(k=5, lam=0.0, window=0, max_new_tokens=MAX_NEW)
        assert generate(pair, clip, prompt, "lvspec", strict).token_ids == expected
        assert hf_tokens(pair, clip, prompt) == expected
        assert hf_tokens(pair, clip, prompt, assistant_model=pair.draft) == expected


def test_far_draft_still_lossless(folders):
    pair = load_pair(str(folders / "target"), str(folders / "far"), device="cpu", dtype="float64")
    for clip in CLIPS:
        vanilla = generate(pair, clip, PROMPTS[1], "vanilla", Settings(max_new_tokens=MAX_NEW)).token_ids
        assert generate(pair, clip, PROMPTS[1], "exact", Settings(k=3, max_new_tokens=MAX_NEW)).token_ids == vanilla


def test_draft_equal_to_target_commits_k_plus_one_every_round(folders):
    target = str(folders / "target")
    pair = load_pair(target, target, device="cpu", dtype="float64")
    k = 4
    _, stop = free_run(pair, CLIPS[0], PROMPTS[0])
    with stop_token(pair, stop):
        trace = generate(pair, CLIPS[0], PROMPTS[0], "exact", Settings(k=k, max_new_tokens=1 + 5 * (k + 1)))
    assert [r.committed for r in trace.rounds] == [k + 1] * 5
    assert trace.stats.mean_accepted_length == k + 1 == trace.accepted_ceiling
    assert all(v == "exact" for r in trace.rounds for v in r.verdicts)
    assert [t.verdict for t in trace.tokens[1 : k + 2]] == ["exact"] * k + ["bonus"]


def test_lossy_lvspec_accepts_more(pair):
    clip, prompt = CLIPS[0], PROMPTS[0]
    exact = generate(pair, clip, prompt, "exact", Settings(k=6, max_new_tokens=40))
    loose = generate(pair, clip, prompt, "lvspec", Settings(k=6, lam=0.7, max_new_tokens=40))
    assert loose.stats.mean_accepted_length > exact.stats.mean_accepted_length
    assert {"loose", "shift"} & {t.verdict for t in loose.tokens}
    assert torch.is_grad_enabled()  # the loop's inference mode does not leak out


def test_a_draft_reading_smaller_frames_stays_lossless(folders, tokenizer, tmp_path):
    """A draft whose own processor reads fewer pixels a frame gets its own, shorter prompt; the target's
    output is unchanged, whole or pruned (the target's signal carried over to the draft's grid)."""
    shutil.copytree(folders / "near", tmp_path / "near")
    build_processor(tokenizer, max_side=28).save_pretrained(tmp_path / "near")
    assert load_pair(str(folders / "target"), str(folders / "near"), device="cpu").draft_processor is None
    pair = load_pair(str(folders / "target"), str(tmp_path / "near"), device="cpu", dtype="float64")
    assert pair.draft_processor is not None
    clip, prompt = CLIPS[1], PROMPTS[0]
    reading = pair.read(clip, prompt)
    theirs = int(pair.adapter.video_mask(pair.draft.config, reading.draft_inputs["input_ids"]).sum())
    assert 0 < theirs < int(reading.video_mask.sum())
    vanilla, stop = free_run(pair, clip, prompt)
    with stop_token(pair, stop):
        for keep, read in ((1.0, theirs), (0.5, math.ceil(theirs / 2))):
            exact = generate(pair, clip, prompt, "exact", Settings(k=4, max_new_tokens=MAX_NEW, draft_keep=keep))
            assert exact.token_ids == vanilla and exact.video.draft_tokens == read
