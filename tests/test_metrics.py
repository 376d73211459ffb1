"""lorat.eval.metrics / toolkit_metrics against the reference fixtures and the references' rules."""
from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import pytest

# same location rule as conftest.py: LORAT_SHARED overrides <repo>/../shared
from conftest import METRICS as FIXTURES
from lorat.eval import metrics as M
from lorat.eval import toolkit_metrics as T
from lorat.eval.metrics import EvaluationError

PCT_ABS = 1e-4  # float32 curves in percent (README tolerance)
FRAC_ABS = 1e-6  # float32 curves as fractions
REL = 1e-9  # float64 quantities


@cache
def load(name: str) -> dict:
    with open(FIXTURES / name, encoding="utf-8") as f:
        return json.load(f)


def inputs() -> dict:
    return load("inputs.json")


def seq(name: str) -> dict:
    return {s["name"]: s for s in inputs()["sequences"]}[name]


def boxes(rows) -> np.ndarray:
    return np.array([[float(v) for v in r] for r in rows], dtype=np.float64)


def fl(v):
    return [float(x) for x in v] if isinstance(v, list) else float(v)


def assert_close(actual: dict, expected: dict, *, abs_tol: float = 0.0, rel_tol: float = 0.0,
                 where: str = "") -> None:
    """Every key of ``expected`` must be in ``actual`` and match (NaN == NaN)."""
    assert expected, where
    for k, v in expected.items():
        assert k in actual, f"{where}: missing {k}"
        a, e = actual[k], v
        if isinstance(e, list):
            a_arr, e_arr = np.array(fl(a), dtype=float), np.array(fl(e), dtype=float)
            assert a_arr.shape == e_arr.shape, f"{where}.{k}: shape"
            ok = np.isclose(a_arr, e_arr, rtol=rel_tol, atol=abs_tol, equal_nan=True)
            assert ok.all(), f"{where}.{k}: {a_arr[~ok]} != {e_arr[~ok]}"
        elif isinstance(e, (int, float, str)) and not isinstance(e, bool):
            a_f, e_f = float(a), float(e)
            if math.isnan(e_f):
                assert math.isnan(a_f), f"{where}.{k}: {a_f} != NaN"
            else:
                assert math.isclose(a_f, e_f, rel_tol=rel_tol, abs_tol=abs_tol), f"{where}.{k}: {a_f} != {e_f}"
        else:
            assert a == e, f"{where}.{k}"


OPE_CASES = [(rule, proto) for rule in ("pytracking", "ostrack")
             for proto in ("lasot", "lasot_extension_subset", "generic", "uav", "lasot_exclude_invalid_frames")]


def fixture_for(rule: str) -> dict:
    return load("expected_pytracking.json" if rule == "pytracking" else "expected_ostrack.json")


def run_ope(rule: str, proto: str, name: str):
    p = fixture_for(rule)["protocols"][proto]
    s = seq(name)
    gt = boxes(s[p["ground_truth_field"]])
    vis = np.array(s["target_visible"]) if p["target_visible_used"] else None
    return M.ope_sequence(boxes(s["pred"]), gt, vis, protocol=proto, rule=rule)


def test_thresholds_are_the_references():
    t = load("expected_pytracking.json")["protocols"]["lasot"]["thresholds"]
    assert M.OVERLAP_THRESHOLDS.tolist() == t["overlap"]  # exact, incl. 0.6500000000000001
    assert M.CENTER_THRESHOLDS.tolist() == t["center"]
    assert M.NORM_CENTER_THRESHOLDS.tolist() == t["center_norm"]


