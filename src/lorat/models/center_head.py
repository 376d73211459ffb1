"""OSTrack's CENTER head (CenterNet-style corner-free box head) and its box decoding ``cal_bbox``.

Three convolutional branches read the search-token feature map (B, C, H, W):

* ``ctr``: centre score, 1 channel -> ``score_map`` = clamp(sigmoid, 1e-4, 1 - 1e-4);
* ``size``: box (w, h) normalised by the search size, 2 channels -> clamp(sigmoid) likewise;
* ``offset``: sub-cell centre offset (x, y) in cells, 2 channels, raw.

Each branch is 4 x [Conv3x3 (pad 1, bias) -> BatchNorm2d -> ReLU] with channels C -> ch -> ch/2 -> ch/4 ->
ch/8, then a Conv1x1. Parameter names equal OSTrack's ``box_head.*`` keys (``conv1_ctr.0.weight`` is the
conv, ``conv1_ctr.1.*`` the BatchNorm).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BRANCHES = (("ctr", 1), ("offset", 2), ("size", 2))


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=True),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def clamped_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """OSTrack's ``_sigmoid``: sigmoid clamped to [1e-4, 1 - 1e-4] (keeps the focal loss finite)."""
    return torch.clamp(x.sigmoid(), min=1e-4, max=1 - 1e-4)


def cal_bbox(score_map: torch.Tensor, size_map: torch.Tensor, offset_map: torch.Tensor) -> torch.Tensor:
    """Box at the score map's argmax cell: (B, 4) = (cx, cy, w, h) normalised by the search size.

    score_map (B,1,H,W) picks the cell (first maximum of the row-major flattening, ``iy = idx // W``,
    ``ix = idx % W``); ``cx = (ix + off_x) / W``, ``cy = (iy + off_y) / H``; (w, h) = size_map at that
    cell. size_map / offset_map: (B,2,H,W). The official code divides by the (square) ``feat_sz``.
    """
    B, _, H, W = score_map.shape
    idx = score_map.flatten(1).argmax(dim=1, keepdim=True)  # (B, 1)
    iy = torch.div(idx, W, rounding_mode="floor")
    ix = idx % W
    gather = idx.unsqueeze(1).expand(B, 2, 1)
    size = size_map.flatten(2).gather(2, gather).squeeze(-1)  # (B, 2)
    offset = offset_map.flatten(2).gather(2, gather).squeeze(-1)  # (B, 2)
    return torch.cat([(ix.to(torch.float) + offset[:, :1]) / W, (iy.to(torch.float) + offset[:, 1:]) / H, size],
                     dim=1)


