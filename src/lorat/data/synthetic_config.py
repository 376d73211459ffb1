"""Settings of the procedural benchmark: the two visual domains and :class:`SyntheticConfig`.

Part of :mod:`lorat.data.synthetic` (import the public names from there).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DOMAINS", "DomainStyle", "SyntheticConfig"]

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
