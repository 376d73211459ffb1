// lorat app page: plain JS, no external resources. Boxes are kept in the frame's own pixels (x, y, w, h).
"use strict";
const COLORS = ["#00ff00", "#ff4040", "#40a0ff", "#ffc800", "#ff00ff", "#00ffff", "#ff8000", "#a060ff"];
const $ = (id) => document.getElementById(id);
const state = { info: null, source: null, frame: 0, image: null, boxes: [], drag: null, job: null, timer: null };

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(url, options = {}) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

// ------------------------------------------------------------------ models and runtime
async function loadInfo() {
  const info = await api("/api/info");
  state.info = info;
  const models = $("model-select");
  models.innerHTML = "";
  info.models.forEach((m, i) => models.add(new Option(m.label, String(i))));
  info.presets.forEach((p) => $("preset-select").add(new Option(p, p)));
  info.devices.forEach((d) => $("device-select").add(new Option(d + (d === info.device ? " (fastest here)" : ""), d)));
  $("device-select").value = info.device;
  info.precisions.forEach((p) => $("precision-select").add(new Option(p + (p === info.precision ? " (fastest here)" : ""), p)));
  $("precision-select").value = info.precision;
  $("demo-note").textContent = info.demo.exists
    ? "The demo's trained model is selected. Any other checkpoint: give its path below."
    : `No demo model at ${info.demo.path}: run \`${info.demo.how}\` to train it (minutes on a CPU), ` +
      "or pass --checkpoint to lorat app. Meanwhile an untrained preset lets you try the page.";
  $("source-path").disabled = $("open-path").disabled = $("checkpoint-path").disabled = !info.paths_allowed;
}

// ------------------------------------------------------------------ sources
async function setSource(request) {
  showError("");
  $("source-info").textContent = "opening…";
  try {
    const source = await api("/api/sources", request);
    state.source = source;
    state.boxes = [];
    const last = source.num_frames ? source.num_frames - 1 : 0;
    $("frame-slider").max = $("frame-number").max = String(last);
    $("frame-count").textContent = `of ${last}`;
    $("source-info").textContent = `${source.name}: ${source.width}x${source.height}, ` +
      `${source.num_frames ?? "?"} frames` + (source.fps ? `, ${source.fps.toFixed(1)} fps` : "");
    $("frame-panel").hidden = $("model-panel").hidden = false;
    $("result-panel").hidden = true;
    await showFrame(0);
  } catch (e) {
    $("source-info").textContent = "";
    showError(e.message);
  }
}

function uploadVideo(file, name) {
  const form = new FormData();
  form.append("file", file, name || file.name);
  return setSource({ method: "POST", body: form });
}

$("video-file").addEventListener("change", (e) => { if (e.target.files.length) uploadVideo(e.target.files[0]); e.target.value = ""; });
$("folder-files").addEventListener("change", (e) => {
  const files = Array.from(e.target.files);
  if (!files.length) return;
  const form = new FormData();
  form.append("folder", (files[0].webkitRelativePath || "frames/x").split("/")[0]);
  files.forEach((f) => form.append("files", f, f.name));
  setSource({ method: "POST", body: form });
  e.target.value = "";
});
$("open-path").addEventListener("click", () => setSource({
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ path: $("source-path").value }),
}));

// Webcam: record a clip in the browser (MediaRecorder, WebM), then upload it like any video.
let recorder = null;
$("webcam-button").addEventListener("click", async () => {
  if (recorder) { recorder.stop(); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    const preview = $("webcam-preview");
    preview.srcObject = stream; preview.hidden = false; preview.play();
    const chunks = [];
    recorder = new MediaRecorder(stream, { mimeType: "video/webm" });
    recorder.ondataavailable = (ev) => chunks.push(ev.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      preview.hidden = true; recorder = null;
      $("webcam-button").textContent = "Record from webcam";
      uploadVideo(new Blob(chunks, { type: "video/webm" }), "webcam.webm");
    };
    recorder.start();
    $("webcam-button").textContent = "Stop recording";
  } catch (e) {
    showError(`webcam: ${e.message}`);
  }
});

// ------------------------------------------------------------------ frame and boxes
function showFrame(index) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      state.image = img; state.frame = index;
      const canvas = $("frame-canvas");
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
      $("frame-slider").value = $("frame-number").value = String(index);
      draw();
      canvas.dataset.frame = String(index);
      resolve();
    };
    img.onerror = () => { showError(`cannot show frame ${index}`); resolve(); };
    img.src = `/api/sources/${state.source.id}/frames/${index}`;
  });
}
$("frame-slider").addEventListener("change", (e) => showFrame(Number(e.target.value)));
$("frame-slider").addEventListener("input", (e) => { $("frame-number").value = e.target.value; });
$("frame-number").addEventListener("change", (e) => showFrame(Math.max(0, Math.min(Number(e.target.value), Number($("frame-slider").max)))));

