"""DINOv2-compatible Vision Transformer building blocks.

Parameter names follow the facebookresearch DINOv2 release (``patch_embed.proj``, ``blocks.N.norm1``,
``blocks.N.attn.qkv``, ``blocks.N.ls1.gamma``, ``blocks.N.mlp.fc1`` / ``mlp.w12`` ...), so pretrained
files load without renaming and LoRAT checkpoints keep the official keys.

Blocks are pre-norm: ``x = x + ls1(attn(norm1(x)))`` then ``x = x + ls2(ffn(norm2(x)))``; LayerNorm
eps is 1e-6 and GELU is the exact (erf) form, as in DINOv2.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` convolution; accepts any input size divisible by the patch.

    Output: ``(B, H/p * W/p, C)`` tokens in row-major order (index = row * W + col).
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (B, C, H/p, W/p)
        return x.flatten(2).transpose(1, 2)


_MATMUL_ATTENTION = False  # set by matmul_attention_enabled(); read by Attention.forward


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` with explicit matmuls; q, k, v (B, heads, N, d) -> (B, heads, N, d).

    What SDPA computes, as three ops that autocast runs in its low precision. On CPU under bf16 autocast this
    is faster than SDPA's kernels at small token counts, forward and backward (``lorat.runtime``).
    """
    # Scale q (N*d elements) rather than the scores (N*N).
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # (B, heads, N, N)
    return scores.softmax(dim=-1) @ v


@contextmanager
def matmul_attention_enabled(enabled: bool = True) -> Iterator[None]:
    """Within the block every :class:`Attention` uses :func:`matmul_attention` instead of SDPA (the trainer's
    ``attention="manual"``); modules, parameters and state-dict keys stay as they are."""
    global _MATMUL_ATTENTION
    previous, _MATMUL_ATTENTION = _MATMUL_ATTENTION, enabled
    try:
        yield
    finally:
        _MATMUL_ATTENTION = previous


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection (rows ordered q | k | v)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        # (B, N, 3C) -> (3, B, heads, N, C/heads)
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        attend = matmul_attention if _MATMUL_ATTENTION else F.scaled_dot_product_attention
        x = attend(qkv[0], qkv[1], qkv[2])  # scale 1/sqrt(C/heads)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    """Linear -> GELU -> Linear (ViT-S/B/L)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    """DINOv2's fused SwiGLU (ViT-g): ``w3(silu(a) * b)`` with ``a, b = w12(x).chunk(2)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


def swiglu_hidden_dim(dim: int, mlp_ratio: float) -> int:
    """DINOv2 rounds 2/3 of the MLP width to a multiple of 8: 4096 for ViT-g (dim 1536)."""
    return (int(dim * mlp_ratio * 2 / 3) + 7) // 8 * 8


