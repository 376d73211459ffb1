"""The ``lorat`` command line: ``lorat <command> --help`` for each command.

Commands import their modules lazily so ``lorat --help`` stays fast and one broken optional
dependency does not take the whole CLI down.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, add-arguments function, run function, one-line help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "demo": ("lorat.demo", "add_demo_arguments", "run_demo",
             "synthetic data -> train a tiny tracker -> LoRA-adapt -> evaluate -> report (CPU, minutes)"),
    "train": ("lorat.train.trainer", "add_train_arguments", "run_train", "train a preset (1 CPU/GPU, or torchrun)"),
    "track": ("lorat.track.video", "add_track_arguments", "run_track",
              "track one object in a video file, image folder or webcam"),
    "eval": ("lorat.eval.runner", "add_eval_arguments", "run_eval",
             "run a model over benchmarks (resumable, sharded under torchrun)"),
    "analyze": ("lorat.eval.report", "add_analyze_arguments", "run_analyze",
                "score raw results like pytracking / OSTrack / GOT-10k / TrackingNet"),
    "export": ("lorat.export", "add_export_arguments", "run_export",
               "write a model as ONNX (LoRA merged) and check it against PyTorch with onnxruntime"),
    "data": ("lorat.data.check", "add_data_arguments", "run_data", "dataset roots: where they are, what is missing"),
    "app": ("lorat.app", "add_app_arguments", "run_app",
            "a local web page: open a video, draw boxes, track, download the results (pip install lorat[app])"),
    "models": ("lorat.cli", "add_models_arguments", "run_models", "list the model presets"),
    "bench": ("lorat.bench", "add_bench_arguments", "run_bench_command",
              "latency / fps per runtime, precision and batch size, with ratios to the official path (JSON)"),
}


def add_models_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``lorat models``."""
    p.add_argument("pattern", nargs="?", default="", help="only names containing this")


def run_models(args: argparse.Namespace) -> int:
    """Print every preset (of every registered architecture) with its size and geometry."""
    from .models.registry import get_preset, list_models

    def field(c, key: str, label: str | None = None) -> str:  # architectures need not share every field
        v = getattr(c, key, None)
        return "" if v is None else f" {label or key}={v:g}" if isinstance(v, float) else f" {label or key}={v}"

    for name in list_models(args.pattern):
        c = get_preset(name)
        # the adapter's fields: TMoE's where the config has them (SPMTrack; its inherited lora_* are unused)
        adapter = ((("tmoe_r", "tmoe_r"), ("tmoe_alpha", "alpha"), ("tmoe_experts", "experts"))
                   if hasattr(c, "tmoe_r") else (("lora_r", "lora_r"), ("lora_alpha", "alpha")))
        print(f"{name:14s} arch={c.arch}" + "".join(field(c, k, lab) for k, lab in (
            ("embed_dim", "dim"), ("depth", None), ("num_heads", "heads"), ("template_size", "template"),
            ("search_size", "search"), ("search_area_factor", "area"), ("drop_path", None), *adapter)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (each command's options come from its own module)."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="lorat", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lorat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, add, _, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        try:
            getattr(importlib.import_module(module), add)(p)
        except (ImportError, AttributeError) as e:  # keep the rest of the CLI usable
            p.set_defaults(_broken=f"{name} is unavailable: {e}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lorat`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if getattr(args, "_broken", None):
        print(f"lorat: {args._broken}", file=sys.stderr)
        return 2
    module, _, run, _ = COMMANDS[args.command]
    try:
        return int(getattr(importlib.import_module(module), run)(args) or 0)
    except KeyboardInterrupt:
        print("\nlorat: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, KeyError) as e:
        # Bad input (missing file, bad box, wrong checkpoint): one clear line, no traceback.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"lorat {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
