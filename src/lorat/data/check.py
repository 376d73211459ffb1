"""``lorat data`` (where the dataset roots come from) and ``lorat data check`` (is every configured root usable).

Run as ``lorat data [check]`` or ``python -m lorat.data.check [check]``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .datasets import ALIASES, BENCHMARKS, TRAIN_DATASETS, load_benchmark, load_training_dataset
from .errors import DatasetError
from .roots import (
    ROOTS,
    VOTTRAIN_ENV,
    config_path,
    index_cache_dir,
    read_config,
    root_env_var,
    root_setting,
    unset_message,
)
from .sequence import Sequence


@dataclass
class DatasetStatus:
    """What ``lorat data check`` found for one dataset."""

    name: str
    kind: str  # "benchmark" or "train"
    root_key: str
    env_var: str
    root: Path | None = None
    source: str | None = None  # "env LORAT_..." or "config <file>"
    configured: bool = False
    exists: bool = False
    num_sequences: int | None = None
    num_frames: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Configured, present and readable, with no missing frame found."""
        return self.configured and self.exists and not self.problems

    @property
    def status(self) -> str:
        """``ok``, ``not set``, ``missing`` (root folder absent) or ``error``."""
        if not self.configured:
            return "not set"
        if not self.exists:
            return "missing"
        return "ok" if not self.problems else "error"


def _first_missing_frames(seqs: list[Sequence], deep: bool) -> tuple[int, str | None]:
    """(number of sequences with a missing frame, first missing path). Checks first/last frames unless deep."""
    checked: set[str] = set()
    bad, first = 0, None
    for s in seqs:
        if len(s.frames) == 0:
            continue
        candidates = s.frames if deep else [s.frames[0], s.frames[-1]]
        for p in candidates:
            p = str(p)
            if p in checked:
                continue
            checked.add(p)
            if not os.path.isfile(p):
                bad += 1
                first = first or f"{p} (sequence {s.name})"
                break
    return bad, first


def check_datasets(names: Iterable[str] | None = None, *, deep: bool = False, use_cache: bool = True,
                   progress: Callable[[str], None] | None = None) -> list[DatasetStatus]:
    """Check every known dataset (or ``names``): root configured, root exists, files parse, frames exist.

    Each dataset is fully read (training sets through the index cache, which this warms). Frames are
    checked at the start and end of each sequence, or all of them with ``deep=True``.
    """
    table = ([(n, "benchmark", i) for n, i in BENCHMARKS.items()]
             + [(n, "train", i) for n, i in TRAIN_DATASETS.items()])
    if names:
        wanted = [ALIASES.get(n, n) for n in names]
        unknown = [n for n in wanted if n not in BENCHMARKS and n not in TRAIN_DATASETS]
        if unknown:
            raise ValueError(f"unknown dataset(s) {unknown}; known: {', '.join(n for n, _, _ in table)}")
        table = [t for t in table if t[0] in wanted]
    out = []
    for name, kind, info in table:
        st = DatasetStatus(name=name, kind=kind, root_key=info.root_key, env_var=root_env_var(info.root_key))
        out.append(st)
        try:
            st.root, st.source = root_setting(info.root_key)
        except DatasetError as e:
            st.configured = True
            st.problems.append(str(e))
            continue
        if st.root is None:
            st.notes.append("optional: pass a folder to `lorat eval`/`lorat track`" if name == "folder"
                            else unset_message(info.root_key))
            continue
        st.configured = True
        st.exists = st.root.is_dir()
        if not st.exists:
            st.problems.append(f"root {st.root} (from {st.source}) does not exist")
            continue
        if progress:
            progress(f"checking {name} in {st.root}")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                seqs = (load_benchmark(name, st.root) if kind == "benchmark"
                        else load_training_dataset(name, st.root, use_cache=use_cache))
            st.notes += [str(w.message) for w in caught]
        except DatasetError as e:
            st.problems.append(str(e))
            continue
        st.num_sequences = len(seqs)
        st.num_frames = int(sum(len(s) for s in seqs))
        if not seqs:
            st.problems.append("no sequences found")
        bad, first = _first_missing_frames(seqs, deep)
        if bad:
            st.problems.append(f"{bad} sequence(s) with missing frames; first missing frame: {first}")
    return out


