"""One model pair in memory for a server many people use: loaded on demand, refused before it replaces the
loaded one when its name is wrong, and used one decoding step at a time.

No UI here: ``app.py`` wires these to its components, and a test or another front end can use them alone.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from .decode import Settings, stream, warm_up
from .errors import UserError
from .models import ModelPair, load_pair, read_configs
from .toyworld import TARGET
from .trace import RunTrace
from .video import VideoLimits, read_video

PairKey = tuple[str, str | None]  # (target, draft) as typed in the Model pair boxes
loaded: dict[PairKey, ModelPair] = {}
busy = threading.Lock()  # held for each decoding step and each load: see one_step_at_a_time


def load(target: str, draft: str, progress: Callable[[float, str], None] | None = None) -> PairKey:
    """Make the pair named by the two boxes the one in memory (blank target: the embedded pair); its key."""
    key = (target.strip() or str(TARGET), draft.strip() or None)
    for name in filter(None, key):
        check_model_source(name)
    with busy:
        if key not in loaded:
            read_configs(*key)  # a mistyped name fails here, before the pair in memory is given up
            loaded.clear()
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            spread = "auto" if torch.cuda.device_count() > 1 else None  # a large target over every GPU
            loaded[key] = load_pair(*key, device_map=spread, progress=progress)
            warm_up(loaded[key])
    return key


def check_model_source(name: str) -> None:
    """A hub id, or a folder under ``assets/models`` or one of ``LVSPEC_MODEL_DIRS`` (``os.pathsep``-separated):
    the Model pair boxes are open to every visitor, and must not load whatever folder the server holds."""
    path = Path(name).expanduser()
    if not (path.exists() or name.startswith(("/", ".", "~", "\\"))):
        return  # a hub id: transformers checks its form
    roots = [TARGET.parent, *(Path(d) for d in os.environ.get("LVSPEC_MODEL_DIRS", "").split(os.pathsep) if d)]
    if not any(path.resolve().is_relative_to(root.resolve()) for root in roots):
        raise UserError(f"'{name}' is a folder this app does not load models from (set LVSPEC_MODEL_DIRS to allow it)")


def one_step_at_a_time(steps: Iterator) -> Iterator:
    """Iterate ``steps`` holding the models' lock during each step, never between them.

    Stop cancels a run between two steps, but its worker thread may still be inside the current one
    (a prefill sets per-request state on the model) when the next run starts: the lock makes that run
    wait for it. Closing this generator closes ``steps`` (its ``finally`` blocks release hooks and caches).
    """
    try:
        while True:
            with busy:
                item = next(steps, None)
            if item is None:
                return
            yield item
    finally:
        steps.close()


def decode_runs(key: PairKey, video: str, prompt: str, settings: Settings, frames: int,
                methods: tuple[str, ...]) -> Iterator[tuple[str, RunTrace]]:
    """Yield (method, growing trace) for each method in turn, on the same clip and prompt.

    Takes the pair's key, not the pair: on ZeroGPU the arguments of a GPU call are pickled.
    """
    pair = loaded[key]
    clip = read_video(video, VideoLimits.from_env(max_frames=int(frames)))
    for method in methods:
        for trace in one_step_at_a_time(stream(pair, clip, prompt, method, settings)):
            yield method, trace


def serving_threads(cores: int | None = None, threads: int | None = None) -> int:
    """Torch threads for decoding beside the web server: on a small machine, one core is left to the server.

    Each op of a decode step waits for all of torch's threads, so a thread whose core the server (or a browser
    on the same machine) takes stalls them all: with one of two cores busy, a two-thread target step of the
    embedded pair measured 77 ms against 3.8 ms quiet, a one-thread step 4.5 ms.
    """
    cores = cores or os.cpu_count() or 1
    threads = threads or torch.get_num_threads()
    return max(1, min(threads, cores - 1))
