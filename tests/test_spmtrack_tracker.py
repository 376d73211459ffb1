"""SPMTrack tracking through ``lorat.Tracker``: memory entries, schedule, carried state, decoding, batching,
bounded memory on a long sequence, and the ``lorat eval`` / ``lorat track`` commands with an SPMTrack preset."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lorat
from lorat import boxes as bx
from lorat.data import transforms as T
from lorat.track.decode import decode_prediction, hann_window_2d
from lorat.track.spmtrack import SPMTrackTrackConfig, SPMTrackTracker
from lorat.track.spmtrack_memory import memory_entry, template_indices
from lorat.track.tracker import TrackConfig
from spmtrack_fixtures import TINY_SPMTRACK, lively

TINY = TINY_SPMTRACK
_lively = lively
F32 = dict(device="cpu", dtype="float32", verbose=False)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return _lively(lorat.create_model("spmtrack-b-378", **TINY))


def _video(n: int, seed: int, size=(48, 64)) -> tuple[list[np.ndarray], tuple]:
    """A bright square drifting over noise; frame brightness varies, so every frame has its own mean."""
    rng = np.random.default_rng(seed)
    h, w = size
    frames = []
    for t in range(n):
        img = rng.integers(0, 60 + 10 * (t % 7), (h, w, 3)).astype(np.uint8)
        x, y = 4 + (2 * t + seed) % (w - 20), 3 + t % (h - 16)
        img[y:y + 10, x:x + 12] = (230, 200 - 5 * seed, 60)
        frames.append(img)
    return frames, (4.0 + seed % (w - 20), 3.0, 12.0, 10.0)


class Spy:
    """Records the inputs and outputs of every model call (the tracker calls ``model(z, mask, x, state=...)``)."""

    def __init__(self, model):
        self.calls = []
        self.inner = model.forward

        def forward(z, z_feat_mask, x, state=None):
            out = self.inner(z, z_feat_mask, x, state)
            self.calls.append(dict(z=z.clone(), mask=z_feat_mask.clone(), x=x.clone(),
                                   state=None if state is None else state.clone(),
                                   out={k: v.clone() for k, v in out.items()}))
            return out
        model.forward = forward


def test_registry_gives_the_spmtrack_tracker(model):
    tracker = lorat.Tracker(model, TrackConfig(**F32))
    assert type(tracker) is SPMTrackTracker
    assert isinstance(tracker.cfg, SPMTrackTrackConfig) and tracker.cfg.schedule == "default"
    mine = SPMTrackTrackConfig(**F32)
    assert lorat.Tracker(model, mine, schedule="thirds").cfg.schedule == "thirds"
    assert mine.schedule == "default"  # keyword options do not change the caller's config
    with pytest.raises(ValueError, match="schedule='fifths'"):
        lorat.Tracker(model, SPMTrackTrackConfig(schedule="fifths", **F32))


@pytest.mark.parametrize("schedule", ["default", "thirds"])
def test_every_step_follows_the_official_pipeline(model, schedule):
    """Memory entries, the schedule, the state token and the decoded boxes, checked frame by frame against
    an independent recomputation from the recorded model calls."""
    frames, init = _video(12, 1)
    tracker = lorat.Tracker(model, TrackConfig(**F32), schedule=schedule)
    spy = Spy(tracker.model)
    tracker.initialize(frames[0], init)
    reported = [bx.xywh_to_xyxy(np.asarray(init, dtype=np.float64))]
    accepted = reported[0]
    for t in range(1, len(frames)):
        box_xywh, score = tracker.track(frames[t])
        call = spy.calls[-1]
        # templates: the scheduled memory entries; entry i = frame i cropped (area 2) around its reported box,
        # padded with frame i's own mean
        idx = template_indices(t, schedule)
        assert tracker.last_template_indices() == idx
        for j, i in enumerate(idx):
            crop, mask = memory_entry(frames[i], reported[i], 28, 2, 2.0)
            torch.testing.assert_close(call["z"][0, j], crop, rtol=0, atol=0)
            assert torch.equal(call["mask"][0, j], mask)
        # state: the previous frame's output for this sequence, none on the first tracked frame
        if t == 1:
            assert call["state"] is None
        else:
            assert torch.equal(call["state"], spy.calls[-2]["out"]["state"])
        # search crop around the last accepted box (>= 10 px), area 5 (the -378 preset), frame 0's mean padding
        centre = bx.enlarge_to_min_size(accepted, 10.0)
        s, tr = T.siamfc_crop_params(centre, 5.0, (56, 56))
        x, s, tr = T.crop_and_resize(frames[t], s, tr, (56, 56), pad_color=T.image_mean(frames[0]))
        torch.testing.assert_close(call["x"][0], T.normalize(x / 255.0), rtol=0, atol=1e-6)
        # decoding: Hann 0.45 additive, argmax, back to the image, clipped
        out = call["out"]
        crop_box, conf, _ = decode_prediction(out["score_map"], out["boxes"], hann_window_2d(4, 4), 0.45, (56, 56))
        want = bx.clip_to_image(T.boxes_from_crop(crop_box[0].double().numpy(), s, tr), 64, 48)
        np.testing.assert_allclose(bx.xywh_to_xyxy(box_xywh), want, atol=1e-3)
        assert score == pytest.approx(float(conf[0]), abs=1e-6)
        reported.append(bx.xywh_to_xyxy(box_xywh))
        if bx.is_valid(reported[-1]) and bx.intersects_image(reported[-1], 64, 48):
            accepted = reported[-1]
    # boxes really moved the crops (a dead model would make the check above trivial)
    assert len({tuple(np.round(b, 3)) for b in reported}) > 3


def test_as_shipped_switch_never_propagates_the_state(model):
    frames, init = _video(6, 2)
    tracker = lorat.Tracker(model, SPMTrackTrackConfig(propagate_state=False, **F32))
    spy = Spy(tracker.model)
    tracker.initialize(frames[0], init)
    shipped = [tracker.track(f) for f in frames[1:]]
    assert all(c["state"] is None for c in spy.calls)
    propagated = lorat.Tracker(model, TrackConfig(**F32))
    propagated.initialize(frames[0], init)
    paper = [propagated.track(f) for f in frames[1:]]
    np.testing.assert_allclose(shipped[0][0], paper[0][0])  # frame 1 is a first frame in both modes
    assert any(abs(a[1] - b[1]) > 1e-6 for a, b in zip(shipped[1:], paper[1:]))  # then the state matters


def test_batched_equals_single_sequence_runs(model):
    """Three sequences of different lengths, started at different frames, one forward per frame."""
    videos = {"a": _video(9, 0), "b": _video(6, 3), "c": _video(4, 5)}
    starts = {"a": 0, "b": 2, "c": 4}
    single = {}
    for sid, (frames, init) in videos.items():
        tr = lorat.Tracker(model, TrackConfig(**F32, copy_model=True))
        tr.initialize(frames[0], init)
        single[sid] = [tr.track(f) for f in frames[1:]]
    batched = {sid: [] for sid in videos}
    tracker = lorat.Tracker(model, TrackConfig(**F32, copy_model=True))
    for step in range(12):
        new = [sid for sid in videos if starts[sid] == step]
        if new:
            tracker.initialize_many(new, [videos[s][0][0] for s in new], [videos[s][1] for s in new])
        going = [sid for sid in videos if starts[sid] < step <= starts[sid] + len(videos[sid][0]) - 1]
        if going:
            res = tracker.track_many(going, [videos[s][0][step - starts[s]] for s in going])
            for sid, r in zip(going, res):
                batched[sid].append(r)
        done = [sid for sid in videos if step == starts[sid] + len(videos[sid][0]) - 1]
        tracker.remove(done)
    for sid in videos:
        assert len(batched[sid]) == len(single[sid])
        for (b1, s1), (b2, s2) in zip(batched[sid], single[sid]):
            np.testing.assert_allclose(b1, b2, atol=1e-3)
            assert s1 == pytest.approx(s2, abs=1e-5)
    assert tracker.active_ids == [] and tracker.state_tokens._states == {}


def test_pruning_does_not_change_the_results(model):
    frames, init = _video(40, 4)
    runs = []
    for prune, length in ((False, None), (True, None), (True, len(frames))):
        tr = lorat.Tracker(model, SPMTrackTrackConfig(prune_memory=prune, **F32, copy_model=True))
        if length:
            tr.set_sequence_length("s", length)
        tr.initialize_many(["s"], [frames[0]], [init])
        runs.append(([tr.track_many(["s"], [f])[0] for f in frames[1:]], len(tr.memory("s"))))
    (full, n_full), (pruned, n_pruned), (known, n_known) = runs
    for a, b, c in zip(full, pruned, known):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[0], c[0])
    assert n_full == 40 and n_pruned < 40 and n_known == 1


@pytest.mark.parametrize("schedule,known,bound", [("default", False, 0.75), ("default", True, 0.25),
                                                   ("thirds", False, 2 / 3), ("thirds", True, 1 / 3)])
def test_memory_stays_bounded_over_a_long_sequence(model, schedule, known, bound):
    """600 frames: the kept crops never exceed ~bound x frames (the schedule needs O(t) distinct crops; with
    the length known, bound x length), the memory frees them as the schedule moves on, and ends with entry 0
    only when the length is known. (10,000 frames: ``benchmarks/spmtrack_memory.md``.)"""
    n = 600
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threading only adds contention
    try:
        frames, init = _video(16, 6)
        tracker = lorat.Tracker(model, SPMTrackTrackConfig(schedule=schedule, **F32))
        if known:
            tracker.set_sequence_length("long", n)
        tracker.initialize_many(["long"], [frames[0]], [init])
        mem = tracker.memory("long")
        for t in range(1, n):
            tracker.track_many(["long"], [frames[t % 16]])
            if t in (150, 300, n - 1):
                kept = mem.indices()
                assert all(mem.needed(i, t + 1) for i in kept)  # nothing kept that no later frame can pick
                assert len(kept) <= bound * (n if known else t) + 5, (t, len(kept))
        assert mem.peak <= bound * n + 5  # peak: counted right after an append, before that frame's pruning
        if known:
            assert mem.indices() == [0]
    finally:
        torch.set_num_threads(threads)


def test_degenerate_prediction_crops_memory_around_the_last_box(model, monkeypatch):
    frames, init = _video(3, 7)
    tracker = lorat.Tracker(model, TrackConfig(**F32))
    tracker.initialize(frames[0], init)
    monkeypatch.setattr(SPMTrackTracker, "decode", lambda self, o, c, s: (np.array([[5.0, 5.0, 5.0, 5.0]]),
                                                                          np.array([0.1])))
    box, _ = tracker.track(frames[1])
    assert box[2] == 0 and box[3] == 0
    crop, _ = tracker.memory().select(2)[1]  # entry 1, cropped around the (kept) initial box
    want, _ = memory_entry(frames[1], bx.xywh_to_xyxy(np.asarray(init)), 28, 2)
    assert torch.equal(crop, want)


def test_cli_eval_and_track_with_an_spmtrack_preset(tmp_path, capsys, monkeypatch):
    import cv2

    from lorat.cli import main
    from test_eval_runner import LENGTHS, _write_got10k_val

    lengths = []
    original = SPMTrackTracker.set_sequence_length

    def record(self, seq_id, length):
        lengths.append(length)
        original(self, seq_id, length)
    monkeypatch.setattr(SPMTrackTracker, "set_sequence_length", record)

    root = tmp_path / "got10k"
    _write_got10k_val(root)
    sets = ["--set"] + [f"{k}={v}" for k, v in TINY.items()] + ["schedule=thirds", "propagate_state=false"]
    out = tmp_path / "results"
    args = ["eval", "--preset", "spmtrack-b-224", "--benchmark", "got10k_val", "--root", str(root), "--output",
            str(out), "--batch", "3", "--device", "cpu", "--dtype", "float32", "--quiet", "--limit", "4", *sets]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "SPMTrackTracker" in text and "schedule thirds" in text and "not propagated" in text
    assert "tracked 4 sequences" in text
    assert sorted(lengths) == sorted(LENGTHS[:4])  # the runner passes each sequence's length (more pruning)
    assert len(list((out / "spmtrack-b-224" / "got10k_val").glob("*.txt"))) >= 4
    video = tmp_path / "frames"
    video.mkdir()
    frames, init = _video(5, 0)
    for i, f in enumerate(frames):
        cv2.imwrite(str(video / f"{i:04d}.jpg"), f[:, :, ::-1])
    args = ["track", str(video), "--box", ",".join(str(int(v)) for v in init), "--output", str(tmp_path / "trk"),
            "--no-video", "--preset", "spmtrack-b-224", "--device", "cpu", "--quiet",
            "--set", *[f"{k}={v}" for k, v in TINY.items()]]
    assert main(args) == 0
    assert "SPMTrackTracker" in capsys.readouterr().out
    assert any((tmp_path / "trk").iterdir())


def test_cli_models_prints_the_tmoe_fields(capsys):
    from lorat.cli import main

    assert main(["models", "spmtrack-l-378"]) == 0
    line = capsys.readouterr().out.strip()
    assert "tmoe_r=64 alpha=64 experts=4" in line and "lora_r" not in line
    assert main(["models", "lorat-b-224"]) == 0
    assert "lora_r=64" in capsys.readouterr().out


def test_bf16_memory_holds_what_the_model_is_fed(model):
    frames, init = _video(5, 8)
    tracker = lorat.Tracker(model, TrackConfig(device="cpu", dtype="bfloat16", verbose=False))
    spy = Spy(tracker.model)
    tracker.initialize(frames[0], init)
    reported = [tracker.track(f)[0] for f in frames[1:]]
    assert template_indices(4) == [0, 1, 3]
    crop, _ = tracker.memory().select(4)[2]  # entry 3: frame 3 around its reported box
    want, _ = memory_entry(frames[3], bx.xywh_to_xyxy(reported[2]), 28, 2)
    assert crop.dtype == torch.bfloat16 and torch.equal(crop, want.to(torch.bfloat16))
    assert torch.equal(spy.calls[-1]["z"][0, 2], crop)  # fed as stored: no second rounding


def test_freed_pages_are_handed_back_every_trim_every_frames(model, monkeypatch):
    import lorat.track.spmtrack as spm

    calls = []
    monkeypatch.setattr(spm, "release_freed_memory", lambda: calls.append(1) or True)
    frames, init = _video(40, 9)
    tracker = lorat.Tracker(model, SPMTrackTrackConfig(trim_every=3, **F32))
    tracker.initialize_many(["a", "b"], [frames[0]] * 2, [init] * 2)
    for f in frames[1:11]:
        tracker.track_many(["a", "b"], [f, f])
    assert len(calls) == 20 // 3  # 10 frames of 2 sequences
    off = lorat.Tracker(model, SPMTrackTrackConfig(trim_every=0, **F32))
    calls.clear()
    off.initialize(frames[0], init)
    for f in frames[1:]:
        off.track(f)
    assert calls == []
    with pytest.raises(ValueError, match="trim_every=-1"):
        SPMTrackTrackConfig(trim_every=-1).validate()


def test_memory_api_errors(model):
    tracker = lorat.Tracker(model, TrackConfig(**F32))
    with pytest.raises(KeyError, match="'nope' is not tracked"):
        tracker.memory("nope")
    with pytest.raises(ValueError, match="length must be >= 1"):
        tracker.set_sequence_length("s", 0)


@pytest.mark.parametrize("runtime,options,atol", [("eager", {"attention": "auto"}, 1e-4), ("onnx", {}, 1e-3),
                                                  ("int8", {}, 0.5)])
def test_runtimes_track_spmtrack_like_the_model(model, runtime, options, atol):
    # the state token goes through the runtime as the fourth positional input (zeros on the first frame, which
    # the model as written gets as None: 0 + track_query + query_embed is exact)
    frames, init = _video(8, 1)
    plain = lorat.Tracker(model, TrackConfig(**F32, copy_model=True))
    fast = lorat.Tracker(model, TrackConfig(**F32, copy_model=True, runtime=runtime, runtime_options=options))
    assert fast.runtime is not None and fast.runtime.name == runtime
    for t in (plain, fast):
        t.initialize(frames[0], init)
    for f in frames[1:]:
        (b1, s1), (b2, s2) = plain.track(f), fast.track(f)
        np.testing.assert_allclose(b2, b1, atol=atol)  # pixels (int8: a few tenths on this tiny model)
        assert s2 == pytest.approx(s1, abs=atol)
    sid = next(iter(fast.states))
    torch.testing.assert_close(fast.state_tokens.get(sid).float(), plain.state_tokens.get(sid).float(),
                               rtol=0.05 if runtime == "int8" else 1e-4, atol=0.05 if runtime == "int8" else 1e-4)
