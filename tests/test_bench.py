"""``lorat bench``: JSON output with every variant, ratios to the official path, FLOPs, compare mode."""
from __future__ import annotations

import json

import pytest

import lorat
from lorat.bench import compare_results, count_gflop
from lorat.cli import main
from lorat.export import example_inputs

TINY = ["embed_dim=32", "depth=2", "num_heads=2", "template_size=28", "search_size=56", "lora_r=4", "lora_alpha=8"]


def _analytic_gflop(cfg) -> float:
    """2 * in * out per token for every linear (+ the patch conv) and 4 * N^2 * C for attention."""
    C, nz, nx = cfg.embed_dim, cfg.template_feat ** 2, cfg.search_feat ** 2
    n = nz + nx
    hidden = int(C * cfg.mlp_ratio)
    per_block = 2 * n * (3 * C * C + C * C + 2 * C * hidden) + 4 * n * n * C
    patch = 2 * n * C * 3 * cfg.patch_size ** 2
    head = 2 * nx * (2 * C * C + C * 1) + 2 * nx * (2 * C * C + C * 4)  # cls and reg MLPs, 3 layers each
    return (cfg.depth * per_block + patch + head) / 1e9


def test_flop_count_matches_the_formula(tiny_cfg):
    model = lorat.create_model(tiny_cfg)  # unmerged LoRA: counted on the merged copy
    got = count_gflop(model, example_inputs(model, batch=2))
    assert got == pytest.approx(_analytic_gflop(model.cfg), rel=1e-9)


@pytest.fixture(scope="module")
def result_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    path = out / "r.json"
    rc = main(["bench", "--set", *TINY, "--runtimes", "eager", "int8", "onnx-int8", "--precisions", "float32",
               "bfloat16",
               "--attention", "auto", "sdpa", "manual", "--batches", "1", "2", "--rounds", "1", "--calls", "1",
               "--json", str(path), "--markdown", str(out / "r.md")])
    assert rc == 0
    return path


def test_bench_writes_json_with_every_variant(result_path):
    r = json.loads(result_path.read_text())
    assert r["kind"] == "lorat-bench"
    labels = {row["label"] for row in r["rows"]}
    assert {"official/float32", "official/bfloat16", "eager/float32/sdpa", "eager/bfloat16/sdpa",
            "eager/bfloat16/manual", "onnx-int8/float32", "int8/float32/sdpa", "int8/bfloat16/manual"} <= labels
    assert any(s.startswith("onnx-int8/bfloat16") for s in r["skipped"])  # float32 only, said so
    combos = {(row["mode"], row["batch"]) for row in r["rows"]}
    assert combos == {(m, b) for m in ("forward", "track") for b in (1, 2)}
    assert set(r["matmul_peak_gflops"]) == {"float32", "bfloat16", "int8"}  # int8: the int8 runtimes' GEMM
    assert all(v > 0 for v in r["matmul_peak_gflops"].values())
    for row in r["rows"]:
        assert row["latency_ms_min"] <= row["latency_ms_med"]
        assert row["fps_best"] == pytest.approx(row["batch"] * 1e3 / row["latency_ms_min"])
        assert row["gflops_best"] == pytest.approx(row["gflop_per_frame"] * row["fps_best"])
        key = "int8" if row["runtime"] in ("int8", "onnx-int8") else row["precision"]
        assert row["peak_share"] == pytest.approx(row["gflops_best"] / r["matmul_peak_gflops"][key])
        if row["runtime"] in ("int8", "onnx-int8"):
            assert row["ratio_official_same"] is None  # no official int8 path to compare with
        if row["mode"] == "track":
            assert "tracker_overhead_ms" in row
    ref_prec = "bfloat16" if r["machine"]["auto_bf16"] else "float32"
    assert r["machine"]["bf16_speedup"] > 0
    for row in r["rows"]:
        if row["label"] == f"official/{ref_prec}":
            assert row["ratio_official"] == pytest.approx(1.0)
        if row["label"] == "official/float32":
            assert row["ratio_official_same"] == pytest.approx(1.0)
    fwd = {row["label"]: row for row in r["rows"] if row["mode"] == "forward" and row["batch"] == 2}
    assert fwd["eager/float32/sdpa"]["max_box_diff_vs_fp32"] == 0.0
    assert 0 < fwd["eager/bfloat16/manual"]["max_box_diff_vs_fp32"] < 5e-2
    assert (result_path.parent / "r.md").read_text().count("| forward |") == len(labels) * 2


@pytest.mark.parametrize("preset,overrides,boxes_shape", [
    # LoReTrack / OSTrack: forward(template, search), pred_boxes (B, 1, 4), its own attention
    ("loretrack-b-128", ["depth=2", "embed_dim=64", "num_heads=2", "head_channels=16"], 3),
    # SPMTrack: forward(z (B,T,...), z_feat_mask, x, state), the state carried through the runtime when tracking
    ("spmtrack-b-224", ["embed_dim=32", "depth=2", "num_heads=2", "tmoe_r=4", "tmoe_experts=3"], 4),
])
def test_bench_runs_the_other_architectures(tmp_path, preset, overrides, boxes_shape):
    from lorat.bench import BenchConfig, run_bench

    cfg = BenchConfig(preset=preset, overrides=dict(o.split("=") for o in overrides), runtimes=["eager", "onnx-int8"],
                      precisions=["float32"], batches=[1, 2], rounds=1, calls=1, peak=False)
    cfg.overrides = {k: int(v) for k, v in cfg.overrides.items()}
    r = run_bench(cfg, log=lambda *a: None)
    rows = {(row["mode"], row["batch"], row["label"]): row for row in r["rows"]}
    labels = {row["label"] for row in r["rows"]}
    attention = "model" if preset.startswith("loretrack") else "sdpa"
    assert {"official/float32", f"eager/float32/{attention}", "onnx-int8/float32"} <= labels
    assert {(m, b) for m, b, _ in rows} == {(m, b) for m in ("forward", "track") for b in (1, 2)}
    assert r["gflop_per_frame"] > 0
    fwd = rows[("forward", 2, f"eager/float32/{attention}")]
    assert fwd["max_box_diff_vs_fp32"] == 0.0 and fwd["fps_med"] > 0
    assert rows[("forward", 2, "onnx-int8/float32")]["max_box_diff_vs_fp32"] is not None


