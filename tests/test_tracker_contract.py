"""The tracker contract: registry dispatch, subclasses overriding single steps, precision selection."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import lorat
import lorat.device as dev
from conftest import fixture_file, fixture_model_kwargs, official_manifest
from lorat import boxes as bx
from lorat.config import ModelConfig
from lorat.models import registry
from lorat.track.tracker import SearchCrop, SequenceState, TrackConfig, Tracker, describe_precision

F32 = dict(device="cpu", dtype="float32", verbose=False)


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------ an SPMTrack-like tracker
@dataclass
class MemCfg(ModelConfig):
    """A config class of another architecture (own field, own arch name)."""

    arch: str = "memtest"
    memory_templates: int = 2


class MemModel(nn.Module):
    """``model(z (B,K,3,Hz,Wz), z_feat_mask (B,K,h,w), x, state=(B,C))``: records its inputs; the new state
    is the old one + 1 and the score peak moves with it."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg, self.calls = cfg, []
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, z, z_feat_mask, x, state):
        self.calls.append(dict(z=z.shape, mask=z_feat_mask.clone(), state=state.clone()))
        B, n = x.shape[0], self.cfg.search_feat
        score = torch.full((B, n, n), -5.0)
        score[:, n // 2, n // 2] = 5.0
        box = torch.tensor([0.4, 0.4, 0.6, 0.6]).expand(B, n, n, 4).clone()
        return {"score_map": score, "boxes": box, "state": state + 1}


class MemoryTracker(Tracker):
    """Keeps every accepted frame as a reference template; feeds the first and the newest (a schedule) and
    carries a state token. Overrides new_state, batch_templates, forward, update and release only."""

    released: list = []

    def new_state(self, image, box, seq_id):
        st = super().new_state(image, box, seq_id)
        st.extra["memory"] = [(st.z, st.z_mask)]
        st.extra["token"] = torch.zeros(4)
        return st

    def batch_templates(self, states):
        chosen = [[s.extra["memory"][0], s.extra["memory"][-1]] for s in states]
        z = torch.stack([torch.stack([m[0] for m in c]) for c in chosen])  # (B, K, 3, Hz, Wz)
        mask = torch.stack([torch.stack([m[1] for m in c]) for c in chosen])  # (B, K, h, w)
        return z, mask

    def forward(self, templates, x, states):
        z, mask = templates
        out = self.run_model(z, mask, x, state=torch.stack([s.extra["token"] for s in states]))
        for s, tok in zip(states, out["state"]):
            s.extra["token"] = tok
        return out

    def update(self, state, box, score, image):
        super().update(state, box, score, image)
        state.extra["memory"].append(self.crop_template(image, state.box, state.pad))

    def release(self, seq_id):
        MemoryTracker.released.append(seq_id)
        super().release(seq_id)


# ------------------------------------------------------------------------------ an OSTrack-like tracker
@dataclass
class CentreCrop:
    """Crop info of a centre-and-resize-factor rule (no pixel-aligned parameters)."""

    centre: np.ndarray
    resize: float
    image_size: tuple


class HeatmapModel(nn.Module):
    """Outputs ``score_map (B,1,H,W)``, ``size_map (B,2,H,W)``, ``offset_map (B,2,H,W)`` with a peak at ``cell``."""

    def __init__(self, cfg, cell=(1, 2)):
        super().__init__()
        self.cfg, self.cell = cfg, cell
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, z, x, z_feat_mask):
        B, n = x.shape[0], self.cfg.search_feat
        score = torch.zeros(B, 1, n, n)
        score[:, 0, self.cell[0], self.cell[1]] = 0.9
        size = torch.full((B, 2, n, n), 0.25)
        offset = torch.full((B, 2, n, n), 0.5)
        return {"score_map": score, "size_map": size, "offset_map": offset}


