"""Inference runtimes: every runtime and precision computes the fp32 boxes within a stated tolerance.

Tolerances (normalised box coordinates in [0, 1] of the search crop, and score logits), on a tiny model
whose LayerScale is set to 0.5 so that the blocks actually shape the output:
  fp32 runtimes (manual attention, ONNX Runtime fp32, torch.compile fp32): 1e-4;
  bf16 (weights cast or autocast): 3e-2 boxes / 0.15 logits (bf16 keeps 8 bits of mantissa);
  ONNX int8 dynamic quantisation: 5e-2 boxes / 0.3 logits.
"""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

import lorat
from lorat import device as device_mod
from lorat.export import example_inputs, export_onnx
from lorat.runtime import (
    ManualAttention,
    add_runtime_argument,
    as_module,
    choose_attention,
    make_runtime,
    runtime_from_args,
    use_attention,
)

TOL = {"float32": (1e-4, 1e-4), "bfloat16": (3e-2, 0.15), "int8": (5e-2, 0.3)}


@pytest.fixture(scope="module")
def model():
    from lorat.config import ModelConfig

    cfg = ModelConfig(name="tiny", embed_dim=32, depth=2, num_heads=2, template_size=28, search_size=56,
                      lora_r=4, lora_alpha=8.0)
    torch.manual_seed(0)
    m = lorat.create_model(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)  # the 1e-5 init makes the blocks nearly the identity: nothing to compare
    return m


@pytest.fixture(scope="module")
def inputs(model):
    return example_inputs(model, batch=3, seed=2)


@pytest.fixture(scope="module")
def reference(model, inputs):
    with torch.inference_mode():
        return model.eval()(*inputs)  # unmerged LoRA, fp32, SDPA: the plain definition


def _diff(out, ref):
    return (float((out["boxes"] - ref["boxes"]).abs().max()),
            float((out["score_map"] - ref["score_map"]).abs().max()))


@pytest.mark.parametrize("name,precision,attention,tol", [
    ("eager", "float32", "sdpa", "float32"),
    ("eager", "float32", "manual", "float32"),
    ("eager", "bfloat16", "sdpa", "bfloat16"),
    ("eager", "bfloat16", "manual", "bfloat16"),
    ("onnx", "float32", "auto", "float32"),
    ("onnx-int8", "float32", "auto", "int8"),
    ("compile", "bfloat16", "auto", "bfloat16"),
    ("int8", "float32", "auto", "int8"),
    ("int8", "bfloat16", "auto", "int8"),
])
def test_runtime_matches_fp32(model, inputs, reference, name, precision, attention, tol):
    rt = make_runtime(model, name, precision, "cpu", attention=attention)
    out = rt(*inputs)
    assert out["boxes"].shape == reference["boxes"].shape and out["boxes"].dtype == torch.float32
    assert out["score_map"].shape == reference["score_map"].shape
    box_tol, score_tol = TOL[tol]
    d_box, d_score = _diff(out, reference)
    assert d_box < box_tol and d_score < score_tol, (rt.describe(), d_box, d_score)
    # another batch size works too (ONNX dynamic batch; compile recompiles)
    one = rt(*(t[:1] for t in inputs))
    assert one["boxes"].shape[0] == 1
    assert float((one["boxes"] - reference["boxes"][:1]).abs().max()) < box_tol


def test_official_path_and_reference_kept(model, inputs, reference):
    rt = make_runtime(model, "eager", "bfloat16", "cpu", merge_lora=False, autocast=True, attention="sdpa")
    desc = rt.describe()
    assert desc["merged_lora"] is False and desc["autocast"] is True and desc["weights"] == "float32"
    assert desc["attention"] == "sdpa"
    d_box, _ = _diff(rt(*inputs), reference)
    assert d_box < TOL["bfloat16"][0]
    # the runtime prepared a copy: the model passed in still has its LoRA and fp32 weights
    from lorat.models.peft import has_lora

    assert has_lora(model) and next(model.parameters()).dtype == torch.float32


