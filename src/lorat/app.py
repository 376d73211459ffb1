"""``lorat app``: track objects in your own video from a local web page.

The page (plain HTML + JS in ``lorat/app_static/``) lets you upload a video, an image folder or a webcam clip
(or open a path on this machine), scrub to a frame, drag one box per target, pick a model and a runtime, and
track. All targets go through :meth:`lorat.Tracker.track_many`, one batched forward per frame. The results
are the files ``lorat track`` writes (``NAME_tracked.mp4``, ``NAME_boxes.txt``, ``NAME_scores.txt``; with
several targets ``NAME_target<K>_boxes.txt`` / ``_scores.txt`` per target) plus ``NAME_tracked.webm``, a VP8
copy of the annotated video that browsers play (OpenCV's wheels have no H.264 encoder).

The server is Flask on Werkzeug's threaded server, bound to ``127.0.0.1`` unless ``--host`` says otherwise.
Uploads stay in a private working folder on this machine (deleted on exit unless ``--workdir`` is given);
the page loads nothing from the internet. One tracking job runs at a time; it can be cancelled, and then
keeps the frames tracked so far, like Ctrl-C in ``lorat track``.

Python use (tests, notebooks)::

    from lorat.app import AppConfig, serve
    with serve(AppConfig(port=0)) as server:     # port 0: a free port
        print(server.url)                        # http://127.0.0.1:PORT/

HTTP API (JSON unless noted; errors are ``{"error": message}`` with status 400/404/409):

* ``GET /api/info`` -> models (demo, checkpoints, presets), devices, precisions, limits;
* ``POST /api/sources`` multipart ``file`` (one video) or ``files`` (+ ``folder``: an image folder), or JSON
  ``{"path": ...}`` -> ``{"id", "name", "num_frames", "width", "height", "fps"}``;
* ``GET /api/sources/<id>/frames/<k>`` -> PNG of frame ``k``;
* ``POST /api/jobs`` ``{"source", "start_frame", "boxes": [[x, y, w, h], ...], "checkpoint", "preset",
  "device", "precision"}`` -> job;
* ``GET /api/jobs/<id>`` -> ``{"state": running|done|cancelled|error, "done", "total", "fps", "files", ...}``;
* ``POST /api/jobs/<id>/cancel``; ``GET /api/jobs/<id>/files/<name>`` -> the file (range requests work).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from .app_jobs import TARGET_COLORS, Job, Source, WebmWriter, check_boxes, output_names, read_frame, run_job
from .track.video import IMAGE_EXTENSIONS, ImageFolderSource, open_source, read_image

__all__ = ["AppConfig", "AppState", "Job", "Source", "WebmWriter", "create_app", "serve", "AppServer",
           "add_app_arguments", "run_app", "DEMO_CHECKPOINT", "CHECKPOINT_EXTENSIONS", "TARGET_COLORS", "check_boxes",
           "output_names", "read_frame", "run_job"]

STATIC = Path(__file__).resolve().parent / "app_static"
DEMO_CHECKPOINT = Path("demo_out") / "lora_B" / "model_final.safetensors"  # written by `python3 run.py demo`
CHECKPOINT_EXTENSIONS = (".safetensors", ".pth", ".pt", ".bin")


@dataclass
class AppConfig:
    """Settings of the app server.

    Attributes:
        host: interface to bind; ``127.0.0.1`` keeps it on this machine (``0.0.0.0`` exposes it to the network).
        port: TCP port; 0 picks a free one.
        workdir: folder for uploads and results; None -> a private temporary folder deleted on stop.
        checkpoints: checkpoint files or folders (searched for ``*.safetensors/.pth/.pt/.bin``) offered in the page.
        demo_checkpoint: the demo's trained model, offered first when it exists.
        allow_paths: let the page open files and folders on the server by path (default: only when bound to
            a loopback address, where the page's user is the machine's user).
        max_upload_mb: largest upload accepted.
    """

    host: str = "127.0.0.1"
    port: int = 7860
    workdir: Path | None = None
    checkpoints: list[Path] = field(default_factory=list)
    demo_checkpoint: Path = DEMO_CHECKPOINT
    allow_paths: bool | None = None
    max_upload_mb: int = 4096

    @property
    def loopback(self) -> bool:
        """True when the server only listens on this machine."""
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    def paths_allowed(self) -> bool:
        """Whether ``{"path": ...}`` sources and typed checkpoint paths are accepted."""
        return self.loopback if self.allow_paths is None else bool(self.allow_paths)


# ============================================================================ application state
class AppState:
    """Sources, jobs, model choices and the loaded tracker of one app instance (thread-safe)."""

    def __init__(self, cfg: AppConfig) -> None:
        self.cfg = cfg
        self._own_workdir = cfg.workdir is None
        self.workdir = Path(cfg.workdir) if cfg.workdir else Path(tempfile.mkdtemp(prefix="lorat-app-"))
        (self.workdir / "uploads").mkdir(parents=True, exist_ok=True)
        (self.workdir / "results").mkdir(parents=True, exist_ok=True)
        self.sources: dict[str, Source] = {}
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self._tracker_key: tuple | None = None
        self._tracker: Any = None

    # ---------------------------------------------------------------- models
    def checkpoint_files(self) -> list[Path]:
        """Checkpoints given on the command line (files, or files found in given folders)."""
        out: list[Path] = []
        for p in self.cfg.checkpoints:
            p = Path(p)
            if p.is_dir():
                out += sorted(q for q in p.rglob("*") if q.suffix.lower() in CHECKPOINT_EXTENSIONS and q.is_file())
            elif p.is_file():
                out.append(p)
        return out

    def info(self) -> dict[str, Any]:
        """What the page offers: models, devices, precisions and the demo model's status."""
        import torch

        from .device import resolve_precision
        from .models.registry import get_arch, get_preset, list_models

        demo = Path(self.cfg.demo_checkpoint)
        models = []
        if demo.is_file():
            models.append({"label": f"demo model ({demo})", "checkpoint": str(demo), "preset": None,
                           "trained": True})
        models += [{"label": f"checkpoint {p.name}", "checkpoint": str(p), "preset": None, "trained": True}
                   for p in self.checkpoint_files()]
        for name in list_models():
            arch = get_arch(get_preset(name)).name
            models.append({"label": f"{name} ({arch}, untrained head: tries the page, boxes are meaningless)",
                           "checkpoint": None, "preset": name, "trained": False})
        devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            devices.append("mps")
        best = devices[1] if len(devices) > 1 else "cpu"
        fastest = resolve_precision("auto", torch.device(best))
        return {"models": models, "devices": devices, "device": best, "precisions": ["float32", "bfloat16",
                "float16"], "precision": fastest, "demo": {"path": str(demo), "exists": demo.is_file(),
                "how": "python3 run.py demo"}, "paths_allowed": self.cfg.paths_allowed(),
                "max_upload_mb": self.cfg.max_upload_mb, "presets": list_models()}

    def tracker_for(self, checkpoint: str | None, preset: str | None, device: str, precision: str) -> tuple[Any, str]:
        """A :class:`lorat.Tracker` built exactly as ``lorat track`` builds it; the last one is reused."""
        key = (checkpoint, preset, device, precision)
        if key != self._tracker_key:
            from .models.registry import get_arch, import_path
            from .track.video import model_from_args

            args = argparse.Namespace(checkpoint=checkpoint, preset=preset, pretrained=None, device=device,
                                      dtype=precision, overrides=[])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the untrained-head warning is shown in the page instead
                model, track_cfg, _ = model_from_args(args)
            tracker_cls = import_path(get_arch(model.cfg).tracker)  # the architecture's tracker (LoRAT: Tracker)
            self._tracker, self._tracker_key = tracker_cls(model, track_cfg), key
        self._tracker.reset()
        return self._tracker, Path(checkpoint).name if checkpoint else f"{preset} (untrained)"

    # ---------------------------------------------------------------- sources
    def add_source(self, path: Path, shown: str) -> Source:
        """Open ``path`` (video file or image folder) and register it; ValueError names ``shown`` if unreadable."""
        try:
            src = open_source(path)
            if isinstance(src, ImageFolderSource):
                first = read_image(src.files[0])
            else:
                first = next(iter(src))
        except (ValueError, StopIteration) as e:
            reason = str(e).replace(str(path), shown)
            raise ValueError(f"{shown} is not a video or image folder that can be read: {reason}") from None
        num_frames = src.num_frames
        if num_frames is None:  # e.g. a browser's MediaRecorder WebM has no duration: count by decoding
            num_frames = sum(1 for _ in src)
        sid = uuid.uuid4().hex[:12]
        source = Source(sid, Path(path), src.name, num_frames, first.shape[1], first.shape[0], src.fps)
        with self.lock:
            self.sources[sid] = source
        return source

    def upload_dir(self) -> Path:
        """A fresh private folder under the working folder for one upload."""
        d = self.workdir / "uploads" / uuid.uuid4().hex[:12]
        d.mkdir(parents=True)
        return d

    # ---------------------------------------------------------------- jobs
    def start_job(self, req: dict[str, Any]) -> Job:
        """Validate a ``POST /api/jobs`` request and start it in a thread (ValueError / FileNotFoundError)."""
        source = self.sources.get(str(req.get("source")))
        if source is None:
            raise ValueError("no video opened: upload a video or an image folder first")
        start = int(req.get("start_frame") or 0)
        if start < 0 or (source.num_frames is not None and start >= source.num_frames):
            raise ValueError(f"start frame {start} is outside the video (frames 0..{(source.num_frames or 1) - 1})")
        boxes = check_boxes(req.get("boxes"), source.width, source.height)
        checkpoint = (req.get("checkpoint") or "").strip() or None
        preset = (req.get("preset") or "").strip() or None
        if checkpoint is not None:
            allowed = {str(p) for p in self.checkpoint_files()} | {str(self.cfg.demo_checkpoint)}
            if checkpoint not in allowed and not self.cfg.paths_allowed():
                raise ValueError("typing checkpoint paths is disabled on a server reachable from the network")
            if not Path(checkpoint).is_file():
                hint = (" — train the demo model with `python3 run.py demo`, or pick an untrained preset to try "
                        "the page" if Path(checkpoint) == Path(self.cfg.demo_checkpoint) else "")
                raise FileNotFoundError(f"checkpoint not found: {checkpoint}{hint}")
        elif preset is None:
            raise ValueError("pick a model: a checkpoint or a preset")
        device = str(req.get("device") or "auto")
        precision = str(req.get("precision") or "float32")
        with self.lock:
            if any(j.state in ("loading", "running") for j in self.jobs.values()):
                raise RuntimeError("a tracking job is already running: cancel it or wait for it to finish")
            jid = uuid.uuid4().hex[:12]
            out_dir = self.workdir / "results" / jid
            out_dir.mkdir(parents=True)
            job = Job(jid, source, start, boxes, out_dir)
            self.jobs[jid] = job
        threading.Thread(target=self._run, args=(job, checkpoint, preset, device, precision), daemon=True,
                         name=f"lorat-app-job-{jid}").start()
        return job

    def _run(self, job: Job, checkpoint: str | None, preset: str | None, device: str, precision: str) -> None:
        try:
            tracker, job.model = self.tracker_for(checkpoint, preset, device, precision)
            job.runtime = f"{tracker.device.type}, {tracker.cfg.dtype}"
            run_job(job, tracker, open_source(job.source.path))
        except Exception as e:  # shown in the page
            job.error = str(e).replace(str(self.workdir), "<workdir>")
            job.state = "error"

    def close(self) -> None:
        """Cancel running jobs and delete the working folder if it is a temporary one."""
        for job in list(self.jobs.values()):
            job.cancel.set()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