class HeatmapTracker(Tracker):
    """A square ``sqrt(w h) * factor`` crop and Hann-multiplied heat-map decoding: overrides crop_search and
    decode only."""

    def crop_search(self, state, image):
        cx, cy = bx.box_center(state.box)
        w, h = bx.box_size(state.box)
        side = np.ceil(np.sqrt(w * h) * self.search_area_factor)
        resize = self.search_size[0] / side
        crop = torch.zeros(3, *self.search_size)  # the pixels do not matter to the stub model
        return crop, CentreCrop(np.array([cx, cy]), float(resize), (image.shape[1], image.shape[0]))

    def decode(self, outputs, crops, states):
        score = outputs["score_map"][:, 0] * self.window(outputs["score_map"].shape[-2:])  # Hann *multiply*
        B, H, W = score.shape
        idx = score.reshape(B, -1).argmax(1)
        iy, ix = idx // W, idx % W
        ar = torch.arange(B)
        off = outputs["offset_map"][ar, :, iy, ix]
        size = outputs["size_map"][ar, :, iy, ix]
        cx = (ix + off[:, 0]) / W * self.search_size[0]
        cy = (iy + off[:, 1]) / H * self.search_size[1]
        boxes = []
        for i, c in enumerate(crops):
            s = self.search_size[0] / c.resize
            centre = c.centre + (np.array([cx[i], cy[i]]) - self.search_size[0] / 2) / c.resize
            wh = size[i].numpy() * s
            boxes.append(np.concatenate([centre - wh / 2, centre + wh / 2]))
        return np.stack(boxes), score.reshape(B, -1).max(1).values.double().numpy()


@pytest.fixture
def fake_archs(monkeypatch):
    """Register two architectures whose trackers live in this test module (no shared code knows them)."""
    base = registry.get_arch("lorat")
    for name, path in (("memtest", "test_tracker_contract:MemoryTracker"),
                       ("heattest", "test_tracker_contract:HeatmapTracker")):
        monkeypatch.setitem(registry._ARCHS, name, registry.Arch(
            name=name, config_cls=MemCfg, build=base.build, read_pretrained=base.read_pretrained,
            from_checkpoint=base.from_checkpoint, claims=lambda sd: False, tracker=path, task=base.task))


def _cfg(arch):
    return MemCfg(name="x", arch=arch, embed_dim=32, depth=1, num_heads=2, template_size=28, search_size=56)


def test_lorat_models_get_the_base_tracker(tiny_cfg):
    t = lorat.Tracker(lorat.create_model(tiny_cfg), TrackConfig(**F32))
    assert type(t) is Tracker


def test_registry_dispatch_and_memory_tracker(fake_archs):
    model = MemModel(_cfg("memtest"))
    tracker = lorat.Tracker(model, TrackConfig(**F32))
    assert type(tracker) is MemoryTracker  # picked from the registry, through the base class
    frames = [_noise(60, 80, k) for k in range(4)]
    tracker.initialize_many(["a", "b"], [frames[0], frames[1]], [(20, 15, 20, 16), (30, 20, 10, 12)])
    for f in range(1, 4):
        results = tracker.track_many(["a", "b"], [frames[f], frames[f]])
        assert len(results) == 2 and all(np.isfinite(b).all() for b, _ in results)
    # two templates (K=2), each with its own mask, and the token of the previous frame passed back
    assert [c["z"] for c in model.calls] == [torch.Size([2, 2, 3, 28, 28])] * 3
    assert model.calls[0]["mask"].shape == (2, 2, 2, 2)
    assert [float(c["state"][0, 0]) for c in model.calls] == [0.0, 1.0, 2.0]
    assert len(tracker.states["a"].extra["memory"]) == 4  # frame 0 + one entry per tracked frame
    # the newest template is the current frame's crop: after frame 1 it differs from frame 0's
    assert not torch.equal(tracker.states["a"].extra["memory"][0][0], tracker.states["a"].extra["memory"][1][0])
    MemoryTracker.released.clear()
    tracker.remove(["a"])
    tracker.reset()
    assert MemoryTracker.released == ["a", "b"] and tracker.active_ids == []


