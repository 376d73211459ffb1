"""Inference runtimes: one factory that turns a model into a fast callable with the model's signature.

``make_runtime(model, name, precision, device)`` returns a :class:`Runtime`, a callable with the model's own
positional signature that returns the model's output dict with every floating tensor in float32: LoRAT
``runtime(z, x, z_feat_mask) -> {"score_map" (B,H,W), "boxes" (B,H,W,4)}``, OSTrack / LoReTrack
``runtime(template, search) -> {"score_map", "size_map", "offset_map", ...}``. Whatever drives the model (the
tracker's forward step through ``TrackConfig.runtime``, ``lorat bench``) only swaps the callable. Float
inputs may come in any float dtype on any device (the runtime casts and moves them); integer inputs (LoRAT's
template mask) keep their dtype.

Runtimes (``RUNTIMES``):

``eager``
    PyTorch eager under ``inference_mode``; LoRA merged. Half precision follows the project's device rule:
    on CUDA fp16/bf16 *autocast* over fp32 weights (what the official evaluation runs), elsewhere the
    weights are cast once (autocast on CPU re-casts every fp32 weight on every call, about 45 % slower at
    batch 1).
``compile``
    ``torch.compile`` (inductor) of the eager model: on CPU with ``freezing`` (weights folded into the
    graph as constants, which lets oneDNN pre-pack them); on CUDA ``mode="reduce-overhead"`` (CUDA graphs,
    what batch-1 tracking needs). One graph per batch size (``dynamic=False``). Compiling costs ~20 s per
    shape cold; inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, or ``cache_dir`` here) makes later
    processes start in ~2 s.
``int8`` (CPU)
    The eager model with every large ``nn.Linear`` as a W8A8 dynamic int8 GEMM on ``torch._int_mm``
    (per-channel weights, per-token activations, fp32 dequantisation; :mod:`lorat.runtime_int8`) and the
    rest in the runtime's precision (``auto``: bf16 where it is measured faster). At batch 1 the small-M bf16
    GEMMs of the 64/128 and 112/224 geometries are the bottleneck and VNNI int8 doubles their rate.
``onnx`` / ``onnx-int8``
    ONNX Runtime on the graph :func:`lorat.runtime_onnx.export_model_onnx` writes for any such model (or an
    existing ``lorat export`` file via ``onnx_path``); ``onnx-int8`` is that graph with dynamic int8
    quantisation of the MatMul weights (``onnxruntime.quantization.quantize_dynamic``; activations are
    quantised per call, attention stays fp32). The CPU execution provider has no bf16 GEMM kernels, so
    ``onnx`` runs float32 only and refuses bf16/fp16 with a clear error.

The prepared path (``merge_lora=True``, the default) also applies each module's ``fused_for_inference()``
(:func:`lorat.runtime_int8.fuse_for_inference`; OSTrack's CENTER head folds its BatchNorm and runs its three
branches together, a DINOv2 block folds its LayerScales into the linears before them), and so does the ONNX
export of ``onnx`` / ``onnx-int8``; ``merge_lora=False`` keeps the model as written.

Attention (``attention=``): ``sdpa`` is ``F.scaled_dot_product_attention`` as the model is written;
``manual`` is ``softmax(q k^T / sqrt(d)) v`` with two batched matmuls. On CPU, torch's flash-attention
kernel computes bf16 as fast as fp32 only (without AMX), so at 224 inputs (320 tokens) the manual form is
faster in bf16, while at 378 inputs (925 tokens) the N^2 score matrix makes it memory-bound and slower; on a
CPU with AMX the flash kernel is never slower. ``auto`` (:func:`choose_attention`) picks by device,
precision, token count and AMX. A model without LoRAT's ViT attention
(OSTrack / LoReTrack, whose timm-style attention is explicit matmuls already) keeps its own, reported as
``attention="model"``.

Precision names follow :mod:`lorat.device` (``auto``: fp16 autocast on CUDA, bf16 on CPUs with native bf16
instructions where bf16 is measured faster than fp32, float32 otherwise).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
from typing import Any

import torch
from torch import nn

from .device import PRECISIONS, resolve_device, resolve_precision
from .models.vit import matmul_attention
from .runtime_int8 import cast_except_int8, fuse_for_inference, quantize_linears, replace_modules

__all__ = ["RUNTIMES", "ATTENTIONS", "Runtime", "make_runtime", "choose_attention", "choose_training_attention",
           "token_count", "resolve_runtime_precision",
           "use_attention", "ManualAttention", "RuntimeModule", "as_module", "add_runtime_argument",
           "runtime_from_args", "runtime_name", "host_threads"]

RUNTIMES = ("eager", "compile", "int8", "onnx", "onnx-int8")
ATTENTIONS = ("auto", "sdpa", "manual")
# Above this many tokens the (B, heads, N, N) score matrix of manual attention no longer fits the caches
# well and the fused SDPA kernel wins even in bf16 (measured: 320 tokens manual faster, 925 slower).
MANUAL_ATTENTION_MAX_TOKENS = 512


# ============================================================================ attention
class ManualAttention(nn.Module):
    """``softmax(q k^T * scale) v`` with explicit matmuls; shares ``qkv``/``proj`` with the module it replaces.

    Same parameters and output as :class:`lorat.models.vit.Attention` (fused ``qkv`` rows q | k | v).
    """

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.num_heads = attn.num_heads
        self.qkv = attn.qkv
        self.proj = attn.proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        d = C // self.num_heads
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, d).permute(2, 0, 3, 1, 4)  # (3, B, h, N, d)
        out = matmul_attention(*qkv.unbind(0))  # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


def token_count(model: nn.Module) -> int | None:
    """Template + search tokens of one pair for a LoRAT-style config (``template_feat``/``search_feat``), else None."""
    cfg = getattr(model, "cfg", None)
    try:
        return int(cfg.template_feat) ** 2 + int(cfg.search_feat) ** 2
    except (AttributeError, TypeError):
        return None


def choose_attention(device: torch.device, precision: str, tokens: int | None) -> str:
    """``manual`` for bf16/fp16 on a CPU without AMX at <= ``MANUAL_ATTENTION_MAX_TOKENS`` tokens, else ``sdpa``.

    On CUDA, SDPA picks the flash / memory-efficient kernels for half precision, so it is always kept. On a CPU
    with AMX for the precision, torch's flash kernel was 1.08-1.19x faster than the manual form at every size
    measured (ViT-S/B, 80-320 tokens, bf16, batch 1, 2 cores; benchmarks/cpu_amx.md).
    """
    from .device import cpu_has_amx  # looked up per call, so tests can stand in for the CPU

    if (device.type == "cpu" and precision != "float32" and not cpu_has_amx(precision) and tokens is not None
            and tokens <= MANUAL_ATTENTION_MAX_TOKENS):
        return "manual"
    return "sdpa"


#: Training on CPU under bf16/fp16 autocast: up to this many tokens matmul attention (``manual``,
#: :func:`lorat.models.vit.matmul_attention`) beats the fused kernel, whose bf16 backward is slow. Measured on a 2-core
#: Intel Xeon with AMX, a 256-d 4-block LoRA ViT (benchmarks/train_attention.md), training step vs the fused kernel:
#: 1.80x at 80 tokens, 1.64x at 180, 1.26x at 320, 1.19x at 500 (2 threads; 1.21-1.78x on 1 thread). Beyond ~512 the
#: (B, heads, N, N) scores outgrow the caches (the inference rule's limit, MANUAL_ATTENTION_MAX_TOKENS). A Zen 5
#: VM (AVX512-BF16, 1 thread) agrees: 1.44-1.81x over 80-500 tokens, and the fused kernel faster in fp32.
MANUAL_TRAINING_ATTENTION_MAX_TOKENS = 512


def choose_training_attention(device: torch.device, precision: str, tokens: int | None) -> str:
    """``manual`` (matmul attention) for training on CPU under half-precision autocast up to 512 tokens.

    fp32 training keeps the fused kernel (matmul attention was 0.70-1.0x its speed there), as do CUDA and models
    whose token count is unknown.
    """
    if (device.type == "cpu" and precision != "float32" and tokens is not None
            and tokens <= MANUAL_TRAINING_ATTENTION_MAX_TOKENS):
        return "manual"
    return "sdpa"


def use_attention(model: nn.Module, kind: str) -> int:
    """Switch every fused-qkv attention module of ``model`` to ``kind`` (``sdpa``/``manual``) in place.

    Returns the number of modules switched. Unmerged LoRA attention (split q/k/v) is left as it is.
    """
    from .models.vit import Attention

    if kind not in ("sdpa", "manual"):
        raise ValueError(f"attention={kind!r}; expected sdpa or manual")

    from .models.peft import LoRALinear, LoRAQKV

    def switched(m: nn.Module) -> nn.Module | None:
        qkv = getattr(m, "qkv", None)
        if not isinstance(qkv, nn.Module) or isinstance(qkv, (LoRALinear, LoRAQKV)):
            return None  # LoRA-wrapped qkv: the official computation path, keep SDPA
        if kind == "manual" and isinstance(m, Attention):
            return ManualAttention(m)
        if kind == "sdpa" and isinstance(m, ManualAttention):
            plain = Attention.__new__(Attention)
            nn.Module.__init__(plain)
            plain.num_heads, plain.qkv, plain.proj = m.num_heads, m.qkv, m.proj
            return plain
        return None

    return replace_modules(model, switched)


# ============================================================================ runtimes
def resolve_runtime_precision(name: str, precision: str, device: torch.device) -> str:
    """The concrete precision a runtime runs: ``auto`` resolved; ONNX runtimes are float32 (int8 weights)."""
    if name.startswith("onnx"):
        key = resolve_precision(precision, device) if precision != "auto" else "float32"
        if key != "float32":
            raise ValueError(f"runtime {name!r} runs float32 only (onnxruntime's CPU provider has no bf16/fp16 "
                             f"GEMM kernels); got precision {precision!r}. Use onnx-int8 for a faster ONNX path.")
        return key
    if name == "int8" and device.type != "cpu":
        raise ValueError(f"runtime 'int8' runs on the CPU (oneDNN int8 GEMMs); got device {device}. On a GPU use "
                         "eager or compile with float16.")
    return resolve_precision(precision, device)


class Runtime:
    """A model prepared for inference; call it like the model: ``runtime(*inputs) -> dict`` (float32 tensors).

    Attributes: ``name``, ``precision`` (concrete), ``device``, ``attention`` (concrete or None for ONNX),
    ``cfg`` (the model config), ``info`` (build details for reports: merged, autocast, file paths ...).
    """

    name = "base"

    def __init__(self, cfg: Any, precision: str, device: torch.device) -> None:
        self.cfg = cfg
        self.precision = precision
        self.device = device
        self.attention: str | None = None
        self.info: dict[str, Any] = {}

    def __call__(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary of how this runtime was built."""
        return {"runtime": self.name, "precision": self.precision, "device": str(self.device),
                "attention": self.attention, **self.info}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


