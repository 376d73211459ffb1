"""TMoE: the mixture of low-rank experts SPMTrack puts where LoRAT puts LoRA.

For a frozen ``Linear(in -> out)`` the adapted layer computes::

    h = dropout(x) A^T                                  (..., r)     shared "compress expert" A (r, in)
    g = softmax(x G^T)                                  (..., E)     dense per-token router G (E, in), no top-k
    y = W x + b + s * sum_i g_i * h B_i^T               (..., out)   routed experts B_i (out, r)

with ``s = alpha / r`` (``alpha / sqrt(r)`` in the rs variant). Options (all off in the official configs):
``shared_expert`` adds an always-on ``s * h B_s^T``; ``route_compression`` gives every expert its own
compress matrix ``A_i``. There is no load-balance loss. With ``E = 1`` the router output is exactly 1 and the
layer is LoRA (same numbers, bit for bit, as :class:`lorat.models.peft.LoRA` with the same A and B).

Placement equals LoRA's: q, k, v split out of the fused qkv, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``
(ViT-g: ``mlp.w12``, ``mlp.w3``). Official key names: ``blocks.N.attn.qkv.q.linear.weight``,
``blocks.N.attn.qkv.q.tmoe.compress_expert``, ``...tmoe.routed_experts.{i}``, ``...tmoe.expert_route.weight``.

TMoE cannot be merged into the frozen weights: the mixture of the ``B_i`` depends on the input.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from . import peft
from .peft import LORA_TARGETS, wrap_block_linears

TMOE_INITS = ("bert", "lora", "gaussian")
TMOE_TARGETS = LORA_TARGETS


class TMoE(nn.Module):
    """The expert update ``s * sum_i softmax(G x)_i * B_i A dropout(x)`` (plus optional shared expert).

    Parameters (official names): ``compress_expert`` (r, in) — or ``compress_experts.{i}`` with
    ``route_compression`` —, ``routed_experts.{i}`` (out, r), ``expert_route.weight`` (E, in) and, with
    ``shared_expert``, ``shared_expert`` (out, r).
    """

    def __init__(self, in_features: int, out_features: int, r: int, alpha: float, num_experts: int = 4,
                 dropout: float = 0.0, rs: bool = False, init: str = "bert", shared_expert: bool = False,
                 route_compression: bool = False) -> None:
        super().__init__()
        if r <= 0:
            raise ValueError(f"TMoE rank must be positive, got r={r}")
        if num_experts <= 0:
            raise ValueError(f"TMoE needs at least one expert, got num_experts={num_experts}")
        self.r, self.alpha, self.rs, self.num_experts = r, float(alpha), rs, num_experts
        self.route_compression = route_compression
        if route_compression:
            self.compress_experts = nn.ParameterList(
                nn.Parameter(torch.empty(r, in_features)) for _ in range(num_experts))
        else:
            self.compress_expert = nn.Parameter(torch.empty(r, in_features))
        self.routed_experts = nn.ParameterList(nn.Parameter(torch.empty(out_features, r)) for _ in range(num_experts))
        self.shared_expert = nn.Parameter(torch.empty(out_features, r)) if shared_expert else None
        # Router: default nn.Linear init (Kaiming-uniform, a = sqrt(5)), as officially.
        self.expert_route = nn.Linear(in_features, num_experts, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters(init)

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.rs else self.r)

    def _compress(self) -> list[nn.Parameter]:
        return list(self.compress_experts) if self.route_compression else [self.compress_expert]

    def _expand(self) -> list[nn.Parameter]:
        return list(self.routed_experts) + ([self.shared_expert] if self.shared_expert is not None else [])

    @torch.no_grad()
    def reset_parameters(self, init: str = "bert") -> None:
        """``bert``: A and every B ~ trunc-normal(std 0.02) (official default). ``lora``: A Kaiming-uniform
        (a = sqrt(5)), B = 0. ``gaussian``: A ~ N(0, 1/r), B = 0. The router keeps nn.Linear's init."""
        if init not in TMOE_INITS:
            raise ValueError(f"unknown TMoE init {init!r}; expected one of {TMOE_INITS}")
        for a in self._compress():
            if init == "bert":
                nn.init.trunc_normal_(a, std=0.02)
            elif init == "lora":
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            else:
                nn.init.normal_(a, std=1.0 / self.r)
        for b in self._expand():
            if init == "bert":
                nn.init.trunc_normal_(b, std=0.02)
            else:
                nn.init.zeros_(b)

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Dense per-token gate ``softmax(G x)``: (..., E)."""
        return self.expert_route(x).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.route(x)  # (..., E)
        xd = self.dropout(x)
        if self.route_compression:
            # each expert has its own A_i: sum_i g_i * (x A_i^T) B_i^T
            out = sum(((g[..., i:i + 1] * (xd @ a.t())) @ b.t())
                      for i, (a, b) in enumerate(zip(self.compress_experts, self.routed_experts)))
            h = None
        else:
            h = xd @ self.compress_expert.t()  # (..., r)
            if self.num_experts == 1:  # g == 1 exactly: the LoRA computation, bit for bit
                out = (g * h) @ self.routed_experts[0].t()
            else:
                # sum_i g_i h B_i^T as one matmul: (..., E*r) @ (E*r, out)
                gh = (g.unsqueeze(-1) * h.unsqueeze(-2)).flatten(-2)
                out = gh @ torch.cat(list(self.routed_experts), dim=1).t()
        if self.shared_expert is not None:
            if h is None:
                raise ValueError("shared_expert together with route_compression is not supported "
                                 "(which compress matrix the shared expert uses is not defined)")
            out = out + h @ self.shared_expert.t()
        return out * self.scaling


class TMoELinear(nn.Module):
    """A frozen ``nn.Linear`` (``self.linear``) plus a trainable :class:`TMoE` (``self.tmoe``)."""

    def __init__(self, linear: nn.Linear, tmoe: TMoE | None) -> None:
        super().__init__()
        self.linear = linear
        self.tmoe = tmoe  # None: a q/k/v part left un-adapted

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tmoe is None:
            return self.linear(x)
        if self.training and peft.FUSED_TRAINING:
            x = peft.autocast_input(x)  # one cast for the linear, the router and the experts (as LoRA's fused form)
        return self.linear(x) + self.tmoe(x)


class TMoEQKV(nn.Module):
    """The fused qkv projection split into ``q``, ``k``, ``v`` (each a :class:`TMoELinear`); outputs [q, k, v]."""

    def __init__(self, qkv: nn.Linear, make, parts: Iterable[str] = ("q", "k", "v")) -> None:
        super().__init__()
        wanted = set(parts)
        c = qkv.in_features
        split = []
        for i in range(3):
            lin = nn.Linear(c, c, bias=qkv.bias is not None, device=qkv.weight.device, dtype=qkv.weight.dtype)
            with torch.no_grad():  # rows [iC:(i+1)C] of the fused (3C, C) weight
                lin.weight.copy_(qkv.weight[i * c:(i + 1) * c])
                if qkv.bias is not None:
                    lin.bias.copy_(qkv.bias[i * c:(i + 1) * c])
            lin.requires_grad_(qkv.weight.requires_grad)
            split.append(TMoELinear(lin, make(c, c) if "qkv"[i] in wanted else None))
        self.q, self.k, self.v = split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and peft.FUSED_TRAINING:
            x = peft.autocast_input(x)  # shared by the three parts
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)


def attach_tmoe(blocks: nn.Module, r: int, alpha: float, num_experts: int = 4, dropout: float = 0.0,
                rs: bool = False, init: str = "bert", shared_expert: bool = False, route_compression: bool = False,
                targets: Iterable[str] = TMOE_TARGETS) -> int:
    """Wrap the frozen linears of ``blocks`` with TMoE in place (where LoRA goes); returns the module count.

    The wrapped linears are frozen; the TMoE parameters are trainable. Modules are created in sorted name
    order, so the random init is reproducible (the official code iterates a ``set``, which is not).
    """
    targets = tuple(targets)
    unknown = set(targets) - set(TMOE_TARGETS)
    if unknown:
        raise ValueError(f"unknown TMoE targets {sorted(unknown)}; expected a subset of {TMOE_TARGETS}")

    def make(in_f: int, out_f: int) -> TMoE:
        return TMoE(in_f, out_f, r, alpha, num_experts, dropout, rs, init, shared_expert, route_compression)

    return wrap_block_linears(blocks, targets, make, TMoELinear, TMoEQKV)


def tmoe_modules(module: nn.Module) -> list[TMoE]:
    """All :class:`TMoE` modules inside ``module``."""
    return [m for m in module.modules() if isinstance(m, TMoE)]


def has_tmoe(module: nn.Module) -> bool:
    """True when ``module`` contains TMoE wrappers."""
    return any(isinstance(m, (TMoELinear, TMoEQKV)) for m in module.modules())


def tmoe_trainable_count(in_features: int, out_features: int, r: int, num_experts: int) -> int:
    """Trainable parameters of one TMoE (no options): ``r*in + E*r*out + E*in``."""
    return r * in_features + num_experts * r * out_features + num_experts * in_features


__all__ = ["TMOE_INITS", "TMOE_TARGETS", "TMoE", "TMoELinear", "TMoEQKV", "attach_tmoe", "tmoe_modules", "has_tmoe",
           "tmoe_trainable_count"]
