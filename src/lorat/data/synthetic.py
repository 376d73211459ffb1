"""Procedural tracking sequences written in the GOT-10k on-disk layout.

``lorat demo`` needs a benchmark that exists on a laptop with no downloads: this module draws one.
Each sequence is a textured background seen by a slowly panning camera, one target object (a
textured shape with its own pattern) that moves, bounces, turns, and changes scale and aspect,
similar-looking distractors that pass behind it, occluders (poles, blobs, panels) that pass in
front of it, partial and full exits through the image border, illumination changes, motion blur
and sensor noise. Two visual *domains* ("A" and "B") use disjoint texture families, colour
palettes and object shapes, so a model can be pretrained on one and adapted to the other.

Files follow ``docs/metrics-and-formats.md`` §8.3::

    <root>/<split>/list.txt                       sequence names, one per line (written last)
    <root>/<split>/GOT-10k_Train_000001/
        00000001.jpg ...                          8-digit, 1-based
        groundtruth.txt                           "x,y,w,h" with 4 decimals (test: first row only)
        absence.label  cover.label  cut_by_image.label   one integer per line (train/val only)
        meta_info.ini                             [METAINFO] + 10 "key: value" lines

Label semantics (ours, chosen to match how GOT-10k consumers read the files):

* ground truth = the axis-aligned box of the target's *visible* pixels (in the image and not
  behind an occluder; a pixel counts when the target contributes more than 5 % of its colour, so
  the box holds every pixel the target visibly changes, anti-aliased rim included);
* ``visible ratio`` f = visible target area / whole target area (area outside the image counts as
  hidden); ``cover = ceil(8 f)`` in 1..8 for visible frames and 0 for absent ones, so pytracking's
  ``cover / 8`` reads back an upper bound of f;
* ``absence = 1`` when the target is not visible (fully occluded or fully out of frame; slivers
  of less than ``min_visible_pixels`` pixels of area count as not visible);
  those rows of ``groundtruth.txt`` hold ``-1,-1,-1,-1``, the value GOT-10k mostly uses for targets
  outside the image (got-10k/toolkit#10), and the GOT-10k toolkit drops them via ``cover == 0``;
* ``cut_by_image = 1`` when any part of the target lies outside the image (also when all of it does).

Everything is deterministic per seed (numpy ``Generator`` streams, OpenCV JPEG encoding with a fixed
quality), and generation is resumable: each sequence is written into a temporary folder and renamed
into place, finished sequences are skipped on a rerun, and ``list.txt`` is replaced atomically last.
"""

from __future__ import annotations

import colorsys
import json
import math
import multiprocessing
import os
import shutil
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "DOMAINS",
    "DomainStyle",
    "SyntheticConfig",
    "generate_sequence",
    "make_synthetic_benchmark",
    "sequence_names",
    "write_got10k_split",
]

# Bump when a change alters generated pixels or labels: it invalidates resumable folders on disk.
GENERATOR_VERSION = 1
_FINGERPRINT_FILE = "synthetic_config.json"
_TMP_PREFIX = ".tmp-"
_SPLIT_PREFIX = {"train": "GOT-10k_Train_", "val": "GOT-10k_Val_", "test": "GOT-10k_Test_"}
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_FPS = 10  # GOT-10k is annotated at 10 Hz; only used for meta_info begin/end.
# A pixel belongs to the visible target when the target contributes more than this share of its
# colour. Low, so that no pixel the target visibly changes lies outside its box (with 0.5 the
# anti-aliased rim could stick out of the box where it meets an occluder edge at an angle).
_MASK_ALPHA = 0.05


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainStyle:
    """The visual vocabulary of one domain.

    Args:
        name: domain key in :data:`DOMAINS`.
        hues: hue intervals in degrees (wrapping at 360) that every colour is drawn from.
        backgrounds: background texture families (see ``_BACKGROUNDS``).
        shapes: target/distractor silhouettes (see ``_shape_mask``).
        patterns: surface patterns painted on objects (see ``_pattern``).
        occluders: occluder kinds (``bar``, ``blob``, ``panel``).
        bg_saturation: saturation range of background colours.
        obj_saturation: saturation range of object colours (higher than the background so a target
            stands out without being trivially the only coloured thing: distractors share it).
    """

    name: str
    hues: tuple[tuple[float, float], ...]
    backgrounds: tuple[str, ...]
    shapes: tuple[str, ...]
    patterns: tuple[str, ...]
    occluders: tuple[str, ...]
    bg_saturation: tuple[float, float] = (0.15, 0.55)
    obj_saturation: tuple[float, float] = (0.55, 1.0)