def test_heatmap_tracker_overrides_crop_and_decode_only(fake_archs):
    model = HeatmapModel(_cfg("heattest"), cell=(1, 2))
    tracker = lorat.Tracker(model, TrackConfig(**F32))
    assert type(tracker) is HeatmapTracker
    image = _noise(80, 100, 0)
    tracker.initialize(image, (40, 30, 16, 16))  # centre (48, 38); crop side ceil(16 * 4) = 64 -> resize 56/64
    box, score = tracker.track(image)
    # 4x4 map, peak at row 1 col 2, offset 0.5 -> (2.5/4, 1.5/4) * 56 = (35, 21) crop px; size 0.25 * 64 = 16
    cx, cy = 48 + (35 - 28) * 64 / 56, 38 + (21 - 28) * 64 / 56
    np.testing.assert_allclose(box, [cx - 8, cy - 8, 16, 16], atol=1e-4)
    assert score == pytest.approx(0.9 * 0.75 * 0.75, rel=1e-6)  # multiplied by hann(4)[1] * hann(4)[2]
    np.testing.assert_allclose(tracker.states[tracker.active_ids[0]].box, bx.xywh_to_xyxy(box), atol=1e-4)


def test_subclass_called_directly_and_bad_registration(fake_archs, tiny_cfg, monkeypatch):
    model = MemModel(_cfg("memtest"))
    assert type(MemoryTracker(model, TrackConfig(**F32))) is MemoryTracker
    monkeypatch.setitem(registry._ARCHS, "memtest", registry.Arch(
        **{**registry.get_arch("memtest").__dict__, "tracker": "lorat.config:ModelConfig"}))
    with pytest.raises(TypeError, match="not a lorat Tracker subclass"):
        lorat.Tracker(MemModel(_cfg("memtest")), TrackConfig(**F32))


def test_state_and_crop_types(tiny_cfg):
    t = Tracker(lorat.create_model(tiny_cfg), TrackConfig(**F32))
    t.initialize_many(["s"], [_noise(40, 50, 0)], [(5, 5, 10, 10)])
    st = t.states["s"]
    assert isinstance(st, SequenceState) and st.seq_id == "s" and st.extra == {}
    x, crop = t.crop_search(st, _noise(40, 50, 1))
    assert isinstance(crop, SearchCrop) and crop.image_size == (50, 40) and x.shape == (3, 56, 56)


# ------------------------------------------------------------------------------ precision
@pytest.mark.parametrize("native,want", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_precision_on_cpu_follows_the_cpu(tiny_cfg, monkeypatch, capsys, native, want):
    monkeypatch.setenv("LORAT_CPU_BF16", "1" if native else "0")
    assert TrackConfig().dtype == "auto"
    tracker = Tracker(lorat.create_model(tiny_cfg), TrackConfig(device="cpu"))
    assert tracker.dtype == want and next(tracker.model.parameters()).dtype == want
    out = capsys.readouterr().out
    name = "bfloat16" if native else "float32"
    assert f"precision {name} (auto: LORAT_CPU_BF16={int(native)})" in out
    assert ("weights cast" in out) == native


@pytest.mark.parametrize("flags,speedup,want", [(True, 2.5, "bfloat16"), (True, 0.6, "float32"),
                                                (True, dev.BF16_MIN_SPEEDUP - 0.01, "float32"),
                                                (False, 3.0, "float32")])
def test_auto_bf16_needs_the_flags_and_a_measured_speedup(monkeypatch, flags, speedup, want):
    # an Intel VM with AVX512-BF16 but no AMX ran bf16 GEMMs at ~0.6x fp32: the flags alone are not enough
    monkeypatch.delenv("LORAT_CPU_BF16", raising=False)
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: flags)
    monkeypatch.setattr(dev, "cpu_bf16_speedup", lambda threads=None: speedup)
    assert dev.resolve_precision("auto", torch.device("cpu")) == want
    reason = describe_precision("auto", want, torch.device("cpu"))
    assert reason.startswith(f"{want} (auto: CPU")
    assert ("measured" in reason) == flags and ("weights cast" in reason) == (want == "bfloat16")
    assert dev.resolve_precision("fp32", torch.device("cpu")) == "float32"  # explicit names never measure
    assert dev.resolve_precision("bf16", torch.device("cpu")) == "bfloat16"