def test_precision_auto_follows_the_machine(model, monkeypatch):
    fast_bf16 = device_mod.cpu_prefers_bf16()
    rt = make_runtime(model, "eager", "auto", "cpu")
    assert rt.precision == ("bfloat16" if fast_bf16 else "float32")
    monkeypatch.setattr(device_mod, "cpu_prefers_bf16", lambda: True)
    rt = make_runtime(model, "eager", "auto", "cpu")
    assert rt.precision == "bfloat16" and rt.info["weights"] == "bfloat16"
    assert rt.attention == ("sdpa" if device_mod.cpu_has_amx("bfloat16") else "manual")
    monkeypatch.setattr(device_mod, "cpu_prefers_bf16", lambda: False)
    assert make_runtime(model, "eager", "auto", "cpu").precision == "float32"
    assert make_runtime(model, "onnx", "auto", "cpu").precision == "float32"


def test_attention_choice(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(device_mod, "cpu_has_amx", lambda precision="bfloat16": False)
    assert choose_attention(cpu, "bfloat16", 320) == "manual"
    assert choose_attention(cpu, "bfloat16", 925) == "sdpa"  # 378 inputs: the N^2 scores are memory-bound
    assert choose_attention(cpu, "float32", 320) == "sdpa"
    assert choose_attention(cuda, "float16", 320) == "sdpa"  # flash / memory-efficient kernels
    # with AMX tiles for the precision the flash kernel is never slower on CPU
    monkeypatch.setattr(device_mod, "cpu_has_amx", lambda precision="bfloat16": precision == "bfloat16")
    assert choose_attention(cpu, "bfloat16", 80) == "sdpa"
    assert choose_attention(cpu, "bfloat16", 320) == "sdpa"
    assert choose_attention(cpu, "float16", 320) == "manual"  # AMX-BF16 without AMX-FP16


def test_training_attention_choice():
    from lorat.runtime import choose_training_attention

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_training_attention(cpu, "bfloat16", 80) == "manual"  # the demo model: 16 + 64 tokens
    assert choose_training_attention(cpu, "bfloat16", 180) == "manual"
    assert choose_training_attention(cpu, "bfloat16", 320) == "manual"  # LoRAT-224 crops
    assert choose_training_attention(cpu, "bfloat16", 925) == "sdpa"  # LoRAT-378: the N^2 scores outgrow the caches
    assert choose_training_attention(cpu, "float32", 80) == "sdpa"
    assert choose_training_attention(cuda, "float16", 80) == "sdpa"
    assert choose_training_attention(cpu, "bfloat16", None) == "sdpa"  # unknown token count


def test_cpu_has_amx_reads_the_flags(monkeypatch):
    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert not device_mod.cpu_has_amx("bfloat16")
    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: frozenset({"amx_bf16", "amx_tile", "avx512_bf16"}))
    assert device_mod.cpu_has_amx("bfloat16") and not device_mod.cpu_has_amx("float16")
    assert not device_mod.cpu_has_amx("float32")


def test_use_attention_round_trip(model, inputs):
    from lorat.models.vit import Attention

    rt = make_runtime(model, "eager", "float32", "cpu", attention="sdpa")
    before = rt(*inputs)
    assert use_attention(rt.model, "manual") == model.cfg.depth
    assert all(isinstance(b.attn, ManualAttention) for b in rt.model.blocks)
    manual = rt(*inputs)
    assert use_attention(rt.model, "sdpa") == model.cfg.depth
    assert all(type(b.attn) is Attention for b in rt.model.blocks)
    assert max(_diff(manual, before)) < 1e-5
    assert max(_diff(rt(*inputs), before)) == 0.0
    with pytest.raises(ValueError, match="attention"):
        use_attention(rt.model, "flash")


@pytest.mark.parametrize("ffn", ["mlp", "swiglu"])
def test_block_folds_layer_scale_into_its_linears(ffn):
    from lorat.models.peft import attach_lora
    from lorat.models.vit import Block

    torch.manual_seed(0)
    blocks = torch.nn.ModuleList([Block(16, 2, ffn=ffn)]).eval()
    with torch.no_grad():
        for p in blocks.parameters():
            p.normal_()  # gamma far from 1e-5 and from 1: a wrong fold shows
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        want = blocks[0](x)
        folded = blocks[0].fused_for_inference()
        assert folded is blocks[0] and type(folded.ls1) is type(folded.ls2) is torch.nn.Identity
        assert float((folded(x) - want).abs().max()) < 1e-5 * float(want.abs().max())  # fp32 rounding
        assert folded.fused_for_inference() is None  # nothing left to fold
    # a LayerScale in front of a wrapped linear (unmerged LoRA) stays
    lora = torch.nn.ModuleList([Block(16, 2)]).eval()
    attach_lora(lora, r=2, alpha=4.0)
    assert lora[0].fused_for_inference() is None and not isinstance(lora[0].ls1, torch.nn.Identity)


