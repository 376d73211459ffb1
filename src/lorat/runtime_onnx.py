"""The ``onnx`` / ``onnx-int8`` runtimes and a model-agnostic ONNX export.

Any tracking model whose ``forward`` takes tensors positionally and returns a dict of tensors can be
exported: the graph's input names are the names of ``forward``'s required parameters (LoRAT: ``z``, ``x``,
``z_feat_mask``; OSTrack / LoReTrack: ``template``, ``search``), its outputs are every tensor of the
returned dict, in the dict's order (LoRAT: ``score_map``, ``boxes``; OSTrack: ``score_map``, ``size_map``,
``offset_map``, ``pred_boxes``, ``opt_feat``). The batch dimension is dynamic. LoRAT files written by
``lorat export`` have exactly these names, so either can be passed as ``onnx_path``.

Example inputs (:func:`example_inputs_for`) come from ``model.example_inputs(batch, seed=...)`` when the model
has one (SPMTrack: templates, masks, search crop and a zero state), else from the geometry in ``model.cfg``:
three inputs are LoRAT's (``lorat.export.example_inputs``), two are ``(template (B,3,T,T), search (B,3,S,S))``
random crops.
"""
from __future__ import annotations

import copy
import inspect
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .files import atomic_path
from .runtime import Runtime

__all__ = ["OnnxRuntime", "quantize_int8", "forward_input_names", "example_inputs_for", "export_model_onnx"]


def forward_input_names(model: nn.Module) -> list[str]:
    """Names of ``model.forward``'s required positional parameters (the graph's input names)."""
    params = inspect.signature(model.forward).parameters.values()
    names = [p.name for p in params if p.default is inspect.Parameter.empty
             and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    if not names:
        raise ValueError(f"{type(model).__name__}.forward has no required positional inputs to export")
    return names


def example_inputs_for(model: nn.Module, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random model inputs of ``model``'s geometry (see the module docstring)."""
    if hasattr(model, "example_inputs"):
        return tuple(model.example_inputs(batch, seed=seed))
    names = forward_input_names(model)
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise ValueError(f"{type(model).__name__} has no cfg: cannot make example inputs for the ONNX export")
    if len(names) == 3:
        from .export import example_inputs

        return example_inputs(model, batch, seed)
    if len(names) == 2:
        g = torch.Generator().manual_seed(seed)
        t, s = int(cfg.template_size), int(cfg.search_size)
        return torch.randn(batch, 3, t, t, generator=g), torch.randn(batch, 3, s, s, generator=g)
    raise ValueError(f"{type(model).__name__}.forward takes {names}; give the model an example_inputs(batch) "
                     "method to export it")


class _TupleOutputs(nn.Module):
    """``model(*inputs)`` dict -> tuple of its tensors in ``keys`` order (the exporter needs a tuple)."""

    def __init__(self, model: nn.Module, keys: list[str]) -> None:
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(*inputs)
        return tuple(out[k] for k in self.keys)


def export_model_onnx(model: nn.Module, path: str | os.PathLike, opset: int = 17, fuse: bool = True) -> Path:
    """Write a merged fp32 eval copy of ``model`` as ONNX to ``path`` (atomically); returns the path.

    ``fuse``: also apply the inference fusions of the prepared path (:func:`lorat.runtime_int8.fuse_for_inference`;
    OSTrack's CENTER head becomes one GEMM plus grouped convolutions, which int8 quantisation reaches).
    """
    from .models.peft import fold_lora
    from .runtime_int8 import fuse_for_inference

    plain = copy.deepcopy(model).float().eval()
    fold_lora(plain)
    if fuse:
        fuse_for_inference(plain)
    inputs = example_inputs_for(plain)
    # one graph input per example input, named by forward's positional parameters (optional ones included:
    # SPMTrack's state)
    params = inspect.signature(plain.forward).parameters.values()
    names = [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)][:len(inputs)]
    with torch.no_grad():
        out = plain(*inputs)
    keys = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
    path = Path(path)
    # The TorchScript exporter needs no extra dependency (the dynamo one needs onnxscript); torch marks it
    # deprecated, which is noise here.
    with atomic_path(path, suffix=".tmp.onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_TupleOutputs(plain, keys), inputs, str(tmp), input_names=names, output_names=keys,
                          opset_version=opset, dynamo=False,
                          dynamic_axes={n: {0: "batch"} for n in names + keys})
    return path


#: Only GEMMs are quantised. onnxruntime's dynamic quantisation would also turn convolutions into
#: ``ConvInteger``, which has no fast CPU kernel: quantising the patch embedding and OSTrack's CENTER head that
#: way made LoReTrack-B-128's forward 24.7 ms instead of 15.1 (LoRAT-B-112: 14.7 vs 13.8).
QUANTIZED_OPS = ["MatMul", "Gemm"]


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Dynamic int8 quantisation (per-tensor int8 MatMul / Gemm weights) of an ONNX file, written atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    # quantize_dynamic logs a warning (on the root logger) advising shape-inference pre-processing; it does not
    # change the result. Silenced for the call only: the caller's logging level is restored after it.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        with atomic_path(dst, suffix=".tmp.onnx") as tmp:
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS)
    finally:
        root.setLevel(level)
    return dst


def _np(t: torch.Tensor):
    # .numpy() shares memory when the tensor is already a contiguous CPU tensor of that dtype (no copy).
    dtype = torch.long if not t.is_floating_point() else torch.float32
    return t.detach().to("cpu", dtype).contiguous().numpy()


class OnnxRuntime(Runtime):
    """``onnx`` / ``onnx-int8``: an onnxruntime session over the exported graph (see :mod:`lorat.runtime`).

    Called with the model's positional inputs; returns ``{output name: float32 tensor}`` on ``device``.
    """

    def __init__(self, model: nn.Module, name: str, device: torch.device, *, onnx_path: str | os.PathLike | None,
                 cache_dir: str | os.PathLike | None = None, threads: int | None = None,
                 allow_spinning: bool = True) -> None:
        super().__init__(getattr(model, "cfg", None), "float32", device)
        try:
            import onnxruntime as ort
        except ImportError as e:  # the optional 'onnx' extra
            raise ImportError(f"runtime {name!r} needs onnxruntime and onnx (pip install 'lorat[onnx]'): {e}") from e
        self.name = name
        if cache_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lorat-onnx-")  # lives as long as the runtime
            cache_dir = self._tmp.name
        cache_dir = Path(cache_dir)
        if onnx_path is not None:
            fp32 = Path(onnx_path)
            if not fp32.is_file():
                raise FileNotFoundError(f"ONNX file not found: {fp32} (write one with lorat export)")
        else:
            fp32 = export_model_onnx(model, cache_dir / "model.onnx")
        path = quantize_int8(fp32, cache_dir / (fp32.stem + ".int8.onnx")) if name == "onnx-int8" else fp32
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not allow_spinning:
            # ORT worker threads spin after each run by default; next to torch in one process they steal the
            # cores torch's OpenMP threads need (and vice versa), so interleaved benchmarks turn it off.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.info = {"onnx": str(path), "providers": self.session.get_providers(),
                     "weights": "int8" if name == "onnx-int8" else "float32", "allow_spinning": allow_spinning}

    def __call__(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.name} runtime: the graph takes {self.input_names}, got {len(inputs)} inputs")
        feeds = {n: _np(t) for n, t in zip(self.input_names, inputs)}
        outs = self.session.run(self.output_names, feeds)
        return {n: torch.from_numpy(o).to(self.device) for n, o in zip(self.output_names, outs)}
