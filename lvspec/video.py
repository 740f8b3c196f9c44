"""Read a video file into a small stack of frames sampled uniformly in time (PyAV / FFmpeg).

Models see only ``max_frames`` frames, so we never decode much more: the container's header is checked
against the limits first, then the reader seeks to the keyframe before each sampling time and decodes
forward to it, converting (and shrinking) only the frames it keeps. Memory is bounded by one decoded
source frame plus the kept ones, however long or large the file. PyAV rather than decord: decord
cannot open GIFs, garbles some frame widths and mishandles rotation when resizing; FFmpeg through PyAV
reads every container it knows, gives each frame's time (variable frame rates) and its display rotation
(phone videos).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .errors import UserError
from .trace import VideoInfo

FRAME_CAP = 256  # the most frames any run may ask for: memory grows with it
SEEK_GAP_S = 1.0  # decode straight on to a sampling time this close; seek to anything farther


class VideoError(UserError):
    """The file cannot be used as a video (missing, empty, unreadable, too large, no frames)."""


@dataclass(frozen=True)
class VideoLimits:
    """What a run may ask of a video file; a public server can lower these through the environment."""

    max_frames: int = 16  # frames sampled (the model's budget)
    max_side: int = 448  # longest side after decoding, in pixels
    max_bytes: int = 512 * 2**20
    max_seconds: float = 3 * 3600.0
    max_pixels: int = 7680 * 4320  # source frame area: decoding one 8K frame takes ~50 MB

    def __post_init__(self):
        if not 1 <= self.max_frames <= FRAME_CAP:
            raise VideoError(f"frames must be between 1 and {FRAME_CAP} (asked for {self.max_frames})")

    @classmethod
    def from_env(cls, **given) -> VideoLimits:
        """Defaults, then ``LVSPEC_MAX_VIDEO_MB`` and ``LVSPEC_MAX_VIDEO_SECONDS``, then ``given``."""
        env = {}
        if mb := os.environ.get("LVSPEC_MAX_VIDEO_MB"):
            env["max_bytes"] = int(float(mb) * 2**20)
        if seconds := os.environ.get("LVSPEC_MAX_VIDEO_SECONDS"):
            env["max_seconds"] = float(seconds)
        return cls(**(env | given))


@dataclass
class Clip:
    """Sampled frames plus what the processor needs to place them in time."""

    path: str
    frames: np.ndarray = field(repr=False)  # (T, H, W, 3) uint8, upright
    indices: list[int]  # each frame's time in frames of the clip's average rate: indices / fps = seconds
    source_frames: int
    source_fps: float  # average rate: source_frames / duration
    size: tuple[int, int]  # source (width, height) as displayed, after rotation

    @property
    def seconds(self) -> float:
        return self.source_frames / self.source_fps

    @property
    def fps(self) -> float:
        """Frames per second of the sampled stack, as the model's temporal positions need it."""
        return len(self.indices) / self.seconds

    def info(self) -> VideoInfo:
        """The ``video`` record of a RunTrace (the model's view of it, ``grid``, is added by the run)."""
        return VideoInfo(self.path, len(self.indices), round(self.fps, 4), round(self.seconds, 3), list(self.size))


def sample_indices(n_source: int, n_frames: int) -> list[int]:
    """Centres of ``n_frames`` equal segments: uniform cover of the clip, first and last parts included."""
    n = min(n_frames, n_source)
    return [int((i + 0.5) * n_source / n) for i in range(n)]


@dataclass(frozen=True)
class Source:
    """The video stream as its container describes it, before any frame is decoded."""

    width: int  # as stored (before rotation)
    height: int
    start: float  # seconds of the first frame
    seconds: float
    frames: int

    @property
    def gap(self) -> float:
        """Average seconds between frames."""
        return self.seconds / self.frames


def _video_stream(container, name: str):
    """The main video stream; cover art in an audio file (an attached picture) is not a video."""
    import av

    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        raise VideoError(f"{name} is a still image ({container.format.name.removesuffix('_pipe')}), not a video")
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        kinds = ", ".join(sorted({s.type for s in container.streams} - {"video"} or {"nothing"}))
        raise VideoError(f"{name} has no video stream (it holds {kinds})")
    return streams[0]


def _describe(container, stream, name: str) -> Source:
    """Size, start, duration and frame count from the header (durations from the container when the
    stream has none, frame counts from the rate when the header has none: WebM and MKV give neither)."""
    base = stream.time_base
    start = float(stream.start_time * base) if stream.start_time is not None else 0.0
    if stream.duration:
        seconds = float(stream.duration * base)
    elif container.duration:
        seconds = container.duration / 1e6 - max(0.0, start - (container.start_time or 0) / 1e6)
    else:
        seconds = _scan_seconds(container, stream)
    if seconds <= 0:
        raise VideoError(f"{name} reports no duration")
    rate = stream.average_rate or stream.guessed_rate
    frames = stream.frames or (round(seconds * float(rate)) if rate else 0)
    if frames <= 0:
        raise VideoError(f"{name} reports no frame rate")
    return Source(stream.width, stream.height, start, seconds, max(1, frames))


