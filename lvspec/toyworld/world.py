"""A tiny synthetic video world: coloured shapes with known motions over dark, grey backgrounds.

Every clip is drawn from a `Scene` whose facts (which shapes, colours and motions) are exact, so an
answer about the clip can be scored without a human. All randomness (sizes, positions, speeds, shades,
backgrounds, noise) comes from the caller's `np.random.Generator`, so a seed fixes the clip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "star")
# Base colours far enough apart that a jittered shade is still nearest its own base.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 45),
    "orange": (240, 130, 30),
    "yellow": (240, 210, 40),
    "green": (50, 185, 70),
    "blue": (45, 95, 235),
    "purple": (145, 65, 205),
    "white": (240, 240, 240),
}
MOTIONS = ("left", "right", "up", "down", "still", "growing")
TRANSLATIONS = ("left", "right", "up", "down")
BACKGROUNDS = ("plain", "gradient", "noise")
STYLES = ("default", "alt", "small")


@dataclass(frozen=True)
class ShapeSpec:
    shape: str
    colour: str
    motion: str


@dataclass(frozen=True)
class Scene:
    """The facts of a clip. Shapes and colours are distinct, so "the square" or "the red object" is unambiguous."""

    shapes: tuple[ShapeSpec, ...]
    background: str


def sample_scene(rng: np.random.Generator, n_shapes: int | None = None) -> Scene:
    """1–3 shapes with distinct shapes and colours."""
    n = int(rng.integers(1, 4)) if n_shapes is None else n_shapes
    if not 1 <= n <= min(len(SHAPES), len(COLOURS)):
        raise ValueError(f"n_shapes must be between 1 and {min(len(SHAPES), len(COLOURS))}, got {n}")
    shapes = rng.choice(SHAPES, n, replace=False)
    colours = rng.choice(list(COLOURS), n, replace=False)
    specs = [ShapeSpec(str(shape), str(colour), str(rng.choice(MOTIONS))) for shape, colour in zip(shapes, colours)]
    return Scene(tuple(specs), str(rng.choice(BACKGROUNDS)))


# ---------------------------------------------------------------------------------------------------
# Geometry


@dataclass(frozen=True)
class _Track:
    """One shape's pixel colour and, per frame, its centre, extent (pixels) and angle (degrees)."""

    shape: str
    rgb: tuple[int, int, int]
    x: np.ndarray
    y: np.ndarray
    size: np.ndarray
    angle: np.ndarray


