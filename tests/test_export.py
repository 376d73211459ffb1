"""ONNX export: the merged model in onnxruntime computes what PyTorch computes, for any batch size."""
from __future__ import annotations

import onnx
import pytest
import torch

import lorat
from lorat.cli import main
from lorat.export import check_onnx, export_onnx


def test_export_matches_pytorch(tiny_cfg, tmp_path):
    torch.manual_seed(0)
    model = lorat.create_model(tiny_cfg)
    path = export_onnx(model, tmp_path / "m.onnx")
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["z", "x", "z_feat_mask"]
    assert [o.name for o in graph.output] == ["score_map", "boxes"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    diff = check_onnx(model, path, batch=3)  # a batch size the export never saw
    assert max(diff.values()) < 1e-4, diff
    assert not any(p.name.startswith(".m.onnx") for p in tmp_path.iterdir())  # no temporary file left


def test_export_cli_with_parity_check(tiny_cfg, tmp_path, capsys):
    ckpt = tmp_path / "tiny.safetensors"
    lorat.save_checkpoint(lorat.create_model(tiny_cfg), ckpt)
    assert main(["export", "--checkpoint", str(ckpt), "--output", str(tmp_path / "t.onnx")]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "max abs difference" in out
    assert main(["export", "--checkpoint", str(tmp_path / "missing.safetensors"), "--output",
                 str(tmp_path / "x.onnx")]) == 1
    assert "missing.safetensors" in capsys.readouterr().err


def test_export_requires_a_model(tmp_path):
    with pytest.raises(SystemExit):
        main(["export"])