def test_prepared_path_folds_layer_scale_official_path_keeps_it(model):
    from lorat.models.vit import LayerScale

    prepared = make_runtime(model, "eager", "float32", "cpu")
    assert prepared.info["fused_modules"] == model.cfg.depth
    assert not any(isinstance(m, LayerScale) for m in prepared.model.modules())
    official = make_runtime(model, "eager", "float32", "cpu", merge_lora=False)
    assert sum(isinstance(m, LayerScale) for m in official.model.modules()) == 2 * model.cfg.depth
    assert sum(isinstance(m, LayerScale) for m in model.modules()) == 2 * model.cfg.depth  # a copy was prepared


def test_bad_requests_are_named(model, tmp_path):
    with pytest.raises(ValueError, match="runtime 'tensorrt'"):
        make_runtime(model, "tensorrt", "float32", "cpu")
    with pytest.raises(ValueError, match="float32 only"):
        make_runtime(model, "onnx", "bfloat16", "cpu")
    with pytest.raises(ValueError, match="float16"):
        make_runtime(model, "eager", "float16", "cpu")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        make_runtime(model, "onnx", "float32", "cpu", onnx_path=tmp_path / "missing.onnx")


def test_onnx_runtime_from_an_exported_file(model, inputs, reference, tmp_path):
    path = export_onnx(model, tmp_path / "m.onnx")
    rt = make_runtime(model, "onnx-int8", "auto", "cpu", onnx_path=path, cache_dir=tmp_path)
    assert rt.info["onnx"] == str(tmp_path / "m.int8.onnx")
    assert (tmp_path / "m.int8.onnx").stat().st_size < path.stat().st_size
    assert _diff(rt(*inputs), reference)[0] < TOL["int8"][0]


def test_int8_quantisation_leaves_the_logging_level_as_it_was(model, tmp_path):
    import logging

    from lorat.runtime_onnx import quantize_int8

    path = export_onnx(model, tmp_path / "m.onnx")
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    try:
        out = quantize_int8(path, tmp_path / "q.onnx")
        assert root.level == logging.INFO
    finally:
        root.setLevel(before)
    assert out.is_file() and out.stat().st_size < path.stat().st_size


def test_tracker_drives_a_runtime(model):
    from lorat.track.tracker import TrackConfig, Tracker

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(4)]
    box = (40, 30, 24, 20)
    results = {}
    for name in ("eager", "onnx"):
        tracker = Tracker(as_module(make_runtime(model, name, "float32", "cpu")),
                          TrackConfig(device="cpu", dtype="float32"))
        tracker.initialize(frames[0], box)
        results[name] = np.array([tracker.track(f)[0] for f in frames[1:]])
    plain = Tracker(model, TrackConfig(device="cpu", copy_model=True))
    plain.initialize(frames[0], box)
    expected = np.array([plain.track(f)[0] for f in frames[1:]])
    for name, got in results.items():
        np.testing.assert_allclose(got, expected, atol=1e-3, err_msg=name)  # pixels


def test_add_runtime_argument(model, tmp_path):
    p = argparse.ArgumentParser()
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu")
    add_runtime_argument(p)
    args = p.parse_args([])
    assert (args.runtime, args.attention, args.onnx_path) == ("eager", "auto", None)
    args = p.parse_args(["--runtime", "onnx-int8", "--onnx", str(tmp_path / "x.onnx")])
    assert args.runtime == "onnx-int8" and args.onnx_path.endswith("x.onnx")
    with pytest.raises(SystemExit):
        p.parse_args(["--runtime", "tensorrt"])
    rt = runtime_from_args(model, p.parse_args(["--runtime", "eager", "--dtype", "bfloat16", "--attention", "sdpa"]))
    assert (rt.name, rt.precision, rt.attention) == ("eager", "bfloat16", "sdpa")


