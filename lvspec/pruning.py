"""Draft-side video-token pruning (as in SpecVLM): the draft reads only a share of the video tokens.

A draft's cost grows with its prompt, and in a video LLM the prompt is mostly video; the target checks every
token anyway, so a draft that reads a tenth of the video loses some acceptance and none of the target's
accuracy. The draft's prefill gets the prompt without the pruned tokens' columns (``Prompt.keep``): the
kept tokens keep their original positions (3-D under Qwen's mrope) and the answer continues from where the
full prompt would end.

Which tokens stay: part of the budget goes to the tokens the target's prefill points at most, the rest is
spread evenly over time and space, so that no part of the clip goes unseen even where the signal is wrong.
"""

from __future__ import annotations

import math

import torch

from .models import Prompt
from .relevance import unit_rows

KEEP = 0.1  # SpecVLM's default share of video tokens a pruned draft reads
SIGNAL_SHARE = 0.5  # of the kept tokens, the share chosen by the target's signal (the rest: spread evenly)


def prefill_signal(states: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
    """How strongly the prompt's last position points at each video token: the cosine of their hidden
    states at the relevance layer of the target's prefill.

    The last position predicts the answer's first token, so what it is close to is what the question asks
    about. Its attention weights would say so more directly, but sdpa does not return them and eager
    attention over thousands of video tokens (at 72B) costs a slow second prefill; these states are the ones
    the relevance tap keeps anyway, and one matrix-vector product scores every video token.
    """
    states = unit_rows(states)
    return states[video_mask.to(states.device)] @ states[-1]


def regrid(signal: torch.Tensor, grid: list[int], to: list[int]) -> torch.Tensor:
    """``signal`` over a (time, rows, columns) ``grid`` of video tokens, read at the places of the ``to``
    grid's tokens: a draft that reads the frames at another size ranks its own tokens by the target's signal
    at the same spot of the clip."""
    if list(grid) == list(to):
        return signal
    volume = signal.float().reshape(1, 1, *grid)
    return torch.nn.functional.interpolate(volume, size=tuple(to), mode="trilinear").flatten()


def _reverse_bits(v: torch.Tensor, bits: int) -> torch.Tensor:
    return sum(((v >> b) & 1) << (bits - 1 - b) for b in range(bits))


def spread_order(grid: list[int]) -> torch.Tensor:
    """Indices of the (time, row, column) video tokens, coarse to fine: every prefix covers each frame on
    an even lattice (bit-reversed Morton order) and all frames alike (frames interleaved, bit-reversed)."""
    t, h, w = grid
    bits = max(h - 1, w - 1, 1).bit_length()
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ry, rx = _reverse_bits(y, bits), _reverse_bits(x, bits)
    cell = sum((((ry >> b) & 1) << (2 * b + 1)) | (((rx >> b) & 1) << (2 * b)) for b in range(bits)).flatten()
    frame_bits = max(t - 1, 1).bit_length()
    frame = _reverse_bits(torch.arange(t), frame_bits)
    key = (cell[None, :] << frame_bits) | frame[:, None]  # (t, h·w): cell rank first, then frame
    return key.flatten().argsort()


def kept_tokens(signal: torch.Tensor, grid: list[int], keep: float, signal_share: float = SIGNAL_SHARE) -> torch.Tensor:
    """Which of the video tokens the draft reads (boolean, in grid order): ⌈keep·M⌉ of them, the top
    ``signal_share`` of that budget by ``signal`` and the rest in ``spread_order``."""
    m = signal.numel()
    if m != math.prod(grid):
        raise ValueError(f"{m} video tokens do not fill a {grid} grid")
    budget = min(m, max(1, math.ceil(round(keep * m, 9))))
    kept = torch.zeros(m, dtype=torch.bool)
    kept[signal.float().cpu().topk(round(budget * signal_share)).indices] = True
    order = spread_order(grid)
    kept[order[~kept[order]][: budget - int(kept.sum())]] = True
    return kept


def pruned(prompt: Prompt, video_mask: torch.Tensor, kept: torch.Tensor) -> Prompt:
    """``prompt`` without the video tokens that are not ``kept``."""
    columns = torch.ones_like(video_mask, device="cpu")
    columns[video_mask.cpu().nonzero()[:, 0][~kept]] = False
    return prompt.keep(columns)