#: Registered domains. "A" is warm and organic (noise, gradients, blobs; ellipses and rectangles);
#: "B" is cool and geometric (stripes, tiles, ridges; polygons, stars and triangles). They share no
#: texture family, object shape, surface pattern or hue.
DOMAINS: dict[str, DomainStyle] = {
    "A": DomainStyle(
        name="A",
        hues=((345.0, 360.0), (0.0, 55.0)),
        backgrounds=("value_noise", "gradient", "blobs"),
        shapes=("ellipse", "rectangle"),
        patterns=("stripes", "gradient", "rings"),
        occluders=("bar", "blob"),
    ),
    "B": DomainStyle(
        name="B",
        hues=((160.0, 285.0),),
        backgrounds=("stripes", "tiles", "ridges"),
        shapes=("polygon", "star", "triangle"),
        patterns=("checker", "dots", "noise"),
        occluders=("panel", "bar"),
    ),
}


@dataclass
class SyntheticConfig:
    """Settings of the procedural benchmark.

    Sizes and speeds given as fractions are relative to ``min(W, H)`` so a config keeps its
    difficulty when the image size changes.

    Args:
        image_size: ``(W, H)`` of every frame.
        frames_per_sequence: frames written per sequence by :func:`write_got10k_split`.
        num_train, num_val, num_test: default sequence counts for :func:`make_synthetic_benchmark`.
        domain: key of :data:`DOMAINS`.
        seed: root seed of :func:`make_synthetic_benchmark` (each split and sequence derives its own).
        target_size: range of the target's initial size ``sqrt(w h)``.
        max_target_size: cap on the target size over the sequence.
        speed: range of the target's mean speed per frame.
        turn: heading change per frame (radians, amplitude of a smooth random signal).
        scale_change: amplitude of the smooth log-scale variation over a sequence.
        aspect_change: amplitude of the smooth log-aspect variation over a sequence.
        rotation_speed: amplitude of the angular velocity (degrees per frame).
        num_distractors: inclusive range of similar-looking objects per sequence.
        distractor_similarity: 0 = any object of the domain, 1 = the target's twin.
        occlusion_rate: expected occlusion events per 100 frames.
        full_occlusion_prob: fraction of occlusion events whose occluder can hide the whole target.
        max_cut: fraction of the target's extent that may leave the image in ordinary sequences.
        exit_prob: probability that a sequence lets the target leave the image completely.
        min_visible_pixels: a visible target area (in pixels) below this counts as absent (an
            annotator would not box a sliver of a few pixels either).
        camera_pan: background panning range.
        illumination: amplitude of the global brightness change (plus a moving light gradient).
        motion_blur: exposure as a fraction of a frame interval: object blur length = speed * this.
        blur_prob: per-frame probability of a camera-shake blur of the whole frame.
        noise_sigma: standard deviation of the Gaussian sensor noise, in 8-bit levels.
        jpeg_quality: OpenCV JPEG quality of the written frames.
    """

    image_size: tuple[int, int] = (160, 120)
    frames_per_sequence: int = 60
    num_train: int = 60
    num_val: int = 20
    num_test: int = 0
    domain: str = "A"
    seed: int = 0
    target_size: tuple[float, float] = (0.16, 0.30)
    max_target_size: float = 0.45
    speed: tuple[float, float] = (0.015, 0.04)
    turn: float = 0.08
    scale_change: float = 0.3
    aspect_change: float = 0.2
    rotation_speed: float = 3.0
    num_distractors: tuple[int, int] = (0, 2)
    distractor_similarity: float = 0.6
    occlusion_rate: float = 1.2
    full_occlusion_prob: float = 0.4
    max_cut: float = 0.35
    exit_prob: float = 0.2
    min_visible_pixels: int = 4
    camera_pan: float = 0.1
    illumination: float = 0.25
    motion_blur: float = 0.6
    blur_prob: float = 0.05
    noise_sigma: float = 3.0
    jpeg_quality: int = 90

    def style(self) -> DomainStyle:
        """The :class:`DomainStyle` of ``self.domain`` (case-insensitive)."""
        key = self.domain.upper() if self.domain.upper() in DOMAINS else self.domain
        if key not in DOMAINS:
            raise ValueError(f"unknown synthetic domain {self.domain!r}; known: {sorted(DOMAINS)}")
        return DOMAINS[key]


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


@dataclass
class _Track:
    """Per-frame pose of a sprite: centre, rotation (deg), scale factors along the sprite axes."""

    sprite: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    angle: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    blur: bool = True
    hard: bool = False  # nearest-neighbour warping keeps a binary alpha binary (occluders)

    def matrix(self, t: int) -> np.ndarray:
        """2x3 affine map from sprite pixels to image pixels at frame ``t``."""
        h, w = self.sprite.shape[:2]
        a = math.radians(float(self.angle[t]))
        ca, sa = math.cos(a), math.sin(a)
        lin = np.array([[ca * self.sx[t], -sa * self.sy[t]], [sa * self.sx[t], ca * self.sy[t]]])
        off = np.array([self.cx[t], self.cy[t]]) - lin @ np.array([w / 2, h / 2])
        return np.concatenate([lin, off[:, None]], 1)

    def bounds(self, t: int) -> tuple[float, float, float, float]:
        """Axis-aligned bounds ``(x0, y0, x1, y1)`` of the transformed sprite canvas."""
        h, w = self.sprite.shape[:2]
        m = self.matrix(t)
        corners = m[:, :2] @ np.array([[0, w, w, 0], [0, 0, h, h]], float) + m[:, 2:]
        return corners[0].min(), corners[1].min(), corners[0].max(), corners[1].max()


