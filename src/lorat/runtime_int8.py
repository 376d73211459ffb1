"""The ``int8`` runtime's pieces: W8A8 dynamic linears on ``torch._int_mm`` and inference-time fusions.

``int8`` (see :mod:`lorat.runtime`) runs every large ``nn.Linear`` of the merged model as an int8 x int8 ->
int32 GEMM and everything else (LayerNorm, attention, GELU, patch embedding, convolutions) in the runtime's
precision (``auto``: bf16 on CPUs where bf16 is measured faster, else fp32):

* weights: symmetric per-output-channel int8, ``w ~ q_w * s_w`` with ``s_w = max|w_row| / 127``;
* activations: symmetric per-token int8 computed on every call, ``x ~ q_x * s_x``, ``s_x = max|x_token| / 127``
  (per token rather than per tensor: a ViT's tokens differ in scale by orders of magnitude);
* ``y = (q_x @ q_w^T) * s_x * s_w + b``, the int32 accumulation dequantised in fp32, then cast to the
  runtime's dtype.

Why not a library quantiser: onnxruntime's dynamic quantisation (the ``onnx-int8`` runtime) keeps the
rest of the graph in fp32 (its CPU provider has no bf16 kernels), and ``torch.ao.quantization`` is
deprecated. ``torch._int_mm`` on CPU dispatches to oneDNN's VNNI int8 GEMM: measured on the 2-core
AVX512-VNNI host at the ViT-B/128 shapes (80 tokens) about 1.6-1.7 TOP/s, twice its bf16 GEMM.

:func:`fuse_for_inference` replaces any submodule that offers ``fused_for_inference()`` (OSTrack's CENTER head:
BatchNorm folded, the three branches run as one wide and three grouped convolutions) before the runtime
casts and quantises, so its first convolution becomes an ``nn.Linear`` that is quantised as well.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["Int8Linear", "quantize_linears", "fuse_for_inference", "cast_except_int8", "replace_modules"]

#: Linears with fewer input or output features stay in floating point (box/score output layers): an int8
#: GEMM gains nothing there and their output is the prediction itself.
MIN_FEATURES = 16


class Int8Linear(nn.Module):
    """``nn.Linear`` with per-channel int8 weights and per-token dynamic int8 activations (module docstring).

    Buffers: ``weight_int8`` (out, in) int8, ``weight_scale`` (out,) fp32, ``bias`` (out,) fp32 (zeros if the
    linear had none). They stay fp32 when the model is cast (:func:`cast_except_int8`); the output has the
    input's dtype.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0  # (out,)
        self.register_buffer("weight_int8", torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8))
        self.register_buffer("weight_scale", scale)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(self.out_features)
        self.register_buffer("bias", bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)  # (M, K): one row per token
        # max|x| per token: abs + amax is ~8x faster than vector_norm(ord=inf) at these sizes
        s = x2.abs().amax(dim=1, keepdim=True).float().div_(127.0).clamp_min_(1e-12)  # (M, 1)
        q = torch.div(x2, s).round_().to(torch.int8)
        acc = torch._int_mm(q, self.weight_int8.t())  # (M, N) int32
        # fp32 dequantisation + bias, written straight into the output dtype (one pass fewer than .to())
        y = torch.empty(acc.shape, dtype=x.dtype, device=x.device)
        torch.addcmul(self.bias, acc.mul(self.weight_scale), s, out=y)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights, per-token int8 x"


def quantize_linears(model: nn.Module, min_features: int = MIN_FEATURES) -> int:
    """Replace every ``nn.Linear`` with at least ``min_features`` inputs and outputs by an :class:`Int8Linear`.

    In place; returns the number replaced. Quantises from the weights as they are (call it before casting).
    """
    def quantized(m: nn.Module) -> nn.Module | None:
        large = type(m) is nn.Linear and m.in_features >= min_features and m.out_features >= min_features
        return Int8Linear(m) if large else None

    return replace_modules(model, quantized)


def fuse_for_inference(model: nn.Module) -> int:
    """Replace each submodule that has ``fused_for_inference()`` by what it returns (eval-only modules).

    In place; returns the number replaced. The model must be in eval mode (BatchNorm running statistics).
    """
    def fused(m: nn.Module) -> nn.Module | None:
        fuse = getattr(m, "fused_for_inference", None)
        return fuse() if callable(fuse) else None

    return replace_modules(model, fused)


def replace_modules(model: nn.Module, replace: Callable[[nn.Module], nn.Module | None]) -> int:
    """Put ``replace(child)`` in place of every submodule for which it returns a module (None: keep it).

    In place; returns the number replaced. The modules are listed before any replacement, so the new
    modules (and their children) are not offered to ``replace`` again.
    """
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = replace(child)
            if new is not None:
                setattr(parent, name, new)
                count += 1
    return count


def cast_except_int8(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast the floating parameters and buffers of every module except :class:`Int8Linear` to ``dtype``.

    ``model.to(dtype)`` would also cast the int8 layers' fp32 scales and bias, which keep the dequantisation
    exact to fp32 rounding.
    """
    for m in model.modules():
        if isinstance(m, Int8Linear):
            continue
        for p in m.parameters(recurse=False):
            if p.is_floating_point():
                p.data = p.data.to(dtype)
        for name, b in m.named_buffers(recurse=False):
            if b is not None and b.is_floating_point():
                m._buffers[name] = b.to(dtype)
