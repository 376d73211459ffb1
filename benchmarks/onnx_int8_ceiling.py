"""How close the ``onnx-int8`` forward is to what onnxruntime's int8 GEMMs allow (LoReTrack-B-128, batch 1).

Usage::

    python benchmarks/onnx_int8_ceiling.py --markdown benchmarks/onnx_int8_ceiling.md

Three measurements in one run, each an onnxruntime session with 2 intra-op threads (thread spinning off, as
the sessions are interleaved) and the library's dynamic int8 quantisation
(``lorat.runtime_onnx.quantize_int8``), random weights:

1. each of the four ViT-B GEMM shapes of one block at the 128 geometry's 80 tokens (qkv 768->2304, proj
   768->768, fc1 768->3072, fc2 3072->768), alone in a graph: its time and GOP/s (2 x M x K x N);
2. a graph of only the 48 GEMMs of the 12 blocks, chained (distinct weights, so the 85 MB of int8 weights are
   streamed from memory as in the model);
3. the whole LoReTrack-B-128 graph the ``onnx-int8`` runtime runs.

(3) - (2) is what everything that is not a weight GEMM costs: attention, LayerNorm, GELU, residual adds,
the patch embedding and the CENTER head, and the per-node overhead of onnxruntime.

The same shapes also run on PyTorch's ``torch._int_mm`` (oneDNN's VNNI int8 GEMM, what the ``int8`` runtime
calls; int8 inputs, so without the activation quantisation) in the same rounds: the faster of the two libraries'
chained 48 GEMMs is a floor under any int8 forward of this geometry on the machine, whatever the rest costs.
``--append`` adds the run as a section to an existing ``--markdown`` file instead of replacing it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SHAPES = {"qkv": (768, 2304), "proj": (768, 768), "fc1": (768, 3072), "fc2": (3072, 768)}
TOKENS = 80  # 4x4 template + 8x8 search tokens


def timed_call(fn, calls: int) -> list[float]:
    """``calls`` timed calls of ``fn()`` after 5 warm-up calls; seconds each."""
    for _ in range(5):
        fn()
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def timed(session, feeds: dict, calls: int) -> list[float]:
    """:func:`timed_call` of one onnxruntime session on ``feeds``."""
    return timed_call(lambda: session.run(None, feeds), calls)


def torch_int_mm_calls(blocks: int, seed: int = 0) -> dict[str, object]:
    """``torch._int_mm`` on int8 operands: each of :data:`SHAPES` alone, and the 48 GEMMs of ``blocks`` blocks with
    distinct weights (streamed from memory, as in a model), keyed like the onnxruntime rows with a ``torch`` tag."""
    g = torch.Generator().manual_seed(seed)

    def int8(*shape: int) -> torch.Tensor:
        return torch.randint(-127, 128, shape, generator=g, dtype=torch.int8)

    x = {k: int8(TOKENS, kk) for k, (kk, _) in SHAPES.items()}
    single = {k: int8(n, kk).t() for k, (kk, n) in SHAPES.items()}
    calls = {f"{k} (torch)": (lambda k=k: torch._int_mm(x[k], single[k])) for k in SHAPES}
    chain = [(k, int8(n, kk).t()) for _ in range(blocks) for k, (kk, n) in SHAPES.items()]
    calls[f"{4 * blocks} GEMMs ({blocks} blocks) (torch)"] = lambda: [torch._int_mm(x[k], w) for k, w in chain]
    return calls


def _save(path: Path, nodes: list, inits: list, outputs: list[str], k: int = 768) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "gemms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [TOKENS, k])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def single_gemm_graph(path: Path, k: int, n: int, seed: int = 0) -> Path:
    """``y = x @ W`` with ``x`` (80, k) and a constant ``W`` (k, n), as fp32 ONNX at ``path``."""
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array((0.03 * np.random.default_rng(seed).standard_normal((k, n))).astype(np.float32), "w")
    return _save(path, [helper.make_node("MatMul", ["x", "w"], ["y"])], [w], ["y"], k)


def block_gemms_graph(path: Path, blocks: int, seed: int = 0) -> Path:
    """The 4 GEMMs of ``blocks`` ViT-B blocks and nothing else: qkv, proj and fc1 read the block input, fc2 reads
    fc1, the next block's input is proj + fc2 (one Add); every qkv output is a graph output (so it is computed)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, outputs, cur = [], [], [], "x"
    for b in range(blocks):
        for name, (k, n) in SHAPES.items():
            w = (0.03 * rng.standard_normal((k, n))).astype(np.float32)
            inits.append(numpy_helper.from_array(w, f"w{b}{name}"))
        nodes += [helper.make_node("MatMul", [cur, f"w{b}qkv"], [f"qkv{b}"]),
                  helper.make_node("MatMul", [cur, f"w{b}proj"], [f"proj{b}"]),
                  helper.make_node("MatMul", [cur, f"w{b}fc1"], [f"fc1{b}"]),
                  helper.make_node("MatMul", [f"fc1{b}", f"w{b}fc2"], [f"fc2{b}"]),
                  helper.make_node("Add", [f"proj{b}", f"fc2{b}"], [f"x{b}"])]
        outputs.append(f"qkv{b}")
        cur = f"x{b}"
    return _save(path, nodes, inits, outputs + [cur])


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # six sessions are interleaved: a session's worker threads spinning after its run would steal the cores
    # from the next one, so spinning is off (as in the library's interleaved benchmarks)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--calls", type=int, default=25)
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument("--append", default=None, metavar="TITLE",
                   help="add the run to --markdown as a section with this title instead of replacing the file")
    a = p.parse_args()
    if a.append and a.markdown is None:
        p.error("--append needs --markdown (the file to add the section to)")
    torch.set_num_threads(a.threads)
    import lorat
    from lorat.runtime_onnx import example_inputs_for, export_model_onnx, quantize_int8

    tmp = Path(tempfile.mkdtemp(prefix="int8-ceiling-"))
    sess: dict[str, tuple[object, dict]] = {}
    rng = np.random.default_rng(1)
    for name, shape in SHAPES.items():
        q = quantize_int8(single_gemm_graph(tmp / f"{name}.onnx", *shape), tmp / f"{name}.int8.onnx")
        sess[name] = (session(q, a.threads), {"x": rng.standard_normal((TOKENS, shape[0])).astype(np.float32)})
    x = {"x": rng.standard_normal((TOKENS, 768)).astype(np.float32)}
    q = quantize_int8(block_gemms_graph(tmp / "chain.onnx", 12), tmp / "chain.int8.onnx")
    sess["48 GEMMs (12 blocks)"] = (session(q, a.threads), x)
    model = lorat.create_model("loretrack-b-128").eval()
    q = quantize_int8(export_model_onnx(model, tmp / "model.onnx"), tmp / "model.int8.onnx")
    s = session(q, a.threads)
    feeds = {i.name: t.numpy() for i, t in zip(s.get_inputs(), example_inputs_for(model))}
    sess["LoReTrack-B-128 forward"] = (s, feeds)
    torch_calls = torch_int_mm_calls(12)

    load0 = os.getloadavg()[0]
    times: dict[str, list[float]] = {k: [] for k in [*sess, *torch_calls]}
    for _ in range(a.rounds):  # interleaved, so host load hits every graph alike
        for k, (s, feeds) in sess.items():
            times[k] += timed(s, feeds, a.calls)
        for k, fn in torch_calls.items():
            times[k] += timed_call(fn, a.calls)
    load1 = os.getloadavg()[0]
    gops = {k: 2 * TOKENS * kk * n / 1e9 for k, (kk, n) in SHAPES.items()}
    gops["48 GEMMs (12 blocks)"] = 12 * sum(gops.values())
    gops["LoReTrack-B-128 forward"] = gops["48 GEMMs (12 blocks)"]
    gops.update({f"{k} (torch)": v for k, v in gops.items() if k != "LoReTrack-B-128 forward"})
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, {a.threads} threads; "
            f"load average (1 min) {load0:.1f} at start, {load1:.1f} at end; {a.rounds} rounds x {a.calls} calls",
            "", "| graph | median ms | best ms | GEMM GOP/s (median) |", "|---|---:|---:|---:|"]
    for k, v in times.items():
        rows.append(f"| {k} | {1e3 * med[k]:.3f} | {1e3 * min(v):.3f} | {gops[k] / med[k]:.0f} |")
    fwd, chain = med["LoReTrack-B-128 forward"], med["48 GEMMs (12 blocks)"]
    best_single = max(gops[k] / med[k] for k in SHAPES)
    floor = min(min(times["48 GEMMs (12 blocks)"]), min(times["48 GEMMs (12 blocks) (torch)"]))
    rows += ["", f"Everything but the weight GEMMs: {1e3 * (fwd - chain):.2f} ms of the {1e3 * fwd:.2f} ms forward "
             f"({100 * (fwd - chain) / fwd:.0f} %); the 48 GEMMs chained run at "
             f"{100 * gops['48 GEMMs (12 blocks)'] / chain / best_single:.0f} % of the best single-GEMM rate.",
             "", f"Floor: the faster library's best chained 48 GEMMs take {1e3 * floor:.2f} ms, so no int8 forward of "
             f"this geometry runs faster than {1 / floor:.0f} fps here, model only, with every other cost at zero."]
    text = "\n".join(rows)
    print(text)
    if a.markdown:
        from lorat.files import atomic_write_text

        if a.append:
            old = a.markdown.read_text() if a.markdown.exists() else ""
            atomic_write_text(a.markdown, f"{old.rstrip()}\n\n## {a.append}\n\n{text}\n")
        else:
            title = "# onnx-int8: the forward against its GEMM ceiling (generated by onnx_int8_ceiling.py)"
            atomic_write_text(a.markdown, f"{title}\n\n{text}\n")


if __name__ == "__main__":
    main()