# ============================================================================ TrackConfig.runtime, CLI, OSTrack
def _frames(n=5, hw=(90, 120), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]


def test_trackconfig_runtime_drives_the_forward_step(model, capsys):
    from lorat.track.tracker import TrackConfig, Tracker

    frames, box = _frames(), (40, 30, 24, 20)
    got = {}
    for name in ("eager", "onnx", "onnx-int8", "int8"):
        tracker = Tracker(model, TrackConfig(device="cpu", dtype="auto", runtime=name, copy_model=True))
        assert (tracker.runtime is None) == (name == "eager")
        if name.startswith("onnx"):
            assert tracker.precision == "float32"  # auto resolves to what onnxruntime runs
        if name != "eager":
            assert tracker.runtime.name == name
        tracker.initialize(frames[0], box)
        got[name] = np.array([tracker.track(f)[0] for f in frames[1:]])
        assert f"runtime {name}" in capsys.readouterr().out
    fp32 = Tracker(model, TrackConfig(device="cpu", dtype="float32", copy_model=True, verbose=False))
    fp32.initialize(frames[0], box)
    want = np.array([fp32.track(f)[0] for f in frames[1:]])
    np.testing.assert_allclose(got["onnx"], want, atol=1e-3)
    np.testing.assert_allclose(got["onnx-int8"], want, atol=3.0)  # pixels; int8 moves boxes a little
    np.testing.assert_allclose(got["int8"], want, atol=3.0)
    with pytest.raises(ValueError, match="runtime='tensorrt'"):
        TrackConfig(runtime="tensorrt").validate()
    with pytest.raises(ValueError, match="float32 only"):
        Tracker(model, TrackConfig(device="cpu", dtype="bfloat16", runtime="onnx", copy_model=True))


def test_runtime_options_reach_make_runtime(model):
    from lorat.track.tracker import TrackConfig, Tracker

    tracker = Tracker(model, TrackConfig(device="cpu", dtype="bfloat16", copy_model=True, verbose=False,
                                         runtime_options={"attention": "manual"}))
    assert tracker.runtime.name == "eager" and tracker.runtime.attention == "manual"
    assert "attention manual" in tracker.describe()


