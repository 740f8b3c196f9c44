"""Visual relevance of draft positions, and the anchor/filler split it drives.

A position's relevance is the mean of its top-N cosine similarities to the clip's video tokens, taken
from hidden states the target computes anyway (prefill for the video, verification for the drafts):
identification costs one small matrix product per round and no extra forward pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .errors import UserError


class LayerTap:
    """Keeps the hidden state after the first ``layer`` decoder layers of the latest forward pass.

    A hook instead of ``output_hidden_states`` so that a long prefill keeps one layer, not all of them.
    ``layer=0`` is the decoder's input: text embeddings with the vision encoder's tokens merged in.
    """

    def __init__(self, layers: torch.nn.ModuleList, layer: int):
        if not 0 <= layer <= len(layers):
            raise UserError(f"layer must be in 0..{len(layers)}, got {layer}")
        self.layer = layer
        self.value: torch.Tensor | None = None
        if layer == 0:
            self._handle = layers[0].register_forward_pre_hook(self._keep_input)
        else:
            self._handle = layers[layer - 1].register_forward_hook(self._keep_output)

    def _keep_input(self, module, args):
        self.value = args[0]

    def _keep_output(self, module, args, output):
        self.value = output[0] if isinstance(output, tuple) else output

    def take(self) -> torch.Tensor:
        """The (seq, hidden) states of the last pass, released from the tap."""
        value, self.value = self.value, None
        return value[0]

    def close(self) -> None:
        self._handle.remove()


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def relevance(hidden: torch.Tensor, video_units: torch.Tensor, top_n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the ``top_n`` cosine similarities of each row of ``hidden`` (K, d) to the video (M, d),
    and which video tokens those were (K, top_n): what in the clip a token looks at."""
    cos = unit_rows(hidden) @ video_units.to(hidden.device).T
    top = cos.topk(min(top_n, cos.shape[-1]), dim=-1)
    return top.values.mean(-1), top.indices


def anchor_count(k: int, lam: float) -> int:
    """Positions kept strict in a round of ``k``: the relaxation ratio ``lam`` is the share relaxed."""
    return math.ceil(round((1.0 - lam) * k, 9))


def anchors(relevance: list[float], lam: float, tau: float | None = None, ruled: list[bool] | None = None
            ) -> list[bool]:
    """The ⌈(1−λ)·K⌉ most relevant positions are anchors (earlier wins a tie), plus any with r ≥ τ.

    ``ruled``: positions that are anchors by rule (a stop token, an option letter). They are ranked after
    every other position, so that a stop token, however relevant, never takes the slot of a visual word.
    """
    ruled = ruled or [False] * len(relevance)
    order = sorted(range(len(relevance)), key=lambda i: (ruled[i], -relevance[i]))
    strict = set(order[: anchor_count(len(relevance), lam)])
    return [i in strict or (tau is not None and r >= tau) for i, r in enumerate(relevance)]