def im2col_channels_last(feat: torch.Tensor) -> torch.Tensor:
    """3x3 / pad-1 patches of ``feat`` (B, C, H, W): (B, H*W, 9*C), features ordered (ky, kx, c).

    OSTrack's ``feat`` is a transposed view of its (B, H*W, C) tokens, so its channels-last permute is free
    and one concatenation of nine shifted views writes the patches: ~7x faster than ``F.unfold`` + a
    contiguous transpose on CPU at 8x8 x 768, and in ONNX plain Pad / Slice / Concat nodes (``F.unfold``
    exports as Gathers, ~0.3 ms each in onnxruntime).
    """
    B, C, H, W = feat.shape
    padded = F.pad(feat.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # (B, H+2, W+2, C)
    shifted = [padded[:, dy:dy + H, dx:dx + W] for dy in range(3) for dx in range(3)]
    return torch.cat(shifted, dim=-1).reshape(B, H * W, 9 * C)


class CenterHead(nn.Module):
    """The CENTER head: ``forward(feat (B,C,H,W)) -> (score_map, size_map, offset_map, boxes (B,4))``."""

    def __init__(self, in_channels: int, channels: int = 256) -> None:
        super().__init__()
        if channels % 8:
            raise ValueError(f"head_channels={channels} must be divisible by 8 (branches narrow to ch/8)")
        widths = [in_channels, channels, channels // 2, channels // 4, channels // 8]
        for branch, out in BRANCHES:
            for i in range(4):
                self.add_module(f"conv{i + 1}_{branch}", _conv_bn_relu(widths[i], widths[i + 1]))
            self.add_module(f"conv5_{branch}", nn.Conv2d(widths[4], out, kernel_size=1))

    def _branch(self, name: str, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv{i}_{name}")(x)
        return x

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        score_map = clamped_sigmoid(self._branch("ctr", feat))  # (B,1,H,W)
        size_map = clamped_sigmoid(self._branch("size", feat))  # (B,2,H,W)
        offset_map = self._branch("offset", feat)  # (B,2,H,W) raw
        return score_map, size_map, offset_map, cal_bbox(score_map, size_map, offset_map)

    def fused_for_inference(self) -> FusedCenterHead:
        """An eval-only copy with BatchNorm folded and the three branches computed together (same outputs)."""
        return FusedCenterHead(self)


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    # eval BatchNorm after a conv: gamma * (conv(x) - mean) / sqrt(var + eps) + beta, folded into the conv
    s = bn.weight.detach().float() / torch.sqrt(bn.running_var.float() + bn.eps)
    w = conv.weight.detach().float() * s[:, None, None, None]
    b = (conv.bias.detach().float() - bn.running_mean.float()) * s + bn.bias.detach().float()
    return w, b


class FusedCenterHead(nn.Module):
    """:class:`CenterHead` for inference: BatchNorm folded, branches ``ctr | offset | size`` run side by side.

    * layer 1 (the wide one, C -> 3 ch): the three 3x3 convs read the same input, so they are one
      convolution with 3 ch outputs, computed as a channels-last ``im2col`` + ``nn.Linear`` (``conv1``, in
      9*C features ordered (ky, kx, c)) - a GEMM that int8 runtimes (and onnxruntime's dynamic int8
      quantisation) turn into an int8 GEMM, and that beats oneDNN's conv at 8x8 maps;
    * layers 2-4: grouped 3x3 convs (``groups=3``), one group per branch;
    * layer 5: one 1x1 conv with a block-diagonal weight (5 outputs: ctr 1, offset 2, size 2).

    Same outputs as the source head in eval mode up to float rounding; not trainable (no BatchNorm).
    """

    def __init__(self, head: CenterHead) -> None:
        super().__init__()
        names = [n for n, _ in BRANCHES]
        first = [_fold_bn(*getattr(head, f"conv1_{n}")[:2]) for n in names]
        cout, cin = first[0][0].shape[:2]
        self.conv1 = nn.Linear(cin * 9, 3 * cout)
        with torch.no_grad():
            # (cout, cin, ky, kx) -> (cout, ky, kx, cin): the order of :func:`im2col_channels_last`'s features
            self.conv1.weight.copy_(torch.cat([w.permute(0, 2, 3, 1).reshape(cout, 9 * cin) for w, _ in first]))
            self.conv1.bias.copy_(torch.cat([b for _, b in first]))
        self.convs = nn.ModuleList()
        for i in range(2, 5):
            folded = [_fold_bn(*getattr(head, f"conv{i}_{n}")[:2]) for n in names]
            w = torch.cat([w for w, _ in folded])  # (3 out, in/group, 3, 3): grouped weight layout
            conv = nn.Conv2d(w.shape[1] * 3, w.shape[0], kernel_size=3, padding=1, groups=3)
            with torch.no_grad():
                conv.weight.copy_(w)
                conv.bias.copy_(torch.cat([b for _, b in folded]))
            self.convs.append(conv)
        last = [getattr(head, f"conv5_{n}") for n in names]
        width = last[0].in_channels
        self.conv5 = nn.Conv2d(3 * width, sum(o for _, o in BRANCHES), kernel_size=1)
        with torch.no_grad():
            self.conv5.weight.zero_()
            row = 0
            for g, conv in enumerate(last):
                out = conv.out_channels
                self.conv5.weight[row:row + out, g * width:(g + 1) * width] = conv.weight
                self.conv5.bias[row:row + out] = conv.bias
                row += out
        self.eval().requires_grad_(False)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        B, _, H, W = feat.shape
        x = F.relu(self.conv1(im2col_channels_last(feat))).transpose(1, 2).reshape(B, -1, H, W)  # (B, 3 ch, H, W)
        for conv in self.convs:
            x = F.relu(conv(x))
        out = self.conv5(x)  # (B, 5, H, W): ctr | offset (2) | size (2)
        score_map = clamped_sigmoid(out[:, 0:1])
        offset_map = out[:, 1:3]
        size_map = clamped_sigmoid(out[:, 3:5])
        return score_map, size_map, offset_map, cal_bbox(score_map, size_map, offset_map)


__all__ = ["CenterHead", "FusedCenterHead", "cal_bbox", "clamped_sigmoid", "im2col_channels_last"]
