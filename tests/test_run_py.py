"""`run.py` (the bootstrap behind the README's two commands) installs what each command needs, once."""
from __future__ import annotations

import pytest

from scripts import ROOT, load_script


@pytest.fixture
def boot(tmp_path, monkeypatch):
    mod = load_script("run.py", "lorat_run_py")
    py = tmp_path / "venv" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.touch()  # an existing venv: nothing is created
    monkeypatch.setattr(mod, "PY", py)
    monkeypatch.setattr(mod, "STAMP", tmp_path / "venv" / ".stamp")
    calls: list[list[str]] = []
    monkeypatch.setattr(mod.subprocess, "check_call", lambda cmd: calls.append(cmd[-1]))
    mod.calls = calls
    return mod


def test_each_command_installs_its_extras_once(boot):
    boot.ensure_venv(boot.EXTRAS["demo"])
    assert boot.calls == [boot.TORCH, str(ROOT)]  # the demo: torch and lorat's own dependencies, no extras
    boot.calls.clear()
    boot.ensure_venv(boot.EXTRAS["demo"])
    assert boot.calls == []
    boot.ensure_venv(boot.EXTRAS["test"])  # the test tools come on top; torch is not asked for again
    assert boot.calls == [f"{ROOT}[app,dev,onnx]"]
    boot.calls.clear()
    for cmd in ("demo", "lorat", "test"):
        boot.ensure_venv(boot.EXTRAS[cmd])
    assert boot.calls == []


def test_a_changed_dependency_declaration_reinstalls(boot, monkeypatch):
    boot.ensure_venv(boot.EXTRAS["test"])
    boot.calls.clear()
    monkeypatch.setattr(boot, "_fingerprint", lambda: "another pyproject.toml")
    boot.ensure_venv(boot.EXTRAS["lorat"])
    assert boot.calls == [boot.TORCH, f"{ROOT}[app,onnx]"]  # only what this command needs
    assert boot._installed_extras() == {"app", "onnx"}
    boot.STAMP.write_text("a stamp written by an older run.py")
    assert boot._installed_extras() is None


def test_an_unknown_command_installs_nothing(boot, capsys):
    assert boot.main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
    assert boot.calls == [] and not boot.STAMP.exists()