@pytest.mark.parametrize("rule,proto", OPE_CASES)
def test_ope_per_sequence_overall_and_table(rule, proto):
    p = fixture_for(rule)["protocols"][proto]
    assert p["exclude_invalid_frames"] == M.PROTOCOLS[proto].exclude_invalid_frames
    assert p["dataset_string"] == M.PROTOCOLS[proto].dataset_string
    curves = []
    for name in inputs()["main_sequences"]:
        err, c = run_ope(rule, proto, name)
        curves.append(c)
        exp = dict(p["sequences"][name])
        avg = exp.pop("avg_overlap")
        got = M.ope_scores([c])
        assert_close(got, exp, abs_tol=PCT_ABS, where=f"{rule}/{proto}/{name}")
        assert math.isclose(got["avg_overlap"], avg, rel_tol=REL)
        if "per_frame" in p:
            pf = p["per_frame"][name]
            for key, arr in (("iou", err.iou), ("center_error", err.center_error),
                             ("norm_center_error", err.norm_center_error)):
                np.testing.assert_allclose(arr, np.array(fl(pf[key])), rtol=REL, atol=0,
                                           err_msg=f"{rule}/{proto}/{name}/{key}")
            assert err.valid.tolist() == pf["valid"]
    overall = M.ope_scores(curves)
    assert_close(overall, p["overall"], abs_tol=PCT_ABS, where=f"{rule}/{proto}/overall")
    table = M.format_results_table(
        ["fixture"], {"AUC": [overall["auc"]], "OP50": [overall["op50"]], "OP75": [overall["op75"]],
                      "Precision": [overall["precision"]], "Norm Precision": [overall["norm_precision"]]},
        p["print_results_table"][0].split(" ")[0])
    assert table == p["print_results_table"]


@pytest.mark.parametrize("rule", ["pytracking", "ostrack"])
def test_ope_error_cases(rule):
    cases = fixture_for(rule)["error_cases"]
    assert cases
    for name, per_proto in cases.items():
        s = seq(name)
        for proto, exp in per_proto.items():
            with pytest.raises(EvaluationError) as ei:
                M.ope_sequence(boxes(s["pred"]), boxes(s["gt"]), np.array(s["target_visible"]),
                               protocol=proto, rule=rule)
            assert str(ei.value) == exp["error"]


def test_pytracking_vs_ostrack_validity_on_border_boxes():
    # v06 has gt with x == 0, y == 0 or x < 0: invalid for pytracking only
    e_py, _ = run_ope("pytracking", "generic", "v06_gt_x0_y0_negx")
    e_os, _ = run_ope("ostrack", "generic", "v06_gt_x0_y0_negx")
    gt = boxes(seq("v06_gt_x0_y0_negx")["gt"])
    border = (gt[:, 0] <= 0) | (gt[:, 1] <= 0)
    assert border.sum() == 40
    assert not e_py.valid[border].any() and e_os.valid[border].all()
    assert (e_py.iou[border] == -1).all() and np.isinf(e_py.center_error[border]).all()
    assert (e_py.norm_center_error[border] == -1).all()


# --- rules the fixtures do not cover, derived from the reference code ---------------------------

GT = np.array([[10, 10, 20, 20], [12, 10, 20, 20], [14, 10, 20, 20], [16, 10, 20, 20], [18, 10, 20, 20]], float)


def test_zero_size_cascade_runs_before_first_frame_replacement():
    pred = GT.copy()
    pred[0] = [100, 100, 0, 5]  # zero-size frame 0 (later replaced by gt)
    pred[1] = [12, 10, 0, 20]  # copies pred[0] (still zero-size) -> IoU 0
    pred[2] = [14, 10, 20, 0]  # copies the replaced pred[1], i.e. pred[0] again
    err = M.calc_seq_err_robust(pred, GT, "otb")
    assert err.iou.tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]


def test_length_mismatch_pad_truncate_and_lasot_raise():
    short = GT[:3]
    err = M.calc_seq_err_robust(short, GT, "otb")
    assert err.iou.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]  # zero-padded rows
    assert np.isinf(err.center_error[3:]).sum() == 0  # padded rows are valid frames, finite error
    with pytest.raises(EvaluationError, match="Mis-match in tracker prediction and GT lengths"):
        M.calc_seq_err_robust(short, GT, "lasot", np.ones(5))
    long = np.concatenate([GT, [[0, 0, 5, 5]]])
    assert M.calc_seq_err_robust(long, GT, "lasot", np.ones(5)).iou.tolist() == [1.0] * 5
    # a zero-size row beyond the gt length makes the reference index past the annotation
    with pytest.raises(EvaluationError) as ei:
        M.calc_seq_err_robust(np.concatenate([GT, [[0, 0, 0, 5]]]), GT, "otb")
    assert str(ei.value) == "IndexError: index 5 is out of bounds for dimension 0 with size 5"


