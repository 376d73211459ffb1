"""One device rule and one precision vocabulary for training, tracking, evaluation and benchmarks.

Precision names: ``auto``, ``float32``, ``bfloat16``, ``float16`` (aliases ``fp32``/``none``, ``bf16``,
``fp16``). ``auto`` means fp16 autocast on CUDA (what the official evaluation runs), bf16 on CPUs where bf16 is
*fast* (:func:`cpu_prefers_bf16`), float32 otherwise.

Why "fast" and not "has bf16 instructions": the instruction flags do not say which is faster. On an AMD Zen 5
VM (AVX512-BF16) a bf16 GEMM ran at ~4x the fp32 one (peaks 1061 vs 240 GFLOP/s); on an Intel Xeon VM that
exposes AVX512-BF16 but not AMX, oneDNN's bf16 GEMM ran at 0.5-0.7x MKL's fp32 one, and a bf16 demo training
step took 1.7-1.9x the fp32 step. So ``auto`` measures once per process: a linear layer of a ViT's size in both
precisions (:func:`cpu_bf16_speedup`, ~10-80 ms), and bf16 is chosen only when it is at least
:data:`BF16_MIN_SPEEDUP` times faster. ``LORAT_CPU_BF16=1`` / ``=0`` skips the measurement and forces the choice.
"""
from __future__ import annotations

import functools
import math
import os
import time

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
    return any(f in _cpu_flags() for f in ("avx512_bf16", "amx_bf16", "bf16"))


def cpu_has_amx(precision: str = "bfloat16") -> bool:
    """True when this CPU exposes Intel AMX tiles for ``precision`` (``amx_bf16`` / ``amx_fp16`` in /proc/cpuinfo).

    With AMX, oneDNN's bf16 kernels (GEMMs and torch's CPU flash attention) run several times faster than the
    AVX512-BF16 ones, which changes which attention form is faster (:func:`lorat.runtime.choose_attention`).
    """
    flag = {"bfloat16": "amx_bf16", "float16": "amx_fp16"}.get(precision)
    return flag is not None and flag in _cpu_flags()


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return frozenset()
    return frozenset(text.split())


#: bf16 must be at least this much faster than fp32 (measured) for ``auto`` to pick it on a CPU.
BF16_MIN_SPEEDUP = 1.2
#: The probe's linear layer: ``(rows, in) @ (in, out)``, a ViT-S/B MLP layer at batch 1 (~0.4 GFLOP).
_PROBE_SHAPE = (256, 512, 1536)


@functools.cache
def cpu_bf16_speedup(threads: int | None = None) -> float:
    """Measured fp32 time / bf16 time of one linear layer on this CPU (> 1: bf16 is faster), cached per process.

    ``threads``: torch threads during the measurement (default: the current setting; the cache key). Both
    precisions are timed interleaved, best of 5 rounds after a warm-up, so a busy machine slows both alike.
    Returns 0.0 when bf16 linears do not run here.
    """
    rows, d_in, d_out = _PROBE_SHAPE
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        x32, w32 = torch.randn(rows, d_in, generator=gen), torch.randn(d_out, d_in, generator=gen)
        pairs = {torch.float32: (x32, w32), torch.bfloat16: (x32.bfloat16(), w32.bfloat16())}
        best = {dt: math.inf for dt in pairs}
        with torch.inference_mode():
            for x, w in pairs.values():
                try:
                    torch.nn.functional.linear(x, w)
                except RuntimeError:
                    return 0.0
            for _ in range(5):
                for dt, (x, w) in pairs.items():
                    t0 = time.perf_counter()
                    torch.nn.functional.linear(x, w)
                    best[dt] = min(best[dt], time.perf_counter() - t0)
        return best[torch.float32] / best[torch.bfloat16]
    finally:
        torch.set_num_threads(before)


def cpu_prefers_bf16() -> bool:
    """True when ``auto`` should run bf16 on this CPU: native bf16 and measured faster (see module doc).

    ``LORAT_CPU_BF16=1`` or ``0`` forces the answer (no measurement); any other value is a ValueError.
    """
    forced = _forced_bf16()
    if forced is not None:
        return forced
    return cpu_has_native_bf16() and cpu_bf16_speedup(torch.get_num_threads()) >= BF16_MIN_SPEEDUP


def _forced_bf16() -> bool | None:
    """``LORAT_CPU_BF16`` read: True / False when set to 1 / 0, None when unset; another value is a ValueError."""
    forced = os.environ.get("LORAT_CPU_BF16")
    if forced is not None and forced not in ("0", "1"):
        raise ValueError(f"LORAT_CPU_BF16={forced!r}; expected 1 (use bf16 on this CPU) or 0 (use float32)")
    return None if forced is None else forced == "1"


def cpu_precision_reason(precision: str) -> str:
    """Why ``auto`` chose ``precision`` on this CPU, for the printed line (e.g. ``CPU with native bf16, measured
    2.1x fp32``)."""
    forced = _forced_bf16()
    if forced is not None:
        return f"LORAT_CPU_BF16={int(forced)}"
    if not cpu_has_native_bf16():
        return "CPU without native bf16"
    speedup = cpu_bf16_speedup(torch.get_num_threads())
    if precision == "bfloat16":
        return f"CPU with native bf16, measured {speedup:.1f}x fp32"
    return f"CPU whose bf16 is not faster: measured {speedup:.2f}x fp32"


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
        return "bfloat16" if device.type == "cpu" and cpu_prefers_bf16() else "float32"
    if key == "float16" and device.type == "cpu":
        raise ValueError("precision float16 is not supported on CPU (no fast fp16 kernels); use bfloat16")
    return key