def _scan_seconds(container, stream) -> float:
    """Duration by reading the packets' times, not decoding them: live WebM (browser recordings) has no
    duration in its header."""
    end = 0.0
    for packet in container.demux(stream):
        if packet.pts is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    container.seek(0)
    return end - float((stream.start_time or 0) * stream.time_base)


def _check(source: Source, limits: VideoLimits, name: str) -> None:
    if source.width * source.height > limits.max_pixels:
        raise VideoError(f"{name} is {source.width}×{source.height}; the limit is {limits.max_pixels / 1e6:.1f} megapixels a frame")
    if source.seconds > limits.max_seconds:
        raise VideoError(f"{name} lasts {source.seconds:.0f} s; the limit is {limits.max_seconds:.0f} s")


def _upright(frame, width: int, height: int) -> np.ndarray:
    """RGB pixels at (width, height) as stored, then turned as the display matrix says."""
    pixels = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels


def _sample(container, stream, source: Source, times: list[float], shape: tuple[int, int], name: str):
    """For each time (rising), the frame on screen then: the last one starting at or before it.

    Decodes straight on to a time less than ``SEEK_GAP_S`` ahead, else seeks to the keyframe before it.
    A time past the end of the decodable data means the file breaks off before its header says: it is
    refused rather than padded with a frozen frame. Returns the upright frames, their times and rotation.
    """
    decoded = _timed(container.decode(stream), source.gap)
    ahead, shown = next(decoded, None), None  # the next decoded frame; the one on screen at the last time
    kept, kept_times, rotation = [], [], 0
    for t in times:
        position = ahead or shown
        if position is not None and t - position[0] > SEEK_GAP_S:
            container.seek(int(t / stream.time_base), stream=stream)  # to the keyframe at or before t
            decoded = _timed(container.decode(stream), source.gap)
            ahead, shown = next(decoded, None), None
        while ahead is not None and (shown is None or ahead[0] <= t + 1e-6):
            shown, ahead = ahead, next(decoded, None)
        if shown is None or ahead is None and t > _end(shown, source):
            where = "before its first frame" if shown is None else f"at {shown[0] - source.start:.1f} s of its {source.seconds:.1f} s"
            raise VideoError(f"{name} breaks off {where} (truncated or damaged)")
        kept.append(_upright(shown[1], *shape))
        kept_times.append(shown[0])
        rotation = shown[1].rotation
    return kept, kept_times, rotation


def _timed(frames, gap: float):
    """(seconds, frame) for each decoded frame; one without a timestamp comes ``gap`` after its predecessor.

    A decoding error ends the frames there, as the end of the data would: past it the file is damaged.
    """
    import av

    t = None
    try:
        for frame in frames:
            t = frame.time if frame.time is not None else (0.0 if t is None else t + gap)
            yield t, frame
    except av.FFmpegError:
        return


def _end(shown: tuple, source: Source) -> float:
    """Latest time a frame can stand for: its own duration (or the average gap) plus one gap of slack."""
    t, frame = shown
    duration = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
    return t + max(duration, source.gap) + source.gap


def read_video(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> Clip:
    """Sample ``limits.max_frames`` upright frames uniformly in time, shrunk to ``limits.max_side``."""
    import av

    path = os.fspath(path)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise VideoError(f"video not found: {path}")
    n_bytes = os.path.getsize(path)
    if n_bytes == 0:
        raise VideoError(f"video file is empty: {name}")
    if n_bytes > limits.max_bytes:
        raise VideoError(f"{name} is {n_bytes / 2**20:.0f} MB; the limit is {limits.max_bytes / 2**20:.0f} MB")
    try:
        with av.open(path, metadata_errors="ignore") as container:
            stream = _video_stream(container, name)
            stream.thread_type = "SLICE"  # frame threads would each hold a decoded frame: ~50 MB apiece at 8K
            source = _describe(container, stream, name)
            _check(source, limits, name)
            scale = min(1.0, limits.max_side / max(source.width, source.height))
            shape = (max(2, round(source.width * scale)), max(2, round(source.height * scale)))
            n = min(limits.max_frames, source.frames)
            times = [source.start + (i + 0.5) * source.seconds / n for i in range(n)]
            frames, frame_times, rotation = _sample(container, stream, source, times, shape, name)
    except av.FFmpegError as err:
        raise VideoError(f"cannot read {name} as a video ({err.strerror or type(err).__name__})") from None
    fps = source.frames / source.seconds
    size = (source.height, source.width) if rotation % 180 else (source.width, source.height)
    indices = [round((t - source.start) * fps) for t in frame_times]
    return Clip(path, np.stack(frames), indices, source.frames, fps, size)
