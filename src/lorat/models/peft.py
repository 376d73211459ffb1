"""LoRA, attached exactly where and how the official LoRAT code attaches it.

Every frozen ``nn.Linear`` inside the ViT blocks is wrapped: ``attn.qkv`` is split into three
``Linear(C, C)`` (q, k, v; rows [0:C], [C:2C], [2C:3C] of the fused weight), each with its own LoRA;
``attn.proj``, ``mlp.fc1``, ``mlp.fc2`` (ViT-g: ``mlp.w12``, ``mlp.w3``) get one LoRA each. The patch
embedding and the head are not adapted.

The adapted layer computes ``y = W x + b + dropout(x) A^T B^T * s`` with ``A`` (r, in), ``B`` (out, r)
and ``s = alpha / r`` (``alpha / sqrt(r)`` with rsLoRA). State-dict keys are the official ones:
``blocks.N.attn.qkv.q.linear.weight``, ``blocks.N.attn.qkv.q.lora.A``, ``blocks.N.mlp.fc1.lora.B`` ...

Merging (``merge_lora``) folds the update into the frozen weights in float32 and restores the plain
DINOv2 structure (fused ``attn.qkv``), which is what inference should run: it is exact and 16-24 %
faster than the unmerged graph. ``LoRALinear.merge()/unmerge()`` toggle in place for experiments.

In training mode the unmerged layers compute the same function in fewer passes over the tokens (the
*fused* form): the input is cast to the autocast dtype once instead of once per matmul that reads it, the
update is added inside the GEMM (``addmm(y, x A^T, B^T, alpha=s)``: no separate scale and add), and the three
q/k/v parts run as one ``Linear(C, 3C)`` plus one rank-``3r`` update with a block-diagonal ``B``. Only float
rounding differs (relative 1e-6 in fp32; under autocast the input's gradient is summed over its readers in the
low precision before the one cast back); a CPU training step of the demo's ViT is 1.06-1.22x faster
(benchmarks/train_attention.md).
Eval mode keeps the official op sequence (three Linear layers, ``(x A^T B^T) * s``), which ``lorat bench``
times as the official computation path. ``FUSED_TRAINING = False`` turns the fused form off.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

LORA_INITS = ("trunc_normal", "kaiming", "gaussian", "zero_b")
# Names (last path component) of the block linears that can be adapted; q/k/v are the split qkv.
LORA_TARGETS = ("q", "k", "v", "proj", "fc1", "fc2", "w12", "w3")
#: unmerged LoRA layers in training mode use the fused form (module docstring); False: the official op sequence
FUSED_TRAINING = True


def autocast_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the autocast dtype while autocast is on for its device (else ``x``).

    Autocast casts an fp32 activation again for every matmul that reads it (activations are not in its weight
    cache), and backward pays one more conversion each; casting once shares both.
    """
    kind = x.device.type
    if x.is_floating_point() and torch.is_autocast_enabled(kind):
        return x.to(torch.get_autocast_dtype(kind))
    return x


