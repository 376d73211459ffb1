"""`lorat app`: the HTTP API (Flask test client) and the page end to end in headless Chromium (Selenium).

The browser test loads a generated mp4 through the page's file input, drags a box on the canvas, tracks,
checks that the result video plays in the page, downloads the boxes by clicking the link, and compares
them byte for byte with `python -m lorat.cli track` on the same video, box and checkpoint. It skips (with
the reason) only when Chromium or its driver is not installed; `.ci/run` installs both.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import lorat
from lorat.app import STATIC, AppConfig, AppState, create_app, serve

REPO = Path(__file__).resolve().parents[1]
W, H, FRAMES = 160, 120, 24


def make_video(path: Path, frames: int = FRAMES, size: tuple[int, int] = (W, H)) -> list[tuple[int, int, int, int]]:
    """An mp4v video of a red square moving over a textured background; returns the square's boxes."""
    rng = np.random.default_rng(0)
    w, h = size
    background = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (7, 7), 0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    assert writer.isOpened()
    boxes = []
    for t in range(frames):
        frame = background.copy()
        x, y = 20 + 2 * t, 30 + t
        cv2.rectangle(frame, (x, y), (x + 30, y + 24), (0, 0, 230), -1)  # BGR red
        writer.write(frame)
        boxes.append((x, y, 31, 25))
    writer.release()
    return boxes


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    torch.manual_seed(0)
    model = lorat.create_model("lorat-s-224", embed_dim=32, depth=1, num_heads=2, template_size=28, search_size=56,
                               lora_r=4, lora_alpha=8.0)
    ckpt = root / "tiny.safetensors"
    lorat.save_checkpoint(model, ckpt)
    video = root / "clip.mp4"
    truth = make_video(video)
    long_video = root / "long.mp4"
    make_video(long_video, frames=400)
    return {"root": root, "ckpt": ckpt, "video": video, "truth": truth, "long": long_video}


@pytest.fixture()
def client(assets, tmp_path):
    state = AppState(AppConfig(workdir=tmp_path / "work", checkpoints=[assets["ckpt"]],
                               demo_checkpoint=tmp_path / "no_demo" / "model_final.safetensors"))
    app = create_app(state)
    yield app.test_client(), state
    state.close()


def upload(c, path: Path, name: str | None = None):
    with open(path, "rb") as f:
        return c.post("/api/sources", data={"file": (f, name or path.name)}, content_type="multipart/form-data")


