"""Video reading: uniform sampling to a budget, bounded size, one clear error type."""

from __future__ import annotations

import numpy as np
import pytest

from lvspec.toyworld.clipio import write_mp4
from lvspec.video import VideoError, VideoLimits, read_video, sample_indices


def gradient_clip(n: int, height: int, width: int) -> np.ndarray:
    """Frame i is uniformly grey level 4·i, so a decoded frame tells which source frame it was."""
    levels = (np.arange(n) * 4).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).copy()


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_mp4(gradient_clip(48, 96, 160), str(path), fps=12)
    return path


def test_uniform_sampling_fps_and_duration(mp4):
    clip = read_video(mp4, VideoLimits(max_frames=8))
    assert clip.indices == sample_indices(48, 8) == [3, 9, 15, 21, 27, 33, 39, 45]
    assert clip.frames.shape == (8, 96, 160, 3)
    assert clip.source_frames == 48 and clip.source_fps == pytest.approx(12)
    assert clip.seconds == pytest.approx(4.0) and clip.fps == pytest.approx(2.0)
    levels = clip.frames.reshape(8, -1).mean(-1)
    assert np.allclose(levels, np.array(clip.indices) * 4, atol=3)  # the right frames, in order
    assert clip.info() == {"path": str(mp4), "n_frames": 8, "fps": 2.0, "seconds": 4.0, "size": [160, 96]}


def test_short_video_gives_all_its_frames():
    assert sample_indices(3, 16) == [0, 1, 2]


def test_resolution_is_bounded(mp4):
    clip = read_video(mp4, VideoLimits(max_frames=4, max_side=80))
    assert clip.frames.shape[1:] == (48, 80, 3)
    assert clip.size == (160, 96)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"this is not a video\n" * 50, "cannot read"), (b"%PDF-1.4\n" + bytes(range(256)) * 8, "cannot read")],
)
def test_bad_files_raise_one_error_type(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError, match=message):
        read_video(path)


def test_missing_and_oversized(tmp_path, mp4):
    with pytest.raises(VideoError, match="not found"):
        read_video(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="limit"):
        read_video(mp4, VideoLimits(max_bytes=100))
    with pytest.raises(VideoError, match="lasts"):
        read_video(mp4, VideoLimits(max_seconds=1.0))
