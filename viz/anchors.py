"""Where a token looks: its top-N most similar video tokens as heat over the frames they came from.

The video tokens are a (time, rows, columns) grid in sequence order; one time step covers as many
consecutive sampled frames as the frames outnumber the steps (two for Qwen's temporal patches, one for
LLaVA-OneVision) and each cell a square patch of them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

DIM = 0.25  # brightness left where the token does not look: a spotlight shows on any object's colour


def heat(looks: list[int], grid: list[int]) -> np.ndarray:
    """(time, rows, columns) weights: the most similar video token counts N, the N-th counts 1; max 1."""
    t, h, w = grid
    out = np.zeros(t * h * w, dtype=np.float32)
    for rank, index in enumerate(looks):
        if not 0 <= index < out.size:
            raise ValueError(f"video token {index} is outside the {t}×{h}×{w} grid")
        out[index] += len(looks) - rank
    peak = out.max()
    return (out / peak if peak > 0 else out).reshape(t, h, w)


def overlays(
    looks: list[int], grid: list[int], frames: np.ndarray | None = None
) -> list[tuple[np.ndarray, str]]:
    """One image per time step the token looks at, in time order, with a short caption naming its frames
    and how many of the top N lie there. The clip is dimmed except where the token looks (a spotlight, not a
    red wash, which would vanish over a red object).

    Without ``frames`` (a saved trace opened alone) the heat is drawn on grey, one 28-pixel cell per token.
    """
    weights = heat(looks, grid)
    hits = (weights > 0).reshape(len(weights), -1).sum(1)
    order = [g for g in range(len(weights)) if hits[g]]
    out = []
    per_step = -(-len(frames) // len(weights)) if frames is not None and len(frames) else 1
    for g in order:
        if frames is not None and len(frames):
            first = min(g * per_step, len(frames) - 1)
            base = frames[first].astype(np.float32)
            last = min(first + per_step, len(frames))
            label = f"frame {first + 1}" if last - first == 1 else f"frames {first + 1}–{last}"
        else:
            base = np.full((grid[1] * 28, grid[2] * 28, 3), 200, dtype=np.float32)
            label = f"time step {g + 1}"
        cells = Image.fromarray((weights[g] * 255).astype(np.uint8)).resize(
            (base.shape[1], base.shape[0]), Image.NEAREST
        )
        light = DIM + (1 - DIM) * (np.asarray(cells, dtype=np.float32)[..., None] / 255.0) ** 0.5
        image = (base * light).clip(0, 255).astype(np.uint8)
        out.append((image, f"{label}: {hits[g]}/{len(looks)}"))
    return out
