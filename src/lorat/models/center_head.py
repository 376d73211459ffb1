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
from torch import nn


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


class CenterHead(nn.Module):
    """The CENTER head: ``forward(feat (B,C,H,W)) -> (score_map, size_map, offset_map, boxes (B,4))``."""

    def __init__(self, in_channels: int, channels: int = 256) -> None:
        super().__init__()
        if channels % 8:
            raise ValueError(f"head_channels={channels} must be divisible by 8 (branches narrow to ch/8)")
        widths = [in_channels, channels, channels // 2, channels // 4, channels // 8]
        for branch, out in (("ctr", 1), ("offset", 2), ("size", 2)):
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


__all__ = ["CenterHead", "cal_bbox", "clamped_sigmoid"]