class LayerScale(nn.Module):
    """Per-channel residual scale ``gamma`` (DINOv2 LayerScale)."""

    def __init__(self, dim: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Per-sample stochastic depth: zero a residual branch for a fraction ``p`` of the samples."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale and stochastic depth.

    Stochastic depth follows DINOv2: for ``drop_path > 0.1`` (ViT-g, 0.4) the residual branch is computed
    for a random subset of ``int(B * (1 - p))`` samples only and added back scaled by ``B / subset``;
    for smaller rates it is ordinary per-sample drop path.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, ffn: str = "mlp",
                 drop_path: float = 0.0, layer_scale_init: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim, layer_scale_init)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        if ffn == "mlp":
            self.mlp: nn.Module = Mlp(dim, int(dim * mlp_ratio))
        elif ffn == "swiglu":
            self.mlp = SwiGLUFFN(dim, swiglu_hidden_dim(dim, mlp_ratio))
        else:
            raise ValueError(f"unknown ffn {ffn!r}; expected 'mlp' or 'swiglu'")
        self.ls2 = LayerScale(dim, layer_scale_init)
        self.drop_path = drop_path

    def _attn_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.ls1(self.attn(self.norm1(x)))

    def _ffn_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.ls2(self.mlp(self.norm2(x)))

    def fused_for_inference(self) -> Block | None:
        """This block with each LayerScale folded into the plain ``nn.Linear`` in front of it, or None if none is.

        ``gamma * (W x + b) = (gamma W) x + gamma b``: ``ls1`` goes into ``attn.proj``, ``ls2`` into the FFN's
        output layer (``fc2`` / ``w3``), which saves two elementwise passes over the tokens per block. In place,
        eval only (the inference runtimes call it on their merged copy, in fp32 before any cast). A LayerScale
        whose linear is wrapped (unmerged LoRA, a mixture of experts) stays.
        """
        folded = False
        ffn_out = getattr(self.mlp, "fc2", None) or getattr(self.mlp, "w3", None)
        for ls_name, linear in (("ls1", getattr(self.attn, "proj", None)), ("ls2", ffn_out)):
            ls = getattr(self, ls_name)
            if isinstance(ls, LayerScale) and type(linear) is nn.Linear:
                with torch.no_grad():
                    gamma = ls.gamma.to(linear.weight.dtype)
                    linear.weight.mul_(gamma[:, None])
                    if linear.bias is not None:
                        linear.bias.mul_(gamma)
                setattr(self, ls_name, nn.Identity())
                folded = True
        return self if folded else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.drop_path if self.training else 0.0
        if p > 0.1:
            x = _subset_residual(x, self._attn_branch, p)
            return _subset_residual(x, self._ffn_branch, p)
        x = x + drop_path(self._attn_branch(x), p, self.training)
        return x + drop_path(self._ffn_branch(x), p, self.training)


def _subset_residual(x: torch.Tensor, branch, p: float) -> torch.Tensor:
    """DINOv2's batch-subset stochastic depth: run ``branch`` on a random subset, rescale, scatter-add."""
    B = x.shape[0]
    keep = max(int(B * (1 - p)), 1)
    idx = torch.randperm(B, device=x.device)[:keep]
    out = branch(x[idx])  # (keep, N, C)
    return torch.index_add(x.flatten(1), 0, idx, out.flatten(1).to(x.dtype), alpha=B / keep).view_as(x)


class DinoV2(nn.Module):
    """The plain DINOv2 ViT (no registers) in the facebookresearch layout; used to read pretrained files.

    Keys: ``cls_token`` (1,1,C), ``pos_embed`` (1, 1+G*G, C), ``mask_token`` (1,C), ``patch_embed.proj.*``,
    ``blocks.N.*``, ``norm.*``. Trackers only reuse ``patch_embed``, ``blocks``, ``norm`` and the grid part
    of ``pos_embed``.
    """

    def __init__(self, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0,
                 ffn: str = "mlp", patch_size: int = 14, img_size: int = 518) -> None:
        super().__init__()
        grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, ffn) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B,3,H,W) at the pretraining size -> normalised tokens (B, 1+N, C), CLS first."""
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def interpolate_pos_grid(pos_embed: torch.Tensor, size: tuple[int, int], has_cls: bool = True) -> torch.Tensor:
    """Resize a pretrained square position grid the way the official LoRAT code does.

    ``pos_embed``: (1, [1+] G*G, C). The CLS row is dropped, the grid is reshaped to (1, C, G, G) and
    resized in float32 with bicubic interpolation to the explicit ``size = (H, W)`` (no scale-factor
    offset, ``align_corners=False``, no antialias). Returns (1, H*W, C) in the input dtype.
    """
    grid = pos_embed[:, 1:] if has_cls else pos_embed
    n, c = grid.shape[1], grid.shape[2]
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"position embedding with {n} grid tokens is not a square grid")
    grid = grid.float().reshape(1, g, g, c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=size, mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, size[0] * size[1], c).to(pos_embed.dtype)
