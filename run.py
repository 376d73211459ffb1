#!/usr/bin/env python3
"""Bootstrap: create ./.venv, install lorat into it (idempotently), then run a job.

    python3 run.py demo      # train + evaluate a tiny tracker on synthetic data, write a report
    python3 run.py test      # run the test suite
    python3 run.py lorat ... # any `lorat` CLI command inside the venv

Only the standard library is used here, so this works on a machine that has nothing but python3.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".lorat-install-stamp"
TORCH = "torch==2.13.0"  # the CPU wheel; a looser pin pulls GBs of CUDA packages


# What each command installs besides torch and lorat's own dependencies: the demo needs none of the extras, so a
# first `run.py demo` does not wait for the test tools (pytest, ruff, tensorboard, selenium, onnx).
EXTRAS = {"demo": (), "test": ("dev", "onnx", "app"), "lorat": ("onnx", "app")}


def _fingerprint() -> str:
    # Reinstall only when the dependency declaration changes.
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + TORCH.encode()).hexdigest()


def _installed_extras() -> set[str] | None:
    """The extras the stamp records for the current dependency declaration; None when it is stale or absent."""
    if not STAMP.exists():
        return None
    fingerprint, _, extras = STAMP.read_text().partition("\n")
    return {e for e in extras.split(",") if e} if fingerprint == _fingerprint() else None


def ensure_venv(extras: tuple[str, ...] = ()) -> None:
    """Create the venv and install torch + lorat[extras] unless the stamp says they are there already."""
    if not PY.exists():
        print(f"[setup] creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    have = _installed_extras()
    if have is not None and set(extras) <= have:
        return
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if have is None:
        print(f"[setup] installing {TORCH} (first run only)", flush=True)
        subprocess.check_call(pip + [TORCH])
    wanted = sorted(set(extras) | (have or set()))
    print(f"[setup] installing lorat and its dependencies{' [' + ','.join(wanted) + ']' if wanted else ''}",
          flush=True)
    subprocess.check_call(pip + ["-e", f"{ROOT}[{','.join(wanted)}]" if wanted else str(ROOT)])
    STAMP.write_text(_fingerprint() + "\n" + ",".join(wanted))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in EXTRAS:
        print(f"unknown command {cmd!r}; expected demo, test or lorat", file=sys.stderr)
        return 2
    ensure_venv(EXTRAS[cmd])
    env = dict(os.environ)
    if cmd == "test":
        # The style check is part of the test command: a finding fails the run before any test starts.
        lint = subprocess.call([str(PY), "-m", "ruff", "check", "src", "tests", "benchmarks"], cwd=ROOT, env=env)
        if lint != 0:
            print("ruff found style problems (see above); fix them or run `ruff check --fix`", file=sys.stderr)
            return lint
        args = [str(PY), "-m", "pytest", *rest]
    elif cmd == "demo":
        args = [str(BIN / "lorat"), "demo", *rest]
    else:
        args = [str(BIN / "lorat"), *rest]
    return subprocess.call(args, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
