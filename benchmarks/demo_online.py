"""An online, sequence-specific classifier next to the demo's LoRAT head (DiMP / ATOM-style), measured.

    PYTHONPATH=src python benchmarks/demo_online.py MODEL TEST_ROOT [TEST_ROOT ...] --alpha 0.5

The demo's LoRAT ranks the cells of its search crop almost without the target's appearance (the template
ablation in ``benchmarks/demo_tracker_variants.md``), so a look-alike beside the target takes the box over.
This tracker learns, per sequence, a ridge regression from the model's own final search-token features (the
head's input, ``(64, C)`` for the 8x8 grid) to a Gaussian label on the target's cell: on frame 0 from a search
crop around the given box, then from every confident frame (score >= ``--threshold``, a memory of the first
and the last ``--memory - 1`` such frames). Each frame its response ``r`` is fused with the head's probability,
``(1 - alpha) p + alpha clip(r, 0, 1)``, before the usual Hann penalty and argmax; the box and the confidence
stay the head's. Look-alikes inside the crop are negatives of the regression, so it learns what tells them
apart from this target. ``--hist w`` adds a colour model on the crop's pixels instead of the ViT's features
(Staple / DAT-style: 16-bin-per-channel RGB histograms of the box and of the search area around it, per-pixel
foreground likelihood box-filtered to the target's size and read at the cell centres, histograms updated at
``--hist_lr`` on confident frames), fused as ``(1 - w) fused + w colour``. ``--layers`` adds earlier blocks'
search tokens to the regression's features. ``--features hog`` replaces the ViT's tokens by hand-made ones of
the crop's pixels, on the same grid (CSRT's kind of cue): per cell a 9-bin unsigned gradient-orientation
histogram (HOG, magnitude-weighted, L2-normalised) and the cell's mean colour, each with its 3x3 neighbourhood
(zeros outside the crop); ``both`` concatenates them with the ViT's tokens.
Scored like the report's LoRAT row (bf16 or fp32 by ``auto``, the demo's ``size_lr``) on the ``val`` split of
each ``TEST_ROOT``.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

import lorat.demo as demo
from lorat import boxes as bx
from lorat.data import transforms as T
from lorat.hub import load_checkpoint
from lorat.track.decode import decode_prediction
from lorat.track.tracker import Tracker

OUT = Path("/tmp/demo_online")


class OnlineTracker(Tracker):
    """LoRAT's tracker plus a per-sequence ridge classifier on the head's input tokens (see module doc)."""

    alpha, lam, sigma, memory, threshold, hard, layers = 0.5, 0.1, 0.5, 8, 0.5, 0.0, ()
    features = "vit"  # or "hog", "both" (module doc)
    hist, hist_lr = 0.0, 0.04  # weight and learning rate of the colour model (Staple / DAT-style)

    def __init__(self, model, cfg=None) -> None:
        super().__init__(model, cfg)
        self._feat, self._inner = None, {}
        self.model.head.register_forward_pre_hook(self._keep_features)
        for i, blk in enumerate(self.model.blocks):
            blk.register_forward_hook(lambda _m, _a, out, i=i: self._inner.__setitem__(i, out))

    def _keep_features(self, _module, args) -> None:
        feats = [args[0].detach().float()]  # (B, Hx*Wx, C) normalised search tokens
        n = feats[0].shape[1]
        for i in self.layers:  # earlier blocks' search tokens, layer-normalised without affine
            t = self._inner[i][:, -n:].detach().float()
            feats.append(torch.nn.functional.layer_norm(t, t.shape[-1:]))
        self._feat = torch.cat(feats, -1)

    def _label(self, box: np.ndarray, crop, hw: tuple[int, int]) -> torch.Tensor:
        """Gaussian on the box centre's position in the token grid of ``crop``: ``(H*W,)``."""
        b = T.boxes_to_crop(np.asarray(box, dtype=np.float64), crop.scale, crop.translation)
        h, w = hw
        cx = (b[0] + b[2]) / 2 / self.search_size[0] * w - 0.5
        cy = (b[1] + b[3]) / 2 / self.search_size[1] * h - 0.5
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * self.sigma**2)).flatten()

    @staticmethod
    def _colour_index(pixels: np.ndarray) -> np.ndarray:
        """16 bins per RGB channel: ``(..., 3)`` uint8 -> ``(...)`` bin in [0, 4096)."""
        q = pixels.astype(np.int64) >> 4
        return q[..., 0] * 256 + q[..., 1] * 16 + q[..., 2]

    def _histograms(self, image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised colour histograms of the box (foreground) and of the surrounding search area (background)."""
        h, w = image.shape[:2]
        x0, y0, x1, y1 = np.asarray(box, dtype=np.float64)
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, self.search_area_factor * np.sqrt((x1 - x0) * (y1 - y0)) / 2
        inner = np.zeros((h, w), bool)
        inner[max(0, int(y0)):max(0, int(np.ceil(y1))), max(0, int(x0)):max(0, int(np.ceil(x1)))] = True
        outer = np.zeros((h, w), bool)
        outer[max(0, int(cy - half)):max(0, int(cy + half)), max(0, int(cx - half)):max(0, int(cx + half))] = True
        idx = self._colour_index(image)
        fg = np.bincount(idx[inner], minlength=4096).astype(np.float64)
        bg = np.bincount(idx[outer & ~inner], minlength=4096).astype(np.float64)
        return fg / max(fg.sum(), 1.0), bg / max(bg.sum(), 1.0)

    def _hog(self, raw: np.ndarray) -> torch.Tensor:
        """``(H, W, 3)`` uint8 crop -> ``(n*n, 9*9 + 3*9)`` HOG and mean-colour features with 3x3 context."""
        n = self.search_size[0] // int(self.model.cfg.patch_size)  # the score map's side
        c = raw.shape[0] // n  # pixels per cell
        img = raw[:n * c, :n * c].astype(np.float32) / 255.0
        gray = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        gx, gy = np.zeros_like(gray), np.zeros_like(gray)
        gx[:, 1:-1], gy[1:-1] = gray[:, 2:] - gray[:, :-2], gray[2:] - gray[:-2]
        mag, ang = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)  # unsigned orientation in [0, pi)
        bins = np.minimum((ang / np.pi * 9).astype(np.int64), 8)
        cell = (np.arange(n * c) // c)
        flat = (cell[:, None] * n + cell[None, :]) * 9 + bins  # (cell, bin) index of every pixel
        hog = np.bincount(flat.ravel(), weights=mag.ravel(), minlength=n * n * 9).reshape(n, n, 9)
        hog /= np.linalg.norm(hog, axis=-1, keepdims=True) + 1e-3
        colour = img.reshape(n, c, n, c, 3).mean((1, 3))  # (n, n, 3)
        grid = np.concatenate([hog, colour], -1)  # (n, n, 12)
        padded = np.pad(grid, ((1, 1), (1, 1), (0, 0)))
        ctx = [padded[1 + dy:1 + dy + n, 1 + dx:1 + dx + n] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        return torch.from_numpy(np.concatenate(ctx, -1).reshape(n * n, -1).astype(np.float32))

    def _combine(self, vit: torch.Tensor, st) -> torch.Tensor:
        """The regression's features of this frame for one sequence: ``(n*n, D)``."""
        if self.features == "vit":
            return vit
        if self.features == "hog":
            return st.extra["hog"]
        return torch.cat([vit, st.extra["hog"]], -1)

    def crop_search(self, state, image):
        x, crop = super().crop_search(state, image)
        if self.hist > 0 or self.features != "vit":
            # the crop's pixels back from the normalised tensor (the official normalisation inverted)
            mean = torch.tensor(T.IMAGENET_MEAN).view(3, 1, 1)
            std = torch.tensor(T.IMAGENET_STD).view(3, 1, 1)
            raw = ((x * std + mean) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        if self.features != "vit":
            state.extra["hog"] = self._hog(raw)
        if self.hist > 0:
            fg, bg = state.extra["hfg"], state.extra["hbg"]
            idx = self._colour_index(raw)
            like = torch.from_numpy(fg[idx] / (fg[idx] + bg[idx] + 1e-6)).float()[None, None]
            side = (state.box[2:] - state.box[:2]) * np.asarray(crop.scale).reshape(-1)[:2]
            k = max(1, int(round(float(np.sqrt(side.prod())))) | 1)  # odd box filter of the target's size
            pooled = torch.nn.functional.avg_pool2d(like, k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]
            n = self.search_size[0] // int(self.model.cfg.patch_size)  # the score map's side
            step = self.search_size[0] / n
            centres = (torch.arange(n) * step + step / 2).long().clamp(max=pooled.shape[-1] - 1)
            state.extra["colour"] = pooled[centres][:, centres].flatten()
        return x, crop

    def _solve(self, st) -> None:
        x = torch.cat([m[0] for m in st.extra["mem"]])  # (N, C)
        y = torch.cat([m[1] for m in st.extra["mem"]])
        # hard negatives: cells the head scores high away from the target weigh 1 + hard * p (DiMP's idea)
        wt = 1 + self.hard * torch.cat([m[2] for m in st.extra["mem"]]) * (1 - y)
        x = torch.cat([x, torch.ones(len(x), 1)], 1)  # bias column
        gram = (x * wt[:, None]).T @ x
        reg = self.lam * gram.diagonal().mean()
        st.extra["w"] = torch.linalg.solve(gram + reg * torch.eye(len(gram)), (x * wt[:, None]).T @ y)

    def new_state(self, image, box, seq_id):
        st = super().new_state(image, box, seq_id)
        st.extra["hfg"], st.extra["hbg"] = self._histograms(image, box)
        x, crop = self.crop_search(st, image)
        x = x.to(self.device, self.input_dtype)[None]
        out = self.run_model(st.z[None], x, st.z_mask[None])
        hw = tuple(out["score_map"].shape[-2:])
        p0 = out["score_map"].float().sigmoid()[0].flatten().cpu()
        st.extra["mem"] = [(self._combine(self._feat[0].cpu(), st), self._label(box, crop, hw), p0)]
        st.extra["first"] = 1
        self._solve(st)
        return st

    def forward(self, templates, x, states):
        out = dict(super().forward(templates, x, states))
        out["feat"] = self._feat
        return out

    def decode(self, outputs, crops, states):
        logits, boxes = outputs["score_map"].float(), outputs["boxes"].float()
        feat = [self._combine(f, st) for f, st in zip(outputs["feat"].cpu(), states)]
        p = logits.sigmoid()
        r = torch.stack([torch.cat([f, torch.ones(len(f), 1)], 1) @ st.extra["w"] for f, st in zip(feat, states)])
        fused = (1 - self.alpha) * p + self.alpha * r.view_as(p).clamp(0, 1)
        if self.hist > 0:
            colour = torch.stack([st.extra["colour"] for st in states]).view_as(p)
            fused = (1 - self.hist) * fused + self.hist * colour
        fused = fused.clamp(1e-6, 1 - 1e-6)
        box_crop, _, idx = decode_prediction(torch.logit(fused), boxes, self.window(logits.shape[-2:]),
                                             self.cfg.window_penalty, self.search_size)
        confidence = p.flatten(1).gather(1, idx[:, None])[:, 0]
        box_crop = box_crop.double().cpu().numpy()
        out = np.stack([bx.clip_to_image(T.boxes_from_crop(box_crop[i], c.scale, c.translation), *c.image_size)
                        for i, c in enumerate(crops)])
        for st, f, c, pi in zip(states, feat, crops, p.flatten(1).cpu()):
            st.extra["last"] = (f, c, tuple(logits.shape[-2:]), pi)
        return out, confidence.double().cpu().numpy()

    def update(self, state, box, score, image):
        super().update(state, box, score, image)
        if score < self.threshold or not bool(bx.is_valid(box)):
            return
        if self.hist > 0:
            fg, bg = self._histograms(image, box)
            state.extra["hfg"] = (1 - self.hist_lr) * state.extra["hfg"] + self.hist_lr * fg
            state.extra["hbg"] = (1 - self.hist_lr) * state.extra["hbg"] + self.hist_lr * bg
        if self.alpha == 0:
            return
        f, crop, hw, p = state.extra["last"]
        mem = state.extra["mem"]
        mem.append((f, self._label(box, crop, hw), p))
        if len(mem) > self.memory:
            del mem[1]  # keep frame 0 and the latest
        self._solve(state)


def track_auc(model: Path, root: Path, tag: str, **settings) -> float:
    """The report's LoRAT-row AUC of ``model`` with the online classifier on the ``val`` split of ``root``."""
    from demo_ablation import auc_of

    tracker = OnlineTracker(load_checkpoint(model), demo._track_config())
    for key, value in settings.items():
        setattr(tracker, key, value)
    shutil.rmtree(OUT / "results" / tag, ignore_errors=True)  # the runner resumes: never reuse old boxes
    return auc_of(tracker, root, OUT / "results", tag)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("tests", type=Path, nargs="+")
    for name, default in (("alpha", 0.5), ("lam", 0.1), ("sigma", 0.5), ("memory", 8), ("threshold", 0.5),
                          ("hard", 0.0), ("hist", 0.0), ("hist_lr", 0.04)):
        p.add_argument(f"--{name}", type=type(default), default=default)
    p.add_argument("--layers", type=int, nargs="*", default=[], help="also the search tokens of these blocks")
    p.add_argument("--features", choices=("vit", "hog", "both"), default="vit")
    a = p.parse_args()
    torch.set_num_threads(2)
    settings = {k: getattr(a, k) for k in ("alpha", "lam", "sigma", "memory", "threshold", "hard", "hist", "hist_lr")}
    settings["layers"] = tuple(a.layers)
    settings["features"] = a.features
    tag = "_".join(str(v) for v in settings.values())
    auc = [track_auc(a.model, t, f"{tag}_{i}", **settings) for i, t in enumerate(a.tests)]
    print(json.dumps({**settings, "tests": [str(t) for t in a.tests], "auc": auc}))


if __name__ == "__main__":
    main()
