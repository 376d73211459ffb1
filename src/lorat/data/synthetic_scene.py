"""Motion and composition of one synthetic sequence: trajectories, occluders, the scene and its labels.

Part of :mod:`lorat.data.synthetic`. :class:`_Scene` precomputes everything drawn in one sequence;
``render(t)`` composes frame ``t`` and returns its labels (visible box, absence, cover, cut by image).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .synthetic_config import DomainStyle, SyntheticConfig
from .synthetic_render import (
    _BACKGROUNDS,
    _color,
    _colorize,
    _coords,
    _distractor_spec,
    _line_kernel,
    _ObjectSpec,
    _random_spec,
    _smooth,
    _sprite,
    _value_noise,
)

_FPS = 10  # GOT-10k is annotated at 10 Hz; only used for meta_info begin/end.
# A pixel belongs to the visible target when the target contributes more than this share of its
# colour. Low, so that no pixel the target visibly changes lies outside its box (with 0.5 the
# anti-aliased rim could stick out of the box where it meets an occluder edge at an angle).
_MASK_ALPHA = 0.05


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
