"""Make the README screenshots of ``lorat app`` (docs/img/app_draw.png, docs/img/app_result.png).

    python docs/img/screenshots.py --checkpoint demo_out/lora_B/model_final.safetensors \
        --sequence demo_out/data/domain_B/val/GOT-10k_Val_000001 --output docs/img

The frames of a GOT-10k-layout sequence become an mp4 (as a user's own video would be), the page is driven in
headless Chromium exactly as in tests/test_app.py: upload, draw the first ground-truth box, track with the
demo model and the default (fastest) runtime, screenshot before and after.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from lorat.app import AppConfig, serve
from lorat.track.video import parse_box


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--sequence", required=True, type=Path, help="GOT-10k layout: *.jpg + groundtruth.txt")
    p.add_argument("--output", default=Path("docs/img"), type=Path)
    p.add_argument("--scale", type=int, default=3, help="upscale the frames (small synthetic frames look tiny)")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lorat-shots-"))
    frames = sorted(args.sequence.glob("*.jpg"))
    first = cv2.imread(str(frames[0]))
    h, w = first.shape[0] * args.scale, first.shape[1] * args.scale
    video = tmp / "my_video.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (w, h))
    for f in frames:
        writer.write(cv2.resize(cv2.imread(str(f)), (w, h), interpolation=cv2.INTER_CUBIC))
    writer.release()
    box = [v * args.scale for v in parse_box((args.sequence / "groundtruth.txt").read_text().splitlines()[0])]

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,1250"):
        options.add_argument(a)
    args.output.mkdir(parents=True, exist_ok=True)
    with serve(AppConfig(port=0, workdir=tmp / "work", demo_checkpoint=args.checkpoint)) as server:
        b = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
        try:
            wait = WebDriverWait(b, 300)
            b.get(server.url)
            wait.until(lambda d: d.find_element(By.ID, "model-select").get_attribute("length") not in (None, "0"))
            b.find_element(By.ID, "video-file").send_keys(str(video))
            canvas = b.find_element(By.ID, "frame-canvas")
            wait.until(lambda d: canvas.get_attribute("data-frame") == "0")
            cw, ch = b.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]",
                                      canvas)
            sx, sy = cw / w, ch / h
            start = int((box[0] - w / 2) * sx), int((box[1] - h / 2) * sy)  # offsets from the canvas centre
            ActionChains(b).move_to_element_with_offset(canvas, *start).click_and_hold() \
                .move_by_offset(int(box[2] * sx), int(box[3] * sy)).release().perform()
            b.save_screenshot(str(args.output / "app_draw.png"))
            b.find_element(By.ID, "start").click()
            status = b.find_element(By.ID, "status")
            wait.until(lambda d: status.get_attribute("data-state") in ("done", "error"))
            video_el = b.find_element(By.ID, "result-video")
            wait.until(lambda d: d.execute_script("return arguments[0].readyState >= 2", video_el))
            b.execute_script("const v = arguments[0]; v.pause(); v.currentTime = v.duration * 0.6;"
                             "document.getElementById('model-panel').scrollIntoView();", video_el)
            time.sleep(1.0)
            b.save_screenshot(str(args.output / "app_result.png"))
            print(status.text)
        finally:
            b.quit()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
