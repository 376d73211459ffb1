"""Drawing the pieces of a synthetic scene: colours, background textures, object shapes, patterns, sprites.

Part of :mod:`lorat.data.synthetic`. Everything takes a numpy ``Generator`` so that a sequence is deterministic
per seed; images are float RGB in ``[0, 1]`` until the scene composes and quantises a frame.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .synthetic_config import DomainStyle

# ------------------------------------------------------------------------------------------------
# Small random helpers
# ------------------------------------------------------------------------------------------------


def _color(
    rng: np.random.Generator, style: DomainStyle, sat: tuple[float, float], val: tuple[float, float]
) -> np.ndarray:
    """One RGB colour in [0, 1] drawn from the domain's hue intervals."""
    lengths = np.array([hi - lo for lo, hi in style.hues])
    k = rng.choice(len(style.hues), p=lengths / lengths.sum())
    hue = rng.uniform(*style.hues[k]) % 360.0
    rgb = colorsys.hsv_to_rgb(hue / 360.0, rng.uniform(*sat), rng.uniform(*val))
    return np.array(rgb, dtype=np.float32)


def _jitter_color(rng: np.random.Generator, c: np.ndarray, amount: float) -> np.ndarray:
    """Shift a colour's hue, saturation and value by up to ``amount`` (0..1) of a large step."""
    h, s, v = colorsys.rgb_to_hsv(*(float(x) for x in c))
    h = (h + rng.uniform(-1, 1) * amount * 40.0 / 360.0) % 1.0
    s = float(np.clip(s + rng.uniform(-1, 1) * amount * 0.3, 0.0, 1.0))
    v = float(np.clip(v + rng.uniform(-1, 1) * amount * 0.3, 0.05, 1.0))
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _smooth(rng: np.random.Generator, n: int, lo: float = 12.0, hi: float = 80.0) -> np.ndarray:
    """A smooth random signal in [-1, 1] of length ``n``: a sum of three random sinusoids.

    Sinusoids instead of a random walk keep every trajectory bounded and cost nothing to evaluate.
    """
    t = np.arange(n, dtype=np.float64)
    periods = rng.uniform(lo, hi, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    amps = rng.uniform(0.3, 1.0, 3)
    s = (amps[:, None] * np.sin(2 * np.pi * t[None] / periods[:, None] + phases[:, None])).sum(0)
    return s / amps.sum()


def _value_noise(rng: np.random.Generator, h: int, w: int, cells: float, octaves: int = 3) -> np.ndarray:
    """Multi-octave value noise in [0, 1], shape ``(h, w)``: bicubic upsampling of random grids."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        c = cells * (2**o)
        gh, gw = max(2, int(round(c * h / max(h, w))) + 1), max(2, int(round(c * w / max(h, w))) + 1)
        grid = rng.random((gh, gw), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _colorize(t: np.ndarray, colors: list[np.ndarray]) -> np.ndarray:
    """Map a scalar field in [0, 1] to RGB by piecewise-linear interpolation between ``colors``."""
    xs = np.linspace(0.0, 1.0, len(colors))
    flat = t.reshape(-1)
    chans = [np.interp(flat, xs, [float(c[i]) for c in colors]).astype(np.float32) for i in range(3)]
    return np.stack(chans, -1).reshape(*t.shape, 3)


def _sharpen(t: np.ndarray, k: float) -> np.ndarray:
    """Push a [0, 1] field towards two tones (k > 1) while keeping anti-aliased transitions."""
    return np.clip((t - 0.5) * k + 0.5, 0.0, 1.0)


def _coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] (u along x, v along y)."""
    u = (np.arange(w, dtype=np.float32) + 0.5) / w * 2 - 1
    v = (np.arange(h, dtype=np.float32) + 0.5) / h * 2 - 1
    return np.meshgrid(u, v)


def _line_kernel(dx: float, dy: float) -> np.ndarray | None:
    """Normalised linear motion-blur kernel for a displacement ``(dx, dy)``, or None if < 2 px."""
    length = math.hypot(dx, dy)
    if length < 2.0:
        return None
    k = int(math.ceil(length)) | 1  # odd size keeps the blur centred
    ker = np.zeros((k, k), np.float32)
    c = k // 2
    ex, ey = dx / length * (length / 2), dy / length * (length / 2)
    cv2.line(ker, (int(round(c - ex)), int(round(c - ey))), (int(round(c + ex)), int(round(c + ey))), 1.0, 1)
    return ker / ker.sum()


# ------------------------------------------------------------------------------------------------
# Textures
# ------------------------------------------------------------------------------------------------


def _bg_value_noise(rng, h, w, colors):
    return _colorize(_value_noise(rng, h, w, rng.uniform(3, 6)), colors)


def _bg_gradient(rng, h, w, colors):
    u, v = _coords(h, w)
    a = rng.uniform(0, 2 * np.pi)
    t = (u * math.cos(a) + v * math.sin(a)) * 0.5 + 0.5
    t = 0.7 * t + 0.3 * _value_noise(rng, h, w, rng.uniform(2, 4))
    return _colorize(np.clip(t, 0, 1), colors)


def _bg_blobs(rng, h, w, colors):
    img = np.empty((h, w, 3), np.float32)
    img[:] = colors[0]
    for _ in range(int(rng.integers(12, 30))):
        c = colors[int(rng.integers(1, len(colors)))] * rng.uniform(0.8, 1.15)
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(4, max(6, w // 6))), int(rng.integers(4, max(6, h // 6))))
        cv2.ellipse(
            img,
            center,
            axes,
            float(rng.uniform(0, 180)),
            0,
            360,
            tuple(float(x) for x in np.clip(c, 0, 1)),
            -1,
            cv2.LINE_AA,
        )
    return cv2.GaussianBlur(img, (0, 0), 1.5)


def _bg_stripes(rng, h, w, colors):
    x, y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    a = rng.uniform(0, np.pi)
    period = rng.uniform(6, 18)
    warp = 6.0 * _value_noise(rng, h, w, 2.0, octaves=1)
    t = 0.5 + 0.5 * np.sin(2 * np.pi * (x * math.cos(a) + y * math.sin(a) + warp) / period)
    return _colorize(_sharpen(t, 2.0), colors)


def _bg_tiles(rng, h, w, colors):
    tile = int(rng.integers(8, 22))
    gh, gw = h // tile + 2, w // tile + 2
    levels = rng.random((gh, gw), dtype=np.float32)
    t = cv2.resize(levels, (gw * tile, gh * tile), interpolation=cv2.INTER_NEAREST)
    oy, ox = int(rng.integers(0, tile)), int(rng.integers(0, tile))
    img = _colorize(t[oy : oy + h, ox : ox + w], colors)
    # Dark grout lines make the grid read as tiles rather than noise.
    img[(np.arange(h) + oy) % tile == 0] *= 0.55
    img[:, (np.arange(w) + ox) % tile == 0] *= 0.55
    return img


def _bg_ridges(rng, h, w, colors):
    n = _value_noise(rng, h, w, rng.uniform(3, 6))
    t = 1.0 - np.abs(np.sin(n * rng.uniform(6, 12)))
    return _colorize(t**2, colors)


_BACKGROUNDS = {
    "value_noise": _bg_value_noise,
    "gradient": _bg_gradient,
    "blobs": _bg_blobs,
    "stripes": _bg_stripes,
    "tiles": _bg_tiles,
    "ridges": _bg_ridges,
}


def _pattern(kind: str, rng: np.random.Generator, h: int, w: int, colors: list[np.ndarray]) -> np.ndarray:
    """An object's surface pattern, RGB float32 ``(h, w, 3)``."""
    u, v = _coords(h, w)
    a = rng.uniform(0, np.pi)
    if kind == "stripes":
        t = 0.5 + 0.5 * np.sin(np.pi * rng.uniform(2.0, 4.0) * (u * math.cos(a) + v * math.sin(a)))
        t = _sharpen(t, 3.0)
    elif kind == "gradient":
        t = np.clip((u * math.cos(a) + v * math.sin(a)) * 0.5 + 0.5, 0, 1)
        cx, cy = rng.uniform(-0.5, 0.5, 2)
        t = np.clip(t + 0.8 * np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / 0.12), 0, 1)
    elif kind == "rings":
        r = np.sqrt(u**2 + v**2)
        t = _sharpen(0.5 + 0.5 * np.cos(2 * np.pi * rng.uniform(1.5, 3.0) * r + rng.uniform(0, 2 * np.pi)), 3.0)
    elif kind == "checker":
        n = rng.uniform(1.5, 2.5)
        ru, rv = u * math.cos(a) - v * math.sin(a), u * math.sin(a) + v * math.cos(a)
        t = _sharpen(0.5 + 0.5 * np.sin(np.pi * n * ru) * np.sin(np.pi * n * rv) * 4, 1.0)
    elif kind == "dots":
        n = rng.uniform(2.0, 3.5)
        du = (u + 1) * n % 1.0 - 0.5
        dv = (v + 1) * n % 1.0 - 0.5
        t = _sharpen(1.0 - np.sqrt(du**2 + dv**2) / rng.uniform(0.25, 0.4), 4.0)
    elif kind == "noise":
        t = _sharpen(_value_noise(rng, h, w, 3.0, octaves=2), 2.5)
    else:
        raise ValueError(f"unknown pattern {kind!r}")
    return _colorize(t.astype(np.float32), colors)


def _shape_mask(kind: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Anti-aliased silhouette of ``kind`` filling a ``(h, w)`` canvas, float32 in [0, 1]."""
    img = np.zeros((h, w), np.uint8)
    sub = 4  # cv2 fixed-point shift: vertices at 1/16 px keeps small shapes smooth
    cx, cy, rx, ry = w / 2, h / 2, w / 2 - 1, h / 2 - 1

    def poly(angles: np.ndarray, radii: np.ndarray) -> None:
        pts = np.stack([cx + rx * radii * np.cos(angles), cy + ry * radii * np.sin(angles)], -1)
        cv2.fillPoly(img, [np.round(pts * (1 << sub)).astype(np.int32)], 255, cv2.LINE_AA, sub)

    if kind == "ellipse":
        cv2.ellipse(img, ((cx, cy), (2 * rx, 2 * ry), 0.0), 255, -1, cv2.LINE_AA)
    elif kind == "rectangle":
        c = rng.uniform(0.15, 0.35)  # chamfered corners: a rectangle that still shows rotation
        xs = np.array([-1 + c, 1 - c, 1, 1, 1 - c, -1 + c, -1, -1])
        ys = np.array([-1, -1, -1 + c, 1 - c, 1, 1, 1 - c, -1 + c])
        poly(np.arctan2(ys, xs), np.hypot(xs, ys) / np.hypot(xs, ys).max())
    elif kind == "polygon":
        n = int(rng.integers(5, 8))
        ang = np.sort(rng.uniform(0, 2 * np.pi / n, n) * 0.6 + np.arange(n) * 2 * np.pi / n)
        poly(ang, rng.uniform(0.8, 1.0, n))
    elif kind == "star":
        n = int(rng.integers(4, 7))
        ang = np.arange(2 * n) * np.pi / n + rng.uniform(0, np.pi)
        poly(ang, np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.45, 0.6)))
    elif kind == "triangle":
        ang = np.array([0.0, 2.1, 4.2]) + rng.uniform(-0.2, 0.2, 3) + rng.uniform(0, 2 * np.pi)
        poly(ang, np.ones(3))
    else:
        raise ValueError(f"unknown shape {kind!r}")
    return img.astype(np.float32) / 255.0


# ------------------------------------------------------------------------------------------------
# Objects and their motion
# ------------------------------------------------------------------------------------------------


@dataclass
class _ObjectSpec:
    """What an object looks like, independent of its size (distractors copy and perturb this)."""

    shape: str
    pattern: str
    colors: list[np.ndarray]
    shape_seed: int
    pattern_seed: int


def _random_spec(rng: np.random.Generator, style: DomainStyle) -> _ObjectSpec:
    colors = [_color(rng, style, style.obj_saturation, (0.35, 1.0)) for _ in range(2)]
    colors[1] = colors[1] * 0.5  # a dark second tone: patterns stay visible on any background
    return _ObjectSpec(
        shape=str(rng.choice(style.shapes)),
        pattern=str(rng.choice(style.patterns)),
        colors=colors,
        shape_seed=int(rng.integers(2**31)),
        pattern_seed=int(rng.integers(2**31)),
    )


def _distractor_spec(
    rng: np.random.Generator, target: _ObjectSpec, style: DomainStyle, similarity: float
) -> _ObjectSpec:
    other = _random_spec(rng, style)
    keep = lambda: rng.random() < similarity  # noqa: E731 - one draw per attribute
    return _ObjectSpec(
        shape=target.shape if keep() else other.shape,
        pattern=target.pattern if keep() else other.pattern,
        colors=[_jitter_color(rng, c, 1.0 - similarity + 0.1) for c in target.colors] if keep() else other.colors,
        shape_seed=target.shape_seed if keep() else other.shape_seed,
        pattern_seed=target.pattern_seed if keep() else other.pattern_seed,
    )


def _sprite(spec: _ObjectSpec, size: int) -> np.ndarray:
    """Premultiplied RGBA sprite ``(size, size, 4)`` of an object; aspect is applied when warping."""
    alpha = _shape_mask(spec.shape, np.random.default_rng(spec.shape_seed), size, size)
    rgb = _pattern(spec.pattern, np.random.default_rng(spec.pattern_seed), size, size, spec.colors)
    # A dark rim (alpha minus its erosion) gives every object a readable outline.
    rim = alpha - cv2.erode(alpha, np.ones((3, 3), np.uint8))
    rgb = rgb * (1.0 - 0.6 * rim[..., None])
    return np.concatenate([rgb * alpha[..., None], alpha[..., None]], -1).astype(np.float32)
