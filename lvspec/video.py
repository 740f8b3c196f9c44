"""Read a video file into a small, uniformly sampled stack of frames (decord).

Models see only ``max_frames`` frames, so we never decode more than that: decord seeks to the chosen
indices and resizes while decoding, which keeps memory bounded for long or very large videos.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .errors import UserError


class VideoError(UserError):
    """The file cannot be used as a video (missing, empty, unreadable, too large, no frames)."""


@dataclass(frozen=True)
class VideoLimits:
    max_frames: int = 16
    max_side: int = 448  # longest side after decoding, in pixels
    max_bytes: int = 512 * 2**20
    max_seconds: float = 3 * 3600.0


@dataclass
class Clip:
    """Sampled frames plus what the processor needs to place them in time."""

    path: str
    frames: np.ndarray = field(repr=False)  # (T, H, W, 3) uint8
    indices: list[int]  # source frame index of each sampled frame
    source_frames: int
    source_fps: float
    size: tuple[int, int]  # source (width, height)

    @property
    def seconds(self) -> float:
        return self.source_frames / self.source_fps

    @property
    def fps(self) -> float:
        """Frames per second of the sampled stack, as the model's temporal positions need it."""
        return len(self.indices) / self.seconds

    def info(self) -> dict:
        """The ``video`` record of a RunTrace."""
        return {
            "path": self.path,
            "n_frames": len(self.indices),
            "fps": round(self.fps, 4),
            "seconds": round(self.seconds, 3),
            "size": list(self.size),
        }


def sample_indices(n_source: int, n_frames: int) -> list[int]:
    """Centres of ``n_frames`` equal segments: uniform cover of the clip, first and last parts included."""
    n = min(n_frames, n_source)
    return [int((i + 0.5) * n_source / n) for i in range(n)]


def _probe(path: str) -> None:
    """Refuse non-videos with PyAV first: its errors are exceptions, decord's native ones also print to stderr."""
    import av

    name = os.path.basename(path)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
                raise VideoError(f"{name} has no video stream (it holds {kinds})")
    except av.FFmpegError as err:
        raise VideoError(f"cannot read {name} as a video ({err.strerror or type(err).__name__})") from None


def read_video(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> Clip:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoError(f"video not found: {path}")
    n_bytes = os.path.getsize(path)
    if n_bytes == 0:
        raise VideoError(f"video file is empty: {path}")
    if n_bytes > limits.max_bytes:
        raise VideoError(f"video is {n_bytes / 2**20:.0f} MB; the limit is {limits.max_bytes / 2**20:.0f} MB")

    _probe(path)
    import decord

    decord.logging.set_level(decord.logging.QUIET)
    try:
        probe = decord.VideoReader(path, num_threads=1)
        n_source = len(probe)
        if n_source == 0:
            raise VideoError(f"video has no frames: {path}")
        height, width = probe[0].shape[:2]
        fps = float(probe.get_avg_fps())
    except (decord.DECORDError, RuntimeError) as err:
        raise VideoError(f"cannot read {os.path.basename(path)} as a video ({str(err).splitlines()[0]})") from None
    if fps <= 0:
        raise VideoError(f"video reports no frame rate: {path}")
    if n_source / fps > limits.max_seconds:
        raise VideoError(f"video lasts {n_source / fps:.0f} s; the limit is {limits.max_seconds:.0f} s")

    scale = min(1.0, limits.max_side / max(width, height))
    out_w, out_h = (max(2, round(width * scale)), max(2, round(height * scale))) if scale < 1 else (-1, -1)
    indices = sample_indices(n_source, limits.max_frames)
    try:
        reader = decord.VideoReader(path, width=out_w, height=out_h, num_threads=1) if scale < 1 else probe
        frames = reader.get_batch(indices).asnumpy()
    except (decord.DECORDError, RuntimeError) as err:
        raise VideoError(f"cannot decode frames of {os.path.basename(path)} ({str(err).splitlines()[0]})") from None
    return Clip(path, frames, indices, n_source, fps, (int(width), int(height)))
