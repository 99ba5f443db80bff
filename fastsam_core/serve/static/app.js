// fastsam serve page: upload an image, draw everything-mode masks, send point/box/text prompts.
// Plain JS, no build step, nothing from the network. Masks arrive as COCO compressed RLE.
"use strict";

const $ = (id) => document.getElementById(id);
const PROMPT_RGBA = [30, 144, 255, 170];
const DRAG_PX = 5; // a press that moves further (screen px) draws a box instead of a point

const state = {
  imageId: null, width: 0, height: 0, image: null, masks: [],
  points: [], labels: [], boxes: [], text: "", rows: [], seq: 0,
};
const layers = { everything: document.createElement("canvas"), prompt: document.createElement("canvas") };
let press = null; // {x, y, sx, sy, button, shift, dragging, cx, cy} while a mouse button is down
window.fastsam = { state, layers, pending: 0, lastPrompt: null };

// ---------------------------------------------------------------- RLE (COCO compressed counts)
function rleCounts(text) {
  const counts = [];
  let p = 0;
  while (p < text.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      x += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      p += 1; k += 1;
      if (!more && (c & 0x10)) x -= 2 ** (5 * k); // sign-extend the last group
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

function paintRle(pixels, rle, width, height, rgba) {
  // Runs go down each column (column-major), background first.
  const counts = rleCounts(rle.counts);
  let pos = 0;
  for (let i = 0; i < counts.length; i++) {
    if (i % 2 === 1) {
      for (let p = pos; p < pos + counts[i]; p++) {
        const at = ((p % height) * width + Math.floor(p / height)) * 4;
        pixels[at] = rgba[0]; pixels[at + 1] = rgba[1]; pixels[at + 2] = rgba[2]; pixels[at + 3] = rgba[3];
      }
    }
    pos += counts[i];
  }
}

function colour(i) { // distinct hues by the golden ratio
  const h = (0.13 + i * 0.618033988749895) % 1, s = i % 2 ? 0.75 : 0.55, v = 0.95;
  const f = (n) => { const k = (n + h * 6) % 6; return v - v * s * Math.max(0, Math.min(k, 4 - k, 1)); };
  return [f(5), f(3), f(1)].map((c) => Math.round(c * 255));
}

function fillLayer(canvas, rows, rgbaOf) {
  canvas.width = state.width; canvas.height = state.height;
  const ctx = canvas.getContext("2d");
  const data = ctx.createImageData(state.width, state.height);
  rows.forEach((row, i) => paintRle(data.data, row.segmentation, state.width, state.height, rgbaOf(i)));
  ctx.putImageData(data, 0, 0);
}

// ---------------------------------------------------------------- drawing
function render() {
  const view = $("view"), ctx = view.getContext("2d");
  if (!state.image) return;
  ctx.drawImage(state.image, 0, 0);
  if ($("show-everything").checked) ctx.drawImage(layers.everything, 0, 0);
  if ($("show-prompt").checked) ctx.drawImage(layers.prompt, 0, 0);
  const unit = Math.max(2, Math.round(Math.max(state.width, state.height) / 300));
  ctx.lineWidth = unit;
  ctx.strokeStyle = "#ffd400";
  for (const [x0, y0, x1, y1] of state.boxes) ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  if (press && press.dragging) {
    ctx.setLineDash([4 * unit, 2 * unit]);
    ctx.strokeRect(press.x, press.y, press.cx - press.x, press.cy - press.y);
    ctx.setLineDash([]);
  }
  state.points.forEach(([x, y], i) => {
    ctx.beginPath();
    ctx.arc(x + 0.5, y + 0.5, 2 * unit, 0, 2 * Math.PI);
    ctx.fillStyle = state.labels[i] ? "#22dd55" : "#ff3344";
    ctx.fill();
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.stroke();
    ctx.lineWidth = unit; ctx.strokeStyle = "#ffd400";
  });
}

function showError(message) { $("error").textContent = message; $("error").hidden = !message; }
function status(message) { $("status").textContent = message; }

async function api(path, options) {
  window.fastsam.pending += 1;
  try {
    const response = await fetch(path, options);
    const type = response.headers.get("Content-Type") || "";
    const body = type.startsWith("application/json") ? await response.json() : await response.blob();
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    return body;
  } finally {
    window.fastsam.pending -= 1;
  }
}

// ---------------------------------------------------------------- upload
async function upload(file) {
  if (!file) return;
  showError("");
  status(`segmenting ${file.name} ...`);
  try {
    const doc = await api("/api/images", {
      method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    const image = new Image();
    image.src = `/api/images/${doc.image_id}/image.png`;
    await image.decode();
    Object.assign(state, {
      imageId: doc.image_id, width: doc.width, height: doc.height, image, masks: doc.masks,
      points: [], labels: [], boxes: [], text: "", rows: [],
    });
    $("text").value = "";
    $("view").width = doc.width; $("view").height = doc.height;
    // Largest first, so the smallest mask ends on top (as the PNG overlay).
    const order = doc.masks.map((m, i) => i).sort((a, b) => doc.masks[b].area - doc.masks[a].area);
    fillLayer(layers.everything, order.map((i) => doc.masks[i]), (k) => [...colour(order[k]), 110]);
    fillLayer(layers.prompt, [], () => PROMPT_RGBA);
    $("download-png").disabled = $("download-json").disabled = false;
    render();
    status(`${file.name}: ${doc.width}x${doc.height}, ${doc.masks.length} masks ` +
      `(everything mode ${(doc.seconds * 1000).toFixed(0)} ms)`);
  } catch (err) {
    showError(`Upload failed: ${err.message}`);
    status(state.imageId ? "kept the previous image" : "No image yet.");
  }
}

// ---------------------------------------------------------------- prompts
function promptBody() {
  const body = { options: { point_mode: $("point-mode").value } };
  if (state.points.length) { body.points = state.points; body.labels = state.labels; }
  if (state.boxes.length) body.boxes = state.boxes;
  if (state.text) body.texts = [state.text];
  return body;
}
function hasPrompt() { return state.points.length || state.boxes.length || state.text; }

async function runPrompt() {
  if (!state.imageId) return;
  const seq = ++state.seq;
  if (!hasPrompt()) {
    state.rows = []; fillLayer(layers.prompt, [], () => PROMPT_RGBA); render(); return;
  }
  const body = promptBody(), start = performance.now();
  try {
    const answer = await api(`/api/images/${state.imageId}/prompt`, {
      method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
    });
    if (seq !== state.seq) return; // a newer prompt is on its way
    showError("");
    state.rows = answer.rows;
    fillLayer(layers.prompt, answer.rows, () => PROMPT_RGBA);
    window.fastsam.lastPrompt = { body, rows: answer.rows };
    render();
    status(`${answer.rows.length} mask(s); prompt ${(performance.now() - start).toFixed(0)} ms ` +
      `(server ${(answer.seconds * 1000).toFixed(1)} ms)`);
  } catch (err) {
    if (seq === state.seq) showError(err.message);
  }
}

function imagePoint(event) {
  const rect = $("view").getBoundingClientRect();
  const x = Math.floor((event.clientX - rect.left) * state.width / rect.width);
  const y = Math.floor((event.clientY - rect.top) * state.height / rect.height);
  return [Math.min(Math.max(x, 0), state.width - 1), Math.min(Math.max(y, 0), state.height - 1)];
}

function onDown(event) {
  if (!state.imageId || (event.button !== 0 && event.button !== 2)) return;
  const [x, y] = imagePoint(event);
  press = { x, y, cx: x, cy: y, sx: event.clientX, sy: event.clientY, button: event.button,
    shift: event.shiftKey, dragging: false };
}
function onMove(event) {
  if (!press) return;
  [press.cx, press.cy] = imagePoint(event);
  if (Math.hypot(event.clientX - press.sx, event.clientY - press.sy) > DRAG_PX && press.button === 0) {
    press.dragging = true;
  }
  if (press.dragging) render();
}
function onUp(event) {
  if (!press) return;
  const p = press; press = null;
  if (p.dragging) {
    const [x, y] = imagePoint(event);
    state.boxes.push([Math.min(p.x, x), Math.min(p.y, y), Math.max(p.x, x), Math.max(p.y, y)]);
  } else {
    state.points.push([p.x, p.y]);
    state.labels.push(p.button === 2 || p.shift ? 0 : 1);
  }
  render();
  runPrompt();
}

// ---------------------------------------------------------------- downloads
async function download(kind) {
  if (!state.imageId) return;
  const path = `/api/images/${state.imageId}/${kind === "png" ? "overlay.png" : "results.json"}`;
  const options = hasPrompt()
    ? { method: "POST", body: JSON.stringify(promptBody()), headers: { "Content-Type": "application/json" } }
    : {};
  try {
    let body = await api(path, options);
    if (!(body instanceof Blob)) body = new Blob([JSON.stringify(body)], { type: "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(body);
    link.download = `fastsam-${state.imageId}.${kind}`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (err) {
    showError(`Download failed: ${err.message}`);
  }
}

// ---------------------------------------------------------------- wiring
$("file").addEventListener("change", (e) => { upload(e.target.files[0]); e.target.value = ""; });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over"); upload(e.dataTransfer.files[0]);
});
const view = $("view");
view.addEventListener("mousedown", onDown);
window.addEventListener("mousemove", onMove);
window.addEventListener("mouseup", onUp);
view.addEventListener("contextmenu", (e) => e.preventDefault());
$("text-form").addEventListener("submit", (e) => {
  e.preventDefault(); state.text = $("text").value.trim(); runPrompt();
});
$("point-mode").addEventListener("change", runPrompt);
$("clear").addEventListener("click", () => {
  Object.assign(state, { points: [], labels: [], boxes: [], text: "" });
  $("text").value = ""; showError(""); runPrompt();
});
$("show-everything").addEventListener("change", render);
$("show-prompt").addEventListener("change", render);
$("download-png").addEventListener("click", () => download("png"));
$("download-json").addEventListener("click", () => download("json"));