class TorchRuntime(Runtime):
    """``eager`` and ``compile``: a prepared copy of the PyTorch model (see the module docstring)."""

    def __init__(self, model: nn.Module, name: str, precision: str, device: torch.device, *,
                 attention: str = "auto", autocast: bool | None = None, merge_lora: bool = True,
                 compile_mode: str | None = None, cache_dir: str | os.PathLike | None = None,
                 copy_model: bool = True, pack: bool | None = None) -> None:
        super().__init__(getattr(model, "cfg", None), precision, device)
        from .models.peft import fold_lora, has_lora
        from .runtime_packed import pack_linears, packing_supported

        self.name = name
        model = copy.deepcopy(model) if copy_model else model
        model.eval().requires_grad_(False)
        merged = fold_lora(model) if merge_lora else False
        # Inference fusions (the CENTER head's folded BatchNorm) belong to the prepared path, not to the
        # official computation path (merge_lora=False), which runs the model as written.
        fused = fuse_for_inference(model) if merge_lora else 0
        dtype = PRECISIONS[precision]
        # Device rule: half precision = autocast on CUDA (fp32 weights), cast weights elsewhere.
        self.autocast = (device.type == "cuda") if autocast is None else bool(autocast)
        if dtype == torch.float32 or name == "int8":
            self.autocast = False
        self.param_dtype = torch.float32 if self.autocast else dtype
        if attention not in ATTENTIONS:
            raise ValueError(f"attention={attention!r}; expected one of {', '.join(ATTENTIONS)}")
        kind = choose_attention(device, precision, token_count(model)) if attention == "auto" else attention
        from .models.vit import Attention

        if not any(isinstance(m, (Attention, ManualAttention)) for m in model.modules()):
            kind = "model"  # its own attention (OSTrack's timm-style matmuls): nothing to choose
        elif use_attention(model, kind) == 0 and kind == "manual":
            kind = "sdpa"  # nothing to switch (unmerged LoRA attention): it keeps SDPA
        self.attention = kind
        weights = str(self.param_dtype).replace("torch.", "")
        if name == "int8":
            # quantise from the fp32 weights, then cast the rest; the int8 layers keep fp32 scales
            n_int8 = quantize_linears(model)
            cast_except_int8(model, dtype)
            model.to(device)
            weights = f"int8 ({n_int8} linears), rest {weights}"
        else:
            model.to(device=device, dtype=self.param_dtype)
        # oneDNN-prepacked linears (eager on CPU, prepared path): x1.3 (bf16) to x2 (fp32) on the GEMMs.
        can_pack = (name == "eager" and merge_lora and not self.autocast
                    and packing_supported(self.param_dtype, device))
        if pack and not can_pack:
            raise ValueError(f"pack=True needs the eager runtime's prepared path on CPU in float32 or native bfloat16; "
                             f"got runtime {name!r}, precision {precision}, device {device}, merge_lora={merge_lora}")
        if pack is None:
            pack = can_pack
        n_packed = pack_linears(model, self.param_dtype) if pack else 0
        self.model = model
        self.info = {"merged_lora": merged or not has_lora(model), "autocast": self.autocast, "weights": weights,
                     "fused_modules": fused, "packed_linears": n_packed}
        if name == "compile":
            _raise_recompile_limit()
            if cache_dir is not None:
                os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir))
            if compile_mode is None and device.type == "cuda":
                compile_mode = "reduce-overhead"  # CUDA graphs: batch-1 tracking is launch-bound
            if compile_mode is not None:
                self.fn = torch.compile(model, mode=compile_mode, dynamic=False)
            else:
                # freezing: parameters become constants, so oneDNN packs the weights once at compile time.
                self.fn = torch.compile(model, dynamic=False, options={"freezing": device.type == "cpu"})
            self.info.update(compile_mode=compile_mode or "default", freezing=compile_mode is None
                             and device.type == "cpu")
        else:
            self.fn = model

    def __call__(self, *inputs: torch.Tensor | None) -> dict[str, torch.Tensor]:
        dt = self.param_dtype
        # Float inputs (crops) to the weights' dtype, integer ones (masks) only moved; None (an optional input
        # the model fills itself, e.g. SPMTrack's state on a first frame) passes through.
        inputs = tuple(t if t is None else t.to(self.device, dt if t.is_floating_point() else t.dtype,
                                                non_blocking=True) for t in inputs)
        ctx = (torch.autocast(self.device.type, dtype=PRECISIONS[self.precision]) if self.autocast
               else contextlib.nullcontext())
        # Compiled graphs with freezing need grad mode off; inference tensors are not accepted by dynamo
        # guards everywhere, so compile uses no_grad and eager the (slightly cheaper) inference_mode.
        grad_ctx = torch.no_grad() if self.name == "compile" else torch.inference_mode()
        with grad_ctx, ctx:
            out = self.fn(*inputs)
        return {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                for k, v in out.items()}


