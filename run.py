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


def _fingerprint() -> str:
    # Reinstall only when the dependency declaration changes.
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + TORCH.encode()).hexdigest()


def ensure_venv() -> None:
    """Create the venv and install torch + lorat[dev,onnx,app] unless the stamp says it is current."""
    if not PY.exists():
        print(f"[setup] creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    print(f"[setup] installing {TORCH} (first run only)", flush=True)
    subprocess.check_call(pip + [TORCH])
    print("[setup] installing lorat and its dependencies", flush=True)
    subprocess.check_call(pip + ["-e", f"{ROOT}[dev,onnx,app]"])
    STAMP.write_text(_fingerprint())


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    ensure_venv()
    cmd, rest = argv[0], argv[1:]
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
    elif cmd == "lorat":
        args = [str(BIN / "lorat"), *rest]
    else:
        print(f"unknown command {cmd!r}; expected demo, test or lorat", file=sys.stderr)
        return 2
    return subprocess.call(args, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
