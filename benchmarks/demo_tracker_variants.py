"""Where the demo's LoRAT loses the target, three test-time remedies measured on it, and a template ablation.

    PYTHONPATH=src python benchmarks/demo_tracker_variants.py losses DEMO_OUT
    PYTHONPATH=src python benchmarks/demo_tracker_variants.py track MODEL TEST_ROOT [TEST_ROOT ...] \
        --variant replace --threshold 0.6 --every 5
    PYTHONPATH=src python benchmarks/demo_tracker_variants.py track MODEL TEST_ROOT --variant flip
    PYTHONPATH=src python benchmarks/demo_tracker_variants.py strip DEMO_OUT SEQUENCE FIRST LAST OUT.jpg

``losses``: for each held-out sequence of a finished ``lorat demo`` folder, the mean IoU of the LoRAT row and
of OpenCV's CSRT, the first frame of a run of 5 visible frames with IoU < 0.05 (the loss; -1: never) and the
target's visible share (``cover.label``, 8 = fully visible) over the 8 frames before it: a loss with cover 8 is
a distractor taking over a visible target, not an occlusion.

``strip``: frames ``FIRST..LAST-1`` of one held-out sequence and then its frame 0 (the template), 4 per row at
twice the size, with the ground truth (green), the LoRAT row's box (red) and CSRT's (blue): what a loss looks like.

``track``: the demo's tracker (``lorat.demo._track_config``: bf16, ``size_lr``) with one non-official change,
scored like the report's LoRAT row on each ``TEST_ROOT`` (the ``val`` split of a GOT-10k-layout root):

* ``replace``: a confident frame (score >= ``--threshold``, at most every ``--every`` frames) replaces the
  template by a crop of its box (the one-template slot of LoRAT's model);
* ``ensemble``: the frame-0 template is kept and such a frame refreshes a second one; both run in one batched
  forward and their score maps are averaged in probability, ``(1 - mix) p0 + mix p1``, with each cell's box the
  score-weighted mean of the two boxes;
* ``scale_penalty``: SiamRPN's scale and aspect-change penalty ``exp(-k (r_c s_c - 1))`` on each cell's
  probability before the window, against the state's size in the crop (``--k``; 0 = the demo's tracker).
* ``flip`` / ``flip4``: test-time augmentation: template and search crop also run mirrored left-right
  (training flips pairs the same way), and for ``flip4`` top-bottom and both (never seen in training), in the
  same batched forward; each pass's score map and boxes are mirrored back, the probabilities averaged and each
  cell's box the score-weighted mean of the passes' boxes.
* ``blank_template`` / ``other_template``: a diagnostic, not a remedy: the template crop replaced by the
  normalised mean colour (zeros), or by the template of the sequence started before (the first keeps its own;
  the foreground mask moves with it). If the AUC barely moves, the model ranks the cells without the template.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import lorat.demo as demo
from lorat import boxes as bx
from lorat.data import transforms as T
from lorat.data.datasets import load_benchmark
from lorat.hub import load_checkpoint
from lorat.track.decode import decode_prediction
from lorat.track.tracker import Tracker

OUT = Path("/tmp/demo_tracker_variants")


class VariantTracker(Tracker):
    """LoRAT's tracker with the module docstring's variants (set the class attributes before tracking)."""

    variant, threshold, every, mix, k = "none", 0.6, 5, 0.5, 0.0

    def new_state(self, image, box, seq_id):
        st = super().new_state(image, box, seq_id)
        if self.variant == "blank_template":
            st.z = torch.zeros_like(st.z)  # the normalised mean colour: no appearance at all
        elif self.variant == "other_template":
            previous = getattr(self, "_previous", None)
            self._previous = (st.z, st.z_mask)
            if previous is not None:  # the template of the sequence started before this one (the first keeps its own)
                st.z, st.z_mask = previous
        st.extra.update(first=(st.z, st.z_mask), second=(st.z, st.z_mask), refreshed=0)
        return st

    def forward(self, templates, x, states):
        if self.variant in ("flip", "flip4"):
            return self.mirrored_forward(templates, x)
        if self.variant != "ensemble":
            return super().forward(templates, x, states)
        z = torch.stack([s.extra[k][0] for k in ("first", "second") for s in states])  # (2B, 3, Hz, Wz)
        m = torch.stack([s.extra[k][1] for k in ("first", "second") for s in states])
        out = self.run_model(z, torch.cat([x, x]), m)
        n = x.shape[0]
        p = out["score_map"].float().sigmoid()
        p0, p1, b0, b1 = p[:n], p[n:], out["boxes"][:n].float(), out["boxes"][n:].float()
        mean = ((1 - self.mix) * p0 + self.mix * p1).clamp(1e-6, 1 - 1e-6)
        w0 = ((1 - self.mix) * p0 / mean)[..., None]
        return {"score_map": torch.logit(mean), "boxes": w0 * b0 + (1 - w0) * b1}

    def mirrored_forward(self, templates, x):
        """Test-time mirroring: every pass in one batch, its maps and boxes mapped back, probabilities averaged."""
        z, m = templates
        n = x.shape[0]
        passes = [(), (-1,)] if self.variant == "flip" else [(), (-1,), (-2,), (-2, -1)]  # image axes flipped

        def mirror(t, dims):
            return t.flip(dims) if dims else t

        out = self.run_model(*(torch.cat([mirror(t, d) for d in passes]) for t in (z, x, m)))
        probs, boxes = [], []
        for k, dims in enumerate(passes):
            p = out["score_map"][k * n:(k + 1) * n].float().sigmoid()  # (B, H, W)
            b = out["boxes"][k * n:(k + 1) * n].float()  # (B, H, W, 4) normalised xyxy
            if -1 in dims:  # left-right: cell j is cell W-1-j, and x -> 1 - x
                p, b = p.flip(-1), bx.hflip(b.flip(-2), 1.0)
            if -2 in dims:  # top-bottom
                p, b = p.flip(-2), b.flip(-3)
                b = torch.stack([b[..., 0], 1 - b[..., 3], b[..., 2], 1 - b[..., 1]], dim=-1)
            probs.append(p)
            boxes.append(b)
        p, b = torch.stack(probs), torch.stack(boxes)  # (K, B, H, W), (K, B, H, W, 4)
        weight = (p / p.sum(0).clamp_min(1e-12))[..., None]  # each cell's box: the score-weighted mean
        return {"score_map": torch.logit(p.mean(0).clamp(1e-6, 1 - 1e-6)), "boxes": (weight * b).sum(0)}

    def decode(self, outputs, crops, states):
        if self.variant != "scale_penalty":
            return super().decode(outputs, crops, states)
        logits, boxes = outputs["score_map"].float(), outputs["boxes"].float()  # (B, H, W), (B, H, W, 4)
        ws, hs = self.search_size
        w = (boxes[..., 2] - boxes[..., 0]).clamp_min(1e-4) * ws
        h = (boxes[..., 3] - boxes[..., 1]).clamp_min(1e-4) * hs
        sizes = [(s.box[2:] - s.box[:2]) * np.asarray(c.scale).reshape(-1)[:2] for c, s in zip(crops, states)]
        prior = torch.tensor(np.array(sizes), dtype=torch.float32, device=w.device).clamp_min(1e-3)  # (B, 2) crop px
        pw, ph = prior[:, 0, None, None], prior[:, 1, None, None]

        def padded(a, b):  # SiamRPN's size with context, sqrt((w + p)(h + p)), p = (w + h) / 2
            return torch.sqrt((a + (a + b) / 2) * (b + (a + b) / 2))

        def change(r):
            return torch.maximum(r, 1 / r)

        penalty = torch.exp(-self.k * (change(padded(w, h) / padded(pw, ph)) * change((pw / ph) / (w / h)) - 1))
        p = (logits.sigmoid() * penalty).clamp(1e-6, 1 - 1e-6)
        box_crop, _, idx = decode_prediction(torch.logit(p), boxes, self.window(logits.shape[-2:]),
                                             self.cfg.window_penalty, self.search_size)
        confidence = logits.sigmoid().flatten(1).gather(1, idx[:, None])[:, 0]  # un-penalised, as the official
        box_crop = box_crop.double().cpu().numpy()
        out = np.stack([bx.clip_to_image(T.boxes_from_crop(box_crop[i], c.scale, c.translation), *c.image_size)
                        for i, c in enumerate(crops)])
        return out, confidence.double().cpu().numpy()

    def update(self, state, box, score, image):
        super().update(state, box, score, image)
        if self.variant not in ("replace", "ensemble"):
            return
        side = np.asarray(box)[2:] - np.asarray(box)[:2]
        if side.min() >= 4 and score >= self.threshold and state.frame - state.extra["refreshed"] >= self.every:
            z = self.crop_template(image, np.asarray(box, dtype=np.float64), state.pad)
            state.extra["refreshed"] = state.frame
            if self.variant == "replace":
                state.z, state.z_mask = z
            else:
                state.extra["second"] = z


def track_auc(model: Path, root: Path, tag: str, **variant) -> float:
    """The report's LoRAT-row AUC of ``model`` with ``variant`` on the ``val`` split of ``root``."""
    import shutil

    from demo_ablation import auc_of

    tracker = VariantTracker(load_checkpoint(model), demo._track_config())
    for key, value in variant.items():
        setattr(tracker, key, value)
    # the runner resumes finished sequences: a new setting must not reuse old boxes
    shutil.rmtree(OUT / "results" / tag, ignore_errors=True)
    return auc_of(tracker, root, OUT / "results", tag)