# ============================================================================ HTTP
def _secure_name(name: str, fallback: str) -> str:
    from werkzeug.utils import secure_filename

    return secure_filename(Path(name).name) or fallback


def create_app(state: AppState):
    """The Flask application serving the page and the API of the module docstring."""
    from flask import Flask, abort, jsonify, request, send_file, send_from_directory

    app = Flask("lorat.app", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = state.cfg.max_upload_mb * 1024 * 1024

    def fail(message: str, status: int = 400):
        return jsonify({"error": message}), status

    @app.errorhandler(413)
    def too_large(_e):
        return fail(f"upload larger than {state.cfg.max_upload_mb} MB (start with --max-upload-mb)", 413)

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name: str):
        return send_from_directory(STATIC, name)

    @app.get("/api/info")
    def info():
        return jsonify(state.info())

    @app.post("/api/sources")
    def add_source():
        try:
            if request.is_json:
                if not state.cfg.paths_allowed():
                    return fail("opening server paths is disabled on a server reachable from the network")
                path = Path(str((request.get_json() or {}).get("path", "")).strip()).expanduser()
                if not str(path) or not path.exists():
                    return fail(f"not found on this machine: {path}")
                return jsonify(state.add_source(path, str(path)).public())
            if "file" in request.files:
                f = request.files["file"]
                name = _secure_name(f.filename or "", "upload.mp4")
                if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    return fail(f"{f.filename} is a single image: upload a video, or the folder of frames")
                dest = state.upload_dir() / name
                f.save(dest)
                return jsonify(state.add_source(dest, f.filename or name).public())
            files = request.files.getlist("files")
            if files:
                folder = _secure_name(request.form.get("folder", ""), "frames")
                dest = state.upload_dir() / folder
                dest.mkdir()
                kept = 0
                for f in files:
                    name = _secure_name(f.filename or "", "")
                    if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                        f.save(dest / name)
                        kept += 1
                if not kept:
                    return fail(f"folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)})")
                return jsonify(state.add_source(dest, f"folder {folder}").public())
            return fail("send a video file, an image folder or a path")
        except (ValueError, FileNotFoundError) as e:
            return fail(str(e))

    @app.get("/api/sources/<sid>/frames/<int:index>")
    def frame(sid: str, index: int):
        source = state.sources.get(sid)
        if source is None:
            abort(404)
        try:
            rgb = read_frame(source, index)
        except (ValueError, IndexError) as e:
            return fail(str(e))
        # PNG: lossless, so the box is drawn on exactly the pixels tracking sees (level 1: fast to encode)
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        return app.response_class(png.tobytes(), mimetype="image/png", headers={"Cache-Control": "no-store"})

    @app.post("/api/jobs")
    def start_job():
        try:
            return jsonify(state.start_job(request.get_json(silent=True) or {}).public())
        except (ValueError, FileNotFoundError) as e:
            return fail(str(e))
        except RuntimeError as e:
            return fail(str(e), 409)

    @app.get("/api/jobs/<jid>")
    def job_status(jid: str):
        job = state.jobs.get(jid)
        return jsonify(job.public()) if job else fail(f"no job {jid}", 404)

    @app.post("/api/jobs/<jid>/cancel")
    def cancel(jid: str):
        job = state.jobs.get(jid)
        if job is None:
            return fail(f"no job {jid}", 404)
        job.cancel.set()
        return jsonify(job.public())

    @app.get("/api/jobs/<jid>/files/<name>")
    def job_file(jid: str, name: str):
        job = state.jobs.get(jid)
        if job is None or name not in job.files.values():  # only the job's own files, never a path
            abort(404)
        mimetype = {".webm": "video/webm", ".mp4": "video/mp4", ".txt": "text/plain"}.get(Path(name).suffix)
        return send_file(job.out_dir / name, mimetype=mimetype, conditional=True,
                         as_attachment=request.args.get("download") == "1", download_name=name)

    return app


