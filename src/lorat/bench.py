"""``lorat bench``: latency and fps of a preset per runtime, precision and batch size, with ratios.

What one run measures (all in one process, interleaved, so that host noise hits every variant alike):

* ``forward``: one runtime call on a batch of model inputs (``z``, ``x``, ``z_feat_mask``);
* ``track``: one ``Tracker.track_many`` step over ``batch`` sequences of 640x480 frames (crop, normalise,
  forward, Hann window, argmax, mapping back), frames pre-decoded;
* the model's GFLOP per frame (counted with ``torch.utils.flop_counter``), the GFLOP/s each variant reaches,
  and its share of the matmul peak the command *measures* on this machine (large GEMMs per dtype, the
  faster of ``torch.mm`` and oneDNN-prepacked weights; the int8 runtimes against the int8 GEMM rate,
  ``torch._int_mm``);
* the ratio of every variant to the **official computation path** in the same run: LoRA unmerged (q, k, v
  as three Linear layers plus their LoRA branches), autocast over fp32 weights, SDPA attention, eager, as
  the official LoRAT code evaluates. Absolute speed varies between machines of one kind, ratios much less;
* the largest box difference of each variant against fp32 eager on the same inputs.

Timing: every variant is warmed up (its first call, which includes compiling, is reported separately),
then ``rounds`` rounds each time ``calls`` calls of every variant in turn; we report min and median.

``lorat bench --compare A.json B.json`` matches the rows of two result files and prints B/A ratios of
fps and of the ratios to the official path (the number that carries over between machines).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .device import resolve_device
from .files import atomic_write_text
from .runtime import RUNTIMES, Runtime, as_module, make_runtime, use_attention

#: runtimes whose GEMMs are int8: their "% peak" is against the measured int8 GEMM rate, not the float one
INT8_RUNTIMES = ("int8", "onnx-int8")

__all__ = ["BenchConfig", "run_bench", "measure_matmul_peak", "count_gflop", "compare_results",
           "add_bench_arguments", "run_bench_command", "format_markdown"]

OFFICIAL = "official"


@dataclass
class BenchConfig:
    """Settings of one benchmark run (the ``lorat bench`` options)."""

    preset: str = "lorat-s-224"
    checkpoint: str | None = None
    device: str = "cpu"
    runtimes: list[str] = field(default_factory=lambda: ["eager", "compile", "onnx-int8"])
    precisions: list[str] = field(default_factory=lambda: ["float32", "auto"])
    attention: list[str] = field(default_factory=lambda: ["auto"])
    batches: list[int] = field(default_factory=lambda: [1])
    modes: list[str] = field(default_factory=lambda: ["forward", "track"])
    reference: bool = True
    reference_precision: str = "auto"
    rounds: int = 5
    calls: int = 3
    peak: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def validate(self) -> BenchConfig:
        """Raise ValueError naming the bad option."""
        bad = [r for r in self.runtimes if r not in RUNTIMES]
        if bad:
            raise ValueError(f"unknown runtime(s) {bad}; expected {', '.join(RUNTIMES)}")
        if any(b < 1 for b in self.batches):
            raise ValueError(f"batch sizes must be >= 1, got {self.batches}")
        if not set(self.modes) <= {"forward", "track"} or not self.modes:
            raise ValueError(f"modes={self.modes}; expected forward and/or track")
        if self.rounds < 1 or self.calls < 1:
            raise ValueError(f"rounds={self.rounds} and calls={self.calls} must be >= 1")
        return self


# ============================================================================ machine
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(precisions: list[str], device: torch.device, reps: int = 5) -> dict[str, float]:
    """Best GEMM GFLOP/s per precision over a few large shapes (the ceiling a model's GEMMs can reach).

    Float GEMMs on CPU are timed both as ``torch.mm`` and on oneDNN-prepacked weights (what the ``eager``
    runtime's linears run, :mod:`lorat.runtime_packed`), and the faster counts: prepacked bf16 runs ~1.3x
    ``torch.mm`` on AVX512-BF16 hosts, so a ``torch.mm`` ceiling would let a model exceed its "peak".
    """
    from .runtime_packed import PackedLinear, packing_supported

    shapes = [(2048, 2048, 2048), (1280, 768, 3072), (320, 3072, 768)]
    peak = {}
    for prec in sorted(set(precisions)):
        best = 0.0
        for m, k, n in shapes:
            if prec == "int8":  # int8 x int8 -> int32, the GEMM of the int8 runtimes (oneDNN VNNI on CPU)
                a = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=device)
                b = torch.randint(-127, 128, (n, k), dtype=torch.int8, device=device).t()
                kernels = [lambda a=a, b=b: torch._int_mm(a, b)]
            else:
                dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[prec]
                a = torch.randn(m, k, device=device).to(dtype)
                b = torch.randn(k, n, device=device).to(dtype)
                kernels = [lambda a=a, b=b: torch.mm(a, b)]
                if packing_supported(dtype, device):
                    packed = PackedLinear(torch.nn.Linear(k, n, bias=False), dtype)
                    kernels.append(lambda a=a, f=packed: f(a))
            for mm in kernels:
                with torch.inference_mode():
                    mm()
                    for _ in range(reps):
                        _sync(device)
                        t0 = time.perf_counter()
                        mm()
                        _sync(device)
                        best = max(best, 2 * m * k * n / (time.perf_counter() - t0) / 1e9)
        peak[prec] = best
    return peak


def _peak_key(v_runtime: str, precision: str) -> str:
    """Which measured GEMM peak a row is compared with: int8 runtimes' GEMMs are int8 (GOP/s)."""
    return "int8" if v_runtime in INT8_RUNTIMES else precision


def count_gflop(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    """GFLOP of one forward per sample (multiply-add = 2), counted on an fp32 merged copy.

    Attention is counted through manual matmuls: the flop counter has no formula for CPU flash attention.
    """
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    from .models.peft import fold_lora

    m = copy.deepcopy(model).float().eval()
    fold_lora(m)
    use_attention(m, "manual")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        m(*[t.cpu() for t in inputs])
    return counter.get_total_flops() / 1e9 / inputs[0].shape[0]


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU / GPU name, threads, library versions and the load average (the noise indicator)."""
    from .device import cpu_bf16_speedup, cpu_has_native_bf16, cpu_prefers_bf16

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "native_bf16": cpu_has_native_bf16(), "bf16_speedup": cpu_bf16_speedup(torch.get_num_threads()),
            "auto_bf16": cpu_prefers_bf16(), "torch": torch.__version__, "python": platform.python_version(),
            "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ============================================================================ variants
@dataclass
class _Variant:
    label: str
    runtime: str
    precision: str
    fn: Runtime
    build_s: float
    first_call_s: dict[int, float] = field(default_factory=dict)


def _build_variants(model, cfg: BenchConfig, device: torch.device) -> tuple[list[_Variant], list[str]]:
    variants, skipped = [], []
    interleaved = len(cfg.runtimes) > 1 or cfg.reference  # torch and ORT share the cores: no ORT spinning
    if cfg.reference:
        for prec in dict.fromkeys(cfg.precisions + [cfg.reference_precision]):
            t0 = time.perf_counter()
            rt = make_runtime(model, "eager", prec, device, attention="sdpa", autocast=prec not in ("float32",),
                              merge_lora=False)
            if rt.precision == "float32":
                rt.info["autocast"] = False
            label = f"{OFFICIAL}/{rt.precision}"
            if label not in {v.label for v in variants}:
                variants.append(_Variant(label, OFFICIAL, rt.precision, rt, time.perf_counter() - t0))
    for name in cfg.runtimes:
        for prec in cfg.precisions:
            for attention in cfg.attention if not name.startswith("onnx") else ["auto"]:
                try:
                    t0 = time.perf_counter()
                    rt = make_runtime(model, name, prec, device, attention=attention,
                                      allow_spinning=not interleaved)
                except ValueError as e:
                    if f"{name}/{prec}" not in {s.split(":")[0] for s in skipped}:
                        skipped.append(f"{name}/{prec}: {str(e).split(';')[0]}")
                    continue
                label = f"{name}/{rt.precision}" + (f"/{rt.attention}" if rt.attention else "")
                if label in {v.label for v in variants}:
                    continue  # e.g. precision auto == float32 here, or attention auto == sdpa
                variants.append(_Variant(label, name, rt.precision, rt, time.perf_counter() - t0))
    return variants, skipped


def _tracker_for(rt: Runtime, device: torch.device, batch: int, seed: int):
    from .track.tracker import TrackConfig, Tracker

    tracker = Tracker(as_module(rt), TrackConfig(device=str(device), dtype="float32"))
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(batch)]
    ids = list(range(batch))
    tracker.initialize_many(ids, frames, [(200 + 10 * i, 150, 100, 80) for i in ids])
    return tracker, ids, frames


# ============================================================================ the run
def run_bench(cfg: BenchConfig, log=print) -> dict[str, Any]:
    """Run the benchmark described by ``cfg``; returns the JSON-ready result (see the module docstring)."""
    from .hub import load_checkpoint
    from .models.registry import create_model
    from .runtime_onnx import example_inputs_for

    cfg.validate()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = (load_checkpoint(cfg.checkpoint, name=cfg.preset, **cfg.overrides) if cfg.checkpoint
             else create_model(cfg.preset, **cfg.overrides))
    info = machine_info(device)
    gflop = count_gflop(model, example_inputs_for(model, 1))
    # the model's own inputs (LoRAT: z, x, z_feat_mask; OSTrack / LoReTrack: template, search)
    batch_inputs = {b: example_inputs_for(model, b, seed=cfg.seed + b) for b in cfg.batches}
    variants, skipped = _build_variants(model, cfg, device)
    del model
    precs = {_peak_key(v.runtime, v.precision) for v in variants}
    peak = measure_matmul_peak(sorted(precs), device) if cfg.peak else {}
    log(f"[bench] {cfg.preset}: {gflop:.3g} GFLOP/frame; matmul peak " +
        ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()) + f"; {len(variants)} variants")
    rows = []
    for batch in cfg.batches:
        inputs = tuple(t.to(device) for t in batch_inputs[batch])
        for mode in cfg.modes:
            calls: dict[str, Any] = {}
            for v in variants:
                if mode == "forward":
                    calls[v.label] = (lambda fn=v.fn, inp=inputs: fn(*inp))
                else:
                    tracker, ids, frames = _tracker_for(v.fn, device, batch, cfg.seed)
                    calls[v.label] = (lambda t=tracker, i=ids, f=frames: t.track_many(i, f))
            diffs = {}
            for v in variants:  # warm-up (first call compiles) and the agreement check
                _sync(device)
                t0 = time.perf_counter()
                calls[v.label]()
                _sync(device)
                v.first_call_s.setdefault(batch, time.perf_counter() - t0)
                calls[v.label]()
                if mode == "forward":
                    diffs[v.label] = _boxes(v.fn(*inputs)).float().cpu()
            times: dict[str, list[float]] = {v.label: [] for v in variants}
            for _ in range(cfg.rounds):
                for v in variants:
                    for _ in range(cfg.calls):
                        _sync(device)
                        t0 = time.perf_counter()
                        calls[v.label]()
                        _sync(device)
                        times[v.label].append(time.perf_counter() - t0)
            fp32_eager = next((diffs[v.label] for v in variants
                               if v.label.startswith("eager/float32") and v.label in diffs), None)
            for v in variants:
                t = times[v.label]
                lat_min, lat_med = min(t), statistics.median(t)
                row = {"preset": cfg.preset, "mode": mode, "batch": batch, "label": v.label, "runtime": v.runtime,
                       "precision": v.precision, **{k: v.fn.describe()[k] for k in ("attention",)},
                       "latency_ms_min": 1e3 * lat_min, "latency_ms_med": 1e3 * lat_med,
                       "fps_best": batch / lat_min, "fps_med": batch / lat_med,
                       "first_call_s": v.first_call_s.get(batch), "build_s": v.build_s,
                       "gflop_per_frame": gflop, "gflops_best": gflop * batch / lat_min,
                       "build": v.fn.describe()}
                key = _peak_key(v.runtime, v.precision)
                row["peak_key"] = key
                row["peak_share"] = row["gflops_best"] / peak[key] if key in peak else None
                if mode == "forward" and fp32_eager is not None and v.label in diffs:
                    row["max_box_diff_vs_fp32"] = float((diffs[v.label] - fp32_eager).abs().max())
                rows.append(row)
    if cfg.peak:  # again at the end, keeping the best: a busy host lowers one measurement, never raises it
        peak = {k: max(v, peak[k]) for k, v in measure_matmul_peak(sorted(precs), device).items()}
        for r in rows:
            if r["peak_share"] is not None:
                r["peak_share"] = r["gflops_best"] / peak[r["peak_key"]]
    _add_ratios(rows, cfg, device)
    info["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result = {"kind": "lorat-bench", "version": 1, "config": asdict(cfg), "machine": info,
              "matmul_peak_gflops": peak, "gflop_per_frame": gflop, "skipped": skipped, "rows": rows}
    return result


def _boxes(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """The box output of a forward: LoRAT's ``boxes`` (B,H,W,4), OSTrack's ``pred_boxes`` (B,1,4)."""
    for key in ("boxes", "pred_boxes"):
        if key in out:
            return out[key]
    raise KeyError(f"the model's outputs {sorted(out)} have no boxes or pred_boxes")


def _add_ratios(rows: list[dict], cfg: BenchConfig, device: torch.device) -> None:
    """``ratio_official`` (fps med / official-path fps med at the reference precision, same mode and batch),
    ``ratio_official_same`` (against the official path at the row's own precision) and, for track rows,
    ``tracker_overhead_ms`` (track step - forward, per step)."""
    from .device import resolve_precision

    ref_prec = resolve_precision(cfg.reference_precision, device)
    index = {(r["mode"], r["batch"], r["label"]): r for r in rows}
    for r in rows:
        ref = index.get((r["mode"], r["batch"], f"{OFFICIAL}/{ref_prec}"))
        same = index.get((r["mode"], r["batch"], f"{OFFICIAL}/{r['precision']}"))
        r["ratio_official"] = r["fps_med"] / ref["fps_med"] if ref else None
        r["ratio_official_best"] = r["fps_best"] / ref["fps_best"] if ref else None
        comparable = same and r["runtime"] not in INT8_RUNTIMES  # no official int8 path
        r["ratio_official_same"] = r["fps_med"] / same["fps_med"] if comparable else None
        if r["mode"] == "track":
            fwd = index.get(("forward", r["batch"], r["label"]))
            r["tracker_overhead_ms"] = r["latency_ms_min"] - fwd["latency_ms_min"] if fwd else None


# ============================================================================ reports
def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table (one row per mode, batch and variant)."""
    m = result["machine"]
    peak = ", ".join(f"{k} {v:.0f}" for k, v in result["matmul_peak_gflops"].items()) or "not measured"
    lines = [f"Machine: {m['cpu']}, {m['torch_threads']} torch threads, native bf16: {m['native_bf16']} "
             f"(bf16 linear {m.get('bf16_speedup', float('nan')):.2f}x fp32, auto picks "
             f"{'bf16' if m.get('auto_bf16', m['native_bf16']) else 'fp32'}); torch "
             f"{m['torch']}, onnxruntime {m['onnxruntime']}" + (f"; GPU {m['gpu']}" if m.get("gpu") else "") + ".",
             f"Load average (1/5/15 min) at start {m['loadavg_start']}, at end {m['loadavg_end']}.",
             f"Measured matmul peak (GFLOP/s): {peak}. Model: {result['gflop_per_frame']:.3g} GFLOP per frame.", "",
             "| mode | batch | variant | ms min / med | fps best / med | x official (ref) med / best "
             "| x official same prec | GFLOP/s | % peak | first call s | max box diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        share = None if r["peak_share"] is None else 100 * r["peak_share"]
        lines.append(
            f"| {r['mode']} | {r['batch']} | {r['label']} | {r['latency_ms_min']:.1f} / {r['latency_ms_med']:.1f} | "
            f"{r['fps_best']:.2f} / {r['fps_med']:.2f} | {_f(r['ratio_official'], '.2f')} / "
            f"{_f(r['ratio_official_best'], '.2f')} | {_f(r['ratio_official_same'], '.2f')} | "
            f"{r['gflops_best']:.0f} | {_f(share, '.0f')} | {_f(r['first_call_s'], '.1f')} | "
            f"{_f(r.get('max_box_diff_vs_fp32'), '.1e')} |")
    if result["skipped"]:
        lines += ["", "Skipped: " + "; ".join(result["skipped"])]
    return "\n".join(lines) + "\n"


def _load_result(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"bench result not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a JSON file ({e})") from None
    if not isinstance(data, dict) or data.get("kind") != "lorat-bench" or "rows" not in data:
        raise ValueError(f"{path} is not a lorat bench result (no kind='lorat-bench' / rows)")
    return data


def compare_results(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows present in both results (same preset, mode, batch, variant) with B/A ratios."""
    def key(r):
        return r["preset"], r["mode"], r["batch"], r["label"]

    index = {key(r): r for r in a["rows"]}
    out = []
    for rb in b["rows"]:
        ra = index.get(key(rb))
        if ra is None:
            continue
        ro_a, ro_b = ra.get("ratio_official"), rb.get("ratio_official")
        out.append({"preset": rb["preset"], "mode": rb["mode"], "batch": rb["batch"], "label": rb["label"],
                    "fps_med_a": ra["fps_med"], "fps_med_b": rb["fps_med"], "fps_ratio": rb["fps_med"] / ra["fps_med"],
                    "ratio_official_a": ro_a, "ratio_official_b": ro_b,
                    "ratio_official_change": ro_b / ro_a if ro_a and ro_b else None})
    return out


# ============================================================================ command line
def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``lorat bench``."""
    p.add_argument("--preset", default="lorat-s-224", help="model preset (random weights unless --checkpoint)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint instead of random weights")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--runtimes", nargs="+", default=["eager", "compile", "onnx-int8"], choices=RUNTIMES)
    p.add_argument("--precisions", nargs="+", default=["float32", "auto"],
                   help="float32, bfloat16, float16 or auto (combinations a runtime cannot run are skipped)")
    p.add_argument("--attention", nargs="+", default=["auto"], choices=("auto", "sdpa", "manual"),
                   help="attention kernels to try for the PyTorch runtimes (auto: the per-size/precision choice)")
    p.add_argument("--batches", nargs="+", type=int, default=[1])
    p.add_argument("--modes", nargs="+", default=["forward", "track"], choices=("forward", "track"))
    p.add_argument("--no-reference", action="store_true", help="skip the official computation path")
    p.add_argument("--reference-precision", default="auto",
                   help="precision of the official path the ratios refer to (auto: bf16 autocast on CPUs where bf16 "
                        "is measured faster, else fp32; fp16 autocast on CUDA)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds over all variants")
    p.add_argument("--calls", type=int, default=3, help="timed calls per variant per round")
    p.add_argument("--no-peak", action="store_true", help="skip the matmul peak measurement")
    p.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                   help="model config overrides, e.g. depth=2")
    p.add_argument("--json", dest="json_path", default=None, help="write the result JSON here")
    p.add_argument("--markdown", default=None, help="also write the markdown table here")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), default=None,
                   help="compare two result files instead of running (prints B/A ratios)")


def run_bench_command(args: argparse.Namespace) -> int:
    """Entry point of ``lorat bench``."""
    if args.compare:
        a, b = (_load_result(p) for p in args.compare)
        rows = compare_results(a, b)
        if not rows:
            raise ValueError(f"{args.compare[0]} and {args.compare[1]} have no rows in common")
        print("| preset | mode | batch | variant | fps med A | fps med B | B/A | x official A | x official B |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['preset']} | {r['mode']} | {r['batch']} | {r['label']} | {r['fps_med_a']:.2f} | "
                  f"{r['fps_med_b']:.2f} | {r['fps_ratio']:.2f} | {_f(r['ratio_official_a'], '.2f')} | "
                  f"{_f(r['ratio_official_b'], '.2f')} |")
        if args.json_path:
            atomic_write_text(args.json_path, json.dumps({"kind": "lorat-bench-compare", "a": args.compare[0],
                                                          "b": args.compare[1], "rows": rows}, indent=1))
        return 0
    overrides = _typed_overrides(args.preset, args.overrides)
    cfg = BenchConfig(preset=args.preset, checkpoint=args.checkpoint, device=args.device, runtimes=args.runtimes,
                      precisions=args.precisions, attention=args.attention, batches=args.batches, modes=args.modes,
                      reference=not args.no_reference, reference_precision=args.reference_precision,
                      rounds=args.rounds, calls=args.calls, peak=not args.no_peak, overrides=overrides)
    result = run_bench(cfg)
    text = format_markdown(result)
    print(text, end="")
    if args.json_path:
        atomic_write_text(args.json_path, json.dumps(result, indent=1))
        print(f"[bench] wrote {args.json_path}")
    if args.markdown:
        atomic_write_text(args.markdown, text)
    return 0


def _typed_overrides(preset: str, items: list[str]) -> dict[str, Any]:
    """``key=value`` strings -> typed ModelConfig field values (unknown fields named in the error)."""
    from .config import apply_overrides
    from .models.registry import get_preset

    if not items:
        return {}
    new = apply_overrides(get_preset(preset), items)
    return {item.split("=", 1)[0].strip(): getattr(new, item.split("=", 1)[0].strip()) for item in items}