def test_annotation_nan_inf_and_visibility_rules():
    gt = GT.copy()
    gt[2] = np.nan
    with pytest.raises(EvaluationError, match="Warning: NaNs in annotation"):
        M.calc_seq_err_robust(GT, gt, "otb")
    pred = GT.copy()
    pred[2, 2] = 0.0  # not replaced: gt row is NaN
    err = M.calc_seq_err_robust(pred, gt, "uav")
    assert err.iou[2] == -1 and err.center_error[2] == -1 and err.norm_center_error[2] == -1
    with pytest.raises(EvaluationError, match="Invalid results"):
        M.calc_seq_err_robust(np.where(np.arange(5)[:, None] == 3, -np.inf, GT), GT, "otb")
    # +Inf width is accepted; IoU 0, centre error Inf
    pinf = GT.copy()
    pinf[3, 2] = np.inf
    err = M.calc_seq_err_robust(pinf, GT, "otb")
    assert err.iou[3] == 0 and np.isinf(err.center_error[3])
    # x = -inf with w = +inf gives a NaN overlap -> the reference raises
    bad = GT.copy()
    bad[3, 0], bad[3, 2] = -np.inf, np.inf
    with pytest.raises(EvaluationError, match="Nans in calculated overlap"):
        M.calc_seq_err_robust(bad, GT, "otb")
    with pytest.raises(EvaluationError, match="TypeError"):
        M.calc_seq_err_robust(GT, GT, "lasot", None)
    vis = np.array([1, 0, 1, 1, 0])
    lasot = M.calc_seq_err_robust(GT, GT, "lasot", vis)
    ext = M.calc_seq_err_robust(GT, GT, "lasot_extension_subset", vis)
    assert np.isinf(lasot.norm_center_error[[1, 4]]).all()
    assert (ext.norm_center_error[[1, 4]] == -1).all()


def test_all_invisible_and_exclude_invalid_frames():
    vis = np.array([0, 0, 0, 0, 0])
    err, c = M.ope_sequence(GT, GT, vis, protocol="lasot", rule="pytracking")
    assert math.isnan(c.avg_overlap) and c.success.max() == 0
    with pytest.raises(EvaluationError, match="Seq length zero"):
        M.ope_sequence(GT, GT, vis, protocol="lasot_exclude_invalid_frames")
    # with exclusion, sentinel successes can push NP above 1 (numerators unchanged)
    gt = GT.copy()
    gt[1:3, 2] = 0
    _, c = M.ope_sequence(GT, gt, np.ones(5), protocol="lasot_exclude_invalid_frames")
    assert c.norm_precision[0] == np.float32(5) / np.float32(3)
    assert c.success.dtype == np.float32


def test_format_results_table_widths():
    lines = M.format_results_table(["a", "longer_tracker"], {"AUC": [1.234, 50.0], "Norm Precision": [0, 99.999]}, "t")
    assert lines[0] == "t" + " " * 18 + " | AUC        | Norm Precision    |"
    assert lines[2] == "longer_tracker      | 50.00      | 100.00            |"


# --- LoRAT / trackit ------------------------------------------------------------------------------

@pytest.mark.parametrize("key,flags", [("with_existence_flags", True), ("without_existence_flags", False)])
def test_trackit_native(key, flags):
    exp = load("expected_trackit.json")["native_ope"][key]
    res = []
    for name in inputs()["main_sequences"]:
        s = seq(name)
        r = M.trackit_native_sequence(boxes(s["pred"]), boxes(s["gt"]),
                                      np.array(s["target_visible"]) if flags else None)
        assert_close(r, exp["sequences"][name], rel_tol=REL, where=f"native/{key}/{name}")
        res.append(r)
    assert_close(M.trackit_native_mean(res), exp["overall"], rel_tol=REL, where=f"native/{key}")


