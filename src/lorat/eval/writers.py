"""Writers of ``lorat analyze`` documents: strict JSON, a markdown summary, success and precision plots.

Every file is written atomically (:mod:`lorat.files`): a reader sees the old or the complete new file.
"""
from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lorat.files import atomic_write_bytes, atomic_write_text


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy types and non-finite floats (to ``"NaN"``/``"Infinity"``/
    ``"-Infinity"``) so that the result is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    return obj


def write_json(doc: Mapping, path: str | os.PathLike) -> None:
    """Write an :func:`analyze` document as strict JSON (atomically)."""
    atomic_write_text(path, json.dumps(to_jsonable(doc), indent=1, allow_nan=False) + "\n")


# per rule: (column title, overall key, scale for display, decimals)
_SUMMARY: dict[str, list[tuple[str, str, float, int]]] = {
    "pytracking": [("AUC", "auc", 1, 2), ("OP50", "op50", 1, 2), ("OP75", "op75", 1, 2),
                   ("Precision", "precision", 1, 2), ("Norm Precision", "norm_precision", 1, 2)],
    "got10k": [("AO", "ao", 100, 2), ("SR0.5", "sr50", 100, 2), ("SR0.75", "sr75", 100, 2),
               ("FPS", "speed_fps", 1, 1)],
    "otb": [("Success (AUC)", "success_score", 100, 2), ("Precision", "precision_score", 100, 2),
            ("Success rate", "success_rate", 100, 2)],
    "trackingnet": [("Success", "success", 1, 2), ("Precision", "precision", 1, 2),
                    ("Norm Precision", "norm_precision", 1, 2), ("Coverage", "coverage", 1, 2)],
    "trackit": [("AO", "ao", 100, 2), ("SR0.5", "sr50", 100, 2), ("SR0.75", "sr75", 100, 2),
                ("Success", "success_score", 100, 2), ("Precision", "precision_score", 100, 2),
                ("Norm Precision", "norm_precision_score", 100, 2)],
    "trackit_compatible": [("Success", "success_score", 100, 2),
                           ("Precision", "precision_score", 100, 2),
                           ("Norm Precision", "norm_precision_score", 100, 2),
                           ("SR0.5", "sr50", 100, 2), ("SR0.75", "sr75", 100, 2)],
}
_SUMMARY["ostrack"] = _SUMMARY["pytracking"]


def summary_columns(rule: str) -> list[tuple[str, str, float, int]]:
    """``(column title, overall key, display scale, decimals)`` of a rule's summary table."""
    return _SUMMARY[rule]


def format_value(v: Any, scale: float, decimals: int) -> str:
    """A metric for display: ``v * scale`` with ``decimals`` digits; strings (``"NaN"``) pass through."""
    if isinstance(v, str) or v is None:
        return str(v)
    return f"{float(v) * scale:.{decimals}f}"


