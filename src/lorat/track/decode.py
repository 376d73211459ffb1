"""LoRAT's decoding of a response map: additive Hann-window penalty, argmax, box in search-crop pixels.

Official rule (``docs/tracking.md``, step 3): ``p = sigmoid(score)``, ``q = (1 - w) p + w hann`` with
``w = window_penalty`` (0.45) and a symmetric (``periodic=False``) Hann outer product; the chosen cell is
``argmax q``, its confidence is the *un-penalised* ``p``, and its box is the head's normalised xyxy box
times the search crop size.
"""
from __future__ import annotations

import torch

__all__ = ["hann_window_2d", "decode_prediction"]


def hann_window_2d(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(h, w)`` float32 window ``outer(hann(h), hann(w))`` with ``periodic=False`` (official definition)."""
    return torch.outer(torch.hann_window(h, periodic=False, dtype=torch.float32, device=device),
                       torch.hann_window(w, periodic=False, dtype=torch.float32, device=device))


def decode_prediction(score_map: torch.Tensor, boxes: torch.Tensor, window: torch.Tensor | None,
                      window_penalty: float, search_size: tuple[int, int]
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick one box per sample from the model output (the rule in the module docstring).

    Args:
        score_map: ``(B, H, W)`` logits.
        boxes: ``(B, H, W, 4)`` normalised xyxy boxes relative to the search crop.
        window: ``(H, W)`` Hann window (:func:`hann_window_2d`), or None for no penalty.
        window_penalty: ``q = p * (1 - window_penalty) + window * window_penalty``.
        search_size: ``(W_s, H_s)`` of the search crop in pixels.

    Returns:
        ``(box (B, 4) float32 xyxy in search-crop pixels, confidence (B,) = sigmoid score at the chosen cell,
        not penalised, index (B,) int64 flat row-major cell index)``.
    """
    B, H, W = score_map.shape
    p = score_map.float().sigmoid().reshape(B, H * W)
    q = p
    if window is not None and window_penalty:
        q = p * (1 - window_penalty) + window.reshape(1, H * W).to(p) * window_penalty
    idx = q.argmax(dim=1)  # first maximum on ties, as torch.argmax documents
    confidence = p.gather(1, idx[:, None])[:, 0]
    chosen = boxes.float().reshape(B, H * W, 4)[torch.arange(B, device=idx.device), idx]
    ws, hs = search_size
    scale = torch.tensor([ws, hs, ws, hs], dtype=chosen.dtype, device=chosen.device)
    return chosen * scale, confidence, idx