@pytest.mark.parametrize("key", ["LaSOT_stark", "LaSOT_pytracking", "LaSOT_Extension_stark", "generic_stark"])
def test_trackit_compatible(key):
    exp = load("expected_trackit.json")["compatible_ope"][key]
    res = []
    for name in inputs()["main_sequences"]:
        s = seq(name)
        r = M.trackit_compatible_sequence(boxes(s["pred"]), boxes(s["gt"]), np.array(s["target_visible"]),
                                          exp["dataset_name"], exp["stark_behavior"])
        assert_close(r, exp["sequences"][name], abs_tol=FRAC_ABS, where=f"compat/{key}/{name}")
        res.append(r)
    assert_close(M.trackit_compatible_mean(res), exp["overall"], abs_tol=FRAC_ABS, where=f"compat/{key}")


def test_trackit_error_cases():
    exp = load("expected_trackit.json")
    for name, cases in exp["error_cases"].items():
        s = seq(name)
        for key, e in cases.items():
            if key == "native_with_existence_flags":
                r = M.trackit_native_sequence(boxes(s["pred"]), boxes(s["gt"]), np.array(s["target_visible"]))
                assert_close(r, e, rel_tol=REL, where=f"{name}/{key}")
            else:
                c = exp["compatible_ope"][key[len("compatible_"):]]
                r = M.trackit_compatible_sequence(boxes(s["pred"]), boxes(s["gt"]), np.array(s["target_visible"]),
                                                  c["dataset_name"], c["stark_behavior"])
                assert_close(r, e, abs_tol=FRAC_ABS, where=f"{name}/{key}")


def test_trackit_native_rules():
    pred = GT.copy()
    pred[1] = [100, 100, 5, 5]  # no overlap: IoU 0 -> -1, still a frame
    pred[2, 2] = -3  # invalid prediction: IoU -1, errors Inf
    r = M.trackit_native_sequence(pred, GT, np.array([1, 1, 1, 1, 0]))  # last frame removed
    assert r["ao"] == 0.5 and r["success_curve"][0] == 0.5 and r["success_curve"][-1] == 0.5
    with pytest.raises(EvaluationError, match="AssertionError"):
        M.trackit_native_sequence(GT, GT, np.zeros(5))


# --- GOT-10k toolkit, OTB experiment, TrackingNet devkit ------------------------------------------

def test_got10k_val_protocol():
    exp = load("expected_got10k_toolkit.json")["got10k_val_protocol"]
    pooled, times = [], []
    for name in inputs()["main_sequences"]:
        s = seq(name)
        gt = boxes(s["gt"])
        ious = T.got10k_sequence_ious([boxes(s["pred"])], gt, np.array(s["got10k_cover"]), tuple(s["image_size_wh"]))
        t = np.full(gt.shape[0], 0.01)
        r = T.got10k_evaluate(ious, t)
        r["length"] = gt.shape[0] - 1
        assert_close(r, exp["seq_wise"][name], rel_tol=REL, where=f"got10k/{name}")
        assert_close(r, exp["single_sequence_runs"][name], rel_tol=REL, where=f"got10k1/{name}")
        pooled.append(ious)
        times.append(t)
    overall = T.got10k_evaluate(np.concatenate(pooled), np.concatenate(times))
    assert_close(overall, exp["overall"], rel_tol=REL, where="got10k/overall")
    mean_ao = np.mean([exp["seq_wise"][n]["ao"] for n in inputs()["main_sequences"]])
    assert abs(overall["ao"] - mean_ao) > 0.05  # frame pooling, not a mean of sequences


def test_otb_experiment():
    exp = load("expected_got10k_toolkit.json")["otb_experiment"]
    res = []
    for name in inputs()["main_sequences"]:
        s = seq(name)
        r = T.otb_sequence(boxes(s["pred"]), boxes(s["gt"]))
        assert_close(r, exp["seq_wise"][name], rel_tol=REL, where=f"otb/{name}")
        res.append(r)
    assert_close(T.otb_mean(res), exp["overall"], rel_tol=REL, where="otb/overall")