def test_compare_mode(result_path, tmp_path, capsys):
    a = json.loads(result_path.read_text())
    b = json.loads(result_path.read_text())
    for row in b["rows"]:
        if row["label"] == "eager/float32/sdpa":
            row["fps_med"] *= 2
    rows = {(r["mode"], r["batch"], r["label"]): r for r in compare_results(a, b)}
    assert rows[("forward", 1, "eager/float32/sdpa")]["fps_ratio"] == pytest.approx(2.0)
    assert rows[("forward", 1, "official/float32")]["fps_ratio"] == pytest.approx(1.0)
    b_path = tmp_path / "b.json"
    b_path.write_text(json.dumps(b))
    assert main(["bench", "--compare", str(result_path), str(b_path), "--json", str(tmp_path / "c.json")]) == 0
    assert "| 2.00 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "c.json").read_text())["kind"] == "lorat-bench-compare"


def test_compare_names_bad_files(result_path, tmp_path, capsys):
    (tmp_path / "other.json").write_text(json.dumps({"rows": []}))
    assert main(["bench", "--compare", str(result_path), str(tmp_path / "other.json")]) == 1
    assert "other.json is not a lorat bench result" in capsys.readouterr().err
    assert main(["bench", "--compare", str(result_path), str(tmp_path / "nope.json")]) == 1
    assert "nope.json" in capsys.readouterr().err


def test_bench_rejects_bad_options():
    assert main(["bench", "--set", *TINY, "--batches", "0", "--no-peak"]) == 1
    with pytest.raises(SystemExit):
        main(["bench", "--runtimes", "tensorrt"])


def _gpu_script():
    from scripts import load_script

    return load_script("benchmarks/gpu_bench.py", "gpu_bench")


def test_gpu_script_skips_cleanly_without_cuda(tmp_path, monkeypatch, capsys):
    import torch

    mod = _gpu_script()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    md = tmp_path / "gpu.md"
    assert mod.main(["--markdown", str(md), "--json", str(tmp_path / "gpu.json")]) == 0
    assert "no CUDA device" in capsys.readouterr().out and "skipped" in md.read_text()
    assert not (tmp_path / "gpu.json").exists()  # nothing measured, no result file pretending otherwise


def test_gpu_script_dry_run_runs_every_step_on_cpu(tmp_path, monkeypatch):
    """The script's whole path (bench, batched evaluation, goals, files) on a tiny CPU model, marked as a dry run."""
    import torch

    mod = _gpu_script()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the dry run must not need a GPU
    md, js = tmp_path / "gpu.md", tmp_path / "gpu.json"
    assert mod.main(["--dry-run", "--markdown", str(md), "--json", str(js)]) == 0
    doc = json.loads(js.read_text())
    assert doc["dry_run"] is True and doc["partial"] is False and "Dry run" in md.read_text()
    assert set(doc["bench"]) == {"lorat-b-224", "lorat-s-224"}
    for r in doc["bench"].values():
        assert r["config"]["overrides"]["depth"] == mod.DRY_RUN_MODEL["depth"]
        assert {(row["mode"], row["batch"]) for row in r["rows"]} == {(m, b) for m in ("forward", "track")
                                                                       for b in (1, 2)}
    assert [(e["preset"], e["sequences"]) for e in doc["evaluation"]] == [
        ("lorat-b-224", 1), ("lorat-b-224", 2), ("lorat-s-224", 1), ("lorat-s-224", 2)]
    assert all(e["frames_per_s"] > 0 for e in doc["evaluation"])
    assert doc["goals"]["paper_fps"] == mod.PAPER_FPS_B224 and doc["goals"]["variant"].startswith("eager/")


def test_gpu_script_keeps_finished_parts_when_stopped(tmp_path, monkeypatch):
    """A run that dies in the batched evaluation leaves the bench results and the goals on disk, marked partial."""
    mod = _gpu_script()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # what a time limit's signal handler or Ctrl-C raises

    monkeypatch.setattr(mod, "evaluation_throughput", stopped)
    md, js = tmp_path / "gpu.md", tmp_path / "gpu.json"
    with pytest.raises(KeyboardInterrupt):
        mod.main(["--dry-run", "--presets", "lorat-b-224", "--markdown", str(md), "--json", str(js)])
    doc = json.loads(js.read_text())
    assert doc["partial"] is True and list(doc["bench"]) == ["lorat-b-224"] and doc["evaluation"] == []
    assert doc["goals"]["variant"] and "partial" in md.read_text() and "Goal LoRAT-B-224" in md.read_text()
