"""onnxruntime weight-only MatMulNBits (8 / 4 bit, int8 compute) vs the ``onnx-int8`` runtime's dynamic quantisation.

    PYTHONPATH=src python benchmarks/onnx_nbits.py [PRESET]      (default loretrack-b-128)

Needs onnxruntime's ``MatMulNBitsQuantizer``, which imports ``onnx_ir`` (``pip install onnx-ir``; not a lorat
dependency). Random weights, batch 1, 2 threads; the variants run interleaved (8 rounds of 25 forwards each) so a
change of the host's speed hits them all alike. Prints one JSON line per variant: median / best ms per forward,
max |difference| of ``score_map`` and ``pred_boxes`` from the fp32 PyTorch model, file size.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import lorat
from lorat.runtime_onnx import example_inputs_for, export_model_onnx, quantize_int8


def main(preset: str) -> None:
    import onnx
    import onnxruntime as ort

    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    except ImportError as e:
        raise SystemExit(f"skipped: onnxruntime's MatMulNBits quantizer is not importable ({e})") from None
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = lorat.create_model(preset).eval()
    d = Path(tempfile.mkdtemp(prefix="lorat-nbits-"))
    fp32 = export_model_onnx(model, d / "model.onnx")
    files = {"onnx-int8 (dynamic, per tensor)": quantize_int8(fp32, d / "model.int8.onnx")}
    for bits, block in [(8, 32), (8, 128), (4, 32), (4, 128)]:
        cfg = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=4, bits=bits)
        q = MatMulNBitsQuantizer(onnx.load(str(fp32)), bits=bits, block_size=block, is_symmetric=True,
                                 accuracy_level=4, algo_config=cfg)
        q.process()
        path = d / f"model.nbits{bits}_{block}.onnx"
        q.model.save_model_to_file(str(path), use_external_data_format=False)
        files[f"MatMulNBits {bits}-bit, block {block}, int8 compute"] = path
    inputs = [t.numpy() for t in example_inputs_for(model)]
    with torch.no_grad():
        ref = model(*[torch.from_numpy(x) for x in inputs])
    sessions = {}
    for name, path in files.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feeds = {i.name: x for i, x in zip(s.get_inputs(), inputs)}
        outs = dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))
        err = {k: float(np.abs(outs[k] - ref[k].numpy()).max()) for k in ("score_map", "pred_boxes") if k in outs}
        for _ in range(20):
            s.run(None, feeds)
        sessions[name] = (s, feeds, err, [])
    for _ in range(8):
        for s, feeds, _, times in sessions.values():
            t0 = time.perf_counter()
            for _ in range(25):
                s.run(None, feeds)
            times.append((time.perf_counter() - t0) / 25 * 1e3)
    for name, (_, _, err, times) in sessions.items():
        print(json.dumps({"preset": preset, "variant": name, "median_ms": round(statistics.median(times), 2),
                          "best_ms": round(min(times), 2), "max_abs_diff": err,
                          "mb": round(files[name].stat().st_size / 1e6, 1)}))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "loretrack-b-128")