def test_got10k_and_otb_error_cases():
    for name, e in load("expected_got10k_toolkit.json")["error_cases"].items():
        s = seq(name)
        gt = boxes(s["gt"])
        ious = T.got10k_sequence_ious([boxes(s["pred"])], gt, np.array(s["got10k_cover"]), tuple(s["image_size_wh"]))
        r = T.got10k_evaluate(ious)
        r["length"] = gt.shape[0] - 1
        assert_close(r, e["got10k_val_protocol"], rel_tol=REL, where=f"got10k/{name}")
        assert_close(T.otb_sequence(boxes(s["pred"]), gt), e["otb_experiment"], rel_tol=REL, where=f"otb/{name}")


def test_got10k_rules():
    # clipping moves a box that starts left of the image instead of cropping it
    iou = T.got10k_rect_iou(np.array([[-10.0, 0, 20, 10]]), np.array([[0.0, 0, 20, 10]]), bound=(100, 100))
    assert iou[0] == pytest.approx(1.0, abs=1e-12)
    tiny = np.array([[0.0, 0, 0.1, 0.1]])
    assert T.got10k_rect_iou(tiny, tiny)[0] < 1.0  # eps in the union shows on tiny boxes
    with pytest.raises(EvaluationError, match="AssertionError"):
        T.got10k_sequence_ious([GT[:4]], GT)
    ious = T.got10k_sequence_ious([GT, GT], GT, cover=np.array([1, 0, 3, 0, 8]))
    assert ious.shape == (4,)  # frame 0 dropped, cover-0 frames dropped, runs pooled
    r = T.got10k_evaluate(np.zeros(0))
    assert math.isnan(r["ao"]) and r["speed_fps"] == -1


def test_trackingnet_devkit():
    exp = load("expected_trackingnet_devkit.json")
    res = []
    for name in inputs()["main_sequences"]:
        s = seq(name)
        q = T.trackingnet_sequence(boxes(s["pred"]), boxes(s["gt"]))
        assert_close(T.trackingnet_scores([q]), exp["sequences"][name], rel_tol=REL, where=f"tn/{name}")
        res.append(q)
    assert_close(T.trackingnet_scores(res), exp["overall"], rel_tol=REL, where="tn/overall")
    for name, e in exp["error_cases"].items():
        s = seq(name)
        q = T.trackingnet_sequence(boxes(s["pred"]), boxes(s["gt"]))
        assert_close(T.trackingnet_scores([q]), e, rel_tol=REL, where=f"tn/{name}")


def test_trackingnet_rules():
    perfect = T.trackingnet_scores([T.trackingnet_sequence(GT, GT)])
    assert perfect["success"] == pytest.approx(100.0) and perfect["coverage"] == 100.0
    short = T.trackingnet_scores([T.trackingnet_sequence(GT[:2], GT)])  # missing rows: NaN, uncovered
    assert short["coverage"] == 40.0
    none = T.trackingnet_scores([T.trackingnet_sequence(None, GT)])  # no matching file: zeros
    assert none["coverage"] == 20.0  # only frame 0 (replaced by the gt) is covered
    half = T.trackingnet_sequence(np.array([[0.5, 1.5, 2.5, 3.5]] * 2), np.array([[0.5, 1.5, 2.5, 3.5]] * 2))
    assert half.covered.all()  # rounding half-to-even keeps 0.5 -> 0 but the sum stays > 0


def test_trackit_length_mismatch_raises_like_numpy():
    with pytest.raises(EvaluationError) as ei:
        M.trackit_native_sequence(GT[:3], GT)
    assert str(ei.value) == "ValueError: operands could not be broadcast together with shapes (3,2) (5,2) "
    with pytest.raises(EvaluationError, match="IndexError: boolean index did not match"):
        M.trackit_native_sequence(GT[:1], GT)
    # the compatible port broadcasts a single row over all frames without complaint
    one = M.trackit_compatible_sequence(GT[2:3], GT, None, "TNL2K")
    rep = M.trackit_compatible_sequence(np.repeat(GT[2:3], 5, axis=0), GT, None, "TNL2K")
    assert one == rep and 0 < one["success_score"] < 1