def _bounce_path(
    rng: np.random.Generator,
    n: int,
    start: tuple[float, float],
    speed: float,
    turn: float,
    box: tuple[float, float, float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Centre trajectory with a smoothly varying heading and speed, reflected off ``box``."""
    x_lo, y_lo, x_hi, y_hi = box
    heading = rng.uniform(0, 2 * np.pi)
    spd = speed * (1.0 + 0.4 * _smooth(rng, n))
    dturn = turn * _smooth(rng, n, 8.0, 40.0)
    xs, ys = np.empty(n), np.empty(n)
    x, y = start
    for t in range(n):
        xs[t], ys[t] = x, y
        x += spd[t] * math.cos(heading)
        y += spd[t] * math.sin(heading)
        if x < x_lo or x > x_hi:
            x = 2 * (x_lo if x < x_lo else x_hi) - x
            heading = math.pi - heading
        if y < y_lo or y > y_hi:
            y = 2 * (y_lo if y < y_lo else y_hi) - y
            heading = -heading
        x, y = min(max(x, x_lo), x_hi), min(max(y, y_lo), y_hi)
        heading += dturn[t]
    return xs, ys


def _object_track(
    rng: np.random.Generator, cfg: SyntheticConfig, spec: _ObjectSpec, n: int, size0: float, start, region
) -> _Track:
    """A moving, turning, scaling object; ``region`` bounds the centre (beyond the image for exits)."""
    base = min(cfg.image_size)
    size = size0 * np.exp(cfg.scale_change * _smooth(rng, n))
    size = size * (size0 / size[0])  # exact initial size: frame 0 is the template
    size = np.clip(size, 6.0, cfg.max_target_size * base)
    aspect = math.exp(rng.uniform(-0.45, 0.45)) * np.exp(cfg.aspect_change * _smooth(rng, n))
    omega = cfg.rotation_speed * _smooth(rng, n, 10.0, 60.0)
    angle = rng.uniform(-25, 25) + np.concatenate([[0.0], np.cumsum(omega[:-1])])
    sprite_px = int(math.ceil(float((size * np.sqrt(np.maximum(aspect, 1 / aspect))).max()))) + 2
    sprite = _sprite(spec, sprite_px)
    speed = rng.uniform(*cfg.speed) * base
    cx, cy = _bounce_path(rng, n, start, speed, cfg.turn, region)
    sx = size * np.sqrt(aspect) / sprite_px
    sy = size / np.sqrt(aspect) / sprite_px
    return _Track(sprite, cx, cy, angle, sx, sy)


def _occluder_sprite(
    kind: str, rng: np.random.Generator, style: DomainStyle, extent: float, full: bool, diag: float
) -> np.ndarray:
    """Premultiplied RGBA occluder sprite. ``extent`` = target extent it is sized against."""
    ratio = rng.uniform(1.5, 2.1) if full else rng.uniform(0.3, 0.7)
    colors = [_color(rng, style, (0.1, 0.6), (0.2, 0.8)) for _ in range(3)]
    if kind == "bar":  # a pole spanning the image: covers the target's width only
        w, h = max(3, int(round(extent * ratio))), int(diag * 1.2)
        alpha = np.ones((h, w), np.float32)
        t = _value_noise(rng, h, w, 8.0, 2) * 0.5 + np.linspace(0.2, 0.7, w, dtype=np.float32)[None]
        rgb = _colorize(np.clip(t, 0, 1), colors)
    else:
        s = max(4, int(round(extent * ratio * (1.25 if kind == "blob" else 1.1))))
        if kind == "blob":  # irregular round silhouette: the ellipse's inscribed area must still cover
            alpha = np.zeros((s, s), np.uint8)
            n = 24
            ang = np.arange(n) * 2 * np.pi / n
            r = (s / 2 - 1) * (0.85 + 0.15 * np.cos(ang * 3 + rng.uniform(0, 6)))
            pts = np.stack([s / 2 + r * np.cos(ang), s / 2 + r * np.sin(ang)], -1)
            cv2.fillPoly(alpha, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
            alpha = alpha.astype(np.float32) / 255
            rgb = _colorize(_value_noise(rng, s, s, 3.0), colors)
        else:  # panel: a framed sign
            alpha = np.ones((s, s), np.float32)
            rgb = _colorize(_value_noise(rng, s, s, 2.0, 1) * 0.6 + 0.2, colors)
            b = max(1, s // 10)
            rgb[:b], rgb[-b:], rgb[:, :b], rgb[:, -b:] = 0.15, 0.15, 0.15, 0.15
    # Occluders are opaque with hard edges (and are warped with nearest-neighbour sampling): a
    # half-transparent rim would let the target "peek through" along a 1-px line and stretch its box.
    alpha = (alpha > 0.5).astype(np.float32)
    return np.concatenate([rgb * alpha[..., None], alpha[..., None]], -1).astype(np.float32)


def _overlap(a, b, margin: float) -> bool:
    return a[0] - margin < b[2] and b[0] - margin < a[2] and a[1] - margin < b[3] and b[1] - margin < a[3]


# ------------------------------------------------------------------------------------------------
# The scene and its renderer
# ------------------------------------------------------------------------------------------------


def _seed_streams(seed: int, domain: str, n: int) -> list[np.random.Generator]:
    """Independent random streams of one sequence.

    The domain is mixed in so domains A and B never share trajectories for the same seed, and each
    scene part has its own stream so that, e.g., hiding the target (tests) or adding a distractor
    leaves every other random draw unchanged.
    """
    ss = np.random.SeedSequence([int(seed) & (2**63 - 1), zlib.crc32(domain.encode())])
    return [np.random.default_rng(s) for s in ss.spawn(n)]


class _Scene:
    """Everything drawn in one sequence, precomputed so that rendering a frame is cheap."""

    def __init__(self, cfg: SyntheticConfig, seed: int, length: int):
        if length < 1:
            raise ValueError("length must be >= 1")
        W, H = cfg.image_size
        base = float(min(W, H))
        style = cfg.style()
        r_bg, r_tgt, r_dis, r_occ, r_photo, r_noise = _seed_streams(seed, style.name, 6)
        self.cfg, self.n, self.W, self.H = cfg, length, W, H

        # Background larger than the image; the camera pans over it with integer offsets.
        self.pan = int(round(cfg.camera_pan * base))
        bh, bw = H + 2 * self.pan, W + 2 * self.pan
        colors = [_color(r_bg, style, style.bg_saturation, (0.25, 0.9)) for _ in range(3)]
        kind = str(r_bg.choice(style.backgrounds))
        bg = _BACKGROUNDS[kind](r_bg, bh, bw, colors)
        bg = bg * (0.9 + 0.2 * _value_noise(r_bg, bh, bw, 20.0, 1))[..., None]  # fine grain
        self.background = np.clip(bg, 0, 1).astype(np.float32)
        self.bg_kind = kind
        self.cam_x = np.round(self.pan * (1 + _smooth(r_bg, length))).astype(int)
        self.cam_y = np.round(self.pan * (1 + _smooth(r_bg, length))).astype(int)

        # Target: starts fully inside; may cut the border by max_cut or, in exit sequences, leave.
        self.spec = _random_spec(r_tgt, style)
        size0 = r_tgt.uniform(*cfg.target_size) * base
        self.exits = bool(r_tgt.random() < cfg.exit_prob)
        half = size0 / 2
        # Centre bounds: ordinary sequences let at most max_cut of the extent leave the image; exit
        # sequences reach 1.8 half-sizes beyond the border, i.e. the target is fully out for a while.
        m = -1.8 * half if self.exits else half * (1.0 - 2.0 * cfg.max_cut)
        region = (m, m, W - m, H - m)
        region = (min(region[0], W / 2), min(region[1], H / 2), max(region[2], W / 2), max(region[3], H / 2))
        start = (r_tgt.uniform(0.3, 0.7) * W, r_tgt.uniform(0.3, 0.7) * H)
        self.target = _object_track(r_tgt, cfg, self.spec, length, size0, start, region)
        # Frame 0 is the template and must show the whole target: pull it inside if needed.
        x0, y0, x1, y1 = self.target.bounds(0)
        dx = max(0.0, 2 - x0) - max(0.0, x1 - (W - 2))
        dy = max(0.0, 2 - y0) - max(0.0, y1 - (H - 2))
        self.target.cx = self.target.cx + dx
        self.target.cy = self.target.cy + dy

        # Distractors: similar objects that wander anywhere and pass *behind* the target.
        self.distractors: list[_Track] = []
        lo, hi = cfg.num_distractors
        for _ in range(int(r_dis.integers(lo, hi + 1)) if hi >= lo else 0):
            spec = _distractor_spec(r_dis, self.spec, style, cfg.distractor_similarity)
            s = size0 * r_dis.uniform(0.75, 1.3)
            st = (r_dis.uniform(0, W), r_dis.uniform(0, H))
            self.distractors.append(
                _object_track(r_dis, cfg, spec, length, s, st, (-s / 2, -s / 2, W + s / 2, H + s / 2))
            )

        # Occluders, in front of everything: placed where the target will be at a chosen time so
        # that occlusion events actually happen; dropped if they would touch the first frame's target.
        self.occluders: list[_Track] = []
        diag = math.hypot(W, H)
        n_events = int(r_occ.poisson(cfg.occlusion_rate * length / 100.0)) if length > 10 else 0
        tb0 = self.target.bounds(0)
        for _ in range(n_events):
            tc = int(r_occ.integers(max(5, length // 6), length))
            b = self.target.bounds(tc)
            extent = max(b[2] - b[0], b[3] - b[1])
            full = bool(r_occ.random() < cfg.full_occlusion_prob)
            kind = str(r_occ.choice(style.occluders))
            spr = _occluder_sprite(kind, r_occ, style, extent, full, diag)
            vx, vy = r_occ.normal(0, 0.02 * base, 2) * (0.3 if full else 1.0)
            ts = np.arange(length) - tc
            ang = r_occ.uniform(-20, 20) + (90.0 if kind == "bar" and r_occ.random() < 0.3 else 0.0)
            ones = np.ones(length)
            occ = _Track(
                spr,
                self.target.cx[tc] + vx * ts,
                self.target.cy[tc] + vy * ts,
                ang * ones,
                ones,
                ones,
                blur=False,
                hard=True,
            )
            if not _overlap(occ.bounds(0), tb0, margin=3.0):
                self.occluders.append(occ)

        # Photometric changes: global gain, a rotating light gradient, colour cast, shake blur.
        a = cfg.illumination
        self.gain = 1.0 + a * _smooth(r_photo, length, 15.0, 60.0)
        self.grad_amp = 0.5 * a * (0.5 + 0.5 * _smooth(r_photo, length))
        self.grad_dir = r_photo.uniform(0, 2 * np.pi) + np.cumsum(np.full(length, r_photo.uniform(-0.05, 0.05)))
        self.cast = 1.0 + 0.3 * a * r_photo.uniform(-1, 1, 3).astype(np.float32)
        shake = r_photo.random(length) < cfg.blur_prob
        shake[0] = False  # keep the template frame sharp
        lens = r_photo.uniform(3, 7, length)
        dirs = r_photo.uniform(0, np.pi, length)
        self.shake = [
            (_line_kernel(n * math.cos(d), n * math.sin(d)) if s else None)
            for s, n, d in zip(shake, lens, dirs, strict=True)
        ]
        u, v = _coords(H, W)
        self.u, self.v = u, v
        self.r_noise = r_noise

    # -- rendering ---------------------------------------------------------------------------

    def _warp(self, tr: _Track, t: int, clip: bool) -> tuple[int, int, np.ndarray] | None:
        """Warp a track's sprite at frame ``t`` into a local canvas; returns ``(x0, y0, rgba)``.

        With ``clip`` the canvas is cut to the image (cheap for huge occluders); without it the
        whole object is kept so its full area can be measured even when it is outside the image.
        """
        m = tr.matrix(t)
        bx0, by0, bx1, by1 = tr.bounds(t)
        ker = None
        if tr.blur and t > 0 and self.cfg.motion_blur > 0:
            ker = _line_kernel(
                (tr.cx[t] - tr.cx[t - 1]) * self.cfg.motion_blur, (tr.cy[t] - tr.cy[t - 1]) * self.cfg.motion_blur
            )
        pad = 2 + (ker.shape[0] // 2 if ker is not None else 0)
        x0, y0 = int(math.floor(bx0)) - pad, int(math.floor(by0)) - pad
        x1, y1 = int(math.ceil(bx1)) + pad, int(math.ceil(by1)) + pad
        if clip:
            x0, y0, x1, y1 = max(x0, -pad), max(y0, -pad), min(x1, self.W + pad), min(y1, self.H + pad)
        if x1 <= x0 or y1 <= y0:
            return None
        m = m.copy()
        m[:, 2] -= (x0, y0)
        interp = cv2.INTER_NEAREST if tr.hard else cv2.INTER_LINEAR
        out = cv2.warpAffine(
            tr.sprite, m, (x1 - x0, y1 - y0), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        if ker is not None:  # object motion blur on premultiplied RGBA keeps edges consistent
            out = cv2.filter2D(out, -1, ker, borderType=cv2.BORDER_CONSTANT)
        return x0, y0, out

    def _paste(self, frame: np.ndarray, x0: int, y0: int, rgba: np.ndarray) -> tuple[slice, slice, np.ndarray] | None:
        """Composite premultiplied ``rgba`` at ``(x0, y0)``; returns the image region and its alpha."""
        h, w = rgba.shape[:2]
        fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, self.W), min(y0 + h, self.H)
        if fx1 <= fx0 or fy1 <= fy0:
            return None
        local = rgba[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
        ys, xs = slice(fy0, fy1), slice(fx0, fx1)
        a = local[..., 3]
        frame[ys, xs] = frame[ys, xs] * (1.0 - a[..., None]) + local[..., :3]
        return ys, xs, a

    def render(self, t: int, hide_target: bool = False) -> tuple[np.ndarray, dict]:
        """Frame ``t`` as RGB uint8 plus the target's visibility record."""
        W, H = self.W, self.H
        frame = self.background[self.cam_y[t] : self.cam_y[t] + H, self.cam_x[t] : self.cam_x[t] + W].copy()
        for d in self.distractors:
            w = self._warp(d, t, clip=True)
            if w is not None:
                self._paste(frame, *w)

        tw = self._warp(self.target, t, clip=False)
        x0, y0, rgba = tw
        full_area = float(rgba[..., 3].sum())
        placed = self._paste(frame, x0, y0, np.zeros_like(rgba) if hide_target else rgba)

        # Transmittance of everything in front of the target: product of (1 - occluder alpha).
        trans = np.ones((H, W), np.float32)
        for o in self.occluders:
            w = self._warp(o, t, clip=True)
            if w is not None:
                p = self._paste(frame, *w)
                if p is not None:
                    trans[p[0], p[1]] *= 1.0 - p[2]

        vis_mask = np.zeros((H, W), bool)
        in_frame, visible = 0.0, 0.0
        if placed is not None:
            ys, xs, _ = placed
            a = rgba[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0, 3]
            a_vis = a * trans[ys, xs]
            in_frame, visible = float(a.sum()), float(a_vis.sum())
            vis_mask[ys, xs] = a_vis > _MASK_ALPHA

        # Photometry after composition: it changes how everything looks, never where it is.
        ang = self.grad_dir[t]
        light = self.gain[t] * (1.0 + self.grad_amp[t] * (self.u * math.cos(ang) + self.v * math.sin(ang)))
        frame *= light[..., None] * self.cast
        if self.shake[t] is not None:
            frame = cv2.filter2D(frame, -1, self.shake[t], borderType=cv2.BORDER_REFLECT)
        if self.cfg.noise_sigma > 0:
            frame += self.r_noise.standard_normal((H, W, 3), dtype=np.float32) * (self.cfg.noise_sigma / 255.0)
        img = np.clip(frame * 255.0 + 0.5, 0, 255).astype(np.uint8)

        rows, cols = np.nonzero(vis_mask.any(1))[0], np.nonzero(vis_mask.any(0))[0]
        present = visible >= max(self.cfg.min_visible_pixels, 1e-3) and bool(vis_mask.any())
        if not present:
            vis_mask[:] = False
        if present:
            box = (float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1))
        else:
            box = (-1.0, -1.0, -1.0, -1.0)
        f = min(1.0, visible / full_area) if present and full_area > 0 else 0.0
        bx0, by0, bx1, by1 = self.target.bounds(t)
        info = {
            "box": box,
            "absence": 0 if present else 1,
            "cover": int(min(8, max(1, math.ceil(8.0 * f - 1e-9)))) if present else 0,
            "cut_by_image": int(in_frame < full_area * (1.0 - 1e-6)),
            "visible_ratio": f,
            "in_frame_ratio": in_frame / full_area if full_area > 0 else 0.0,
            "amodal_box": (bx0, by0, bx1 - bx0, by1 - by0),
            "mask": vis_mask,
        }
        return img, info

    def meta(self, seed: int) -> dict[str, str]:
        """GOT-10k ``meta_info.ini`` fields (in file order)."""
        secs = (self.n - 1) / _FPS
        spd = float(np.hypot(np.diff(self.target.cx), np.diff(self.target.cy)).mean()) if self.n > 1 else 0.0
        return {
            "url": f"synthetic://lorat/domain-{self.cfg.style().name}/seed-{int(seed)}",
            "begin": "00:00:00",
            "end": f"{int(secs // 3600):02d}:{int(secs % 3600 // 60):02d}:{int(math.ceil(secs % 60)):02d}",
            "anno_fps": f"{_FPS}Hz",
            "object_class": f"{self.spec.pattern} {self.spec.shape}",
            "motion_class": "leaving and re-entering" if self.exits else "bouncing",
            "major_class": self.spec.shape,
            "root_class": "synthetic object",
            "motion_adverb": "quickly" if spd > 0.025 * min(self.W, self.H) else "slowly",
            "resolution": f"({self.W}, {self.H})",
        }


def _frames(
    cfg: SyntheticConfig, seed: int, length: int, hide_target: bool = False
) -> Iterator[tuple[np.ndarray, dict]]:
    scene = _Scene(cfg, seed, length)
    for t in range(length):
        yield scene.render(t, hide_target)


def generate_sequence(
    cfg: SyntheticConfig, seed: int, length: int, *, return_masks: bool = False
) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Render one sequence in memory.

    Args:
        cfg: generator settings (image size, domain, difficulty).
        seed: sequence seed; the same ``(cfg, seed, length)`` gives identical output.
        length: number of frames.
        return_masks: also return the per-frame visible-target masks (tests, debugging).

    Returns:
        ``(frames, boxes, labels)``: ``frames`` is a list of RGB ``uint8`` arrays ``(H, W, 3)``;
        ``boxes`` is ``(length, 4)`` float64 ``x, y, w, h`` of the visible target (``-1`` rows where
        absent); ``labels`` holds ``absence``, ``cover``, ``cut_by_image`` (``uint8`` arrays, GOT-10k
        meaning), ``visible_ratio`` and ``in_frame_ratio`` (float arrays), ``amodal_boxes`` (whole
        target's box, unclipped, occluders ignored), ``meta`` (the ``meta_info.ini`` fields) and,
        if asked, ``masks`` (``(length, H, W)`` bool).
    """
    scene = _Scene(cfg, seed, length)
    frames, infos = [], []
    for t in range(length):
        img, info = scene.render(t)
        frames.append(img)
        infos.append(info)
    labels = _collect_labels(infos)
    labels["meta"] = scene.meta(seed)
    if return_masks:
        labels["masks"] = np.stack([i["mask"] for i in infos])
    return frames, labels.pop("boxes"), labels


def _collect_labels(infos: list[dict]) -> dict:
    return {
        "boxes": np.array([i["box"] for i in infos], np.float64).reshape(-1, 4),
        "absence": np.array([i["absence"] for i in infos], np.uint8),
        "cover": np.array([i["cover"] for i in infos], np.uint8),
        "cut_by_image": np.array([i["cut_by_image"] for i in infos], np.uint8),
        "visible_ratio": np.array([i["visible_ratio"] for i in infos], np.float64),
        "in_frame_ratio": np.array([i["in_frame_ratio"] for i in infos], np.float64),
        "amodal_boxes": np.array([i["amodal_box"] for i in infos], np.float64).reshape(-1, 4),
    }


# ------------------------------------------------------------------------------------------------
# GOT-10k writer
# ------------------------------------------------------------------------------------------------


def sequence_names(split: str, num_sequences: int) -> list[str]:
    """GOT-10k style folder names of a split, e.g. ``GOT-10k_Val_000001`` (1-based)."""
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be one of {sorted(_SPLIT_PREFIX)}, got {split!r}")
    return [f"{_SPLIT_PREFIX[split]}{i + 1:06d}" for i in range(num_sequences)]


def _sequence_seed(split_seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(split_seed) & (2**63 - 1), index]).generate_state(1, np.uint64)[0] >> 1)


def _split_seed(root_seed: int, split: str) -> int:
    return int(
        np.random.SeedSequence([int(root_seed) & (2**63 - 1), 7919, _SPLIT_CODE[split]]).generate_state(1, np.uint64)[0]
        >> 1
    )


def _fmt_box(b) -> str:
    return ",".join(f"{float(v):.4f}" for v in b)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def _write_sequence(split_dir: Path, name: str, split: str, cfg: SyntheticConfig, seed: int) -> str:
    """Render one sequence into ``.tmp-<name>`` and rename it to ``<name>`` when complete."""
    final = split_dir / name
    if final.is_dir():
        return name
    tmp = split_dir / f"{_TMP_PREFIX}{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    scene = _Scene(cfg, seed, cfg.frames_per_sequence)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)]
    infos = []
    for t in range(scene.n):
        img, info = scene.render(t)
        info.pop("mask")
        infos.append(info)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {name} frame {t + 1}")
        (tmp / f"{t + 1:08d}.jpg").write_bytes(buf.tobytes())
    lab = _collect_labels(infos)
    rows = lab["boxes"][:1] if split == "test" else lab["boxes"]  # GOT-10k test: first box only
    _write_text(tmp / "groundtruth.txt", "".join(_fmt_box(b) + "\n" for b in rows))
    if split != "test":
        for key in ("absence", "cover", "cut_by_image"):
            _write_text(tmp / f"{key}.label", "".join(f"{int(v)}\n" for v in lab[key]))
    meta = scene.meta(seed)
    _write_text(tmp / "meta_info.ini", "[METAINFO]\n" + "".join(f"{k}: {v}\n" for k, v in meta.items()))
    try:
        os.rename(tmp, final)  # atomic on one filesystem: a sequence folder is complete or absent
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # someone else finished it first
    return name


def _write_sequence_job(args: tuple) -> str:
    cv2.setNumThreads(1)  # workers are the parallelism; OpenCV threads would only oversubscribe
    return _write_sequence(*args)


def _fingerprint(split: str, cfg: SyntheticConfig, seed: int) -> dict:
    conf = asdict(cfg)
    for k in ("num_train", "num_val", "num_test", "seed"):  # counts may grow; the split seed is below
        conf.pop(k)
    return json.loads(
        json.dumps(
            {
                "generator": "lorat.data.synthetic",
                "version": GENERATOR_VERSION,
                "split": split,
                "seed": int(seed),
                "config": conf,
            }
        )
    )


def write_got10k_split(
    root: Path | str,
    split: str,
    num_sequences: int,
    cfg: SyntheticConfig,
    seed: int,
    progress: bool = True,
    workers: int = 1,
) -> list[str]:
    """Write (or finish writing) one split of a synthetic benchmark in GOT-10k layout.

    Sequences already on disk are kept, so an interrupted run resumes where it stopped; leftover
    temporary folders are removed first. ``list.txt`` is replaced atomically at the end.
    ``<root>/<split>/synthetic_config.json`` records the settings, and a rerun with different
    settings raises instead of mixing two benchmarks in one folder.

    Args:
        root: benchmark root (the folder that holds ``train/``, ``val/``, ``test/``).
        split: ``train``, ``val`` or ``test`` (test writes only the first ground-truth row and no
            label files, like the real GOT-10k test split).
        num_sequences: number of sequences, named ``GOT-10k_<Split>_000001`` onwards.
        cfg: generator settings; ``cfg.frames_per_sequence`` frames per sequence.
        seed: split seed; sequence ``i`` uses a seed derived from ``(seed, i)``.
        progress: show a tqdm progress bar.
        workers: processes rendering sequences in parallel (output does not depend on it).

    Returns:
        The sequence names, in ``list.txt`` order.
    """
    names = sequence_names(split, num_sequences)
    split_dir = Path(root) / split
    split_dir.mkdir(parents=True, exist_ok=True)
    fp_path = split_dir / _FINGERPRINT_FILE
    fp = _fingerprint(split, cfg, seed)
    if fp_path.exists():
        old = json.loads(fp_path.read_text(encoding="utf-8"))
        if old != fp:
            raise ValueError(
                f"{split_dir} holds a synthetic split generated with other settings "
                f"(see {fp_path.name}); delete the folder or choose another root"
            )
    else:
        _write_text(fp_path, json.dumps(fp, indent=2, sort_keys=True) + "\n")
    for stale in split_dir.glob(_TMP_PREFIX + "*"):  # debris of an interrupted run
        shutil.rmtree(stale, ignore_errors=True)

    jobs = [
        (split_dir, nm, split, cfg, _sequence_seed(seed, i))
        for i, nm in enumerate(names)
        if not (split_dir / nm).is_dir()
    ]
    from tqdm.auto import tqdm

    with tqdm(
        total=num_sequences,
        initial=num_sequences - len(jobs),
        disable=not progress,
        desc=f"synthetic {cfg.style().name}/{split}",
        unit="seq",
    ) as bar:
        if workers > 1 and len(jobs) > 1:
            # "spawn", not fork: forking a process whose OpenCV/OpenMP thread pools are running can
            # deadlock the children (seen under pytest with torch imported).
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
                for _ in pool.map(_write_sequence_job, jobs):
                    bar.update(1)
        else:
            for job in jobs:
                _write_sequence(*job)
                bar.update(1)

    tmp_list = split_dir / "list.txt.tmp"
    _write_text(tmp_list, "".join(nm + "\n" for nm in names))
    os.replace(tmp_list, split_dir / "list.txt")
    return names


def make_synthetic_benchmark(
    root: Path | str,
    cfg: SyntheticConfig,
    num_train: int | None = None,
    num_val: int | None = None,
    num_test: int | None = 0,
    *,
    progress: bool = True,
    workers: int = 1,
) -> Path:
    """Write ``train``/``val`` (and optionally ``test``) splits of a synthetic GOT-10k benchmark.

    Split seeds derive from ``cfg.seed`` and the split name, so the splits share no sequence.

    Args:
        root: benchmark root to create.
        cfg: generator settings.
        num_train, num_val, num_test: sequences per split; ``None`` takes ``cfg.num_*``. A split with
            0 sequences is not written.
        progress: show tqdm progress bars.
        workers: processes rendering sequences in parallel.

    Returns:
        ``root`` as a :class:`~pathlib.Path` (pass it to the GOT-10k readers).
    """
    root = Path(root)
    counts = {
        "train": cfg.num_train if num_train is None else num_train,
        "val": cfg.num_val if num_val is None else num_val,
        "test": cfg.num_test if num_test is None else num_test,
    }
    for split, count in counts.items():
        if count > 0:
            write_got10k_split(
                root, split, count, cfg, _split_seed(cfg.seed, split), progress=progress, workers=workers
            )
    return root