def test_bf16_probe_and_its_override(monkeypatch):
    dev.cpu_bf16_speedup.cache_clear()
    threads = torch.get_num_threads()
    speedup = dev.cpu_bf16_speedup(1)
    assert torch.get_num_threads() == threads  # the probe's thread count is restored
    assert speedup > 0 and speedup == dev.cpu_bf16_speedup(1)  # a ratio, measured once per thread count
    monkeypatch.setattr(dev, "cpu_bf16_speedup", lambda threads=None: pytest.fail("forced: no measurement"))
    monkeypatch.setenv("LORAT_CPU_BF16", "1")
    assert dev.cpu_prefers_bf16() and dev.resolve_precision("auto", torch.device("cpu")) == "bfloat16"
    monkeypatch.setenv("LORAT_CPU_BF16", "0")
    assert not dev.cpu_prefers_bf16()
    monkeypatch.setenv("LORAT_CPU_BF16", "yes")
    with pytest.raises(ValueError, match="LORAT_CPU_BF16='yes'"):
        dev.resolve_precision("auto", torch.device("cpu"))


def test_auto_precision_on_cuda_is_fp16_autocast(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    device = dev.resolve_device("auto")
    assert device == torch.device("cuda", 1)
    assert dev.resolve_precision("auto", device) == "float16"
    assert dev.resolve_precision("bf16", device) == "bfloat16"
    assert "autocast" in describe_precision("auto", "float16", device)
    assert "official" in describe_precision("auto", "float16", device)


def test_onnx_runtime_precision_line_names_the_runtime():
    # The ONNX runtimes run float32 on any CPU: the line must not blame the CPU for it.
    line = describe_precision("auto", "float32", torch.device("cpu"), "onnx-int8")
    assert line == "float32 (auto: the onnx-int8 runtime runs float32)"
    assert "CPU" in describe_precision("auto", "float32", torch.device("cpu"))


@pytest.mark.parametrize("alias,canonical", [("fp32", "float32"), ("none", "float32"), ("bf16", "bfloat16"),
                                             ("FP16", "float16"), ("auto", "auto")])
def test_precision_vocabulary(alias, canonical):
    assert dev.canonical_precision(alias) == canonical
    TrackConfig(dtype=alias).validate()


def test_bad_precision_is_named():
    with pytest.raises(ValueError, match="float64.*expected auto, float32"):
        TrackConfig(dtype="float64").validate()
    with pytest.raises(ValueError, match="float16 is not supported on CPU"):
        dev.resolve_precision("fp16", torch.device("cpu"))


def test_bfloat16_boxes_match_float32():
    """bf16 vs fp32 on the official fixture model (depth-2 ViT-S, 224 px): same frames, same start.

    Tolerance: box coordinates within 6 % of the box's larger side and scores within 0.01 (measured on
    this data: at most 4.0 % and 0.0012; a different argmax cell would move the box by ~14 px = 20-50 %).
    """
    fx = official_manifest()["fixtures"]["A_lorat"]
    kw = fixture_model_kwargs(fx)
    model = lorat.load_checkpoint(fixture_file(fx, "checkpoint"), name=kw["name"],
                                  pretrained=fixture_file(fx, "pretrained"), **kw["overrides"])
    t32 = Tracker(model, TrackConfig(device="cpu", dtype="float32", copy_model=True, verbose=False))
    t16 = Tracker(model, TrackConfig(device="cpu", dtype="bfloat16", copy_model=True, verbose=False))
    assert next(t16.model.parameters()).dtype == torch.bfloat16
    rng = np.random.default_rng(0)
    moved = 0.0
    for _ in range(20):
        img = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        box = (80 + rng.integers(0, 80), 60 + rng.integers(0, 60), 30 + rng.integers(0, 40), 25 + rng.integers(0, 40))
        nxt = np.roll(img, (int(rng.integers(-5, 5)), int(rng.integers(-5, 5))), (0, 1))
        (b32, s32), (b16, s16) = [(t.initialize(img, box), t.track(nxt))[1] for t in (t32, t16)]
        assert np.abs(b32 - b16).max() <= 0.06 * max(box[2], box[3]), (b32, b16)
        assert abs(s32 - s16) <= 0.01
        moved = max(moved, np.abs(b32 - b16).max())
    assert moved > 0  # bf16 really ran in bf16
