"""CLI model loading (lorat.loading): presets of any architecture, --set routing, --dtype vocabulary."""
from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch

import lorat
from lorat.cli import build_parser
from lorat.config import ModelConfig
from lorat.loading import checkpoint_arch, model_from_args, split_overrides
from lorat.models import registry
from lorat.models.lorat import build_lorat
from lorat.track.tracker import TrackConfig


@dataclass
class ExtCfg(ModelConfig):
    """Another architecture's config class, with a field LoRAT's does not have."""

    arch: str = "exttest"
    memory_templates: int = 2


@pytest.fixture
def ext_arch(monkeypatch, tiny_cfg):
    base = registry.get_arch("lorat")
    monkeypatch.setitem(registry._ARCHS, "exttest", replace(base, name="exttest", config_cls=ExtCfg,
                                                             build=build_lorat))
    preset = ExtCfg(**{**tiny_cfg.__dict__, "name": "ext-tiny", "arch": "exttest"})
    monkeypatch.setitem(registry._PRESETS, "ext-tiny", preset)
    return preset


def _args(*argv):
    return build_parser().parse_args(["track", "src", "--box", "1,2,3,4", "--output", "o", *argv])


def test_set_keys_go_to_trackconfig_or_the_architecture_config():
    track, model = split_overrides(["window_penalty=0.3", "memory_templates=4", "depth=1"], ExtCfg)
    assert track.window_penalty == 0.3 and track == replace(TrackConfig(), window_penalty=0.3)
    assert model == {"memory_templates": 4, "depth": 1} and isinstance(model["memory_templates"], int)
    with pytest.raises(ValueError, match="unknown key 'memory_templates'.*ModelConfig fields"):
        split_overrides(["memory_templates=4"], ModelConfig)  # LoRAT's config has no such field
    with pytest.raises(ValueError, match="use --dtype"):
        split_overrides(["dtype=bf16"], ModelConfig)


def test_preset_of_another_architecture(ext_arch):
    with pytest.warns(UserWarning, match="untrained head"):
        model, track, name = model_from_args(_args("--preset", "ext-tiny", "--set", "memory_templates=5",
                                                   "window_penalty=0.2", "--dtype", "bf16"))
    assert isinstance(model.cfg, ExtCfg) and model.cfg.memory_templates == 5 and name == "ext-tiny"
    assert track.window_penalty == 0.2 and track.dtype == "bfloat16"


def test_checkpoint_header_names_the_architecture(ext_arch, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "ext.safetensors"
    lorat.save_checkpoint(lorat.create_model("ext-tiny"), path)
    assert checkpoint_arch(path) == "exttest"
    model, _, name = model_from_args(_args("--checkpoint", str(path), "--set", "memory_templates=3"))
    assert isinstance(model.cfg, ExtCfg) and model.cfg.memory_templates == 3 and name == "ext"
    bogus = tmp_path / "bogus.bin"
    bogus.write_bytes(b"not weights")
    assert checkpoint_arch(bogus) is None


@pytest.mark.parametrize("value,want", [("auto", "auto"), ("fp16", "float16"), ("none", "float32"),
                                        ("bfloat16", "bfloat16")])
def test_dtype_option_vocabulary(value, want):
    assert _args("--dtype", value).dtype == want
    assert _args().dtype == "auto"


def test_eval_and_export_accept_the_same_options():
    p = build_parser()
    for cmd in (["eval", "--benchmark", "got10k_val", "--output", "o"], ["export", "--output", "m.onnx"]):
        args = p.parse_args([*cmd, "--preset", "lorat-b-224", "--dtype", "bf16", "--set", "depth=1"])
        assert args.dtype == "bfloat16" and args.preset == "lorat-b-224"


def test_models_lists_presets_of_every_architecture(ext_arch, capsys):
    from lorat.cli import main

    assert main(["models", "ext-"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("ext-tiny") and "arch=exttest" in line and "search=56" in line


def test_runtime_options_reach_the_trackconfig(ext_arch, tmp_path):
    _, cfg, _ = model_from_args(_args("--preset", "ext-tiny", "--runtime", "onnx-int8", "--attention", "manual"))
    assert (cfg.runtime, cfg.runtime_options) == ("onnx-int8", {"attention": "manual"})
    _, cfg, _ = model_from_args(_args("--preset", "ext-tiny", "--set", "runtime=compile"))
    assert cfg.runtime == "compile"  # the default --runtime eager leaves --set runtime=... alone
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    _, cfg, _ = model_from_args(_args("--preset", "ext-tiny", "--runtime", "onnx", "--onnx", str(onnx)))
    assert cfg.runtime_options == {"onnx_path": str(onnx)}
    with pytest.raises(ValueError, match="runtime='tvm'"):
        model_from_args(_args("--preset", "ext-tiny", "--set", "runtime=tvm"))
    for argv in (["track", "s", "--box", "1,2,3,4", "-o", "o"], ["eval", "--benchmark", "lasot", "-o", "o"]):
        args = build_parser().parse_args([*argv, "--runtime", "onnx"])
        assert args.runtime == "onnx"