@lru_cache(maxsize=None)
def _outline(shape: str, star_inner: float) -> np.ndarray:
    """Polygon of a shape about its centroid (so it turns in place), 2 wide on its longer axis; y points down."""
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "square":
        pts = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], float)
    elif shape == "triangle":
        a = np.radians([-90, 30, 150])
        pts = np.stack([np.cos(a), np.sin(a)], 1)
    elif shape == "star":
        a = np.radians(-90 + 36 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.0, star_inner)
        pts = np.stack([r * np.cos(a), r * np.sin(a)], 1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    x, y = pts.T
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    centre = np.stack([(x + np.roll(x, -1)) @ cross, (y + np.roll(y, -1)) @ cross]) / (3 * cross.sum())
    pts = (pts - centre) / (np.ptp(pts, 0).max() / 2)
    pts.setflags(write=False)
    return pts


def _rotate(pts: np.ndarray, degrees: float | np.ndarray) -> np.ndarray:
    """``pts`` (P, 2) turned by each angle: (P, 2) for one angle, (T, P, 2) for T angles."""
    a = np.radians(np.asarray(degrees))[..., None]
    x, y = pts[:, 0], pts[:, 1]
    return np.stack([x * np.cos(a) - y * np.sin(a), x * np.sin(a) + y * np.cos(a)], -1)


def _smooth_progress(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Constant speed or ease-in-out, so speed varies within and between clips."""
    return t if rng.random() < 0.5 else t * t * (3 - 2 * t)


def _track(spec: ShapeSpec, rgb: tuple[int, int, int], rng: np.random.Generator, width: int, height: int,
           t: np.ndarray, style: _Style, n_shapes: int) -> _Track:
    short = min(width, height)
    lo, hi = style.size_range
    size_range = (lo, max(lo, hi - 0.03 * (n_shapes - 1)))
    p = _smooth_progress(t, rng)
    if spec.motion == "growing":
        small = short * rng.uniform(0.2, 0.24)
        size = small * (1 + rng.uniform(0.7, 1.0) * p)
    else:
        size = np.full_like(t, short * rng.uniform(*size_range))
    angle = np.full_like(t, rng.uniform(-style.tilt, style.tilt))
    # Half extents (x, y) of the largest pose over the clip: centres stay far enough in to keep it whole.
    poses = _rotate(_outline(spec.shape, style.star_inner), angle)
    hx, hy = (np.abs(poses).max((0, 1)) * size.max() / 2).tolist()
    x = np.full_like(t, rng.uniform(hx, width - hx))
    y = np.full_like(t, rng.uniform(hy, height - hy))
    if spec.motion in TRANSLATIONS:
        horizontal = spec.motion in ("left", "right")
        length, half = (width, hx) if horizontal else (height, hy)
        travel = min(length - 2 * half, length * rng.uniform(0.35, 0.6))
        start = half + rng.uniform(0, 1) * max(length - 2 * half - travel, 0.0)
        path = start + travel * (p if spec.motion in ("right", "down") else 1 - p)
        if horizontal:
            x = path
        else:
            y = path
    return _Track(spec.shape, rgb, x, y, size, angle)


def _overlap(a: _Track, b: _Track) -> float:
    """Worst overlap of two shapes' discs over the clip, relative to the smaller radius (<= 0: none)."""
    ra, rb = 0.5 * a.size, 0.5 * b.size
    return float(np.max((ra + rb - np.hypot(a.x - b.x, a.y - b.y)) / np.minimum(ra, rb)))


def _layout(scene: Scene, rgbs: list[tuple[int, int, int]], rng: np.random.Generator, width: int, height: int,
            t: np.ndarray, style: _Style) -> list[_Track]:
    """Place shapes one by one, each retried until it overlaps none placed before; start over if one cannot
    be placed, and keep the least overlapping layout if no layout is free of overlap."""
    n = len(scene.shapes)
    best: list[_Track] = []
    best_overlap = np.inf
    for _ in range(10):
        placed: list[_Track] = []
        worst = -np.inf
        for spec, rgb in zip(scene.shapes, rgbs):
            track, overlap = None, np.inf
            for _ in range(15):
                candidate = _track(spec, rgb, rng, width, height, t, style, n)
                candidate_overlap = max((_overlap(candidate, other) for other in placed), default=-np.inf)
                if candidate_overlap < overlap:
                    track, overlap = candidate, candidate_overlap
                if overlap <= 0:
                    break
            placed.append(track)
            worst = max(worst, overlap)
        if worst < best_overlap:
            best, best_overlap = placed, worst
        if worst <= 0:
            break
    return best


def _shade(colour: str, rng: np.random.Generator) -> tuple[int, int, int]:
    """Jitter brightness and each channel a little, never enough to look like a neighbouring colour."""
    rgb = np.array(COLOURS[colour], float) * rng.uniform(0.92, 1.06) + rng.uniform(-10, 10, 3)
    return tuple(int(v) for v in np.clip(rgb, 0, 255))


# ---------------------------------------------------------------------------------------------------
# Backgrounds: dark, low-saturation greys, so every shape colour stands out against them.


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates scaled to [0, 1]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return xx / max(width - 1, 1), yy / max(height - 1, 1)


def _tint(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(grey[..., None] + rng.uniform(-6, 6, 3).astype(np.float32), 0, 255).astype(np.uint8)


def _plain(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    return _tint(np.full((height, width), rng.uniform(20, 75), np.float32), rng)


def _linear_gradient(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    xx, yy = _grid(height, width)
    theta = rng.uniform(0, 2 * np.pi)
    proj = xx * np.cos(theta) + yy * np.sin(theta)
    proj = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    g0, g1 = rng.permutation([rng.uniform(15, 40), rng.uniform(55, 85)])
    return _tint(g0 + (g1 - g0) * proj, rng)


def _value_noise(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    cells = int(rng.integers(3, 9))
    coarse = Image.fromarray(rng.uniform(20, 75, (cells, cells)).astype(np.uint8))
    grey = np.asarray(coarse.resize((width, height), Image.BILINEAR), np.float32)
    return _tint(grey + rng.normal(0, 4, (height, width)).astype(np.float32), rng)


def _tinted(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A plain dark background with a visible colour cast (never as saturated as a shape)."""
    base = rng.uniform(20, 60) + rng.uniform(-14, 14, 3)
    return np.clip(np.broadcast_to(base, (height, width, 3)), 0, 255).astype(np.uint8)


def _vignette(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    xx, yy = _grid(height, width)
    r2 = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2
    return _tint(rng.uniform(40, 85) * (1 - 0.45 * r2), rng)


def _radial_gradient(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    xx, yy = _grid(height, width)
    dist = np.hypot(xx - rng.uniform(0, 1), yy - rng.uniform(0, 1))
    g0, g1 = rng.permutation([rng.uniform(15, 40), rng.uniform(55, 85)])
    return _tint(g0 + (g1 - g0) * np.clip(dist / 1.2, 0, 1), rng)


def _block_noise(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    block = int(rng.integers(4, 13))
    coarse = rng.uniform(20, 80, (-(-height // block), -(-width // block))).astype(np.float32)
    return _tint(np.repeat(np.repeat(coarse, block, 0), block, 1)[:height, :width], rng)


# ---------------------------------------------------------------------------------------------------
# Styles: renderers of the same vocabulary, to train and test generalisation to "another renderer".

Background = Callable[[np.random.Generator, int, int], np.ndarray]


@dataclass(frozen=True)
class _Style:
    backgrounds: dict[str, Background]
    size_range: tuple[float, float]  # static shape extent, as a share of the short side (1 shape)
    tilt: float  # largest resting tilt, degrees
    supersample: int  # draw at this scale and reduce: anti-aliased edges
    outline: float  # border width as a share of the shape's extent (0: none)
    star_inner: float
    blur_p: float
    grain_p: float


_STYLES = {
    "default": _Style(
        backgrounds={"plain": _plain, "gradient": _linear_gradient, "noise": _value_noise},
        size_range=(0.3, 0.44), tilt=10.0, supersample=1, outline=0.0, star_inner=0.45,
        blur_p=0.25, grain_p=0.35,
    ),
    "alt": _Style(
        backgrounds={"plain": _vignette, "gradient": _radial_gradient, "noise": _block_noise},
        size_range=(0.32, 0.46), tilt=25.0, supersample=2, outline=0.05, star_inner=0.55,
        blur_p=0.0, grain_p=0.35,
    ),
    # Small shapes (about a fifth of the short side) over tinted or noisy backgrounds: where descriptions of
    # crowded clips drawn by another hand went wrong.
    "small": _Style(
        backgrounds={"plain": _tinted, "gradient": _linear_gradient, "noise": _block_noise},
        size_range=(0.17, 0.25), tilt=15.0, supersample=2, outline=0.0, star_inner=0.45,
        blur_p=0.1, grain_p=0.5,
    ),
}


def render(scene: Scene, rng: np.random.Generator, width: int = 112, height: int = 112, n_frames: int = 16,
           style: str = "default") -> np.ndarray:
    """Draw a clip of ``scene`` as uint8 frames (T, H, W, 3); ``style`` picks one of `STYLES`' renderers."""
    return render_labelled(scene, rng, width, height, n_frames, style)[0]


def render_labelled(scene: Scene, rng: np.random.Generator, width: int = 112, height: int = 112, n_frames: int = 16,
                    style: str = "default") -> tuple[np.ndarray, np.ndarray]:
    """`render`'s frames and, for every pixel, which shape covers it: (T, H, W) uint8, 0 = background and
    i = ``scene.shapes[i - 1]`` (the same draws from ``rng``, so the frames equal `render`'s)."""
    if style not in _STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if width < 16 or height < 16 or n_frames < 1:
        raise ValueError(f"need width, height >= 16 and n_frames >= 1, got {width}x{height}x{n_frames}")
    if scene.background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {scene.background!r}")
    st = _STYLES[style]
    t = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(1)
    tracks = _layout(scene, [_shade(s.colour, rng) for s in scene.shapes], rng, width, height, t, st)
    k = st.supersample
    canvas = Image.fromarray(st.backgrounds[scene.background](rng, width, height))
    if k > 1:
        canvas = canvas.resize((width * k, height * k), Image.BILINEAR)
    blur = float(rng.uniform(0.4, 0.9)) if rng.random() < st.blur_p else 0.0
    grain = float(rng.uniform(2, 5)) if rng.random() < st.grain_p else 0.0

    frames = np.empty((n_frames, height, width, 3), np.uint8)
    masks = np.empty((n_frames, height, width), np.uint8)
    for i in range(n_frames):
        img = canvas.copy()
        draw = ImageDraw.Draw(img)
        mask = Image.new("L", (width, height))
        for label, tr in enumerate(tracks, start=1):
            pts = _rotate(_outline(tr.shape, st.star_inner), tr.angle[i]) * (tr.size[i] / 2)
            pts = pts + (tr.x[i], tr.y[i])
            ImageDraw.Draw(mask).polygon(pts.ravel().tolist(), fill=label)
            pts = pts * k
            if st.outline:
                border = tuple(int(0.45 * v) for v in tr.rgb)
                draw.polygon(pts.ravel().tolist(), fill=tr.rgb, outline=border,
                             width=max(1, round(st.outline * tr.size[i] * k)))
            else:
                draw.polygon(pts.ravel().tolist(), fill=tr.rgb)
        if k > 1:
            img = img.reduce(k)
        if blur:
            img = img.filter(ImageFilter.GaussianBlur(blur))
        frames[i] = np.asarray(img)
        masks[i] = np.asarray(mask)
    if grain:
        noise = rng.standard_normal(frames.shape, dtype=np.float32) * grain
        frames = np.clip(frames + noise, 0, 255).astype(np.uint8)
    return frames, masks
