"""Small media files of every kind a public upload box receives, written in milliseconds with PyAV.

Frame ``i`` of a generated clip is uniformly grey at level ``LEVEL_STEP·i`` (mod 256), with a white bar
along its top edge, so a decoded frame tells which source frame it was and which way up it is.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

LEVEL_STEP = 8
VP8 = {"deadline": "realtime", "cpu-used": "8"}


def numbered_frames(n: int, height: int, width: int) -> np.ndarray:
    levels = (np.arange(n) * LEVEL_STEP % 256).astype(np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).copy()
    frames[:, : max(2, height // 8)] = 255  # the top edge: tells whether a reader turned the picture
    return frames


def encode(path: Path, frames: np.ndarray, fps: float = 8, codec: str = "libx264", *, pix_fmt: str = "yuv420p",
           rotation: int = 0, times: list[float] | None = None, options: dict | None = None,
           muxer: dict | None = None) -> Path:
    """Write ``frames`` with ``codec`` in the container the suffix names; ``times`` (seconds) gives a variable
    rate, ``rotation`` a display matrix (degrees counter-clockwise), ``muxer`` the container's options."""
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", options=muxer or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.options = {"preset": "ultrafast"} if codec == "libx264" else {}
        stream.options |= options or {}
        if rotation:
            stream.set_display_rotation(rotation)
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        samples = int(16000 * seconds)
        tone = (0.2 * np.sin(np.arange(samples) / 10)).astype(np.float32)[None]
        for start in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(tone[:, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def still_image(path: Path) -> Path:
    """A PNG, whatever the suffix of ``path``."""
    with av.open(str(path), mode="w", format="image2pipe") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(numbered_frames(1, 24, 32)[0], format="rgb24")))
        container.mux(stream.encode())
    return path


def truncated(source: Path, path: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def hour_long(path: Path, seconds: int = 3600, fps: float = 1.0) -> Path:
    """An hour of 64×36 video at one frame a second: 3600 frames, ~1 s to write."""
    return encode(path, numbered_frames(int(seconds * fps), 36, 64), fps, options={"g": "10"})  # a keyframe each 10 s


def bad_files(folder: Path) -> dict[str, Path]:
    """Every bad or unusual upload the tests use, by kind (the hour-long one is separate: ~1 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    clip, upright = numbered_frames(24, 72, 128), numbered_frames(24, 128, 72)
    indexed_first = encode(folder / "faststart.mp4", clip, muxer={"movflags": "faststart"})
    index_last = encode(folder / "plain.mp4", clip)
    files = {
        "zero-byte": folder / "zero-byte.mp4",
        "truncated": truncated(indexed_first, folder / "truncated.mp4", keep=0.8),
        "truncated, index lost": truncated(index_last, folder / "truncated-index.mp4"),
        "text": folder / "notes.mp4",
        "image": still_image(folder / "picture.mp4"),
        "pdf": folder / "document.mp4",
        "audio-only": audio_only(folder / "audio.mp4"),
        "one-frame": encode(folder / "one-frame.mp4", clip[:1]),
        "8k": encode(folder / "8k.mp4", numbered_frames(2, 4320, 7680), 2),
        "gif": encode(folder / "clip.gif", clip, codec="gif", pix_fmt="rgb8"),
        "webm": encode(folder / "clip.webm", clip, codec="libvpx", options=VP8),
        "webm, no duration": encode(folder / "recorded.webm", clip, codec="libvpx", options=VP8, muxer={"live": "1"}),
        "mkv": encode(folder / "clip.mkv", clip),
        "avi": encode(folder / "clip.avi", clip, codec="mpeg4", options={"qmax": "4"}),
        "mov": encode(folder / "clip.mov", clip),
        "vertical": encode(folder / "vertical.mp4", upright),
        # a phone held upright: the picture stored sideways, the display matrix turning it back
        "rotated": encode(folder / "rotated.mp4", np.rot90(upright, 1, axes=(1, 2)), rotation=-90),
        "vfr": encode(folder / "vfr.mp4", clip, times=variable_times(len(clip))),
    }
    files["zero-byte"].write_bytes(b"")
    files["text"].write_text("this is not a video\n" * 40)
    files["pdf"].write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" + bytes(range(256)) * 8 + b"%%EOF\n")
    return files


def variable_times(n: int) -> list[float]:
    """Bursts and pauses: frame gaps alternate 40 ms and 360 ms (mean 200 ms: 5 fps on average)."""
    return [sum(0.04 if j % 2 == 0 else 0.36 for j in range(i)) for i in range(n)]
