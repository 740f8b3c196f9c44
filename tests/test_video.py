"""Video reading: uniform sampling to a budget, bounded size, one clear error type; and every kind of file an
upload box receives: each is read within the frame budget, upright and in time order, or refused with a
one-line reason; long and large videos are sampled, not decoded whole."""

from __future__ import annotations

import media
import numpy as np
import pytest

from conftest import REFUSED
from lvspec import video
from lvspec.toyworld.clipio import write_mp4
from lvspec.trace import VideoInfo
from lvspec.video import FRAME_CAP, VideoError, VideoLimits, read_video, sample_indices


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
    assert clip.info() == VideoInfo(str(mp4), n_frames=8, fps=2.0, seconds=4.0, size=[160, 96])


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


READ = ["one-frame", "8k", "gif", "webm", "webm, no duration", "mkv", "avi", "mov", "vertical", "rotated", "vfr"]


@pytest.fixture(scope="module")
def hour(tmp_path_factory):
    return media.hour_long(tmp_path_factory.mktemp("long") / "hour.mp4")


def frame_numbers(frames: np.ndarray) -> np.ndarray:
    """Which source frame each decoded frame was, from its grey level below the white top bar."""
    return np.rint(frames[:, frames.shape[1] // 2 :].mean(axis=(1, 2, 3)) / media.LEVEL_STEP).astype(int)


@pytest.mark.parametrize("kind", REFUSED)
def test_unusable_files_are_refused_with_one_line(files, kind):
    with pytest.raises(VideoError, match=REFUSED[kind]) as err:
        read_video(files[kind])
    assert "\n" not in str(err.value) and files[kind].name in str(err.value)


@pytest.mark.parametrize("kind", READ)
def test_usable_files_give_upright_frames_in_time_order_within_budget(files, kind):
    limits = VideoLimits(max_frames=8, max_side=96)
    clip = read_video(files[kind], limits)
    t, h, w, c = clip.frames.shape
    assert t == min(8, clip.source_frames) and c == 3 and clip.frames.dtype == np.uint8
    assert max(h, w) <= 96
    assert (h > w) == (kind in ("vertical", "rotated")) and (clip.size[1] > clip.size[0]) == (h > w)
    assert clip.frames[:, :2].mean() > 240 and clip.frames[:, -2:].mean() < 200  # the white bar is on top
    assert clip.indices == sorted(clip.indices) and 0 <= clip.indices[0] and clip.indices[-1] < clip.source_frames
    if kind not in ("gif", "vfr", "8k"):  # a palette blurs levels; VFR and 8K have their own tests
        assert list(frame_numbers(clip.frames)) == sample_indices(clip.source_frames, 8) == clip.indices


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.8, 0.95])
def test_a_file_cut_anywhere_is_refused(files, tmp_path, keep):
    """However much of a file arrived, the header and the data disagree: refused, never padded."""
    cut = media.truncated(files["truncated"].with_name("faststart.mp4"), tmp_path / "cut.mp4", keep)
    with pytest.raises(VideoError, match=r"breaks off (at \d\.\d s of its 3\.0 s|before its first frame)|cannot read"):
        read_video(cut)


def test_8k_is_decoded_one_frame_at_a_time_and_shrunk(files):
    clip = read_video(files["8k"])
    assert clip.size == (7680, 4320) and clip.frames.shape == (2, 252, 448, 3)
    with pytest.raises(VideoError, match="7680×4320; the limit is 8.3 megapixels"):
        read_video(files["8k"], VideoLimits(max_pixels=3840 * 2160))


def test_rotation_is_applied_as_ffmpeg_displays_it(tmp_path):
    """decord applies FFmpeg's own display rotation at native size: the two must agree pixel for pixel."""
    decord = pytest.importorskip("decord")

    for degrees in (90, -90, 180):
        path = media.encode(tmp_path / f"turned{degrees}.mp4", media.numbered_frames(8, 32, 64), rotation=degrees)
        clip = read_video(path, VideoLimits(max_frames=8))
        reference = decord.VideoReader(str(path)).get_batch(list(range(8))).asnumpy()
        assert np.array_equal(clip.frames, reference)
        assert clip.size == ((64, 32) if degrees == 180 else (32, 64))


def test_variable_frame_rate_samples_evenly_in_time(files):
    """Each sampled frame is the one on screen at its sampling time; the duration is the container's."""
    times = media.variable_times(24)
    clip = read_video(files["vfr"], VideoLimits(max_frames=8))
    assert clip.seconds == pytest.approx(times[-1] + 0.2, abs=0.2)  # not 24 frames at the stream's 25 fps guess
    sampled = [(i + 0.5) * clip.seconds / 8 for i in range(8)]
    on_screen = [max(j for j, start in enumerate(times) if start <= t + 1e-6) for t in sampled]
    assert list(frame_numbers(clip.frames)) == on_screen
    assert [round(times[j] * clip.source_fps) for j in on_screen] == clip.indices  # indices / fps = seconds


def test_hour_long_video_is_sampled_without_decoding_it_whole(hour, monkeypatch):
    decoded = []
    timed = video._timed

    def counting(frames, gap):
        for item in timed(frames, gap):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(video, "_timed", counting)
    clip = read_video(hour)
    assert clip.seconds == pytest.approx(3600) and clip.indices == sample_indices(3600, 16)
    assert list(frame_numbers(clip.frames) % (256 // media.LEVEL_STEP)) == [i % 32 for i in clip.indices]
    assert len(decoded) < 3600 / 20  # seeks to a keyframe (every 10 s here) before each sampling time
    with pytest.raises(VideoError, match="lasts 3600 s; the limit is 1800 s"):
        read_video(hour, VideoLimits(max_seconds=1800))


@pytest.mark.parametrize("frames", [0, FRAME_CAP + 1])
def test_frame_budget_is_bounded(frames):
    with pytest.raises(VideoError, match=f"frames must be between 1 and {FRAME_CAP}"):
        VideoLimits(max_frames=frames)


def test_limits_come_from_the_environment(monkeypatch, files):
    monkeypatch.setenv("LVSPEC_MAX_VIDEO_MB", "0.001")
    monkeypatch.setenv("LVSPEC_MAX_VIDEO_SECONDS", "2")
    limits = VideoLimits.from_env(max_frames=4)
    assert (limits.max_bytes, limits.max_seconds, limits.max_frames) == (1048, 2.0, 4)
    with pytest.raises(VideoError, match="MB; the limit is 0 MB"):
        read_video(files["8k"], limits)
    with pytest.raises(VideoError, match="lasts 3 s; the limit is 2 s"):
        read_video(files["mkv"], VideoLimits.from_env(max_bytes=2**20))