def losses(demo_out: Path) -> None:
    """The ``losses`` table of the module docstring."""
    from demo_box_errors import iou_xywh

    root = demo_out / "data" / "domain_B"
    print("| sequence | LoRAT IoU | CSRT IoU | LoRAT lost at | CSRT lost at | cover before LoRAT's loss |")
    print("|---|---:|---:|---:|---:|---|")
    for seq in load_benchmark("got10k_val", root):
        visible = np.isfinite(seq.boxes).all(1) & (seq.boxes[:, 2] > 0)
        cover = np.loadtxt(root / "val" / seq.name / "cover.label", ndmin=1).astype(int)
        row, lost = [], []
        for tracker in ("lora_B", "OpenCV_CSRT"):
            iou = iou_xywh(_boxes(demo_out / "results" / tracker / "synthetic_B" / f"{seq.name}.txt"), seq.boxes)
            bad = (iou < 0.05) & visible
            first = next((i for i in range(1, len(bad) - 4) if bad[i:i + 5].all()), -1)
            row.append(f"{np.mean(iou[visible]):.2f}")
            lost.append(first)
        before = "".join(map(str, cover[max(0, lost[0] - 8):lost[0]])) if lost[0] > 0 else ""
        print(f"| {seq.name} | {row[0]} | {row[1]} | {lost[0]} | {lost[1]} | {before} |")