def _raise_recompile_limit(limit: int = 64) -> None:
    """Every compiled copy of a model shares one ``forward`` code object, and dynamo keeps only 8 graphs per
    code object by default: a few runtimes x batch sizes in one process would silently fall back to eager."""
    import torch._dynamo

    cfg = torch._dynamo.config
    key = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"  # renamed in torch 2.6
    setattr(cfg, key, max(getattr(cfg, key), limit))


def make_runtime(model: nn.Module, name: str = "eager", precision: str = "auto", device: str | torch.device = "auto",
                 *, attention: str = "auto", autocast: bool | None = None, merge_lora: bool = True,
                 compile_mode: str | None = None, onnx_path: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, threads: int | None = None,
                 allow_spinning: bool = True, copy_model: bool = True, pack: bool | None = None) -> Runtime:
    """Build a :class:`Runtime` for ``model`` (see the module docstring).

    Args:
        model: a tracking model with ``.cfg`` whose ``forward`` takes tensors positionally and returns a dict
            of tensors (LoRAT, OSTrack / LoReTrack, ...).
        name: one of ``RUNTIMES``.
        precision: ``auto``/``float32``/``bfloat16``/``float16`` (aliases as in :mod:`lorat.device`).
        device: ``auto``, ``cpu``, ``cuda[:N]``, ``mps`` or a ``torch.device``.
        attention: ``auto``/``sdpa``/``manual`` (PyTorch runtimes).
        autocast: force autocast over fp32 weights (True) or cast weights (False); None = the device rule.
        merge_lora: fold LoRA before running (False keeps the official unmerged computation path).
        compile_mode: a ``torch.compile`` mode; None = freezing on CPU, ``reduce-overhead`` on CUDA.
        onnx_path: an existing ``lorat export`` file for the ONNX runtimes (else the model is exported).
        cache_dir: where ONNX files (and, for ``compile``, the inductor cache if not set) go.
        threads: onnxruntime intra-op threads (default torch's thread count).
        allow_spinning: onnxruntime thread spinning (turn off when torch runs in the same process).
        copy_model: prepare a deep copy (True) or the passed model in place (False).
        pack: ``eager`` on CPU: run the linears on oneDNN-prepacked weights (:mod:`lorat.runtime_packed`);
            None = wherever it is supported (fp32, native bf16), True = require it, False = plain ``nn.Linear``.
    """
    if name not in RUNTIMES:
        raise ValueError(f"runtime {name!r}; expected one of {', '.join(RUNTIMES)}")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    prec = resolve_runtime_precision(name, precision, dev)
    if name.startswith("onnx"):
        from .runtime_onnx import OnnxRuntime

        return OnnxRuntime(model, name, dev, onnx_path=onnx_path, cache_dir=cache_dir, threads=threads,
                           allow_spinning=allow_spinning)
    return TorchRuntime(model, name, prec, dev, attention=attention, autocast=autocast, merge_lora=merge_lora,
                        compile_mode=compile_mode, cache_dir=cache_dir, copy_model=copy_model, pack=pack)


