// vaekit explorer: sliders over the latent code, decoded live through the JSON API.
// No framework and no requests beyond this server. The current code `z` is the one state;
// every control either reads it or replaces it through setZ().
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const SLIDER_MAX = 4; // sliders span +-4 prior standard deviations

let info = null;     // GET /api/info
let map = null;      // GET /api/map
let z = [];          // the current latent code (D numbers)
let mapLayer = null; // the test-set points, drawn once per projection
let frame = null;    // that projection's bounds and pixel mapping
let loaded = null;   // the test image last loaded (Encode, a map click): t-SNE's marker
let tsneAt = null;   // test image index -> its row in map.tsne.points
let gridCodes = [];  // the codes behind the traversal grid's cells
let decoding = false, again = false, timer = null;

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  };
  const r = await fetch(path, opts);
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

function say(msg, error = false) {
  $("status").textContent = msg;
  $("status").className = error ? "error" : "";
}

function fmt(v) { return (v >= 0 ? "+" : "") + v.toFixed(2); }

// ---- decoding: debounced, at most one request in flight, always ending on the latest z
function scheduleDecode() {
  clearTimeout(timer);
  timer = setTimeout(decodeNow, 8);
}

async function decodeNow() {
  if (decoding) { again = true; return; }
  decoding = true; again = false;
  const t0 = performance.now();
  try {
    const r = await api("/api/decode", {z: [z]});
    $("decoded").src = r.images[0];
    $("latency").textContent = `${(performance.now() - t0).toFixed(0)} ms`;
  } catch (e) {
    say(e.message, true);
  } finally {
    decoding = false;
    if (again) decodeNow();
  }
}

// ---- the code: sliders show it, everything else sets it
function setZ(values) {
  z = values.slice();
  for (const input of document.querySelectorAll("#sliders input")) {
    const d = +input.dataset.dim;
    input.value = Math.max(-SLIDER_MAX, Math.min(SLIDER_MAX, z[d]));
    input.nextElementSibling.textContent = fmt(z[d]);
  }
  drawMap();
  scheduleDecode();
}

function buildSliders() {
  const box = $("sliders");
  for (const d of info.order) {
    const row = document.createElement("div");
    row.className = "slider";
    row.innerHTML = `<label for="z${d}">z${d} <span class="kl">${info.kl_per_dim ? info.kl_per_dim[d].toFixed(2) : ""}</span></label>` +
      `<input id="z${d}" type="range" min="${-SLIDER_MAX}" max="${SLIDER_MAX}" step="0.01" value="0" data-dim="${d}">` +
      `<output>+0.00</output>`;
    const input = row.querySelector("input");
    input.addEventListener("input", () => {
      z[d] = +input.value;
      input.nextElementSibling.textContent = fmt(z[d]);
      drawMap();
      scheduleDecode();
    });
    box.appendChild(row);
  }
  for (const sel of [$("dim-a"), $("dim-b")]) {
    sel.innerHTML = info.order.map((d) => `<option value="${d}">z${d}</option>`).join("");
  }
  $("dim-b").selectedIndex = Math.min(1, info.order.length - 1);
}

// ---- encode a test image or an upload
function showEncoded(r, caption) {
  $("encoded").hidden = false;
  $("input-img").src = r.input;
  $("recon-img").src = r.image;
  const sc = r.scores;
  $("input-caption").textContent = caption + (sc ? ` · -ELBO ${sc.nll.toFixed(0)} bits ` +
    `(${sc.bits_per_dim.toFixed(3)} bits/dim), PNG ${sc.png_bits.toFixed(0)} bits, ` +
    `complexity score ${sc.complexity.toFixed(0)}` : "");
  setZ(r.mu);
}

async function encodeIndex(i) {
  const r = await api("/api/encode", {index: i});
  loaded = i;
  showEncoded(r, `test #${i}` + (r.label !== undefined ? ` (label ${r.label})` : ""));
  say(`encoded test image ${i}`);
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error("could not read the file"));
    reader.readAsDataURL(file);
  });
}

// ---- map of the test set's latent means
// PCA and the top-KL dims project any code, so the ring follows z; t-SNE places only the test
// images it was given, so there the ring marks the test image last loaded, if it is on the map.
function project(code) {
  const method = $("map-method").value;
  if (method === "tsne") return tsneAt.has(loaded) ? map.tsne.points[tsneAt.get(loaded)] : null;
  if (method === "kl") return [code[map.kl_dims[0]], code[map.kl_dims[1]]];
  const c = map.pca_components, m = map.pca_center;
  let a = 0, b = 0;
  for (let d = 0; d < code.length; d++) {
    a += (code[d] - m[d]) * c[0][d];
    b += (code[d] - m[d]) * (c[1] ? c[1][d] : 0);
  }
  return [a, b];
}

