"""SPMTrack's tracker: LoRAT's search crop and decoding, a reference-frame memory and a carried state token.

``lorat.Tracker(model)`` returns this class for an SPMTrack model (the architecture registers it), so the
single-sequence ``initialize`` / ``track`` and the batched ``initialize_many`` / ``track_many`` calls are the
same as LoRAT's. Per frame it overrides only the steps of the tracker contract that differ
(``docs/DESIGN.md``, "Tracker contract"; the official pipeline is described in ``docs/spmtrack.md``):

frame 0 (:meth:`SPMTrackTracker.new_state`)
    the template crop of the given box (area factor 2, SiamFC context, padded with frame 0's mean,
    ``/255`` + ImageNet normalisation) and its foreground mask are **memory entry 0**; frame 0's mean is kept
    to pad every search crop. The model is not run.
frame t >= 1
    1. search crop and decoding exactly as LoRAT (area 4/5, min box size 10, frame-0-mean padding; Hann 0.45
       additive penalty, argmax, un-penalised confidence, back-mapping, clipping);
    2. the three templates are the memory entries the schedule picks (:func:`template_indices`): ``[0,0,0]``,
       ``[0,1,1]``, ``[0,1,2]``, then ``unique(0, d//2, d + d//2)`` with ``d = t//2`` (``schedule="thirds"``:
       ``{0, t//3, 2t//3}``, the SPMTrack repository's LaSOT B-378 schedule);
    3. the target-state token: ``q_t = h_{t-1} + track_query + query_embed`` with the previous frame's ``h`` of
       the *same sequence* (none on the first tracked frame). ``propagate_state=False`` reproduces the
       LoRAT-repository port as shipped (its state cache never hits, so every frame runs as a first frame);
    4. after the frame, the frame is cropped around the reported box (area 2, padded with **this frame's**
       mean) and appended with that box's mask as memory entry ``t``. No confidence gating.

Memory is host RAM (as in the official pipeline), float32, or bfloat16 when the model runs in bf16 weights
(the dtype the crops are fed in, so nothing changes); only the entries a later frame can still pick
are kept (:class:`ReferenceMemory`), so a 10,000-frame video holds at most ~7,500 crops (2,500 when the length
is given with :meth:`SPMTrackTracker.set_sequence_length`). Batching: every active sequence has its own memory
and state; one forward serves them all, and a batch gives the same boxes as one-sequence runs.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import boxes as bx
from ..models.spmtrack import SPMTrack
from .spmtrack_memory import (
    SCHEDULES,
    ReferenceMemory,
    StateTokens,
    memory_entry,
    release_freed_memory,
    template_indices,
)
from .tracker import SequenceState, TrackConfig, Tracker


@dataclass
class SPMTrackTrackConfig(TrackConfig):
    """:class:`TrackConfig` plus SPMTrack's memory and state options (a plain TrackConfig gets the defaults).

    Attributes:
        schedule: ``default`` (``unique(0, d//2, d + d//2)``, ``d = t//2``) or ``thirds``
            (``{0, t//3, 2t//3}``, the SPMTrack repository's LaSOT schedule for B-378).
        propagate_state: feed each frame its sequence's previous state token (paper, SPMTrack repository).
            False reproduces the LoRAT-repository port as shipped, where the state never propagates.
        prune_memory: keep only memory entries a later frame can still pick (exact: never changes a selection).
        trim_every: every this many tracked frames (over all sequences), hand the freed heap pages back to the
            OS (:func:`release_freed_memory`, glibc): dropped crops and the holes the per-frame temporaries
            leave between kept crops; 0 turns it off.
    """

    schedule: str = "default"
    propagate_state: bool = True
    prune_memory: bool = True
    trim_every: int = 100

    def validate(self) -> SPMTrackTrackConfig:
        """Raise ValueError naming the bad field."""
        super().validate()
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}; expected one of {SCHEDULES}")
        if self.trim_every < 0:
            raise ValueError(f"trim_every={self.trim_every} must be >= 0")
        return self


class SPMTrackTracker(Tracker):
    """The SPMTrack tracker (see the module docstring). Build it with ``lorat.Tracker(model)``.

    Args:
        model: an :class:`lorat.models.spmtrack.SPMTrack` (``model(z (B,T,3,H,W), z_feat_mask (B,T,h,w), x,
            state) -> score_map, boxes, state``).
        cfg: a :class:`SPMTrackTrackConfig`, or a plain :class:`TrackConfig` (SPMTrack options at defaults).
        schedule, propagate_state, prune_memory: override the config's fields.

    Per-sequence data lives in ``state.extra``: ``memory`` (:class:`ReferenceMemory` of ``(crop (3,S,S) CPU in
    the model's input dtype, mask (f,f) int64)`` entries) and ``indices`` (the memory indices the last frame
    used). State tokens are in :attr:`state_tokens`.
    """

    config_cls = SPMTrackTrackConfig
    """The tracker's config class (``lorat track/eval --set schedule=thirds`` finds its fields here)."""

    def __init__(self, model: nn.Module, cfg: TrackConfig | None = None, *, schedule: str | None = None,
                 propagate_state: bool | None = None, prune_memory: bool | None = None) -> None:
        cfg = cfg or SPMTrackTrackConfig()
        if not isinstance(cfg, SPMTrackTrackConfig):
            cfg = SPMTrackTrackConfig(**{f.name: getattr(cfg, f.name) for f in fields(TrackConfig)})
        given = {"schedule": schedule, "propagate_state": propagate_state, "prune_memory": prune_memory}
        cfg = replace(cfg, **{k: v for k, v in given.items() if v is not None})  # the caller's config stays as is
        super().__init__(model, cfg)
        if self.template_feat is None:
            raise ValueError(f"{type(model).__name__}.cfg has no template_feat: not an SPMTrack model")
        self.state_tokens = StateTokens(self.cfg.propagate_state)
        """The per-sequence target-state tokens (``h`` of the last frame, on the device)."""
        self._lengths: dict[Hashable, int] = {}
        self._frames_since_trim = 0

    def describe(self) -> str:
        """Tracker, device, precision, schedule and state mode in one line."""
        return (f"{super().describe()}; templates schedule {self.cfg.schedule}, state "
                f"{'propagated' if self.cfg.propagate_state else 'not propagated (as shipped)'}")

    # ------------------------------------------------------------------ extra API
    def set_sequence_length(self, seq_id: Hashable, length: int) -> None:
        """Tell the tracker how many frames ``seq_id`` has (frame 0 included), before or after its
        initialisation: memory entries no remaining frame can pick are dropped earlier (offline evaluation)."""
        if int(length) < 1:
            raise ValueError(f"sequence {seq_id!r}: length must be >= 1, got {length}")
        self._lengths[seq_id] = int(length)
        if seq_id in self.states:
            mem: ReferenceMemory = self.states[seq_id].extra["memory"]
            mem.length = int(length)
            if mem.prune_enabled:
                mem.prune()

    def memory(self, seq_id: Hashable | None = None) -> ReferenceMemory:
        """The reference memory of ``seq_id`` (default: the single sequence of ``initialize``/``track``)."""
        sid = self._sid(seq_id)
        return self.states[sid].extra["memory"]

    def last_template_indices(self, seq_id: Hashable | None = None) -> list[int]:
        """Memory indices of the 3 templates the last tracked frame of ``seq_id`` used (``[]`` before frame 1)."""
        return list(self.states[self._sid(seq_id)].extra["indices"])

    def _sid(self, seq_id: Hashable | None) -> Hashable:
        from .tracker import _SINGLE

        sid = _SINGLE if seq_id is None else seq_id
        if sid not in self.states:
            raise KeyError(f"sequence {seq_id!r} is not tracked (active: {self.active_ids})")
        return sid

    # ------------------------------------------------------------------ override points
    def new_state(self, image: np.ndarray, box: np.ndarray, seq_id: Hashable) -> SequenceState:
        """Frame 0: memory entry 0 = template crop of ``box`` with its mask; the frame-0 mean pads the searches."""
        from ..data import transforms as T

        memory = ReferenceMemory(self.cfg.schedule, self._lengths.get(seq_id), self.cfg.prune_memory)
        crop, mask = self._entry(image, box)
        memory.append((crop, mask))
        return SequenceState(z=crop.to(self.device, self.input_dtype), z_mask=mask.to(self.device),
                             pad=T.image_mean(image), box=np.asarray(box, dtype=np.float64), seq_id=seq_id,
                             extra={"memory": memory, "indices": []})

    def batch_templates(self, states: Sequence[SequenceState]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z (B, 3, 3, S, S), z_feat_mask (B, 3, f, f))``: the scheduled memory entries of each sequence."""
        zs, masks = [], []
        for st in states:
            mem: ReferenceMemory = st.extra["memory"]
            t = mem.num_appended  # entries 0..t-1 exist: this is frame t
            st.extra["indices"] = template_indices(t, mem.schedule)
            chosen = mem.select(t)
            zs.append(torch.stack([c for c, _ in chosen]))
            masks.append(torch.stack([m for _, m in chosen]))
        z = torch.stack(zs).to(self.device, self.input_dtype, non_blocking=True)
        return z, torch.stack(masks).to(self.device)

    def forward(self, templates: tuple[torch.Tensor, torch.Tensor], x: torch.Tensor,
                states: Sequence[SequenceState]) -> dict[str, torch.Tensor]:
        """One forward with each sequence's previous state token (zeros for a sequence on its first frame,
        which is exact: ``0 + track_query + query_embed``); the new tokens are stored per sequence."""
        z, z_mask = templates
        ids = [st.seq_id for st in states]
        prev = self.state_tokens.batch(ids)
        if prev is None and (self.runtime is not None or not isinstance(self.model, SPMTrack)):
            # no sequence has a state yet: the model as written takes None, a runtime (an ONNX graph has a fixed
            # input list, also behind lorat.runtime.as_module) gets zeros, which are exact (0 + track_query + ...)
            prev = torch.zeros(x.shape[0], self.model.cfg.embed_dim, device=x.device, dtype=x.dtype)
        out = self.run_model(z, z_mask, x, prev)  # positional: a runtime takes the inputs positionally only
        self.state_tokens.update(ids, out["state"])
        return out

    def update(self, state: SequenceState, box: np.ndarray, score: float, image: np.ndarray) -> None:
        """LoRAT's state-box rule, then memory entry ``t``: this frame cropped around the reported box.

        A reported box of zero width *and* height has no crop; its entry is cropped around the last accepted
        box instead (lorat's choice: the official pipeline would divide by a zero context size).
        """
        super().update(state, box, score, image)
        box = np.asarray(box, dtype=np.float64)
        w, h = bx.box_size(box)
        centre = box if (w > 0 or h > 0) and np.isfinite(box).all() else state.box
        state.extra["memory"].append(self._entry(image, centre))
        self._frames_since_trim += 1
        if self.cfg.trim_every and self._frames_since_trim >= self.cfg.trim_every:
            self._frames_since_trim = 0
            release_freed_memory()

    def release(self, seq_id: Hashable) -> None:
        """Forget the sequence's memory, state token and length."""
        self.state_tokens.release(seq_id)
        self._lengths.pop(seq_id, None)
        super().release(seq_id)

    # ------------------------------------------------------------------ helpers
    def _entry(self, image: np.ndarray, box: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """One memory entry ``(crop (3,S,S) normalised on the CPU, mask (f,f) int64)`` around ``box``.

        The crop is stored in the dtype it is fed to the model in (:attr:`input_dtype`): float32, or bfloat16
        when the weights are cast, which halves the memory and changes nothing the model sees.
        """
        crop, mask = memory_entry(image, box, self.template_size[0], self.template_feat[0],
                                  self.template_area_factor)
        return crop.to(self.input_dtype), mask

    def run_sequence(self, frames: Sequence[np.ndarray], box_xywh: Sequence[float]) -> list[tuple[np.ndarray, float]]:
        """Track a whole sequence (frame 0 reports the given box with confidence 1); its length is known, so
        memory is pruned as far as possible. Returns ``[(box (4,) x, y, w, h, confidence), ...]``."""
        from .tracker import _SINGLE

        self.set_sequence_length(_SINGLE, len(frames))
        self.initialize(frames[0], box_xywh)
        out: list[tuple[Any, float]] = [(np.asarray(box_xywh, dtype=np.float64), 1.0)]
        out += [self.track(f) for f in frames[1:]]
        return out


__all__ = ["SPMTrackTrackConfig", "SPMTrackTracker"]