# ============================================================================ tracker glue
@contextlib.contextmanager
def host_threads(n: int = 1):
    """Run the block with ``n`` torch intra-op threads, then restore the previous count.

    The tracker's pre/post-processing (crop, normalise, stack, decode) works on ~150k-element tensors,
    which torch still splits over its OpenMP threads. A parallel region that small gains nothing, and when
    any other process holds a core one thread is descheduled and the region waits for it: measured on the
    2-core host with a load average of ~10, one ``clone + div + sub/div + stack`` of a (3, 224, 224) crop
    took 76 ms median with 2 threads and 0.06 ms with 1 (``benchmarks/track_overhead.md``). Toggling the
    count costs well under a microsecond; the results are bit-identical (elementwise ops and bilinear
    resampling do not depend on the split).
    """
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class RuntimeModule(nn.Module):
    """An ``nn.Module`` face for a runtime: ``cfg`` and ``forward`` delegate, no parameters of its own.

    Lets code that expects a model drive any runtime, e.g. a tracker class that calls ``self.model``
    directly: ``SomeTracker(as_module(runtime), TrackConfig(device=..., dtype="float32"))``; the tracker's
    fp32 inputs are cast by the runtime (:class:`lorat.Tracker` takes ``TrackConfig.runtime`` instead).
    The runtime is kept outside the module tree, so ``.to()``/``.eval()`` and LoRA merging leave it alone.
    """

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.cfg = runtime.cfg
        self.__dict__["runtime"] = runtime  # not a submodule

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.runtime(*inputs)