function mapFrame() { // bounds of the current projection, computed once per projection
  if (!frame) frame = computeFrame();
  return frame;
}

function points() { // the current projection's points, one per test image it shows
  const method = $("map-method").value;
  return method === "tsne" ? map.tsne.points : map[method];
}

function testIndex(k) { // the test image behind the current projection's point k
  return $("map-method").value === "tsne" ? map.tsne.index[k] : k;
}

function caption() { // which projection is shown, in words
  const n = info.num_test, pct = (v) => `${(100 * v).toFixed(0)}%`;
  const method = $("map-method").value;
  if (method === "tsne") {
    const t = map.tsne, shown = t.index.length < t.of
      ? `${t.index.length} of ${t.of} test images (a fixed random subset)` : `all ${t.of} test images`;
    return `t-SNE of ${shown}, perplexity ${+t.perplexity.toFixed(1)}: neighbours on the map ` +
      "have near codes; distances between clusters mean little. The ring marks the test image " +
      "last loaded (other codes have no place on a t-SNE map).";
  }
  if (method === "kl") {
    const [i, j] = map.kl_dims;
    return `latent dims z${i} (across) and z${j} (up) of all ${n} test images: the two ` +
      (info.kl_per_dim ? "with the largest average KL" : "whose codes vary most") +
      "; the ring is the current code.";
  }
  const [a, b] = map.pca_variance;
  return `PCA of all ${n} latent means: the two directions of largest variance ` +
    `(${pct(a)} and ${pct(b)} of it); the ring is the current code.`;
}

function computeFrame() {
  const pts = points();
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const [x, y] of pts) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  const W = $("map").width, H = $("map").height, pad = 10; // each axis fills the canvas
  const sx = (W - 2 * pad) / Math.max(x1 - x0, 1e-6), sy = (H - 2 * pad) / Math.max(y1 - y0, 1e-6);
  return {pts, toPx: ([x, y]) => [pad + (x - x0) * sx, H - pad - (y - y0) * sy]};
}

function buildMapLayer() {
  const canvas = $("map");
  mapLayer = document.createElement("canvas");
  mapLayer.width = canvas.width; mapLayer.height = canvas.height;
  const ctx = mapLayer.getContext("2d");
  const {pts, toPx} = mapFrame();
  ctx.globalAlpha = 0.55;
  pts.forEach((p, i) => {
    const [px, py] = toPx(p);
    ctx.fillStyle = map.labels ? PALETTE[map.labels[testIndex(i)] % PALETTE.length] : "#556";
    ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
  });
}

function drawMap() {
  if (!map || !z.length) return;
  if (!mapLayer) buildMapLayer();
  const ctx = $("map").getContext("2d");
  ctx.clearRect(0, 0, $("map").width, $("map").height);
  ctx.drawImage(mapLayer, 0, 0);
  const at = project(z);
  if (!at) return;
  const [px, py] = mapFrame().toPx(at);
  ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.arc(px, py, 7, 0, 2 * Math.PI); ctx.stroke();
}

function buildLegend() {
  if (!map.labels) return;
  const classes = [...new Set(map.labels)].sort((a, b) => a - b);
  for (const c of classes) { // built node by node: the page's CSP forbids inline style attributes
    const item = document.createElement("span"), dot = document.createElement("i");
    dot.style.background = PALETTE[c % PALETTE.length];
    item.append(dot, String(c));
    $("legend").appendChild(item);
  }
}

// ---- interpolation strip and traversal grid: codes built here, decoded in one request
async function interpolate() {
  const a = +$("interp-a").value, b = +$("interp-b").value, n = +$("interp-steps").value;
  const [ra, rb] = [await api("/api/encode", {index: a}), await api("/api/encode", {index: b})];
  const codes = [];
  for (let k = 0; k < n; k++) {
    const t = n === 1 ? 0 : k / (n - 1);
    codes.push(ra.mu.map((v, d) => (1 - t) * v + t * rb.mu[d]));
  }
  const r = await api("/api/decode", {z: codes});
  $("strip").innerHTML = "";
  r.images.forEach((src, k) => {
    const img = new Image();
    img.src = src; img.title = `t = ${(k / Math.max(n - 1, 1)).toFixed(2)} (click to load)`;
    img.addEventListener("click", () => setZ(codes[k]));
    $("strip").appendChild(img);
  });
  say(`interpolated test images ${a} -> ${b}`);
}