def wait_job(c, jid: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/api/jobs/{jid}").get_json()
        if job["state"] in ("done", "cancelled", "error"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {jid} did not finish in {timeout} s: {job}")


def job_request(source: dict, boxes, ckpt, **kw) -> dict:
    return {"source": source["id"], "boxes": boxes, "checkpoint": str(ckpt), "device": "cpu",
            "precision": "float32", **kw}


# ============================================================================ API
def test_info_offers_checkpoints_presets_and_explains_the_missing_demo_model(client, assets):
    c, _ = client
    info = c.get("/api/info").get_json()
    labels = [m["label"] for m in info["models"]]
    assert any("tiny.safetensors" in lab for lab in labels)
    assert {m["preset"] for m in info["models"] if not m["trained"]} == set(lorat.list_models())
    assert info["demo"]["exists"] is False and info["demo"]["how"] == "python3 run.py demo"
    assert "cpu" in info["devices"] and info["precision"] in info["precisions"]


def test_demo_model_is_offered_first_when_present(assets, tmp_path):
    demo = tmp_path / "demo_out" / "lora_B" / "model_final.safetensors"
    demo.parent.mkdir(parents=True)
    shutil.copy(assets["ckpt"], demo)
    state = AppState(AppConfig(workdir=tmp_path / "w", demo_checkpoint=demo))
    try:
        info = create_app(state).test_client().get("/api/info").get_json()
        assert info["demo"]["exists"] and info["models"][0]["checkpoint"] == str(demo)
    finally:
        state.close()


def test_clear_errors_for_bad_input(client, assets, tmp_path):
    c, _ = client
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    r = upload(c, text)
    assert r.status_code == 400 and "notes.mp4 is not a video" in r.get_json()["error"]
    assert str(tmp_path) not in r.get_json()["error"]  # the server's private paths are not shown

    src = upload(c, assets["video"]).get_json()
    assert (src["width"], src["height"], src["num_frames"]) == (W, H, FRAMES)
    cases = {
        "empty": ([[50, 50, 0, 0]], "box is empty"),
        "outside": ([[W + 5, 10, 20, 20]], f"outside the {W}x{H} frame"),
        "none": ([], "no target"),
    }
    for boxes, message in cases.values():
        r = c.post("/api/jobs", json=job_request(src, boxes, assets["ckpt"]))
        assert r.status_code == 400 and message in r.get_json()["error"], r.get_json()
    missing = tmp_path / "nowhere" / "model.safetensors"
    r = c.post("/api/jobs", json=job_request(src, [[20, 30, 31, 25]], missing))
    assert r.status_code == 400 and f"checkpoint not found: {missing}" in r.get_json()["error"]
    r = c.post("/api/jobs", json=job_request(src, [[20, 30, 31, 25]], assets["ckpt"], start_frame=FRAMES))
    assert r.status_code == 400 and "start frame" in r.get_json()["error"]


def test_image_folder_upload_and_server_path(client, assets, tmp_path):
    c, _ = client
    frames = list(lorat.track.video.open_source(assets["video"]))[:5]
    files = []
    for k, f in enumerate(frames):
        ok, png = cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        files.append((io.BytesIO(png.tobytes()), f"{k + 1}.png"))
    files.append((io.BytesIO(b"not an image"), "notes.txt"))  # ignored, like lorat track does
    r = c.post("/api/sources", data={"folder": "walk", "files": files}, content_type="multipart/form-data")
    src = r.get_json()
    assert r.status_code == 200 and (src["name"], src["num_frames"], src["width"]) == ("walk", 5, W), src
    r = c.post("/api/sources", data={"folder": "empty", "files": [(io.BytesIO(b"x"), "a.txt")]},
               content_type="multipart/form-data")
    assert r.status_code == 400 and "no images" in r.get_json()["error"]
    r = c.post("/api/sources", json={"path": str(assets["video"])})
    assert r.status_code == 200 and r.get_json()["name"] == "clip"
    r = c.post("/api/sources", json={"path": str(tmp_path / "missing.mp4")})
    assert r.status_code == 400 and "missing.mp4" in r.get_json()["error"]


def test_frames_are_the_pixels_tracking_sees(client, assets):
    c, _ = client
    src = upload(c, assets["video"]).get_json()
    frames = list(lorat.track.video.open_source(assets["video"]))
    for k in (0, 7, FRAMES - 1):
        r = c.get(f"/api/sources/{src['id']}/frames/{k}")
        assert r.status_code == 200 and r.mimetype == "image/png"
        shown = cv2.cvtColor(cv2.imdecode(np.frombuffer(r.data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(shown, frames[k])  # lossless, and the seek lands on frame k
    assert c.get(f"/api/sources/{src['id']}/frames/{FRAMES}").status_code == 400


def test_several_targets_in_one_batch_from_a_chosen_frame(client, assets):
    c, state = client
    src = upload(c, assets["video"]).get_json()
    start = 4
    boxes = [list(assets["truth"][start]), [100, 10, 30, 30], [5, 80, 25, 20]]
    job = c.post("/api/jobs", json=job_request(src, boxes, assets["ckpt"], start_frame=start)).get_json()
    job = wait_job(c, job["id"])
    assert job["state"] == "done", job
    assert job["done"] == FRAMES - start and job["total"] == FRAMES - start
    for k in (1, 2, 3):
        name = job["files"][f"boxes{k}"]
        assert name == f"clip_target{k}_boxes.txt"
        rows = c.get(f"/api/jobs/{job['id']}/files/{name}").get_data(as_text=True).splitlines()
        assert len(rows) == FRAMES - start
        assert [float(v) for v in rows[0].split(",")] == pytest.approx(boxes[k - 1], abs=1e-3)
    webm = c.get(f"/api/jobs/{job['id']}/files/{job['files']['webm']}")
    assert webm.mimetype == "video/webm" and webm.data[:4] == b"\x1a\x45\xdf\xa3"  # EBML header
    out = state.jobs[job["id"]].out_dir
    cap = cv2.VideoCapture(str(out / job["files"]["webm"]))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == FRAMES - start
    assert (out / "clip_tracked.mp4").stat().st_size > 0


def test_batched_targets_match_one_target_runs(client, assets):
    """Each target of a batch tracks as it would alone (same crops; only the batch size of the forward differs)."""
    c, _ = client
    src = upload(c, assets["video"]).get_json()
    boxes = [list(assets["truth"][0]), [100, 10, 30, 30]]
    batch = wait_job(c, c.post("/api/jobs", json=job_request(src, boxes, assets["ckpt"])).get_json()["id"])
    for k, box in enumerate(boxes, 1):
        alone = wait_job(c, c.post("/api/jobs", json=job_request(src, [box], assets["ckpt"])).get_json()["id"])
        a = np.loadtxt(c.get(f"/api/jobs/{alone['id']}/files/{alone['files']['boxes1']}").get_data(as_text=True)
                       .splitlines(), delimiter=",")
        b = np.loadtxt(c.get(f"/api/jobs/{batch['id']}/files/{batch['files'][f'boxes{k}']}").get_data(as_text=True)
                       .splitlines(), delimiter=",")
        np.testing.assert_allclose(b, a, atol=0.05)


def test_a_long_video_can_be_cancelled(client, assets):
    c, _ = client
    src = upload(c, assets["long"]).get_json()
    job = c.post("/api/jobs", json=job_request(src, [list(assets["truth"][0])], assets["ckpt"])).get_json()
    assert c.post("/api/jobs", json=job_request(src, [[1, 1, 9, 9]], assets["ckpt"])).status_code == 409
    assert c.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
    job = wait_job(c, job["id"])
    assert job["state"] == "cancelled" and job["done"] < 400
    if job["done"]:  # what was tracked is saved, like Ctrl-C in `lorat track`
        rows = c.get(f"/api/jobs/{job['id']}/files/{job['files']['boxes1']}").get_data(as_text=True).splitlines()
        assert len(rows) == job["done"]


def test_only_the_jobs_own_files_are_served(client, assets):
    c, _ = client
    src = upload(c, assets["video"]).get_json()
    job = wait_job(c, c.post("/api/jobs", json=job_request(src, [[20, 30, 31, 25]], assets["ckpt"])).get_json()["id"])
    assert c.get(f"/api/jobs/{job['id']}/files/..%2F..%2Fuploads").status_code == 404
    assert c.get(f"/api/jobs/{job['id']}/files/tiny.safetensors").status_code == 404
    assert c.get("/api/jobs/nope/files/clip_boxes.txt").status_code == 404


def test_localhost_by_default_and_no_server_paths_when_exposed(tmp_path, assets):
    assert AppConfig().host == "127.0.0.1" and AppConfig().paths_allowed()
    exposed = AppState(AppConfig(host="0.0.0.0", workdir=tmp_path / "w"))
    try:
        c = create_app(exposed).test_client()
        r = c.post("/api/sources", json={"path": str(assets["video"])})
        assert r.status_code == 400 and "disabled" in r.get_json()["error"]
    finally:
        exposed.close()
    with serve(AppConfig(port=0)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        workdir = server.state.workdir
        assert workdir.is_dir()
    assert not workdir.exists()  # the temporary uploads folder is removed on stop


def test_the_page_loads_nothing_from_outside():
    for f in STATIC.iterdir():
        text = f.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, f.name


def test_lorat_app_command_is_registered():
    from lorat.cli import build_parser

    args = build_parser().parse_args(["app", "--port", "0"])
    assert args.command == "app" and args.host == "127.0.0.1"


# ============================================================================ the page in Chromium
def _browser_or_skip() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no Chromium + chromedriver installed (apt-get install chromium chromium-driver; .ci/run does)")
    return chromium, driver


def _lorat_track(video: Path, box: list[float], ckpt: Path, out: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    subprocess.run([sys.executable, "-m", "lorat.cli", "track", str(video), "--box", ",".join(repr(v) for v in box),
                    "--checkpoint", str(ckpt), "--output", str(out), "--device", "cpu", "--dtype", "float32",
                    "--quiet"], check=True, env=env, capture_output=True)


@pytest.fixture()
def chrome(tmp_path):
    """Headless system Chromium driven by Selenium; downloads go to ``tmp_path/downloads``."""
    chromium, driver_path = _browser_or_skip()
    from selenium import webdriver

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,1300",
                "--autoplay-policy=no-user-gesture-required",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"):  # a synthetic webcam
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    browser.downloads = downloads
    try:
        yield browser
    finally:
        browser.quit()


def test_page_end_to_end_in_headless_chromium(assets, tmp_path, chrome):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    shots = os.environ.get("LORAT_APP_SCREENSHOTS")  # folder: also save the README screenshots
    browser, downloads = chrome, chrome.downloads
    cfg = AppConfig(port=0, workdir=tmp_path / "work", checkpoints=[assets["ckpt"]],
                    demo_checkpoint=tmp_path / "demo_out" / "lora_B" / "model_final.safetensors")
    with serve(cfg) as server:
        wait = WebDriverWait(browser, 120)
        browser.get(server.url)
        wait.until(lambda b: len(Select(b.find_element(By.ID, "model-select")).options) > 0)
        notes = tmp_path / "notes.mp4"
        notes.write_text("not a video\n" * 50)
        error = browser.find_element(By.ID, "error")
        browser.find_element(By.ID, "video-file").send_keys(str(notes))
        wait.until(lambda b: error.is_displayed())
        assert "notes.mp4 is not a video" in error.text

        browser.find_element(By.ID, "video-file").send_keys(str(assets["video"]))
        canvas = browser.find_element(By.ID, "frame-canvas")
        wait.until(lambda b: canvas.get_attribute("data-frame") == "0")
        assert not error.is_displayed()
        assert "clip: 160x120, 24 frames" in browser.find_element(By.ID, "source-info").text
        # scrub to frame 9 and back to 0 (the slider fetches the frame from the server)
        for k in (9, 0):
            browser.execute_script("const s = document.getElementById('frame-slider'); s.value = arguments[0];"
                                   "s.dispatchEvent(new Event('change'));", k)
            wait.until(lambda b, k=k: canvas.get_attribute("data-frame") == str(k))

        # tracking without a box: the page shows the server's error
        browser.find_element(By.ID, "start").click()
        wait.until(lambda b: error.is_displayed())
        assert "no target" in error.text

        # drag a box around the square of frame 0 (canvas CSS pixels -> frame pixels)
        rect = browser.execute_script("const r = arguments[0].getBoundingClientRect();"
                                      "return [r.width, r.height];", canvas)
        sx, sy = rect[0] / W, rect[1] / H
        x, y, w, h = assets["truth"][0]
        ActionChains(browser).move_to_element_with_offset(
            canvas, int((x - W / 2) * sx), int((y - H / 2) * sy)).click_and_hold().move_by_offset(
            int(w * sx), int(h * sy)).release().perform()
        targets = browser.find_elements(By.CSS_SELECTOR, "#targets li")
        assert len(targets) == 1 and targets[0].text.startswith("target 1:")

        Select(browser.find_element(By.ID, "model-select")).select_by_visible_text("checkpoint tiny.safetensors")
        Select(browser.find_element(By.ID, "device-select")).select_by_value("cpu")
        Select(browser.find_element(By.ID, "precision-select")).select_by_value("float32")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(Path(shots) / "app_draw.png"))
        browser.find_element(By.ID, "start").click()
        status = browser.find_element(By.ID, "status")
        wait.until(lambda b: status.get_attribute("data-state") in ("done", "error"))
        assert status.get_attribute("data-state") == "done", browser.find_element(By.ID, "error").text
        assert f"{FRAMES} / {FRAMES} frames" in status.text and "fps" in status.text

        # the annotated video plays in the page
        video = browser.find_element(By.ID, "result-video")
        wait.until(lambda b: b.execute_script("return arguments[0].readyState >= 2", video))
        vw, vh, duration = browser.execute_script(
            "const v = arguments[0]; return [v.videoWidth, v.videoHeight, v.duration];", video)
        assert (vw, vh) == (W, H) and duration > 0
        if shots:
            browser.execute_script("arguments[0].pause(); arguments[0].currentTime = arguments[0].duration * 0.8;",
                                   video)
            browser.execute_script("document.getElementById('model-panel').scrollIntoView()")
            time.sleep(0.5)
            browser.save_screenshot(str(Path(shots) / "app_result.png"))

        # download the boxes by clicking their link
        link = browser.find_element(By.CSS_SELECTOR, "#downloads a[data-role=boxes1]")
        assert link.text == "clip_boxes.txt"
        link.click()
        target = downloads / "clip_boxes.txt"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not target.is_file():
            time.sleep(0.1)
        assert target.is_file(), f"download did not arrive in {downloads}: {list(downloads.iterdir())}"
        jid = next(iter(server.state.jobs))
        used_box = server.state.jobs[jid].boxes[0]

    assert used_box == pytest.approx(assets["truth"][0], abs=1.5)  # the drawn box, to a CSS pixel
    reference = tmp_path / "cli"
    _lorat_track(assets["video"], used_box, assets["ckpt"], reference)
    assert target.read_bytes() == (reference / "clip_boxes.txt").read_bytes()
    job = server.state.jobs[jid]
    assert (job.out_dir / "clip_scores.txt").read_bytes() == (reference / "clip_scores.txt").read_bytes()
    job_files = job.files
    assert json.dumps(sorted(job_files.values())) == json.dumps(sorted(
        ["clip_tracked.mp4", "clip_tracked.webm", "clip_boxes.txt", "clip_scores.txt"]))


def test_webcam_clip_recorded_in_the_page_becomes_the_video(tmp_path, chrome):
    """Record from Chromium's synthetic camera (MediaRecorder WebM), upload, scrub and draw on it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with serve(AppConfig(port=0, workdir=tmp_path / "work")) as server:
        chrome.get(server.url)
        wait = WebDriverWait(chrome, 60)
        button = chrome.find_element(By.ID, "webcam-button")
        wait.until(lambda b: b.find_element(By.ID, "model-select").get_attribute("length") not in (None, "0"))
        button.click()
        wait.until(lambda b: button.text == "Stop recording")
        time.sleep(1.5)  # the clip's length, not a timing assertion
        button.click()
        info = chrome.find_element(By.ID, "source-info")
        wait.until(lambda b: info.text.startswith("webcam:"))
        source = next(iter(server.state.sources.values()))
        assert source.num_frames and source.num_frames >= 3 and source.width > 0
        canvas = chrome.find_element(By.ID, "frame-canvas")
        wait.until(lambda b: canvas.get_attribute("data-frame") == "0")
        assert int(canvas.get_attribute("width")) == source.width


class _StubTracker:
    """A tracker with the (images, boxes, ids) batched API that moves every box 1 px right per frame."""

    def __init__(self):
        self.boxes, self.batch_sizes = {}, []

    def initialize_many(self, images, boxes, ids):
        self.boxes.update({i: np.asarray(b, dtype=np.float64) for i, b in zip(ids, boxes)})

    def track_many(self, images, ids):
        self.batch_sizes.append(len(images))
        for i in ids:
            self.boxes[i] = self.boxes[i] + [1, 0, 0, 0]
        return [(self.boxes[i].copy(), 0.5) for i in ids]


def test_run_job_batches_every_target_and_writes_lorat_track_files(assets, tmp_path):
    from lorat.app_jobs import Job, Source, run_job

    src = lorat.track.video.open_source(assets["video"])
    source = Source("s", assets["video"], src.name, src.num_frames, W, H, src.fps)
    job = Job("j", source, start_frame=2, boxes=[[10, 10, 20, 20], [50, 40, 10, 12]], out_dir=tmp_path)
    stub = _StubTracker()
    run_job(job, stub, src)
    assert job.state == "done" and job.done == FRAMES - 2
    assert stub.batch_sizes == [2] * (FRAMES - 3)  # one call per frame after the first, all targets together
    rows = np.loadtxt(tmp_path / "clip_target2_boxes.txt", delimiter=",")
    np.testing.assert_allclose(rows[:, 0], 50 + np.arange(FRAMES - 2))
    scores = np.loadtxt(tmp_path / "clip_target1_scores.txt")
    assert scores[0] == 1.0 and (scores[1:] == 0.5).all()
    assert {p.name for p in tmp_path.iterdir()} == {"clip_tracked.mp4", "clip_tracked.webm", "clip_target1_boxes.txt",
                                                    "clip_target1_scores.txt", "clip_target2_boxes.txt",
                                                    "clip_target2_scores.txt"}
