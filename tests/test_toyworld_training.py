"""Training data: the per-pixel shape labels match the frames, and every video token gets the right region."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from lvspec.toyworld import TARGET
from lvspec.toyworld.data import REGION_HEADS, TRAIN, collate, make_sample
from lvspec.toyworld.world import COLOURS, STYLES, render, render_labelled, sample_scene


@pytest.mark.parametrize("style", STYLES)
def test_labels_mark_each_shapes_pixels_and_frames_equal_render(style):
    for seed in range(4):
        scene = sample_scene(np.random.default_rng(seed))
        frames, masks = render_labelled(scene, np.random.default_rng(seed), 120, 90, 6, style)
        assert np.array_equal(frames, render(scene, np.random.default_rng(seed), 120, 90, 6, style))
        assert masks.shape == frames.shape[:3] and set(np.unique(masks)) == set(range(len(scene.shapes) + 1))
        for label, spec in enumerate(scene.shapes, start=1):
            inside = frames[masks == label].astype(np.float32).mean(0)
            nearest = min(COLOURS, key=lambda c: np.square(inside - COLOURS[c]).sum())
            assert nearest == spec.colour, (scene, label, inside)


def test_region_targets_follow_the_models_token_order():
    processor = AutoProcessor.from_pretrained(TARGET)
    samples = [make_sample((TRAIN, 9, 0, i), "target", 1) for i in range(3)]
    batch = collate(processor, samples)
    n_video = int((batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum())
    start = 0
    for sample, (t, h, w) in zip(samples, batch["video_grid_thw"].tolist()):
        gh, gw = h // 2, w // 2
        for head, names in REGION_HEADS.items():
            share = batch[f"region_{head}"][start : start + t * gh * gw]
            assert share.shape == (t * gh * gw, 1 + len(names))
            assert torch.allclose(share.sum(1), torch.ones(len(share)))
        # the first time slice, token (row, column): its shape share equals the mask's share in that cell
        covered = 1 - batch["region_shape"][start : start + gh * gw, 0].view(gh, gw)
        mask = torch.from_numpy((sample.masks[:2] > 0).astype(np.float32)).mean(0)
        pooled = torch.nn.functional.adaptive_avg_pool2d(mask[None], (gh, gw))[0]
        assert torch.allclose(covered, pooled, atol=1e-5)
        start += t * gh * gw
    assert start == n_video