async function traverse() {
  const i = +$("dim-a").value, j = +$("dim-b").value;
  const span = +$("span").value, n = +$("steps").value;
  gridCodes = [];
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) {
      const code = z.slice();
      code[i] += -span + (2 * span * r) / (n - 1);
      code[j] += -span + (2 * span * c) / (n - 1);
      gridCodes.push(code);
    }
  }
  const res = await api("/api/decode", {z: gridCodes});
  const [, h, w] = info.image_shape, scale = Math.max(1, Math.floor(56 / Math.max(h, w)));
  const canvas = $("grid");
  canvas.width = n * w * scale; canvas.height = n * h * scale;
  canvas.dataset.n = n;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  await Promise.all(res.images.map((src, k) => new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      ctx.drawImage(img, (k % n) * w * scale, Math.floor(k / n) * h * scale, w * scale, h * scale);
      resolve();
    };
    img.src = src;
  })));
  say(`traversed z${i} (rows) and z${j} (columns), +-${span}`);
}

// ---- wiring
function guard(fn) {
  return async (...args) => {
    try { await fn(...args); } catch (e) { say(e.message, true); }
  };
}

async function main() {
  [info, map] = await Promise.all([api("/api/info"), api("/api/map")]);
  const [c, h, w] = info.image_shape;
  const groups = info.kl_per_group && info.groups > 1
    ? ` · KL per group ${info.kl_per_group.map((k) => k.toFixed(1)).join(" / ")} nats` : "";
  $("meta").textContent = `${info.dataset} · ${info.family} · ${info.latent_dim} latent dims · ` +
    `${h}x${w}x${c} images · ${info.likelihood} likelihood · ${info.num_test} test images` +
    groups + (info.note ? ` · ${info.note}` : "");
  $("index").max = info.num_test - 1;
  buildSliders();
  buildLegend();
  z = new Array(info.latent_dim).fill(0);
  $("random").addEventListener("click", guard(async () => {
    const r = await api("/api/sample", {n: 1, temperature: +$("temperature").value});
    $("decoded").src = r.images[0];
    setZ(r.z[0]);
    say("sampled z ~ N(0, T² I)");
  }));
  $("temperature").addEventListener("input", () => {
    $("temperature-out").textContent = (+$("temperature").value).toFixed(2);
  });
  $("reset").addEventListener("click", () => { setZ(new Array(info.latent_dim).fill(0)); say("z = 0"); });
  $("encode").addEventListener("click", guard(() => encodeIndex(+$("index").value)));
  $("upload").addEventListener("change", guard(async () => {
    const file = $("upload").files[0];
    if (!file) return;
    const r = await api("/api/encode", {image: await readFile(file), invert: $("invert").checked});
    loaded = null;
    showEncoded(r, file.name);
    say(`encoded ${file.name}`);
  }));
  if (map.tsne) { // offered first, and shown, when the server computed it
    tsneAt = new Map(map.tsne.index.map((i, k) => [i, k]));
    const option = new Option("t-SNE of the latent means", "tsne");
    $("map-method").prepend(option);
    $("map-method").value = "tsne";
  }
  $("map-caption").textContent = caption();
  $("map-method").addEventListener("change", () => {
    mapLayer = frame = null;
    $("map-caption").textContent = caption();
    drawMap();
  });
  $("map").addEventListener("click", guard(async (ev) => {
    const rect = $("map").getBoundingClientRect();
    const sx = $("map").width / rect.width;
    const [mx, my] = [(ev.clientX - rect.left) * sx, (ev.clientY - rect.top) * sx];
    const {pts, toPx} = mapFrame();
    let best = -1, bestD = 64; // within 8 px
    pts.forEach((p, k) => {
      const [px, py] = toPx(p), dd = (px - mx) ** 2 + (py - my) ** 2;
      if (dd < bestD) { best = k; bestD = dd; }
    });
    if (best >= 0) { $("index").value = testIndex(best); await encodeIndex(testIndex(best)); }
  }));
  $("interp-go").addEventListener("click", guard(interpolate));
  $("traverse-go").addEventListener("click", guard(traverse));
  $("grid").addEventListener("click", (ev) => {
    const canvas = $("grid"), n = +canvas.dataset.n, rect = canvas.getBoundingClientRect();
    if (!n) return;
    const col = Math.floor(((ev.clientX - rect.left) / rect.width) * n);
    const row = Math.floor(((ev.clientY - rect.top) / rect.height) * n);
    if (gridCodes[row * n + col]) setZ(gridCodes[row * n + col]);
  });
  setZ(z);
  document.body.dataset.ready = "1";
  say("ready");
}

main().catch((e) => say(`could not start: ${e.message}`, true));