def markdown_report(doc: Mapping) -> str:
    """A markdown summary: overall table (one row per tracker) and per-sequence main metric."""
    rule = doc["rule"]
    cols = _SUMMARY[rule]
    lines = [f"# Tracking results ({rule}" + (f", protocol {doc['protocol']}" if doc.get("protocol") else "")
             + ")", "", f"Overall over {len(doc['overall_sequences'])} sequence(s).", "",
             "| Tracker | " + " | ".join(c[0] for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for name, t in doc["trackers"].items():
        ov = t["overall"]
        if "error" in ov:
            lines.append(f"| {name} | " + " | ".join(["error"] * len(cols)) + " |")
        else:
            lines.append(f"| {name} | " + " | ".join(format_value(ov[k], s, d) for _, k, s, d in cols) + " |")
    title, key, scale, dec = cols[0]
    lines += ["", f"## Per sequence ({title})", "",
              "| Sequence | " + " | ".join(doc["trackers"]) + " |",
              "|---|" + "---:|" * len(doc["trackers"])]
    for n in doc["sequences"]:
        cells = []
        for t in doc["trackers"].values():
            e = t["sequences"][n]
            cells.append("error" if "error" in e else "skipped" if "skipped" in e else format_value(e[key], scale, dec))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    errors = doc.get("errors") or []
    if errors:
        lines += ["", "## Errors", ""] + [f"- {e}" for e in errors]
    return "\n".join(lines) + "\n"


def write_markdown(doc: Mapping, path: str | os.PathLike) -> None:
    """Write :func:`markdown_report` atomically."""
    atomic_write_text(path, markdown_report(doc))


# per rule: (file stem, curve key, threshold key, legend key, y scale, x label, y label, title)
_PLOTS: dict[str, list[tuple[str, str, str, str, float, str, str, str]]] = {
    "pytracking": [
        ("success_plot", "success_curve", "overlap", "auc", 1, "Overlap threshold",
         "Overlap Precision [%]", "Success plot"),
        ("precision_plot", "precision_curve", "center", "precision", 1,
         "Location error threshold [pixels]", "Distance Precision [%]", "Precision plot"),
        ("norm_precision_plot", "norm_precision_curve", "center_norm", "norm_precision", 1,
         "Location error threshold", "Distance Precision [%]", "Normalized Precision plot"),
    ],
    "got10k": [("success_plot", "succ_curve", "succ_curve", "ao", 1, "Overlap threshold",
                "Success rate", "Success plot (GOT-10k)")],
    "otb": [("success_plot", "success_curve", "success_curve", "success_score", 1, "Overlap threshold",
             "Success rate", "Success plots of OPE"),
            ("precision_plot", "precision_curve", "precision_curve", "precision_score", 1,
             "Location error threshold", "Precision", "Precision plots of OPE")],
    "trackingnet": [("success_plot", "success_curve", "success_curve", "success", 1,
                     "Overlap threshold", "Success rate", "Success (TrackingNet devkit)"),
                    ("precision_plot", "precision_curve", "precision_curve", "precision", 1,
                     "Location error threshold [pixels]", "Precision", "Precision (TrackingNet devkit)"),
                    ("norm_precision_plot", "norm_precision_curve", "norm_precision_curve",
                     "norm_precision", 1, "Normalized location error threshold", "Precision",
                     "Normalized precision (TrackingNet devkit)")],
}
_PLOTS["ostrack"] = _PLOTS["pytracking"]
_PLOTS["trackit"] = _PLOTS["trackit_compatible"] = [
    ("success_plot", "success_curve", "success_curve", "success_score", 1, "Overlap threshold",
     "Success rate", "Success plot"),
    ("precision_plot", "precision_curve", "precision_curve", "precision_score", 1,
     "Location error threshold [pixels]", "Precision", "Precision plot"),
    ("norm_precision_plot", "norm_precision_curve", "norm_precision_curve", "norm_precision_score", 1,
     "Normalized location error threshold", "Precision", "Normalized precision plot"),
]


def write_plots(doc: Mapping, folder: str | os.PathLike) -> list[Path]:
    """Success / precision (/ normalised precision) PNGs of the overall curves.

    Trackers are sorted by the plotted score, legend entries read ``name [score]`` as in
    pytracking. Trackers whose overall is an error are left out. Returns the written paths.
    """
    # Agg canvas on a bare Figure: no pyplot, so no global backend switch and no figure registry
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415  (import cost)
    from matplotlib.figure import Figure  # noqa: PLC0415

    folder = Path(folder)
    written = []
    ok = {n: t["overall"] for n, t in doc["trackers"].items() if "error" not in t["overall"]}
    percent = doc["rule"] in ("pytracking", "ostrack")
    for stem, ckey, tkey, skey, _scale, xlabel, ylabel, title in _PLOTS[doc["rule"]]:
        x = np.asarray(doc["thresholds"][tkey], dtype=float)
        order = sorted(ok, key=lambda n: -_as_float(ok[n][skey]))
        fig = Figure(figsize=(6.4, 4.8))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for n in order:
            y = np.array([_as_float(v) for v in ok[n][ckey]])
            score = _as_float(ok[n][skey])
            label = f"{n} [{score:.1f}]" if doc["rule"] in ("pytracking", "ostrack", "trackingnet") \
                else f"{n} [{score:.3f}]"
            ax.plot(x, y, linewidth=2, label=label)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(x.min(), x.max()),
               ylim=(0, 100 if percent else 1.0))
        ax.grid(True, linestyle="dotted")
        if order:
            ax.legend(loc="lower left" if "success" in stem else "lower right", fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        out = folder / f"{stem}.png"
        atomic_write_bytes(out, buf.getvalue())
        written.append(out)
    return written


def _as_float(v: Any) -> float:
    return float(v) if not isinstance(v, str) else float(v.replace("Infinity", "inf"))


__all__ = ["to_jsonable", "write_json", "markdown_report", "write_markdown", "write_plots", "summary_columns",
           "format_value"]