class AppServer:
    """The app on Werkzeug's threaded server in a background thread; ``stop()`` (or ``with``) shuts it down."""

    def __init__(self, cfg: AppConfig) -> None:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class QuietHandler(WSGIRequestHandler):
            def log_request(self, *args, **kwargs) -> None:  # no line per poll; errors are still logged
                pass

        self.cfg = cfg
        self.state = AppState(cfg)
        self.app = create_app(self.state)
        self._server = make_server(cfg.host, cfg.port, self.app, threaded=True, request_handler=QuietHandler)
        self.port = self._server.socket.getsockname()[1]
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        self.url = f"http://{host}:{self.port}/"
        self._thread: threading.Thread | None = None

    def start(self) -> AppServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="lorat-app-server")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C."""
        try:
            self._server.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, cancel jobs and remove the temporary working folder."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
        self.state.close()

    def __enter__(self) -> AppServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(cfg: AppConfig | None = None) -> AppServer:
    """An :class:`AppServer` (not yet started; use it as a context manager or call ``start()``)."""
    return AppServer(cfg or AppConfig())


# ============================================================================ CLI: lorat app
def add_app_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``lorat app``."""
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the page)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="PATH",
                   help="checkpoint file or folder of checkpoints to offer in the page (repeatable)")
    p.add_argument("--demo-checkpoint", default=str(DEMO_CHECKPOINT), metavar="PATH",
                   help=f"the demo's trained model (default {DEMO_CHECKPOINT}, written by `python3 run.py demo`)")
    p.add_argument("--workdir", metavar="DIR",
                   help="keep uploads and results here (default: a temporary folder deleted on exit)")
    p.add_argument("--allow-paths", action=argparse.BooleanOptionalAction, default=None,
                   help="let the page open server paths (default: only when listening on localhost)")
    p.add_argument("--max-upload-mb", type=int, default=4096, help="largest upload accepted (default 4096)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")


def run_app(args: argparse.Namespace) -> int:
    """Run ``lorat app`` until Ctrl-C."""
    try:
        import flask  # noqa: F401
    except ImportError:
        raise ValueError("lorat app needs Flask: pip install 'lorat[app]'") from None
    cfg = AppConfig(host=args.host, port=args.port, workdir=Path(args.workdir) if args.workdir else None,
                    checkpoints=[Path(c) for c in args.checkpoint], demo_checkpoint=Path(args.demo_checkpoint),
                    allow_paths=args.allow_paths, max_upload_mb=args.max_upload_mb)
    for c in cfg.checkpoints:
        if not c.exists():
            raise FileNotFoundError(f"--checkpoint not found: {c}")
    server = serve(cfg)
    if not cfg.loopback:
        print(f"lorat app: warning: listening on {cfg.host}: anyone who can reach this machine can use the page")
    print(f"lorat app: open {server.url}  (Ctrl-C stops; uploads stay in {server.state.workdir})", flush=True)
    if not Path(cfg.demo_checkpoint).is_file():
        print(f"lorat app: no demo model at {cfg.demo_checkpoint}; `python3 run.py demo` trains it "
              "(meanwhile the page offers untrained presets)")
    if args.open:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0

