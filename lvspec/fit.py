"""Will the pair fit? Checked before any weight is read, so that a pair too large for the machine fails in
seconds with a message that says what would fit, not minutes into loading with an out-of-memory error.

Parameter counts come from the config alone (the model built on the meta device: exact, and no weights are
needed); free memory from ``torch.cuda.mem_get_info`` on each GPU a placement may use, or the RAM available
on CPU. Models whose placements share a device are counted against the same memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch

HEADROOM = 1.2  # parameter bytes × this must be free: the vision encoder's activations, the prefill and the KV caches take the rest
SPREAD = ("auto", "balanced", "balanced_low_0", "sequential")  # accelerate's device maps over every GPU

Placement = str | int | dict  # "cpu", "cuda", "cuda:1", 1, "auto" …, or an explicit device map (taken as the user's call)


@dataclass(frozen=True)
class Need:
    """One model to load: how many parameters, in how many bytes, and where it is to go."""

    role: str
    name: str
    params: int
    bytes: int
    placement: Placement

    def __str__(self) -> str:
        return f"the {self.role} '{self.name}' ({count(self.params)} parameters, {size(self.bytes)})"


def parameter_count(model_class, config) -> int:
    with torch.device("meta"):
        model = model_class(config)
    return sum(p.numel() for p in model.parameters())


def size(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"


def count(n: float) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def devices_of(placement: Placement) -> frozenset[str] | None:
    """The devices a placement may fill (None: an explicit device map, not checked)."""
    if isinstance(placement, dict):
        return None
    if placement in SPREAD:
        n = torch.cuda.device_count()
        return frozenset(f"cuda:{i}" for i in range(n)) if n else frozenset({"cpu"})
    device = torch.device(placement)
    if device.type == "cuda":
        return frozenset({f"cuda:{torch.cuda.current_device() if device.index is None else device.index}"})
    return frozenset({device.type})


def free_bytes(device: str) -> int | None:
    """Memory free on ``device`` now (None where it cannot be known)."""
    if device.startswith("cuda"):
        return torch.cuda.mem_get_info(torch.device(device))[0]
    if device == "cpu":
        return psutil.virtual_memory().available
    return None


def shortfall(needs: list[Need], dtype: torch.dtype) -> str | None:
    """Why the models cannot all fit where they are to go, and what would fit instead; None if they fit."""
    pools: list[tuple[frozenset[str], list[Need]]] = []
    for need in needs:
        devices = devices_of(need.placement)
        if devices is None:
            continue
        joined = [p for p in pools if p[0] & devices]
        pools = [p for p in pools if not p[0] & devices]
        pools.append((devices.union(*(p[0] for p in joined)), [n for p in joined for n in p[1]] + [need]))
    for devices, group in pools:
        free = [free_bytes(d) for d in sorted(devices)]
        if None in free:
            continue
        available, wanted = sum(free), HEADROOM * sum(n.bytes for n in group)
        if wanted > available:
            return _message(group, devices, available, wanted, dtype)
    return None


def _message(group: list[Need], devices: frozenset[str], available: int, wanted: float, dtype) -> str:
    where = f"{next(iter(devices))} has" if len(devices) == 1 else f"{len(devices)} GPUs ({', '.join(sorted(devices))}) have"
    per_param = torch.empty((), dtype=dtype).element_size()
    what = " and ".join(str(n) for n in group)
    name = str(dtype).removeprefix("torch.")
    text = (
        f"{what} need about {size(wanted)} with room for activations and the KV caches, but {where} "
        f"{size(available)} free. What fits there: about {count(available / HEADROOM / per_param)} parameters in "
        f"{name} in all"
    )
    target = next((n for n in group if n.role == "target"), None)
    if target is not None and len(group) > 1 and HEADROOM * target.bytes <= available:
        text += "; the target alone fits, and with --self-draft it drafts for itself from a pruned video"
    gpus = torch.cuda.device_count()
    if gpus > len(devices) and all(d.startswith("cuda") for d in devices):
        everywhere = sum(free_bytes(f"cuda:{i}") for i in range(gpus))
        text += f"; all {gpus} GPUs have {size(everywhere)} free: spread the models with --device-map auto"
    if per_param > 2:
        text += f"; in bfloat16 they take {size(wanted * 2 / per_param)} (--dtype bfloat16)"
    return text
