"""One device rule and one precision vocabulary for training, tracking, evaluation and benchmarks.

Precision names: ``auto``, ``float32``, ``bfloat16``, ``float16`` (aliases ``fp32``/``none``, ``bf16``,
``fp16``). ``auto`` means fp16 autocast on CUDA (what the official evaluation runs), bf16 on CPUs with native
bf16 matrix instructions (AVX512-BF16 / AMX), float32 otherwise.
"""
from __future__ import annotations

import os

import torch

PRECISIONS: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_ALIASES = {"fp32": "float32", "none": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda:$LOCAL_RANK`` / ``mps`` / ``cpu``; a named device that is absent is a ValueError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r}; expected cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} requested but CUDA is not available (use --device cpu)")
    if dev.type == "mps" and not _mps_available():
        raise ValueError(f"device={name!r} requested but MPS is not available (use --device cpu)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={name!r}; expected cpu, cuda, cuda:N, mps or auto")
    return dev


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 matrix instructions (x86 AVX512-BF16 or AMX, Arm BF16)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16", "bf16"))


def canonical_precision(name: str) -> str:
    """Map an alias to ``auto``/``float32``/``bfloat16``/``float16``; ValueError lists the accepted names."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key != "auto" and key not in PRECISIONS:
        raise ValueError(f"precision {name!r}; expected auto, float32, bfloat16 or float16 "
                         f"(aliases: {', '.join(sorted(_ALIASES))})")
    return key


def resolve_precision(name: str, device: torch.device) -> str:
    """The concrete precision name for ``device``: ``auto`` resolved, fp16 on CPU refused."""
    key = canonical_precision(name)
    if key == "auto":
        if device.type == "cuda":
            return "float16"
        return "bfloat16" if device.type == "cpu" and cpu_has_native_bf16() else "float32"
    if key == "float16" and device.type == "cpu":
        raise ValueError("precision float16 is not supported on CPU (no fast fp16 kernels); use bfloat16")
    return key