def _boxes(path: Path) -> np.ndarray:
    """A results or ground-truth file (comma- or whitespace-separated x, y, w, h rows) as (N, 4)."""
    return np.loadtxt(path.read_text().replace(",", " ").splitlines(), ndmin=2)


def strip(demo_out: Path, sequence: str, first: int, last: int, out: Path) -> None:
    """The ``strip`` figure of the module docstring."""
    import cv2

    from lorat.files import atomic_write_bytes

    folder = demo_out / "data" / "domain_B" / "val" / sequence
    drawn = [(_boxes(folder / "groundtruth.txt"), (0, 255, 0))]
    drawn += [(_boxes(demo_out / "results" / name / "synthetic_B" / f"{sequence}.txt"), colour)
              for name, colour in (("lora_B", (0, 0, 255)), ("OpenCV_CSRT", (255, 0, 0)))]  # BGR
    tiles = []
    for t in [*range(first, last), 0]:
        path = folder / f"{t + 1:08d}.jpg"
        img = cv2.imread(str(path))
        if img is None:
            raise SystemExit(f"cannot read {path}")
        img = cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        for boxes, colour in drawn:
            x, y, w, h = (2 * boxes[t]).round().astype(int)
            if w > 0 and h > 0:
                cv2.rectangle(img, (x, y), (x + w, y + h), colour, 1)
        cv2.putText(img, str(t), (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        tiles.append(img)
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 4)
    grid = np.vstack([np.hstack(tiles[i:i + 4]) for i in range(0, len(tiles), 4)])
    ok, data = cv2.imencode(out.suffix, grid, [cv2.IMWRITE_JPEG_QUALITY, 90])  # format from the suffix
    if not ok:
        raise SystemExit(f"cannot encode {out.suffix!r} images")
    atomic_write_bytes(out, data.tobytes())
    print(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    lo = sub.add_parser("losses")
    lo.add_argument("demo_out", type=Path)
    st = sub.add_parser("strip")
    st.add_argument("demo_out", type=Path)
    st.add_argument("sequence")
    st.add_argument("first", type=int)
    st.add_argument("last", type=int)
    st.add_argument("out", type=Path)
    tr = sub.add_parser("track")
    tr.add_argument("model", type=Path)
    tr.add_argument("tests", type=Path, nargs="+")
    variants = ("none", "replace", "ensemble", "flip", "flip4", "scale_penalty", "blank_template", "other_template")
    tr.add_argument("--variant", choices=variants, default="none")
    tr.add_argument("--threshold", type=float, default=0.6)
    tr.add_argument("--every", type=int, default=5)
    tr.add_argument("--mix", type=float, default=0.5)
    tr.add_argument("--k", type=float, default=0.0)
    a = p.parse_args()
    torch.set_num_threads(2)
    if a.cmd == "losses":
        return losses(a.demo_out)
    if a.cmd == "strip":
        return strip(a.demo_out, a.sequence, a.first, a.last, a.out)
    variant = {k: getattr(a, k) for k in ("variant", "threshold", "every", "mix", "k")}
    tag = "_".join(str(v) for v in variant.values())
    auc = [track_auc(a.model, t, f"{tag}_{i}", **variant) for i, t in enumerate(a.tests)]
    print(json.dumps({**variant, "tests": [str(t) for t in a.tests], "auc": auc}))


if __name__ == "__main__":
    main()