function draw() {
  const canvas = $("frame-canvas"), ctx = canvas.getContext("2d");
  if (state.image) ctx.drawImage(state.image, 0, 0);
  const boxes = state.drag ? state.boxes.concat([state.drag]) : state.boxes;
  ctx.lineWidth = Math.max(1, Math.round(Math.min(canvas.width, canvas.height) / 200));
  boxes.forEach((b, i) => { ctx.strokeStyle = COLORS[i % COLORS.length]; ctx.strokeRect(b.x, b.y, b.w, b.h); });
  const list = $("targets");
  list.innerHTML = "";
  state.boxes.forEach((b, i) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="swatch" style="background:${COLORS[i % COLORS.length]}"></span>` +
      `target ${i + 1}: ${[b.x, b.y, b.w, b.h].map((v) => v.toFixed(1)).join(", ")} `;
    const remove = document.createElement("button");
    remove.textContent = "remove"; remove.type = "button";
    remove.onclick = () => { state.boxes.splice(i, 1); draw(); };
    li.appendChild(remove);
    list.appendChild(li);
  });
}

function toFrame(ev) {  // mouse position -> frame pixels (the canvas is scaled by CSS)
  const canvas = $("frame-canvas"), r = canvas.getBoundingClientRect();
  return { x: (ev.clientX - r.left) * canvas.width / r.width, y: (ev.clientY - r.top) * canvas.height / r.height };
}
$("frame-canvas").addEventListener("mousedown", (ev) => {
  if (!state.image) return;
  const p = toFrame(ev);
  state.drag = { x0: p.x, y0: p.y, x: p.x, y: p.y, w: 0, h: 0 };
  ev.preventDefault();
});
window.addEventListener("mousemove", (ev) => {
  if (!state.drag) return;
  const p = toFrame(ev), d = state.drag;
  d.x = Math.min(d.x0, p.x); d.y = Math.min(d.y0, p.y); d.w = Math.abs(p.x - d.x0); d.h = Math.abs(p.y - d.y0);
  draw();
});
window.addEventListener("mouseup", () => {
  if (!state.drag) return;
  const d = state.drag;
  state.drag = null;
  state.boxes.push({ x: d.x, y: d.y, w: d.w, h: d.h });  // empty or outside boxes are refused by the server
  draw();
});
$("clear-targets").addEventListener("click", () => { state.boxes = []; draw(); });

// ------------------------------------------------------------------ tracking
function modelChoice() {
  const m = state.info.models[Number($("model-select").value)] || {};
  const typed = $("checkpoint-path").value.trim();
  return { checkpoint: typed || m.checkpoint || null, preset: typed ? ($("preset-select").value || null) : m.preset || null };
}

$("start").addEventListener("click", async () => {
  showError("");
  if (!state.source) { showError("open a video first"); return; }
  const body = Object.assign({
    source: state.source.id, start_frame: state.frame,
    boxes: state.boxes.map((b) => [b.x, b.y, b.w, b.h]),
    device: $("device-select").value, precision: $("precision-select").value,
  }, modelChoice());
  try {
    const job = await api("/api/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    state.job = job;
    $("start").disabled = true; $("cancel").hidden = false; $("progress").hidden = false;
    $("progress").value = 0; $("result-panel").hidden = true;
    state.timer = setInterval(poll, 250);
    poll();
  } catch (e) {
    showError(e.message);
  }
});

$("cancel").addEventListener("click", () => { if (state.job) api(`/api/jobs/${state.job.id}/cancel`, { method: "POST" }).catch((e) => showError(e.message)); });

async function poll() {
  let job;
  try { job = await api(`/api/jobs/${state.job.id}`); } catch (e) { showError(e.message); return; }
  const total = job.total || 0;
  $("progress").max = total || 1;
  $("progress").value = total ? job.done : 0;
  const fps = job.fps ? `${job.fps.toFixed(1)} fps` : "";
  $("status").textContent = job.state === "loading" ? "loading the model…"
    : `${job.state}: ${job.done}${total ? " / " + total : ""} frames  ${fps}  ${job.model} (${job.runtime})`;
  $("status").dataset.state = job.state;
  if (["done", "cancelled", "error"].includes(job.state)) {
    clearInterval(state.timer); state.timer = null;
    $("start").disabled = false; $("cancel").hidden = true;
    if (job.state === "error") { showError(job.error); return; }
    showResult(job);
  }
}

function showResult(job) {
  const base = `/api/jobs/${job.id}/files/`;
  const video = $("result-video");
  video.src = base + encodeURIComponent(job.files.webm);
  video.play().catch(() => {});
  const list = $("downloads");
  list.innerHTML = "";
  Object.entries(job.files).forEach(([role, name]) => {
    const li = document.createElement("li"), a = document.createElement("a");
    a.href = base + encodeURIComponent(name) + "?download=1"; a.textContent = name; a.download = name;
    a.dataset.role = role;
    li.appendChild(a); list.appendChild(li);
  });
  $("result-panel").hidden = false;
}

loadInfo().catch((e) => showError(`cannot reach the lorat app server: ${e.message}`));
