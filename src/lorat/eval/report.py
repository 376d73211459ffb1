"""Score raw tracking results against ground truth and write reports (``lorat analyze``).

Several trackers are scored side by side with one *rule* (which reference implementation to
mirror, see :mod:`lorat.eval.metrics` and :mod:`lorat.eval.toolkit_metrics`):

========================  =====================================================================
rule                      reference
========================  =====================================================================
``pytracking`` (default)  pytracking ``extract_results`` (gt valid iff x, y, w, h > 0)
``ostrack``               OSTrack / Stark ``extract_results`` (gt valid iff w, h > 0; LoRAT's)
``got10k``                GOT-10k toolkit val protocol: pooled AO / SR0.5 / SR0.75
``otb``                   GOT-10k toolkit ``ExperimentOTB``
``trackingnet``           TrackingNet devkit ``metrics.py``
``trackit``               LoRAT/trackit native ``one_pass_evaluation``
``trackit_compatible``    LoRAT/trackit ``one_pass_evaluation_compatible``
========================  =====================================================================

``--protocol`` (``lasot``, ``lasot_extension_subset``, ``generic``, ``uav``,
``lasot_exclude_invalid_frames``) selects the pytracking dataset string for ``pytracking``,
``ostrack`` and ``trackit_compatible``; the other rules have no protocol.

Inputs
------
Results (``--results DIR [DIR ...]``, tracker name = folder name, or ``NAME=DIR``):

* pytracking layout: ``DIR/<seq>.txt`` (one ``x,y,w,h`` row per frame; comma, tab, semicolon or
  whitespace separated; ``NaN``/``inf`` strings allowed) and optional ``DIR/<seq>_time.txt``;
* GOT-10k layout: ``DIR/<seq>/<seq>_001.txt`` (``_002`` ... for more runs, all pooled by the
  ``got10k`` rule, the first one used by the others) and ``DIR/<seq>/<seq>_time.txt``;
* ``DIR/times/<seq>_time.txt`` is where the ``otb`` rule looks for times (as the toolkit does);
* the ``trackingnet`` rule matches, like the devkit, every ``*.txt`` below ``DIR`` whose relative
  path contains ``<seq>.txt``; not exactly one match = all-zero prediction;
* a ``.json`` file instead of a folder: ``{"sequences": [{"name": ..., "pred": [[x, y, w, h], ...]},
  ...]}`` (the fixture ``inputs.json`` layout) or ``{"<seq>": [[x, y, w, h], ...], ...}``.

Ground truth, one of:

* ``--dataset NAME --root PATH``: :func:`lorat.data.datasets.load_benchmark`;
* ``--gt DIR``: ``DIR/<seq>.txt`` boxes, optional ``DIR/<seq>_visible.txt`` (0/1 per frame, one
  per line or separated by commas/whitespace; 0 = target absent), ``DIR/<seq>_cover.txt``
  (GOT-10k ``cover.label`` values), ``DIR/<seq>_image_size.txt`` (``W,H``, used by the ``got10k``
  clipping) and ``DIR/list.txt`` (sequence names in order; default: every other ``*.txt``, sorted);
* ``--gt FILE.json``: ``{"sequences": [{"name", "gt", optional "target_visible" (or "visible"),
  "gt_uav", "got10k_cover" (or "cover"), "image_size_wh" (or "image_size")}], optional
  "main_sequences"}`` (the fixture ``inputs.json`` layout; non-finite numbers may be the strings
  ``"NaN"``, ``"Infinity"``, ``"-Infinity"``). ``gt_uav`` replaces ``gt`` under ``--protocol uav``
  for the OPE rules. If ``main_sequences`` is given, only those form the overall average; the
  other sequences are still scored one by one.

Without cover labels the ``got10k`` rule uses ``visible`` (absent = cover 0) or keeps all frames;
without an image size it does not clip.

JSON written by ``--json`` (schema ``lorat.analyze/1``)
--------------------------------------------------------
::

    {
      "schema": "lorat.analyze/1",
      "rule": "<rule>", "protocol": "<protocol>" | null, "dataset_string": "<str>" | null,
      "exclude_invalid_frames": bool, "validity": "pytracking" | "stark" | null,
      "use_visibility": bool, "ground_truth": "<what was read>",
      "sequences": ["<seq>", ...],             # every scored sequence, in order
      "overall_sequences": ["<seq>", ...],     # the ones averaged into "overall"
      "thresholds": {"<curve key>": [x values], ...},
      "trackers": {
        "<tracker>": {
          "results": "<path>",
          "sequences": {"<seq>": {<metrics>} | {"error": "<ExcType>: <message>"}
                                 | {"skipped": "<reason>"}},
          "overall": {<metrics>, "num_sequences": int}
                     | {"error": "<first error>", "failed_sequences": ["<seq>", ...]},
          "per_frame": {"<seq>": {"iou": [...], "center_error": [...],
                                  "norm_center_error": [...], "valid": [...]}}  # --per-frame
        }
      },
      "print_results_table": ["<header line>", "<one line per tracker>"],  # pytracking/ostrack
      "errors": ["<tracker>/<seq>: <error>", ...]
    }

``<metrics>`` per rule (key names as in the reference fixtures):

* ``pytracking``/``ostrack`` (percent, float32 precision): ``success_curve`` (21), ``auc``,
  ``op50``, ``op75``, ``precision_curve`` (51), ``precision`` (@20 px), ``norm_precision_curve``
  (51), ``norm_precision`` (@0.20); per sequence also ``avg_overlap`` (fraction).
* ``got10k`` (fractions): ``ao``, ``sr`` (= ``sr50``), ``sr50``, ``sr75``, ``succ_curve`` (101),
  ``sr50_from_curve``, ``sr75_from_curve``, ``speed_fps`` (-1 without times); per sequence also
  ``length`` (N-1) and ``num_repetitions``; overall pooled over frames, also ``num_frames``.
* ``otb`` (fractions): ``success_curve`` (21), ``precision_curve`` (51), ``success_score``,
  ``precision_score``, ``success_rate``, ``speed_fps``.
* ``trackingnet`` (percent): ``coverage``, ``success``, ``precision``, ``norm_precision``, plus the
  21-point ``success_curve``, ``precision_curve``, ``norm_precision_curve`` (fractions).
* ``trackit`` (fractions): ``ao``, ``sr50``, ``sr75``, ``success_score``, ``precision_score``,
  ``norm_precision_score``, ``success_curve`` (21), ``precision_curve`` (51),
  ``norm_precision_curve`` (51).
* ``trackit_compatible`` (fractions): ``success_score``, ``precision_score``,
  ``norm_precision_score``, ``sr50``, ``sr75`` and the three curves.

Non-finite numbers are written as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.
Where the reference raises (e.g. NaN predictions under ``pytracking``), the sequence gets
``{"error": ...}`` with the reference's exception text, and because the reference would abort
the whole evaluation, every overall containing that sequence is ``{"error": ...}`` too.
Exit status of ``lorat analyze``: 0 = every overall scored (per-sequence reference errors outside the
overall are reported in the JSON and on stderr), 1 = an overall hit a reference error (outputs still
written), 2 = bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from collections.abc import Sequence as Seq
from pathlib import Path
from typing import Any

from lorat.data.sequence import Sequence
from lorat.eval import metrics as M
from lorat.eval.results import ResultSource, load_gt_dir, load_gt_json, read_boxes, read_values
from lorat.eval.scoring import RULES, analyze
from lorat.eval.writers import (
    format_value,
    markdown_report,
    summary_columns,
    to_jsonable,
    write_json,
    write_markdown,
    write_plots,
)
from lorat.files import atomic_write_bytes, atomic_write_text

__all__ = [
    "RULES",
    "read_boxes",
    "read_values",
    "load_gt_dir",
    "load_gt_json",
    "ResultSource",
    "analyze",
    "to_jsonable",
    "atomic_write_text",
    "atomic_write_bytes",
    "write_json",
    "markdown_report",
    "write_markdown",
    "write_plots",
    "protocol_for_dataset",
    "add_analyze_arguments",
    "run_analyze",
    "main",
]


def add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``lorat analyze`` options to ``parser``."""
    parser.add_argument("--results", nargs="+", action="extend", required=True, metavar="[NAME=]DIR",
                        help="result folders (or .json files), one per tracker; tracker name = "
                             "folder name unless given as NAME=DIR")
    gt = parser.add_argument_group("ground truth (either --dataset/--root or --gt)")
    gt.add_argument("--dataset", help="benchmark name for lorat.data.datasets.load_benchmark")
    gt.add_argument("--root", help="benchmark root folder (with --dataset; default: the configured root)")
    gt.add_argument("--gt", help="folder of <seq>.txt ground-truth files or an inputs.json-style file")
    parser.add_argument("--rule", choices=RULES, default="pytracking",
                        help="reference implementation to mirror (default: pytracking; LoRAT's "
                             "paper numbers use 'ostrack')")
    parser.add_argument("--protocol", choices=sorted(M.PROTOCOLS), default=None,
                        help="pytracking dataset protocol (default: from --dataset, else generic)")
    parser.add_argument("--exclude-invalid-frames", action="store_true", default=None,
                        help="divide by the number of valid frames (pytracking/ostrack)")
    parser.add_argument("--validity", choices=("stark", "pytracking"), default=None,
                        help="gt validity rule for trackit_compatible (default: stark)")
    parser.add_argument("--ignore-visibility", action="store_true",
                        help="ignore the ground truth's visibility flags")
    parser.add_argument("--sequences", nargs="+", metavar="SEQ",
                        help="score only these sequences (they form the overall)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="leave sequences without results out instead of failing")
    parser.add_argument("--per-frame", action="store_true",
                        help="include per-frame IoU/centre errors in the JSON (pytracking/ostrack)")
    parser.add_argument("--report-name", default="lorat", help="table name in print_results_table")
    parser.add_argument("--json", dest="json_out", metavar="OUT.json", help="write the JSON report")
    parser.add_argument("--markdown", metavar="OUT.md", help="write a markdown summary")
    parser.add_argument("--plots", metavar="DIR", help="write success/precision plot PNGs here")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")


def _parse_results(specs: Seq[str]) -> list[ResultSource]:
    out = []
    for spec in specs:
        name, path = None, spec
        if "=" in spec and not Path(spec).exists():
            name, path = spec.split("=", 1)
        p = Path(path)
        if name is None:
            name = p.stem if p.suffix.lower() == ".json" else (p.resolve().name or str(p))
        out.append(ResultSource(name, p))
    return out


def protocol_for_dataset(name: str) -> str:
    """The pytracking protocol a benchmark name implies (lasot, lasot_extension_subset, uav or generic)."""
    n = name.lower().replace("-", "_")
    if n.startswith("lasot_ext"):
        return "lasot_extension_subset"
    if n.startswith("lasot"):
        return "lasot"
    if n.startswith("uav"):
        return "uav"
    return "generic"


def _load_ground_truth(args: argparse.Namespace) -> tuple[list[Sequence], list[str] | None, str, str]:
    """Returns (sequences, main sequence names or None, description, default protocol)."""
    if args.gt and args.dataset:
        raise ValueError("give either --gt or --dataset/--root, not both")
    if args.gt:
        p = Path(args.gt)
        if p.is_file():
            seqs, main = load_gt_json(p)
            return seqs, main, f"json:{p}", "generic"
        return load_gt_dir(p), None, f"dir:{p}", "generic"
    if args.dataset:
        from lorat.data.datasets import load_benchmark  # noqa: PLC0415  (heavy, only when needed)

        seqs = list(load_benchmark(args.dataset, args.root))  # root None = configured default
        return seqs, None, f"dataset:{args.dataset}:{args.root}", protocol_for_dataset(args.dataset)
    raise ValueError("ground truth missing: give --gt PATH or --dataset NAME --root PATH")


def _print_summary(doc: Mapping, out: Any = sys.stdout) -> None:
    if doc.get("print_results_table"):
        print("\n".join(doc["print_results_table"]), file=out)
        return
    cols = summary_columns(doc["rule"])
    print("tracker | " + " | ".join(c[0] for c in cols), file=out)
    for name, t in doc["trackers"].items():
        ov = t["overall"]
        vals = ["error"] * len(cols) if "error" in ov else [format_value(ov[k], s, d) for _, k, s, d in cols]
        print(f"{name} | " + " | ".join(vals), file=out)


def run_analyze(args: argparse.Namespace) -> int:
    """Run ``lorat analyze`` for parsed arguments; returns the exit status (0/1/2)."""
    try:
        seqs, main, desc, default_protocol = _load_ground_truth(args)
        trackers = _parse_results(args.results)
        overall = main
        if args.sequences:
            by_name = {s.name: s for s in seqs}
            unknown = [n for n in args.sequences if n not in by_name]
            if unknown:
                raise ValueError(f"unknown sequences: {unknown}")
            seqs = [by_name[n] for n in args.sequences]
            overall = list(args.sequences)
        doc = analyze(trackers, seqs, rule=args.rule, protocol=args.protocol or default_protocol,
                      exclude_invalid_frames=args.exclude_invalid_frames, validity=args.validity,
                      use_visibility=not args.ignore_visibility, overall_sequences=overall,
                      skip_missing=args.skip_missing, per_frame=args.per_frame,
                      report_name=args.report_name, ground_truth=desc)
    except (ValueError, FileNotFoundError, KeyError, ImportError, json.JSONDecodeError) as e:
        print(f"lorat analyze: error: {e}", file=sys.stderr)
        return 2
    if args.json_out:
        write_json(doc, args.json_out)
    if args.markdown:
        write_markdown(doc, args.markdown)
    if args.plots:
        write_plots(doc, args.plots)
    if not args.quiet:
        _print_summary(doc)
    for e in doc["errors"]:
        print(f"lorat analyze: {e}", file=sys.stderr)
    # Errors confined to sequences outside the overall (e.g. the fixtures' error cases) are results, not a
    # failure: the JSON holds them. Only an overall that could not be scored makes the run fail.
    return 1 if any("error" in t["overall"] for t in doc["trackers"].values()) else 0


def main(argv: Seq[str] | None = None) -> int:
    """``python -m lorat.eval.report ...`` entry point (same options as ``lorat analyze``)."""
    parser = argparse.ArgumentParser(prog="lorat analyze", description=__doc__.split("\n")[0])
    add_analyze_arguments(parser)
    return run_analyze(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
