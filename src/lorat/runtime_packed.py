"""oneDNN-prepacked linears for the ``eager`` runtime on CPU (bf16 and fp32), with GELU fused into ``fc1``.

``nn.Linear`` on CPU hands oneDNN (bf16) or MKL (fp32) a plain row-major weight on every call, and the GEMM
re-blocks it each time. :class:`PackedLinear` reorders the weight once into oneDNN's blocked layout
(``torch.ops.mkldnn._reorder_linear_weight``, what inductor's ``freezing`` does) and runs
``torch.ops.mkldnn._linear_pointwise``, optionally with the MLP's exact (erf) GELU as a post-op of the GEMM.
Measured on the 2-core AVX512-BF16 host at ViT-B shapes: bf16 940-980 GFLOP/s instead of 580-750 (x1.3 at 320
tokens, x1.6 at 80), fp32 475-505 instead of 140-195 (MKL's SGEMM on AMD). Same result as ``F.linear`` up to
float rounding (bf16: bit-equal at these shapes; the fused GELU is computed on the fp32 accumulator, i.e. one
bf16 rounding fewer).

Only where the ops exist and the precision is native (:func:`packing_supported`); the modules are
inference-only (no autograd through the packed weight), keep no ``state_dict`` entries (save the model
before preparing it) and are not meant for ``torch.compile``; a deep copy shares the packed weight.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .runtime_int8 import replace_modules

__all__ = ["PackedLinear", "pack_linears", "packing_supported"]

#: The weight layout is chosen for this many rows (tokens x batch); any other row count runs on it as well.
ROWS_HINT = 320


def packing_supported(dtype: torch.dtype, device: torch.device | str = "cpu") -> bool:
    """True when oneDNN can run prepacked linears of ``dtype`` here (CPU, fp32 or native bf16)."""
    if torch.device(device).type != "cpu" or dtype not in (torch.float32, torch.bfloat16):
        return False
    ops = torch.ops.mkldnn
    if not (torch.backends.mkldnn.is_available() and hasattr(ops, "_linear_pointwise")
            and hasattr(ops, "_reorder_linear_weight")):
        return False
    return dtype == torch.float32 or bool(ops._is_mkldnn_bf16_supported())


class PackedLinear(nn.Module):
    """``activation(x @ W^T + b)`` on a oneDNN-blocked ``W`` (``activation``: ``"none"`` or ``"gelu"``, exact erf).

    Built from an ``nn.Linear`` in the runtime's ``dtype``; the input must have that dtype.
    """

    def __init__(self, linear: nn.Linear, dtype: torch.dtype, activation: str = "none") -> None:
        super().__init__()
        if activation not in ("none", "gelu"):
            raise ValueError(f"activation={activation!r}; expected 'none' or 'gelu'")
        self.in_features, self.out_features, self.activation = linear.in_features, linear.out_features, activation
        w = linear.weight.detach().to(torch.device("cpu"), dtype).contiguous()
        self.weight = torch.ops.mkldnn._reorder_linear_weight(w, ROWS_HINT)  # opaque blocked tensor
        self.bias = None if linear.bias is None else linear.bias.detach().to(torch.device("cpu"), dtype).contiguous()
        # _linear_pointwise's post-op algorithm: "none" selects the exact erf GELU (as nn.GELU()), "" no GELU
        self._algorithm = "none" if activation == "gelu" else ""

    def __deepcopy__(self, memo: dict) -> PackedLinear:
        # An opaque oneDNN tensor has no storage to copy; it is never written after packing, so copies share it.
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = value if key == "weight" else copy.deepcopy(value, memo)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.weight, self.bias, self.activation, [],
                                                  self._algorithm)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, oneDNN-packed, "
                f"activation={self.activation}")


def pack_linears(model: nn.Module, dtype: torch.dtype) -> int:
    """Replace every plain ``nn.Linear`` of ``model`` by a :class:`PackedLinear` of ``dtype``, in place.

    The exact-GELU MLPs (``fc1`` -> ``nn.GELU()`` -> ``fc2``, :class:`lorat.models.vit.Mlp`) get the GELU fused
    into ``fc1`` (``act`` becomes ``nn.Identity``). Returns the number of linears packed. Call it on the
    cast, merged eval model (LoRA folded: a LoRA-wrapped projection is not a plain ``nn.Linear``).
    """
    from .models.vit import Mlp

    fused = 0
    for m in model.modules():
        exact_gelu = isinstance(getattr(m, "act", None), nn.GELU) and m.act.approximate == "none"
        if isinstance(m, Mlp) and exact_gelu and type(m.fc1) is nn.Linear:
            m.fc1 = PackedLinear(m.fc1, dtype, activation="gelu")
            m.act = nn.Identity()
            fused += 1
    return fused + replace_modules(model, lambda m: PackedLinear(m, dtype) if type(m) is nn.Linear else None)