def add_low_rank(y: torch.Tensor, h: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """``y + scaling * h @ b.T`` as one ``addmm`` over the flattened tokens; ``y`` (..., out), ``h`` (..., r)."""
    return torch.addmm(y.flatten(0, -2), h.flatten(0, -2), b.t(), alpha=scaling).view_as(y)


class LoRA(nn.Module):
    """The low-rank update ``dropout(x) A^T B^T * scaling`` (parameters ``A`` and ``B``)."""

    def __init__(self, in_features: int, out_features: int, r: int, alpha: float,
                 dropout: float = 0.0, rslora: bool = False, init: str = "trunc_normal") -> None:
        super().__init__()
        if r <= 0:
            raise ValueError(f"LoRA rank must be positive, got r={r}")
        self.r, self.alpha, self.rslora = r, float(alpha), rslora
        self.A = nn.Parameter(torch.empty(r, in_features))
        self.B = nn.Parameter(torch.empty(out_features, r))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters(init)

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.rslora else self.r)

    def reset_parameters(self, init: str = "trunc_normal") -> None:
        """Initialise A and B.

        ``trunc_normal``: both A and B ~ trunc-normal(std 0.02, bounds +-2), the official default (B is
        not zero, so training starts slightly off the pretrained function). ``kaiming``: A Kaiming-uniform
        (a=sqrt(5)), B = 0 (the LoRA paper). ``gaussian``: A ~ N(0, 1/r), B = 0. ``zero_b``: A trunc-normal,
        B = 0 (starts exactly at the pretrained function).
        """
        if init == "trunc_normal":
            nn.init.trunc_normal_(self.A, std=0.02)
            nn.init.trunc_normal_(self.B, std=0.02)
        elif init == "kaiming":
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
            nn.init.zeros_(self.B)
        elif init == "gaussian":
            nn.init.normal_(self.A, std=1.0 / self.r)
            nn.init.zeros_(self.B)
        elif init == "zero_b":
            nn.init.trunc_normal_(self.A, std=0.02)
            nn.init.zeros_(self.B)
        else:
            raise ValueError(f"unknown LoRA init {init!r}; expected one of {LORA_INITS}")

    def delta_weight(self) -> torch.Tensor:
        """``B @ A * scaling`` in float32, shape (out, in)."""
        return (self.B.float() @ self.A.float()) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.dropout(x) @ self.A.t() @ self.B.t()) * self.scaling


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` (``self.linear``) plus a trainable ``LoRA`` (``self.lora``)."""

    def __init__(self, linear: nn.Linear, lora: LoRA | None) -> None:
        super().__init__()
        self.linear = linear
        self.lora = lora  # None: a q/k/v part that a LoRA ablation leaves un-adapted
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or self.lora is None:
            return self.linear(x)
        if self.training and FUSED_TRAINING:
            x = autocast_input(x)
            lora = self.lora
            return add_low_rank(self.linear(x), lora.dropout(x) @ lora.A.t(), lora.B, lora.scaling)
        return self.linear(x) + self.lora(x)

    @torch.no_grad()
    def merge(self) -> None:
        """Add the LoRA update into ``linear.weight`` in place (float32 arithmetic)."""
        if not self.merged and self.lora is not None:
            w = self.linear.weight
            w.copy_((w.float() + self.lora.delta_weight()).to(w.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the LoRA update again (inverse of ``merge`` up to float32 rounding)."""
        if self.merged and self.lora is not None:
            w = self.linear.weight
            w.copy_((w.float() - self.lora.delta_weight()).to(w.dtype))
            self.merged = False

    def merged_linear(self) -> nn.Linear:
        """A new plain ``nn.Linear`` holding ``W + delta`` (float32 merge, cast back)."""
        return _plain_linear(self.linear.weight, self.linear.bias, self._delta())

    def _delta(self) -> torch.Tensor:
        if self.merged or self.lora is None:
            return torch.zeros((), device=self.linear.weight.device)
        return self.lora.delta_weight()


class LoRAQKV(nn.Module):
    """The fused qkv projection split into ``q``, ``k``, ``v`` (each a ``LoRALinear``); outputs [q, k, v]."""

    def __init__(self, qkv: nn.Linear, make_lora, parts: Iterable[str] = ("q", "k", "v")) -> None:
        super().__init__()
        wanted = set(parts)
        c = qkv.in_features
        split = []
        for i in range(3):
            lin = nn.Linear(c, c, bias=qkv.bias is not None, device=qkv.weight.device, dtype=qkv.weight.dtype)
            with torch.no_grad():
                lin.weight.copy_(qkv.weight[i * c:(i + 1) * c])
                if qkv.bias is not None:
                    lin.bias.copy_(qkv.bias[i * c:(i + 1) * c])
            lin.requires_grad_(qkv.weight.requires_grad)
            split.append(LoRALinear(lin, make_lora(c, c) if "qkv"[i] in wanted else None))
        self.q, self.k, self.v = split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and FUSED_TRAINING):
            return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)
        x = autocast_input(x)
        parts = (self.q, self.k, self.v)
        loras = [p.lora for p in parts]
        if any(p.merged or lo is None or not isinstance(lo.dropout, nn.Identity) for p, lo in zip(parts, loras)) \
                or len({lo.scaling for lo in loras}) > 1:
            # a part without its own update, or per-part dropout masks: part by part (each still fused)
            return torch.cat([p(x) for p in parts], dim=-1)
        linears = [p.linear for p in parts]
        bias = torch.cat([lin.bias for lin in linears]) if linears[0].bias is not None else None
        y = F.linear(x, torch.cat([lin.weight for lin in linears]), bias)  # (..., 3C)
        h = x @ torch.cat([lo.A for lo in loras]).t()  # (..., 3r): [x A_q^T | x A_k^T | x A_v^T]
        # block_diag(B_q, B_k, B_v) (3C, 3r): output slice i reads only rank slice i
        return add_low_rank(y, h, torch.block_diag(*[lo.B for lo in loras]), loras[0].scaling)

    def merged_linear(self) -> nn.Linear:
        """One fused ``Linear(C, 3C)`` with each part's update merged (float32)."""
        parts = (self.q, self.k, self.v)
        weight = torch.cat([p.linear.weight for p in parts])
        bias = torch.cat([p.linear.bias for p in parts]) if parts[0].linear.bias is not None else None
        delta = torch.cat([p._delta().expand_as(p.linear.weight) for p in parts])
        return _plain_linear(weight, bias, delta)


def _plain_linear(weight: torch.Tensor, bias: torch.Tensor | None, delta: torch.Tensor) -> nn.Linear:
    out_f, in_f = weight.shape
    lin = nn.Linear(in_f, out_f, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        lin.weight.copy_((weight.float() + delta.to(weight.device)).to(weight.dtype))
        if bias is not None:
            lin.bias.copy_(bias)
    lin.requires_grad_(False)
    return lin


def _block_linears(blocks: nn.Module, targets: Iterable[str]) -> Iterator[tuple[nn.Module, str, nn.Linear]]:
    """Yield (parent, attribute, linear) for each adaptable linear inside ``blocks``, in sorted name order."""
    want = set(targets)
    found = []
    for name, module in blocks.named_modules():
        for attr, child in module.named_children():
            if type(child) is not nn.Linear:
                continue
            if attr == "qkv" and want & {"q", "k", "v"}:
                found.append((f"{name}.{attr}", module, attr, child))
            elif attr in want:
                found.append((f"{name}.{attr}", module, attr, child))
    for _, module, attr, child in sorted(found, key=lambda t: t[0]):
        yield module, attr, child


def attach_lora(blocks: nn.Module, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False,
                init: str = "trunc_normal", targets: Iterable[str] = LORA_TARGETS) -> int:
    """Wrap the frozen linears of ``blocks`` with LoRA in place; returns the number of LoRA modules.

    ``targets`` selects which projections are adapted (the LoRA ablations: e.g. ``("q", "v")``);
    within a fused qkv the unselected parts of q/k/v stay plain (no ``lora`` submodule).
    """
    targets = tuple(targets)
    unknown = set(targets) - set(LORA_TARGETS)
    if unknown:
        raise ValueError(f"unknown LoRA targets {sorted(unknown)}; expected a subset of {LORA_TARGETS}")

    def make(in_f: int, out_f: int) -> LoRA:
        return LoRA(in_f, out_f, r, alpha, dropout, rslora, init)

    return wrap_block_linears(blocks, targets, make, LoRALinear, LoRAQKV)


def wrap_block_linears(blocks: nn.Module, targets: tuple[str, ...], make, linear_cls: type, qkv_cls: type) -> int:
    """Freeze each target linear inside ``blocks`` and replace it by its PEFT wrapper; returns the count.

    ``make(in_features, out_features)`` builds one adapter; a fused ``qkv`` becomes ``qkv_cls(linear, make,
    parts)`` (one adapter per targeted q/k/v slice), every other linear ``linear_cls(linear, adapter)``. Shared by
    LoRA and TMoE, which differ only in the adapter they build.
    """
    count = 0
    for parent, attr, linear in list(_block_linears(blocks, targets)):
        linear.requires_grad_(False)
        if attr == "qkv":
            wrapped = qkv_cls(linear, make, parts=[p for p in "qkv" if p in targets])
            count += sum(p in targets for p in "qkv")
        else:
            wrapped = linear_cls(linear, make(linear.in_features, linear.out_features))
            count += 1
        wrapped.to(device=linear.weight.device)
        setattr(parent, attr, wrapped)
    return count


def merge_lora(module: nn.Module) -> nn.Module:
    """Fold every LoRA wrapper inside ``module`` into plain linears (in place); returns ``module``.

    Afterwards the graph is an unmodified DINOv2 ViT: ``attn.qkv`` is one fused Linear again.
    """
    for name, child in list(module.named_children()):
        if isinstance(child, (LoRALinear, LoRAQKV)):
            setattr(module, name, child.merged_linear())
        else:
            merge_lora(child)
    return module


def fold_lora(model: nn.Module) -> bool:
    """Fold unmerged LoRA in ``model`` in place, through the model's own ``merge_lora()`` when it has one
    (LoRAT: its blocks; SPMTrack: a no-op, TMoE does not fold), else :func:`merge_lora` over every module.

    Returns True when there was LoRA to fold.
    """
    if not has_lora(model):
        return False
    model.merge_lora() if hasattr(model, "merge_lora") else merge_lora(model)
    return True


def lora_modules(module: nn.Module) -> list[LoRA]:
    """All ``LoRA`` modules inside ``module``."""
    return [m for m in module.modules() if isinstance(m, LoRA)]


def has_lora(module: nn.Module) -> bool:
    """True when ``module`` still contains unmerged LoRA wrappers."""
    return any(isinstance(m, (LoRALinear, LoRAQKV)) for m in module.modules())