def as_module(runtime: Runtime) -> RuntimeModule:
    """Wrap ``runtime`` in a :class:`RuntimeModule`."""
    return RuntimeModule(runtime)


# ============================================================================ command line
def add_runtime_argument(parser: argparse.ArgumentParser) -> None:
    """``--runtime`` (and ``--attention``, ``--onnx``) for ``lorat track`` / ``lorat eval``.

    Precision and device stay with the command's own ``--dtype``/``--device`` options.
    """
    g = parser.add_argument_group("runtime")
    g.add_argument("--runtime", default="eager", choices=RUNTIMES,
                   help="inference runtime: eager PyTorch (default), torch.compile (inductor; ~20 s first "
                        "call, cached after), int8 (CPU: int8 linears, the rest in --dtype), onnx "
                        "(onnxruntime fp32) or onnx-int8 (dynamic int8 weights)")
    g.add_argument("--attention", default="auto", choices=ATTENTIONS,
                   help="attention kernel for the PyTorch runtimes: auto picks manual matmuls for bf16 on "
                        "a CPU without AMX at <= 512 tokens, SDPA otherwise")
    g.add_argument("--onnx", dest="onnx_path", metavar="PATH", default=None,
                   help="use this lorat-export .onnx file for the onnx runtimes instead of exporting")


def runtime_name(tracker: Any) -> str:
    """The runtime a tracker's forward step uses (``TrackConfig.runtime``; ``eager`` without one)."""
    rt = getattr(tracker, "runtime", None)
    return rt.name if rt is not None else "eager"


def runtime_from_args(model: nn.Module, args: argparse.Namespace, precision: str | None = None,
                      device: str | None = None) -> Runtime:
    """``make_runtime`` from :func:`add_runtime_argument` options (precision/device from ``--dtype``/``--device``
    unless given)."""
    return make_runtime(model, getattr(args, "runtime", "eager"),
                        precision if precision is not None else getattr(args, "dtype", "auto"),
                        device if device is not None else getattr(args, "device", "auto"),
                        attention=getattr(args, "attention", "auto"), onnx_path=getattr(args, "onnx_path", None))
