"""lorat.eval.report: readers, `lorat analyze` (run_analyze and `python -m`), writers.

The fixture sequences are written to disk in the layouts the command reads, scored through the
command, and every number of the JSON it writes is compared with the reference fixtures.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

# same location rule as conftest.py: LORAT_SHARED overrides <repo>/../shared
from conftest import METRICS as FIXTURES
from lorat.eval import report as R

INPUTS = FIXTURES / "inputs.json"
PCT_ABS, FRAC_ABS, REL = 1e-4, 1e-6, 1e-9  # README tolerances
SRC = Path(__file__).resolve().parents[1] / "src"


@cache
def load(name: str) -> dict:
    with open(FIXTURES / name, encoding="utf-8") as f:
        return json.load(f)


def sequences() -> list[dict]:
    return load("inputs.json")["sequences"]


MAIN = load("inputs.json")["main_sequences"]
ERROR_CASES = load("inputs.json")["error_case_sequences"]


def fnum(v):
    return [fnum(x) for x in v] if isinstance(v, list) else float(v)


def assert_close(actual: dict, expected: dict, *, abs_tol: float = 0.0, rel_tol: float = 0.0,
                 where: str = "") -> None:
    assert expected, where
    for k, e in expected.items():
        assert k in actual, f"{where}: missing key {k}"
        a = actual[k]
        if isinstance(e, list):
            a_arr, e_arr = np.array(fnum(a), dtype=float), np.array(fnum(e), dtype=float)
            assert a_arr.shape == e_arr.shape, f"{where}.{k}: shape {a_arr.shape} != {e_arr.shape}"
            ok = np.isclose(a_arr, e_arr, rtol=rel_tol, atol=abs_tol, equal_nan=True)
            assert ok.all(), f"{where}.{k}: {a_arr[~ok]} != {e_arr[~ok]}"
        elif isinstance(e, bool) or e is None:
            assert a == e, f"{where}.{k}"
        else:
            a_f, e_f = float(a), float(e)
            if math.isnan(e_f):
                assert math.isnan(a_f), f"{where}.{k}: {a_f} != NaN"
            else:
                assert math.isclose(a_f, e_f, rel_tol=rel_tol, abs_tol=abs_tol), f"{where}.{k}: {a_f} != {e_f}"


def fmt(v: float) -> str:
    return repr(float(v))  # exact round trip, NaN -> 'nan', inf -> 'inf'


def write_rows(path: Path, rows, delim: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(delim.join(fmt(float(x)) for x in r) for r in rows) + "\n")


@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> dict:
    """Fixture sequences on disk: gt folders, pytracking-layout and GOT-10k-layout results."""
    root = tmp_path_factory.mktemp("analyze")
    gt, gt_uav, flat, g10k = root / "gt", root / "gt_uav", root / "fixture", root / "g10k" / "fixture"
    delims = [",", "\t", " ", ";"]
    for i, s in enumerate(sequences()):
        n = s["name"]
        write_rows(gt / f"{n}.txt", s["gt"], ",")
        write_rows(gt_uav / f"{n}.txt", s["gt_uav"], "\t")
        for d in (gt, gt_uav):
            (d / f"{n}_visible.txt").write_text("\n".join(str(int(v)) for v in s["target_visible"]) + "\n")
            (d / f"{n}_cover.txt").write_text(",".join(str(v) for v in s["got10k_cover"]))
            (d / f"{n}_image_size.txt").write_text("{},{}\n".format(*s["image_size_wh"]))
        write_rows(flat / f"{n}.txt", s["pred"], delims[i % len(delims)])
        (flat / f"{n}_time.txt").write_text("0.01\n" * s["num_frames"])
        write_rows(g10k / n / f"{n}_001.txt", s["pred"], ",")
        (g10k / n / f"{n}_time.txt").write_text("0.01\n" * s["num_frames"])
    for d in (gt, gt_uav):  # list.txt fixes the order; main sequences first
        (d / "list.txt").write_text("\n".join(MAIN + ERROR_CASES) + "\n")
    return {"root": root, "gt": gt, "gt_uav": gt_uav, "flat": flat, "g10k": g10k}


def analyze_cli(args: list[str], tmp: Path) -> tuple[int, dict]:
    parser = argparse.ArgumentParser()
    R.add_analyze_arguments(parser)
    out = tmp / "out.json"
    ns = parser.parse_args(args + ["--json", str(out), "--quiet"])
    code = R.run_analyze(ns)
    with open(out, encoding="utf-8") as f:
        return code, json.load(f)


OPE_PROTOCOLS = ["lasot", "lasot_extension_subset", "generic", "uav", "lasot_exclude_invalid_frames"]


@pytest.mark.parametrize("rule", ["pytracking", "ostrack"])
@pytest.mark.parametrize("proto", OPE_PROTOCOLS)
def test_analyze_ope_matches_fixture(disk, tmp_path, rule, proto):
    fx = load(f"expected_{rule}.json")
    p = fx["protocols"][proto]
    table_name = p["print_results_table"][0].split(" ")[0]
    code, doc = analyze_cli(["--results", f"fixture={disk['flat']}", "--gt", str(INPUTS), "--rule", rule,
                             "--protocol", proto, "--per-frame", "--report-name", table_name], tmp_path)
    assert doc["schema"] == "lorat.analyze/1" and doc["rule"] == rule
    assert doc["dataset_string"] == p["dataset_string"]
    assert doc["exclude_invalid_frames"] == p["exclude_invalid_frames"]
    assert doc["overall_sequences"] == MAIN
    assert doc["thresholds"] == p["thresholds"]
    t = doc["trackers"]["fixture"]
    for name in MAIN:
        assert_close(t["sequences"][name], {k: v for k, v in p["sequences"][name].items() if k != "avg_overlap"},
                     abs_tol=PCT_ABS, where=f"{rule}/{proto}/{name}")
        assert math.isclose(t["sequences"][name]["avg_overlap"], p["sequences"][name]["avg_overlap"], rel_tol=REL)
        if "per_frame" in p:
            exp = p["per_frame"][name]
            got = t["per_frame"][name]
            assert got["valid"] == exp["valid"]
            assert_close(got, {k: exp[k] for k in ("iou", "center_error", "norm_center_error")},
                         rel_tol=REL, where=f"{rule}/{proto}/{name}/per_frame")
    assert_close(t["overall"], p["overall"], abs_tol=PCT_ABS, where=f"{rule}/{proto}/overall")
    assert doc["print_results_table"] == p["print_results_table"]
    # error cases are scored one by one; the reference raises on them
    for name, cases in fx["error_cases"].items():
        if proto in cases:
            assert t["sequences"][name] == {"error": cases[proto]["error"]}
    assert code == 0  # errors only in sequences outside the overall: reported, not a failure
    assert len(doc["errors"]) == len(ERROR_CASES)


def test_analyze_gt_folder_and_uav_ground_truth(disk, tmp_path):
    p = load("expected_ostrack.json")["protocols"]
    code, doc = analyze_cli(["--results", str(disk["flat"]), "--gt", str(disk["gt"]), "--rule", "ostrack",
                             "--protocol", "lasot", "--sequences", *MAIN], tmp_path)
    assert code == 0 and doc["errors"] == []
    t = doc["trackers"]["fixture"]  # tracker name = folder name
    assert_close(t["overall"], p["lasot"]["overall"], abs_tol=PCT_ABS, where="dir/lasot")
    for name in MAIN:
        assert_close(t["sequences"][name], p["lasot"]["sequences"][name], abs_tol=PCT_ABS, where=name)
    code, doc = analyze_cli(["--results", str(disk["flat"]), "--gt", str(disk["gt_uav"]), "--rule", "pytracking",
                             "--protocol", "uav", "--sequences", *MAIN], tmp_path)
    assert code == 0
    assert_close(doc["trackers"]["fixture"]["overall"], load("expected_pytracking.json")["protocols"]["uav"]["overall"],
                 abs_tol=PCT_ABS, where="dir/uav")


def test_analyze_results_from_json(tmp_path):
    # inputs.json carries "pred" too, so it works as a result source
    code, doc = analyze_cli(["--results", f"fx={INPUTS}", "--gt", str(INPUTS), "--rule", "ostrack",
                             "--protocol", "generic"], tmp_path)
    assert_close(doc["trackers"]["fx"]["overall"], load("expected_ostrack.json")["protocols"]["generic"]["overall"],
                 abs_tol=PCT_ABS, where="json results")


@pytest.mark.parametrize("layout", ["flat", "g10k"])
def test_analyze_got10k(disk, tmp_path, layout):
    fx = load("expected_got10k_toolkit.json")
    code, doc = analyze_cli(["--results", str(disk[layout]), "--gt", str(disk["gt"]), "--rule", "got10k"], tmp_path)
    t = doc["trackers"]["fixture"]
    exp = fx["got10k_val_protocol"]
    for name in MAIN:
        assert_close(t["sequences"][name], exp["seq_wise"][name], rel_tol=REL, where=f"got10k/{name}")
        assert_close(t["sequences"][name], exp["single_sequence_runs"][name], rel_tol=REL, where=f"got10k1/{name}")
    # the gt folder has no main/error split: restrict to the main set for the pooled overall
    code, doc = analyze_cli(["--results", str(disk[layout]), "--gt", str(INPUTS), "--rule", "got10k"], tmp_path)
    t = doc["trackers"]["fixture"]
    assert_close(t["overall"], exp["overall"], rel_tol=REL, where="got10k/overall")
    assert t["overall"]["speed_fps"] == pytest.approx(100.0)
    for name, e in fx["error_cases"].items():
        got = dict(t["sequences"][name])
        assert_close(got, {k: v for k, v in e["got10k_val_protocol"].items()}, rel_tol=REL, where=f"got10k/{name}")
    assert code == 0  # the toolkit does not raise on these (AO just becomes NaN)


def test_analyze_otb_experiment(disk, tmp_path):
    fx = load("expected_got10k_toolkit.json")
    code, doc = analyze_cli(["--results", str(disk["flat"]), "--gt", str(INPUTS), "--rule", "otb"], tmp_path)
    t = doc["trackers"]["fixture"]
    exp = fx["otb_experiment"]
    for name in MAIN:
        assert_close(t["sequences"][name], exp["seq_wise"][name], rel_tol=REL, where=f"otb/{name}")
    assert_close(t["overall"], exp["overall"], rel_tol=REL, where="otb/overall")
    for name, e in fx["error_cases"].items():
        assert_close(t["sequences"][name], e["otb_experiment"], rel_tol=REL, where=f"otb/{name}")


def test_analyze_trackingnet(disk, tmp_path):
    fx = load("expected_trackingnet_devkit.json")
    code, doc = analyze_cli(["--results", str(disk["flat"]), "--gt", str(INPUTS), "--rule", "trackingnet"], tmp_path)
    t = doc["trackers"]["fixture"]
    for name in MAIN:
        assert_close(t["sequences"][name], fx["sequences"][name], rel_tol=REL, where=f"tn/{name}")
    assert_close(t["overall"], fx["overall"], rel_tol=REL, where="tn/overall")
    for name, e in fx["error_cases"].items():
        assert_close(t["sequences"][name], e, rel_tol=REL, where=f"tn/{name}")
    assert code == 0


@pytest.mark.parametrize("flags", [True, False])
def test_analyze_trackit_native(disk, tmp_path, flags):
    fx = load("expected_trackit.json")
    exp = fx["native_ope"]["with_existence_flags" if flags else "without_existence_flags"]
    extra = [] if flags else ["--ignore-visibility"]
    code, doc = analyze_cli(["--results", str(disk["flat"]), "--gt", str(INPUTS), "--rule", "trackit", *extra],
                            tmp_path)
    t = doc["trackers"]["fixture"]
    for name in MAIN:
        assert_close(t["sequences"][name], exp["sequences"][name], rel_tol=REL, where=f"trackit/{name}")
    assert_close(t["overall"], exp["overall"], rel_tol=REL, where="trackit/overall")
    if flags:
        for name, e in fx["error_cases"].items():
            assert_close(t["sequences"][name], e["native_with_existence_flags"], rel_tol=REL, where=name)


@pytest.mark.parametrize("key,proto,validity", [("LaSOT_stark", "lasot", "stark"),
                                                ("LaSOT_pytracking", "lasot", "pytracking"),
                                                ("LaSOT_Extension_stark", "lasot_extension_subset", "stark"),
                                                ("generic_stark", "generic", "stark")])
def test_analyze_trackit_compatible(disk, tmp_path, key, proto, validity):
    fx = load("expected_trackit.json")
    exp = fx["compatible_ope"][key]
    code, doc = analyze_cli(["--results", str(disk["flat"]), "--gt", str(INPUTS), "--rule", "trackit_compatible",
                             "--protocol", proto, "--validity", validity], tmp_path)
    assert doc["dataset_string"] == exp["dataset_name"]
    t = doc["trackers"]["fixture"]
    for name in MAIN:
        assert_close(t["sequences"][name], exp["sequences"][name], abs_tol=FRAC_ABS, where=f"{key}/{name}")
    assert_close(t["overall"], exp["overall"], abs_tol=FRAC_ABS, where=f"{key}/overall")
    for name, e in fx["error_cases"].items():
        assert_close(t["sequences"][name], e[f"compatible_{key}"], abs_tol=FRAC_ABS, where=f"{key}/{name}")


def test_error_in_overall_set_and_missing_results(disk, tmp_path):
    # an error-case sequence inside the overall set: the reference aborts -> overall is an error
    code, doc = analyze_cli(["--results", str(disk["flat"]), "--gt", str(disk["gt"]), "--rule", "pytracking",
                             "--sequences", "v01_perfect", "v08_nan_pred"], tmp_path)
    ov = doc["trackers"]["fixture"]["overall"]
    assert code == 1 and ov == {"error": "Exception: Error: Invalid results", "failed_sequences": ["v08_nan_pred"]}
    assert "auc" in doc["trackers"]["fixture"]["sequences"]["v01_perfect"]
    # missing result file: error, or skipped with --skip-missing
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "v01_perfect.txt").write_text((disk["flat"] / "v01_perfect.txt").read_text())
    code, doc = analyze_cli(["--results", str(partial), str(disk["flat"]), "--gt", str(disk["gt"]),
                             "--sequences", "v01_perfect", "v02_easy"], tmp_path)
    assert code == 1
    assert doc["trackers"]["partial"]["sequences"]["v02_easy"]["error"].startswith("Exception: Result not found.")
    assert "auc" in doc["trackers"]["fixture"]["overall"]
    code, doc = analyze_cli(["--results", str(partial), str(disk["flat"]), "--gt", str(disk["gt"]),
                             "--sequences", "v01_perfect", "v02_easy", "--skip-missing"], tmp_path)
    assert code == 0 and doc["overall_sequences"] == ["v01_perfect"]
    assert doc["trackers"]["partial"]["sequences"]["v02_easy"] == {
        "skipped": f"Exception: Result not found. {partial}/v02_easy.txt"}
    assert doc["trackers"]["fixture"]["overall"]["num_sequences"] == 1
    assert len(doc["print_results_table"]) == 3  # header + two trackers side by side


def test_fewer_prediction_rows(disk, tmp_path):
    short = tmp_path / "short"
    s = next(x for x in sequences() if x["name"] == "v02_easy")
    write_rows(short / "v02_easy.txt", s["pred"][:100], "\t")
    args = ["--results", str(short), "--gt", str(disk["gt"]), "--sequences", "v02_easy"]
    code, doc = analyze_cli(args + ["--protocol", "lasot"], tmp_path)
    assert doc["trackers"]["short"]["sequences"]["v02_easy"] == {
        "error": "Exception: Mis-match in tracker prediction and GT lengths"}
    code, doc = analyze_cli(args + ["--protocol", "generic"], tmp_path)
    full = load("expected_pytracking.json")["protocols"]["generic"]["sequences"]["v02_easy"]
    got = doc["trackers"]["short"]["sequences"]["v02_easy"]
    assert code == 0 and got["auc"] < full["auc"]  # padded zero rows fail
    code, doc = analyze_cli(args + ["--rule", "got10k"], tmp_path)
    assert doc["trackers"]["short"]["sequences"]["v02_easy"] == {"error": "AssertionError: "}


def test_readers_accept_any_separator_and_nan(tmp_path):
    f = tmp_path / "r.txt"
    f.write_text("\ufeff1,2,3,4\n\n5\t6\t7\t8\n 9 10  11 12 \nNaN;nan;inf;-Infinity\n")
    b = R.read_boxes(f)
    assert b.shape == (4, 4) and b[:3].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    assert np.isnan(b[3, :2]).all() and b[3, 2] == np.inf and b[3, 3] == -np.inf
    f.write_text("1,2,3\n")
    with pytest.raises(ValueError, match="expected 4 numbers"):
        R.read_boxes(f)
    f.write_text("1,0,1\n0\n")
    assert R.read_values(f).tolist() == [1, 0, 1, 0]


def test_bad_input_exit_code(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    R.add_analyze_arguments(parser)
    assert R.run_analyze(parser.parse_args(["--results", str(tmp_path)])) == 2  # no ground truth
    assert R.run_analyze(parser.parse_args(["--results", str(tmp_path / "nope"), "--gt", str(INPUTS)])) == 2
    assert "error" in capsys.readouterr().err


def test_module_entry_point_writes_all_outputs(disk, tmp_path):
    out = tmp_path / "o"
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "lorat.eval.report", "--results", f"A={disk['flat']}",
                           f"B={INPUTS}", "--gt", str(INPUTS), "--rule", "ostrack", "--protocol", "lasot",
                           "--json", str(out / "r.json"), "--markdown", str(out / "r.md"),
                           "--plots", str(out / "plots")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr  # the two error-case sequences raise, outside the overall
    assert "v08_nan_pred" in proc.stderr
    assert "65.02" in proc.stdout  # the OSTrack LaSOT AUC of the fixture
    doc = json.loads((out / "r.json").read_text())
    assert set(doc["trackers"]) == {"A", "B"}
    md = (out / "r.md").read_text()
    assert "| A | 65.02 | 83.27 | 49.42 | 72.49 | 75.35 |" in md and "v08_nan_pred | error | error" in md
    for stem in ("success_plot", "precision_plot", "norm_precision_plot"):
        assert (out / "plots" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.rglob("*.tmp")]  # atomic writes leave no temp files


def test_writers_are_strict_json_and_atomic(tmp_path):
    doc = {"a": float("nan"), "b": [np.float32(1.5), float("inf"), -np.inf], "c": np.int64(3), "d": np.bool_(True)}
    R.write_json(doc, tmp_path / "x" / "d.json")
    assert json.loads((tmp_path / "x" / "d.json").read_text()) == {
        "a": "NaN", "b": [1.5, "Infinity", "-Infinity"], "c": 3, "d": True}
    R.atomic_write_text(tmp_path / "x" / "d.json", "new")
    assert (tmp_path / "x" / "d.json").read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["d.json"]


@pytest.mark.parametrize("rule", ["got10k", "otb", "trackingnet", "trackit", "trackit_compatible"])
def test_markdown_and_plots_for_every_rule(disk, tmp_path, rule):
    seqs, _ = R.load_gt_json(INPUTS)
    doc = R.analyze([R.ResultSource("fixture", disk["flat"])], [s for s in seqs if s.name in MAIN], rule=rule)
    md = R.markdown_report(doc)
    assert md.count("\n| fixture | ") == 1 and "error" not in md
    paths = R.write_plots(doc, tmp_path / rule)
    assert paths and all(p.stat().st_size > 1000 for p in paths)


def test_unreadable_result_fails_only_that_sequence(disk, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "v01_perfect.txt").write_text((disk["flat"] / "v01_perfect.txt").read_text())
    (bad / "v02_easy.txt").write_text("1,2,3\n")
    code, doc = analyze_cli(["--results", str(bad), "--gt", str(disk["gt"]), "--sequences", "v01_perfect",
                             "v02_easy", "--rule", "ostrack"], tmp_path)
    seqs = doc["trackers"]["bad"]["sequences"]
    assert code == 1 and seqs["v02_easy"] == {"error": f"Exception: Could not read file {bad}/v02_easy.txt"}
    assert seqs["v01_perfect"]["auc"] == pytest.approx(95.238095, abs=1e-4)
    # a one-row result: pytracking's np.loadtxt gives a 1-D array and indexing pred[:, 2:] fails
    (bad / "v02_easy.txt").write_text("1,2,3,4\n")
    code, doc = analyze_cli(["--results", str(bad), "--gt", str(disk["gt"]), "--sequences", "v02_easy"], tmp_path)
    assert doc["trackers"]["bad"]["sequences"]["v02_easy"] == {
        "error": "IndexError: too many indices for tensor of dimension 1"}


def test_dataset_ground_truth_uses_load_benchmark(disk, tmp_path, monkeypatch):
    import lorat.data.datasets as datasets

    seqs, _ = R.load_gt_json(INPUTS)
    calls = []

    def fake_load_benchmark(name, root=None):
        calls.append((name, root))
        return [s for s in seqs if s.name in MAIN]

    monkeypatch.setattr(datasets, "load_benchmark", fake_load_benchmark)
    code, doc = analyze_cli(["--results", str(disk["flat"]), "--dataset", "lasot", "--root", "/data/lasot",
                             "--rule", "ostrack"], tmp_path)
    assert calls == [("lasot", "/data/lasot")] and code == 0
    assert doc["protocol"] == "lasot"  # picked from the dataset name
    assert_close(doc["trackers"]["fixture"]["overall"], load("expected_ostrack.json")["protocols"]["lasot"]["overall"],
                 abs_tol=PCT_ABS, where="dataset/lasot")
    code, doc = analyze_cli(["--results", str(disk["flat"]), "--dataset", "lasot_ext", "--rule", "ostrack"], tmp_path)
    assert doc["protocol"] == "lasot_extension_subset" and calls[-1] == ("lasot_ext", None)
