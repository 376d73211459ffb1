"""The anchor-free MLP head of LoRAT (``MlpAnchorFreeHead`` in the official code)."""
from __future__ import annotations

import torch
from torch import nn


class MlpStack(nn.Module):
    """``layers.0 -> GELU -> layers.1 -> GELU -> layers.2`` (official key names ``*.layers.{0,1,2}``)."""

    def __init__(self, dim: int, out_dim: int, num_layers: int = 3) -> None:
        super().__init__()
        dims = [dim] * num_layers + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(num_layers))
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


def cell_centres(h: int, w: int) -> torch.Tensor:
    """Reference point of every response cell, normalised: ``((j+0.5)/W, (i+0.5)/H)``, shape (H, W, 2)."""
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


class MlpAnchorFreeHead(nn.Module):
    """Per search token: a score logit and a box from sigmoid ltrb distances to the cell centre.

    Input (B, H*W, C) search tokens in row-major order. Output dict:
    ``score_map`` (B, H, W) float32 logits and ``boxes`` (B, H, W, 4) float32 normalised xyxy
    relative to the search crop (``(cx - l, cy - t, cx + r, cy + b)``; may extend past [0, 1]).
    """

    def __init__(self, dim: int, feat_size: tuple[int, int], num_layers: int = 3) -> None:
        super().__init__()
        self.feat_h, self.feat_w = feat_size
        self.cls_mlp = MlpStack(dim, 1, num_layers)
        self.reg_mlp = MlpStack(dim, 4, num_layers)
        self.register_buffer("bbox_offset", cell_centres(self.feat_h, self.feat_w), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official init: trunc-normal(std 0.02) weights, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        B = x.shape[0]
        H, W = self.feat_h, self.feat_w
        # Cast to float32 as the official head does: under AMP the loss and decoding stay in fp32.
        score = self.cls_mlp(x).float().view(B, H, W)
        ltrb = self.reg_mlp(x).float().view(B, H, W, 4).sigmoid()
        centre = self.bbox_offset.to(ltrb.dtype)
        boxes = torch.cat([centre - ltrb[..., :2], centre + ltrb[..., 2:]], dim=-1)
        return {"score_map": score, "boxes": boxes}
