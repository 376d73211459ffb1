"""oneDNN-prepacked linears (the ``eager`` runtime's CPU GEMMs): same results as ``nn.Linear``, where they apply."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lorat
from lorat.models.vit import Mlp
from lorat.runtime import make_runtime
from lorat.runtime_packed import PackedLinear, pack_linears, packing_supported

BF16 = packing_supported(torch.bfloat16)
DTYPES = [torch.float32] + ([torch.bfloat16] if BF16 else [])
# fp32: oneDNN and the reference GEMM sum in different orders; bf16: rounding of the 8-bit mantissa
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def test_packing_is_offered_where_onednn_runs_it():
    assert packing_supported(torch.float32) == torch.backends.mkldnn.is_available()
    assert BF16 == (torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))
    assert not packing_supported(torch.float16)
    assert not packing_supported(torch.float32, "cuda")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 7, 320])
def test_packed_linear_equals_linear(dtype, rows):
    torch.manual_seed(0)
    lin = nn.Linear(48, 80).to(dtype)
    packed = PackedLinear(lin, dtype)
    # a 3-D input and a non-contiguous one (a transposed view), any row count (the layout hint is 320 rows)
    x = torch.randn(2, rows, 48, dtype=dtype)
    xt = torch.randn(2, 48, rows, dtype=dtype).transpose(1, 2)
    with torch.inference_mode():
        for inp in (x, xt):
            want, got = F.linear(inp.float(), lin.weight.float(), lin.bias.float()), packed(inp)
            assert got.shape == (2, rows, 80) and got.dtype == dtype
            torch.testing.assert_close(got.float(), want, rtol=TOL[dtype], atol=TOL[dtype] * 8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_linear_fuses_the_exact_gelu(dtype):
    torch.manual_seed(1)
    lin = nn.Linear(32, 64).to(dtype)
    x = torch.randn(3, 10, 32, dtype=dtype)
    with torch.inference_mode():
        got = PackedLinear(lin, dtype, activation="gelu")(x)
        want = F.gelu(F.linear(x.float(), lin.weight.float(), lin.bias.float()))  # erf GELU, not tanh
    torch.testing.assert_close(got.float(), want, rtol=TOL[dtype], atol=TOL[dtype] * 8)
    with pytest.raises(ValueError, match="activation"):
        PackedLinear(lin, dtype, activation="relu")


def test_pack_linears_fuses_mlps_and_keeps_other_modules():
    torch.manual_seed(2)
    model = nn.Sequential(Mlp(16, 64), nn.LayerNorm(16), nn.Linear(16, 4))
    x = torch.randn(2, 5, 16)
    with torch.inference_mode():
        want = model(x)
        assert pack_linears(model, torch.float32) == 3
        got = model(x)
    assert isinstance(model[0].fc1, PackedLinear) and model[0].fc1.activation == "gelu"
    assert isinstance(model[0].act, nn.Identity) and model[0].fc2.activation == "none"
    assert type(model[1]) is nn.LayerNorm and isinstance(model[2], PackedLinear)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_packed_model_deep_copies():
    # e.g. Tracker(copy_model=True) or lorat bench's FLOP count over a prepared model: the opaque oneDNN weight
    # has no storage to copy, the copy shares it (it is never written after packing)
    import copy

    model = nn.Sequential(Mlp(16, 32))
    pack_linears(model, torch.float32)
    twin = copy.deepcopy(model)
    assert twin[0].fc1 is not model[0].fc1 and twin[0].fc1.weight is model[0].fc1.weight
    assert twin[0].fc1.bias is not model[0].fc1.bias
    x = torch.randn(3, 16)
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), model(x), rtol=0, atol=0)


def test_an_mlp_with_another_activation_is_not_fused():
    mlp = Mlp(8, 16)
    mlp.act = nn.GELU(approximate="tanh")  # oneDNN's fused "gelu" here is the erf form: must stay separate
    assert pack_linears(mlp, torch.float32) == 2
    assert mlp.fc1.activation == "none" and isinstance(mlp.act, nn.GELU)


def _tiny_lorat():
    from lorat.config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(name="tiny", embed_dim=32, depth=2, num_heads=2, template_size=28, search_size=56, lora_r=4)
    return lorat.create_model(cfg).eval()


@pytest.mark.parametrize("precision", ["float32"] + (["bfloat16"] if BF16 else []))
def test_eager_runtime_packs_by_default_on_cpu_and_matches_plain(precision):
    from lorat.export import example_inputs

    model = _tiny_lorat()
    inputs = example_inputs(model, batch=2, seed=4)
    packed = make_runtime(model, "eager", precision, "cpu")
    plain = make_runtime(model, "eager", precision, "cpu", pack=False)
    # 2 blocks x (qkv, proj, fc1, fc2) + the head's MLP layers
    assert packed.info["packed_linears"] >= 8 and plain.info["packed_linears"] == 0
    a, b = packed(*inputs), plain(*inputs)
    tol = 1e-4 if precision == "float32" else 3e-2
    torch.testing.assert_close(a["boxes"], b["boxes"], rtol=tol, atol=tol)


def test_packing_only_where_it_applies():
    model = _tiny_lorat()
    # the official path (LoRA unmerged, autocast) and compile are left as they are
    assert make_runtime(model, "eager", "float32", "cpu", merge_lora=False).info["packed_linears"] == 0
    with pytest.raises(ValueError, match="pack=True"):
        make_runtime(model, "eager", "float32", "cpu", merge_lora=False, pack=True)
    with pytest.raises(ValueError, match="pack=True"):
        make_runtime(model, "int8", "float32", "cpu", pack=True)