def _format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``lorat data`` sub-commands (``check``) to ``parser``; results go to :func:`run_data`."""
    sub = parser.add_subparsers(dest="data_command", metavar="{check}")
    chk = sub.add_parser("check", help="validate every configured dataset root and name what is missing")
    chk.add_argument("names", nargs="*", help="datasets to check (default: all); e.g. lasot got10k_train")
    chk.add_argument("--deep", action="store_true", help="check that every frame exists (slow on big sets)")
    chk.add_argument("--no-cache", action="store_true", help="rescan training sets instead of using the index cache")
    chk.add_argument("--json", action="store_true", help="print the results as JSON")


def _print_settings() -> int:
    cfg = config_path()
    try:
        cfg_roots = read_config(cfg)
        cfg_state = "found" if cfg.is_file() else "not found"
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("Dataset roots come from environment variables first, then from the config file.\n")
    print(f"config file : {cfg} ({cfg_state}; set LORAT_DATASETS to use another file)")
    print(f"index cache : {index_cache_dir()} (set LORAT_CACHE_DIR to move it)\n")
    users: dict[str, list[str]] = {}
    for n, i in list(BENCHMARKS.items()) + list(TRAIN_DATASETS.items()):
        users.setdefault(i.root_key, []).append(n)
    rows = [["root key", "environment variable", "current value", "datasets"]]
    for key in ROOTS:
        env = root_env_var(key)
        if os.environ.get(env):
            value = f"{os.environ[env]} (env)"
        elif key in cfg_roots:
            value = f"{cfg_roots[key]} (config)"
        else:
            value = "-"
        rows.append([key, env, value, ", ".join(users.get(key, []))])
    print(_format_table(rows))
    vot = os.environ.get(VOTTRAIN_ENV) or cfg_roots.get("got10k_vottrain_split") or "-"
    print(f"\nGOT-10k vottrain list: {vot} ({VOTTRAIN_ENV} or 'got10k_vottrain_split:' in the config file;"
          f" default <got10k root>/got10k_vot_train_split.txt)")
    print(f"\nExample {cfg.name}:")
    for key in ("lasot", "got10k", "trackingnet", "coco"):
        print(f"  {key}: /data/{key}")
    print("\nRun `lorat data check` to validate the configured roots.")
    return 0


def run_data(args: argparse.Namespace) -> int:
    """Run ``lorat data`` (print settings) or ``lorat data check`` (table; exit 1 if a configured set fails)."""
    if getattr(args, "data_command", None) != "check":
        return _print_settings()
    try:
        progress = None if args.json else (lambda m: print(f"[data] {m}", file=sys.stderr, flush=True))
        results = check_datasets(args.names or None, deep=args.deep, use_cache=not args.no_cache, progress=progress)
    except (ValueError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([{**asdict(r), "root": str(r.root) if r.root else None, "status": r.status}
                          for r in results], indent=2))
    else:
        rows = [["dataset", "status", "root", "details"]]
        for r in results:
            if r.problems:
                detail = r.problems[0]
            elif r.num_sequences is not None:
                detail = f"{r.num_sequences} sequences, {r.num_frames} frames"
            else:
                detail = f"set {r.env_var} or '{r.root_key}:' in the config file" if r.name != "folder" else "optional"
            rows.append([r.name, r.status, str(r.root) if r.root else "-", detail])
        print(f"config file: {config_path()}\n")
        print(_format_table(rows))
        for r in results:
            for p in r.problems[1:] + [n for n in r.notes if r.configured]:
                print(f"  {r.name}: {p}")
    failed = [r for r in results if r.configured and not r.ok]
    return 1 if failed else 0


__all__ = ["DatasetStatus", "check_datasets", "add_data_arguments", "run_data", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m lorat.data.check``."""
    parser = argparse.ArgumentParser(prog="python -m lorat.data.check",
                                     description="Show dataset settings or check the configured dataset roots.")
    add_data_arguments(parser)
    return run_data(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