@pytest.fixture(scope="module")
def tiny_ckpt(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("rt") / "tiny.safetensors"
    lorat.save_checkpoint(model, path)
    return path


def test_cli_track_and_eval_take_runtime(tiny_ckpt, tmp_path, capsys):
    from lorat.cli import main
    from lorat.data.synthetic import SyntheticConfig, make_synthetic_benchmark

    got = tmp_path / "got10k"
    make_synthetic_benchmark(got, SyntheticConfig(frames_per_sequence=12, image_size=(96, 72)), num_train=0,
                             num_val=2, progress=False)
    seq = got / "val" / "GOT-10k_Val_000001"
    first = (seq / "groundtruth.txt").read_text().splitlines()[0]
    boxes = {}
    for name in ("eager", "onnx"):
        out = tmp_path / name
        assert main(["track", str(seq), "--box", first, "--checkpoint", str(tiny_ckpt), "--output", str(out),
                     "--quiet", "--no-video", "--runtime", name, "--dtype", "float32"]) == 0
        assert f"runtime {name})" in capsys.readouterr().out
        boxes[name] = np.loadtxt(out / "GOT-10k_Val_000001_boxes.txt", delimiter=",")
    np.testing.assert_allclose(boxes["onnx"], boxes["eager"], atol=1e-2)
    assert main(["eval", "--benchmark", "got10k_val", "--root", str(got), "--checkpoint", str(tiny_ckpt),
                 "--name", "int8", "--output", str(tmp_path / "res"), "--quiet", "--runtime", "onnx-int8"]) == 0
    printed = capsys.readouterr().out
    assert "runtime onnx-int8" in printed and "precision float32" in printed
    assert len(list((tmp_path / "res" / "int8" / "got10k_val").glob("GOT-10k_Val_00000?.txt"))) == 2
    assert main(["track", str(seq), "--box", first, "--checkpoint", str(tiny_ckpt), "--output", str(tmp_path),
                 "--runtime", "onnx", "--onnx", str(tmp_path / "missing.onnx")]) != 0
    assert "--onnx file not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ostrack():
    torch.manual_seed(0)
    return lorat.create_model("loretrack-b-128", depth=2, embed_dim=64, num_heads=2, head_channels=16).eval()


@pytest.mark.parametrize("name,precision,tol", [("eager", "bfloat16", 3e-2), ("compile", "float32", 1e-4),
                                                ("onnx", "float32", 1e-4), ("onnx-int8", "float32", 5e-2),
                                                ("int8", "bfloat16", 5e-2)])
def test_runtimes_follow_the_ostrack_signature(ostrack, name, precision, tol):
    from lorat.runtime_onnx import example_inputs_for, forward_input_names

    assert forward_input_names(ostrack) == ["template", "search"]
    inputs = example_inputs_for(ostrack, batch=2, seed=3)
    with torch.inference_mode():
        ref = ostrack(*inputs)
    out = make_runtime(ostrack, name, precision, "cpu")(*inputs)
    for key in ("score_map", "size_map", "offset_map"):
        assert out[key].shape == ref[key].shape and out[key].dtype == torch.float32
        assert float((out[key] - ref[key]).abs().max()) < tol * max(1.0, float(ref[key].abs().max())), key


def test_onnx_export_applies_the_inference_fusions(ostrack, tmp_path):
    import onnx

    from lorat.runtime_onnx import export_model_onnx

    def convs(path):
        return sum(n.op_type == "Conv" for n in onnx.load(str(path)).graph.node)

    # CENTER head: 3 x 5 convolutions as written; fused, its wide first layer is a MatMul and the three
    # branches share grouped convolutions (3 + 1); the patch embedding adds one per input
    assert convs(export_model_onnx(ostrack, tmp_path / "plain.onnx", fuse=False)) == 2 + 15
    assert convs(export_model_onnx(ostrack, tmp_path / "fused.onnx")) == 2 + 4


def test_ostrack_tracker_runs_on_an_onnx_runtime(ostrack):
    from lorat.track.ostrack import OSTrackTracker as cls
    from lorat.track.tracker import TrackConfig

    frames, box = _frames(hw=(120, 160)), (60, 40, 30, 24)
    plain = cls(ostrack, TrackConfig(device="cpu", dtype="float32", copy_model=True, verbose=False))
    fast = cls(as_module(make_runtime(ostrack, "onnx", "float32", "cpu")),
               TrackConfig(device="cpu", dtype="float32", verbose=False))
    for t in (plain, fast):
        t.initialize(frames[0], box)
    for f in frames[1:]:
        np.testing.assert_allclose(fast.track(f)[0], plain.track(f)[0], atol=1e-2)


def test_host_threads_restores_the_count_and_changes_no_result(model):
    from lorat.runtime import host_threads
    from lorat.track.tracker import TrackConfig, Tracker

    before = torch.get_num_threads()
    with host_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), host_threads(1):
        raise RuntimeError("restored even on errors")
    assert torch.get_num_threads() == before
    frames, box = _frames(hw=(240, 320), seed=4), (100, 80, 60, 50)  # crops above torch's parallel grain size
    runs = []
    for n in (1, max(2, before)):
        tracker = Tracker(model, TrackConfig(device="cpu", dtype="float32", copy_model=True, verbose=False))
        tracker.host_threads = n
        tracker.initialize(frames[0], box)
        runs.append(np.array([tracker.track(f)[0] for f in frames[1:]]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_lorat_tracker_runs_ostrack_through_trackconfig_runtime(ostrack):
    from lorat.track.ostrack import OSTrackTracker
    from lorat.track.tracker import TrackConfig, Tracker

    assert issubclass(OSTrackTracker, Tracker)
    frames, box = _frames(hw=(120, 160)), (60, 40, 30, 24)
    plain = Tracker(ostrack, TrackConfig(device="cpu", dtype="float32", copy_model=True, verbose=False))
    fast = Tracker(ostrack, TrackConfig(device="cpu", dtype="auto", runtime="onnx", copy_model=True, verbose=False))
    assert fast.runtime.name == "onnx" and fast.precision == "float32"
    for t in (plain, fast):
        t.initialize(frames[0], box)
    for f in frames[1:]:
        np.testing.assert_allclose(fast.track(f)[0], plain.track(f)[0], atol=1e-2)
