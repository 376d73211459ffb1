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

``takeovers``: tracks ``TEST_ROOT`` with the demo's tracker and, at each frame where its IoU falls from above
0.1 to at most 0.1 with the target visible, asks whether the target (its centre within 0.3 target sizes) was one
of the score map's other local maxima (at ``>= --rel`` times the maximum): whether a test-time choice among
peaks could have kept it.

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
* ``associate``: KeepTrack's idea without its learnt matcher: the candidates of a frame are the official
  (windowed argmax) cell and the local maxima (3x3) of the probability map at ``>= --rel`` times its maximum that
  are not next to it, each at its cell's box centre in the image; the ones not chosen are remembered as
  distractors. When the windowed argmax lies nearer to a distractor of the previous frame than to the previous
  target, and another candidate lies nearer to the target than to every distractor, that candidate is chosen
  instead (the best of them by windowed score).
* ``--with OTHER [OTHER ...]`` (with any variant but ``flip``, ``flip4`` and ``ensemble``): more models
  (checkpoints) run on the same crops; the probabilities are averaged and each cell's box is the score-weighted
  mean of the models' boxes.
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
from lorat.track.tracker import Tracker, prepare_model

OUT = Path("/tmp/demo_tracker_variants")


class VariantTracker(Tracker):
    """LoRAT's tracker with the module docstring's variants (set the class attributes before tracking)."""

    variant, threshold, every, mix, k, rel, switch = "none", 0.6, 5, 0.5, 0.0, 0.3, True

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

    others: tuple = ()  # the ``--with`` models, prepared like the tracker's own

    def forward(self, templates, x, states):
        if self.variant in ("flip", "flip4"):
            return self.mirrored_forward(templates, x)
        if self.variant != "ensemble":
            out = super().forward(templates, x, states)
            if not self.others:
                return out
            z, z_mask = templates
            with torch.inference_mode():
                outs = [out, *(other(z, x, z_mask) for other in self.others)]
            return _average([o["score_map"].float().sigmoid() for o in outs], [o["boxes"].float() for o in outs])
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
        return _average(probs, boxes)

    def decode(self, outputs, crops, states):
        if self.variant == "associate":
            return self.associate(outputs, crops, states)
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

    def associate(self, outputs, crops, states):
        """The ``associate`` variant: windowed argmax unless it is a remembered distractor (module docstring)."""
        import torch.nn.functional as F

        logits, boxes = outputs["score_map"].float(), outputs["boxes"].float()  # (B, H, W), (B, H, W, 4)
        p = logits.sigmoid()
        H, W = p.shape[-2:]
        wp = self.cfg.window_penalty
        q = (p * (1 - wp) + self.window((H, W)) * wp).flatten(1)  # (B, H*W): the official ranking
        peak = (p == F.max_pool2d(p[:, None], 3, 1, 1)[:, 0]) & (p >= self.rel * p.flatten(1).max(1)[0][:, None, None])
        ws, hs = self.search_size
        # to numpy once: (B, H*W) scores and peak flags, (B, H*W, 4) boxes in search-crop pixels
        q, p, peak = q.cpu().numpy(), p.flatten(1).cpu().numpy(), peak.flatten(1).cpu().numpy()
        crop_boxes = boxes.flatten(1, 2).double().cpu().numpy() * np.array([ws, hs, ws, hs])
        out, conf = np.empty((len(crops), 4)), np.empty(len(crops))
        best = q.argmax(1)  # the official choice, kept unless the rule below overrides it
        for i, (c, st) in enumerate(zip(crops, states)):
            cells = peak[i].nonzero()[0]
            cells = cells[np.argsort(-q[i, cells], kind="stable")]  # best windowed score first
            near = np.maximum(abs(cells // W - best[i] // W), abs(cells % W - best[i] % W)) <= 1
            cells = np.concatenate([[best[i]], cells[~near]])  # the official cell, then the other peaks
            img = np.stack([T.boxes_from_crop(crop_boxes[i, j], c.scale, c.translation) for j in cells])  # (K, 4)
            centres = (img[:, :2] + img[:, 2:]) / 2
            side = max(float(np.sqrt(np.prod(st.box[2:] - st.box[:2]))), 1.0)
            d_target = np.linalg.norm(centres - (st.box[:2] + st.box[2:]) / 2, axis=1) / side
            known = st.extra.get("distractors", np.zeros((0, 2)))
            d_distr = (np.linalg.norm(centres[:, None] - known[None], axis=2).min(1) / side if len(known)
                       else np.full(len(cells), np.inf))
            pick = 0
            if self.switch and d_distr[0] < d_target[0]:
                on_target = np.nonzero(d_target < d_distr)[0]
                if len(on_target):
                    pick = int(on_target[0])
            st.extra["distractors"] = np.delete(centres, pick, axis=0)
            out[i] = bx.clip_to_image(img[pick], *c.image_size)
            conf[i] = float(p[i, cells[pick]])
        return out, conf

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


def _average(probs: list, boxes: list) -> dict:
    """Passes' ``(B, H, W)`` probabilities and ``(B, H, W, 4)`` boxes -> one output: mean probability (as logits),
    each cell's box the score-weighted mean of the passes' boxes."""
    p, b = torch.stack(probs), torch.stack(boxes)  # (K, B, H, W), (K, B, H, W, 4)
    weight = (p / p.sum(0).clamp_min(1e-12))[..., None]
    return {"score_map": torch.logit(p.mean(0).clamp(1e-6, 1 - 1e-6)), "boxes": (weight * b).sum(0)}


def track_auc(model: Path, root: Path, tag: str, others: tuple = (), **variant) -> float:
    """The report's LoRAT-row AUC of ``model`` with ``variant`` on the ``val`` split of ``root``."""
    import shutil

    from demo_ablation import auc_of

    tracker = VariantTracker(load_checkpoint(model), demo._track_config())
    for key, value in variant.items():
        setattr(tracker, key, value)
    tracker.others = tuple(prepare_model(load_checkpoint(m), tracker.cfg, tracker.device, tracker.precision)
                           for m in others)
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


def takeovers(model: Path, root: Path, rel: float) -> None:
    """The ``takeovers`` count of the module docstring."""
    from demo_box_errors import iou_xywh
    from lorat.data.images import read_image

    tracker = VariantTracker(load_checkpoint(model), demo._track_config())
    tracker.variant, tracker.rel, tracker.switch = "associate", rel, False  # the official choice, peaks recorded
    events = found = 0
    for seq in load_benchmark("got10k_val", root):
        tracker.reset()
        for t, path in enumerate(seq.frames):
            image = read_image(path)  # RGB; a missing or corrupt frame is an error naming it
            if t == 0:
                tracker.initialize(image, seq.boxes[0])
                on = True
                continue
            box, _ = tracker.track(image)
            truth = seq.boxes[t]
            if not (np.isfinite(truth).all() and truth[2] > 0 and truth[3] > 0):
                continue
            was, on = on, iou_xywh(np.asarray(box)[None], truth[None])[0] > 0.1
            if was and not on:
                others = next(iter(tracker.states.values())).extra["distractors"]  # the peaks not chosen
                centre, side = truth[:2] + truth[2:] / 2, float(np.sqrt(truth[2] * truth[3]))
                hit = len(others) > 0 and float((np.linalg.norm(others - centre, axis=1) / side).min()) < 0.3
                events, found = events + 1, found + int(hit)
                print(f"{seq.name} frame {t}: {len(others)} other peak(s), target among them: {hit}")
    print(f"{events} takeovers (IoU > 0.1 -> <= 0.1, target visible); the target was another peak at {found}")


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
    to = sub.add_parser("takeovers")
    to.add_argument("model", type=Path)
    to.add_argument("test", type=Path)
    to.add_argument("--rel", type=float, default=0.1)
    tr = sub.add_parser("track")
    tr.add_argument("model", type=Path)
    tr.add_argument("tests", type=Path, nargs="+")
    variants = ("none", "replace", "ensemble", "flip", "flip4", "scale_penalty", "blank_template", "other_template",
                "associate")
    tr.add_argument("--variant", choices=variants, default="none")
    tr.add_argument("--threshold", type=float, default=0.6)
    tr.add_argument("--every", type=int, default=5)
    tr.add_argument("--mix", type=float, default=0.5)
    tr.add_argument("--k", type=float, default=0.0)
    tr.add_argument("--rel", type=float, default=0.3)
    tr.add_argument("--with", dest="others", type=Path, nargs="+", default=[], help="more models to average with")
    a = p.parse_args()
    torch.set_num_threads(2)
    if a.cmd == "losses":
        return losses(a.demo_out)
    if a.cmd == "strip":
        return strip(a.demo_out, a.sequence, a.first, a.last, a.out)
    if a.cmd == "takeovers":
        return takeovers(a.model, a.test, a.rel)
    if a.others and a.variant in ("flip", "flip4", "ensemble"):
        raise SystemExit(f"--with does not combine with --variant {a.variant}")
    variant = {k: getattr(a, k) for k in ("variant", "threshold", "every", "mix", "k", "rel")}
    tag = "_".join(str(v) for v in variant.values()) + f"_with{len(a.others)}"
    auc = [track_auc(a.model, t, f"{tag}_{i}", tuple(a.others), **variant) for i, t in enumerate(a.tests)]
    print(json.dumps({**variant, "with": [str(m) for m in a.others], "tests": [str(t) for t in a.tests], "auc": auc}))


if __name__ == "__main__":
    main()
