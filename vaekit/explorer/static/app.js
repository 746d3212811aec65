// vaekit explorer: sliders over the latent code, decoded live through the JSON API.
// No framework and no requests beyond this server. The current code `z` is the one state;
// every control either reads it or replaces it through setZ(); the URL's hash mirrors it. A model
// with discrete codes (a VQ-VAE) has its grid of code indices `codes` instead, set by setCodes().
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const MIN_SLIDER = 3;  // sliders span at least +-3 prior standard deviations
const MAX_ABS_Z = 100; // the server refuses codes beyond this
const PICK_PX = 12;    // a click or hover this close to a point (canvas px) picks it
const DRAG_PX = 4;     // a press that moves further is a drag, not a click

let info = null;     // GET /api/info
let map = null;      // GET /api/map
let z = [];          // the current latent code (D numbers)
let codes = null;    // a model with discrete codes: the current grid of code indices (h rows of w)
let codesFrom = null; // the grid last encoded or sampled: cells that differ from it were edited
let cell = null;     // [row, column] of the grid cell being edited
let zRange = MIN_SLIDER; // the sliders' half-range: covers every test image's code
let mapLayer = null; // the test-set points, drawn once per projection, view and isolation
let frame = null;    // that projection's bounds and pixel mapping
let view = {k: 1, tx: 0, ty: 0}; // zoom and pan on top of the projection's frame
let isolated = null; // the class shown alone on the map (legend), or null for all
let cursor = -1;     // the map point the keyboard is on (a row of points()), or -1
let loaded = null;   // the test image last loaded (Encode, a map click), until z changes
let tsneAt = null;   // test image index -> its row in map.tsne.points
let gridCodes = [];  // the codes behind the traversal grid's cells
let gridBase = null; // the grid's drawing (cells and axes) without the current-cell mark
let stripCodes = []; // the codes behind the interpolation strip's images
let lastUpload = null; // {name, data} of the last uploaded file: the invert box re-encodes it
let nextEndpoint = "a"; // which interpolation endpoint the next shift-click sets
const thumbs = new Map(); // test image index -> its /api/encode answer (the hover preview)
let decoding = false, again = false, timer = null, hashTimer = null, tipTimer = null;

// A conditional model decodes given a class: the picker's, sent with every decode, sample and
// upload (a test image is encoded with its own label, which the picker then shows).
const LABELLED_CALLS = ["/api/decode", "/api/sample", "/api/encode"];

async function api(path, body) {
  if (info && info.conditional && body && LABELLED_CALLS.includes(path) &&
      body.label === undefined && body.index === undefined) {
    body = {...body, label: +$("label").value};
  }
  const opts = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  };
  const r = await fetch(path, opts);
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

// ---- messages: the status line (sticky) for everything, and errors beside their control
function say(msg, error = false) {
  $("status").textContent = error ? `Error: ${msg}` : msg;
  $("status").className = error ? "error" : "";
}

class FieldError extends Error { // bad input in one control, found before any request
  constructor(control, message) { super(message); this.control = control; }
}

function errorBox(control) { // the span beside a control that shows its error
  let box = $(`${control.id}-error`);
  if (!box) {
    box = document.createElement("span");
    box.id = `${control.id}-error`;
    box.className = "field-error";
    box.setAttribute("role", "alert");
    (control.closest("label") || control).after(box);
  }
  return box;
}

function showError(control, msg) {
  const box = errorBox(control);
  box.textContent = msg;
  box.hidden = false;
  control.setAttribute("aria-invalid", "true");
  control.setAttribute("aria-describedby", box.id);
}

function clearError(control) {
  const box = $(`${control.id}-error`);
  if (box) { box.hidden = true; box.textContent = ""; }
  control.removeAttribute("aria-invalid");
}

// A number field's value, checked against its min, max and step ("any": not only integers).
function readNumber(id) {
  const el = $(id), raw = el.value.trim(), v = Number(raw), what = el.dataset.what || id;
  const min = el.min === "" ? -Infinity : +el.min, max = el.max === "" ? Infinity : +el.max;
  const range = max === Infinity ? `at least ${min}` : `between ${min} and ${max}`;
  let why = null;
  if (el.validity.badInput || (raw !== "" && !Number.isFinite(v))) why = `${what} must be a number`;
  else if (raw === "") why = `${what} is empty: enter a number ${range}`;
  else if (el.step !== "any" && !Number.isInteger(v)) why = `${what} must be a whole number, got ${raw}`;
  else if (v < min || v > max) why = `${what} must be ${range}, got ${raw}`;
  if (why) throw new FieldError(el, why);
  clearError(el);
  return v;
}

// Run an action; its error goes beside the control that caused it and to the status line.
function guard(fn, control) {
  return async (...args) => {
    try {
      await fn(...args);
      if (control) clearError($(control));
    } catch (e) {
      const at = e.control || (control && $(control));
      if (at) showError(at, e.message);
      say(e.message, true);
    }
  };
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
    const r = await api("/api/decode", codes ? {codes: [codes]} : {z: [z]});
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
function setZ(values, what) {
  z = values.map((v) => Math.max(-MAX_ABS_Z, Math.min(MAX_ABS_Z, v)));
  for (const input of document.querySelectorAll("#sliders input")) showSlider(input);
  if (what) $("z-caption").textContent = what;
  zChanged();
}

function zChanged() { // everything that shows z follows it
  drawMap();
  markCurrent();
  scheduleDecode();
  clearTimeout(hashTimer);
  hashTimer = setTimeout(writeHash, 150);
}

function edited(what) { // z moved away from the last encoding: say so wherever it is described
  loaded = null;
  $("z-caption").textContent = what;
  $("encoded-stale").hidden = $("encoded").hidden;
  say(what);
}

function showSlider(input) { // its range grows to hold a code beyond it: the thumb never pins
  const d = +input.dataset.dim, lim = Math.max(zRange, Math.ceil(Math.abs(z[d])));
  if (+input.max !== lim) { input.min = -lim; input.max = lim; }
  input.value = z[d];
  input.nextElementSibling.textContent = fmt(z[d]);
}

function klText(d) { return info.kl_per_dim ? `${info.kl_per_dim[d].toFixed(2)} nats` : ""; }

function buildSliders() {
  const box = $("sliders");
  for (const d of info.order) {
    const row = document.createElement("div");
    row.className = "slider";
    row.innerHTML = `<label for="z${d}">z${d}</label><span class="kl">${klText(d)}</span>` +
      `<input id="z${d}" type="range" min="${-zRange}" max="${zRange}" step="0.01" value="0" data-dim="${d}">` +
      "<output>+0.00</output>";
    const input = row.querySelector("input");
    input.setAttribute("aria-label", `z${d}` + (info.kl_per_dim ? `, average KL ${klText(d)}` : ""));
    input.addEventListener("input", () => {
      z[d] = +input.value;
      input.nextElementSibling.textContent = fmt(z[d]);
      edited(`edited: z${d} = ${fmt(z[d])}`);
      zChanged();
    });
    box.appendChild(row);
  }
  box.addEventListener("scroll", announceHidden);
  window.addEventListener("resize", announceHidden);
  for (const sel of [$("dim-a"), $("dim-b")]) {
    sel.innerHTML = info.order.map((d) => `<option value="${d}">z${d} ${klText(d)}</option>`).join("");
  }
  $("dim-b").selectedIndex = Math.min(1, info.order.length - 1);
}

function announceHidden() { // "36 more dims below: scroll" while the list hides some
  const box = $("sliders"), bottom = box.scrollTop + box.clientHeight;
  const below = [...box.children].filter((r) => r.offsetTop + r.offsetHeight / 2 > bottom).length;
  $("sliders-more").textContent = `${below} more dim${below === 1 ? "" : "s"} below: scroll the list`;
  $("sliders-more").hidden = below === 0;
}

// ---- encode a test image or an upload
function scoreText(sc) {
  return ` · -ELBO ${sc.nll.toFixed(0)} bits (${sc.bits_per_dim.toFixed(3)} bits/dim), ` +
    `PNG ${sc.png_bits.toFixed(0)} bits, complexity score ${sc.complexity.toFixed(0)}`;
}

function oodText(o) { // where its bits/dim falls among the test images'
  const t = o.test, at = `${o.bits_per_dim.toFixed(2)} bits/dim`;
  const range = `${t.min.toFixed(2)}–${t.max.toFixed(2)}, median ${t.median.toFixed(2)}`;
  if (o.flag) {
    return `Out of distribution: ${at} is above every one of ${t.n} test images (${range}). ` +
      "The model was not fit to images like this one; its code may mean little.";
  }
  return `${at}: above ${(100 * o.above_share).toFixed(0)}% of ${t.n} test images (${range})`;
}

function showEncoded(r, caption) {
  $("encoded").hidden = false;
  $("encoded-stale").hidden = true;
  $("input-img").src = r.input;
  $("recon-img").src = r.image;
  $("input-caption").textContent = caption + (r.scores ? scoreText(r.scores) : "");
  $("ood-note").hidden = !(r.ood && r.ood.flag);
  $("ood-note").textContent = r.ood ? oodText(r.ood) : "";
  if (r.ood && !r.ood.flag) $("input-caption").textContent += ` · ${oodText(r.ood)}`;
  if (r.codes) setCodes(r.codes, caption.split(" · ")[0] + "'s codes");
  else setZ(r.mu, caption.split(" · ")[0] + "'s code");
}

async function encodeIndex(i) {
  const r = await api("/api/encode", {index: i});
  thumbs.set(i, r);
  if (r.decoded_label !== undefined) $("label").value = r.decoded_label;
  showEncoded(r, `test #${i}` + (r.label !== undefined ? ` (label ${r.label})` : ""));
  $("upload-note").hidden = true;
  loaded = i;
  drawMap();
  writeHash();
  say(`encoded test image ${i}`);
}

// Encode the last uploaded file: invert "auto" (a new file: the server inverts an image whose
// background is the opposite of the data's), or the invert box's state (re-encoding).
async function encodeUpload(invert) {
  const {name, data} = lastUpload;
  const r = await api("/api/encode", {image: data, invert});
  $("invert").checked = r.inverted;
  const what = r.auto_inverted ? "inverted automatically" : r.inverted ? "inverted" : "as uploaded";
  showEncoded(r, `${name} · ${what}`);
  $("upload-note").hidden = !r.auto_inverted;
  $("upload-note").textContent = r.auto_inverted
    ? `${name} has a ${info.border_mean < 128 ? "light" : "dark"} background and the model's ` +
      `images a ${info.border_mean < 128 ? "dark" : "light"} one, so it was inverted before ` +
      "encoding. Untick \"invert\" to encode it as it is." : "";
  loaded = null;
  writeHash();
  say(`encoded ${name}, ${what}` + (r.ood && r.ood.flag ? ": out of distribution" : ""),
      !!(r.ood && r.ood.flag));
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`could not read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

// ---- map of the test set's latent means
// PCA and the top-KL dims project any code, so the ring follows z; t-SNE places only the test
// images it was given, so there the ring marks the test image last loaded, if it is on the map.
function method() { return $("map-method").value; }
function linear() { return method() !== "tsne"; }

function project(code) {
  if (method() === "tsne") return tsneAt.has(loaded) ? map.tsne.points[tsneAt.get(loaded)] : null;
  if (method() === "kl") return [code[map.kl_dims[0]], code[map.kl_dims[1]]];
  const c = map.pca_components, m = map.pca_center;
  let a = 0, b = 0;
  for (let d = 0; d < code.length; d++) {
    a += (code[d] - m[d]) * c[0][d];
    b += (code[d] - m[d]) * (c[1] ? c[1][d] : 0);
  }
  return [a, b];
}

// The code at a point of a linear map: the top-KL view's two dims set directly (the others
// kept), or z = mean + u c0 + v c1 on the PCA plane (the inverse of project()).
function unproject([u, v]) {
  if (method() === "kl") {
    const code = z.slice();
    code[map.kl_dims[0]] = u;
    code[map.kl_dims[1]] = v;
    return code;
  }
  const [c0, c1] = map.pca_components;
  return map.pca_center.map((m, d) => m + u * c0[d] + v * (c1 ? c1[d] : 0));
}

function mapFrame() { // bounds of the current projection and view, computed once per change
  if (!frame) frame = computeFrame();
  return frame;
}

function points() { // the current projection's points, one per test image it shows
  return method() === "tsne" ? map.tsne.points : map[method()];
}

function testIndex(k) { // the test image behind the current projection's point k
  return method() === "tsne" ? map.tsne.index[k] : k;
}

function labelOf(k) { return map.labels ? map.labels[testIndex(k)] : null; }

function caption() { // which projection is shown, in words
  const n = info.num_test, pct = (v) => `${(100 * v).toFixed(0)}%`;
  if (method() === "tsne") {
    const t = map.tsne, shown = t.index.length < t.of
      ? `${t.index.length} of ${t.of} test images (a fixed random subset)` : `all ${t.of} test images`;
    return `t-SNE of ${shown}, perplexity ${+t.perplexity.toFixed(1)}: neighbours on the map ` +
      "have near codes; distances between clusters mean little. The ring marks the test image " +
      "last loaded (other codes have no place on a t-SNE map).";
  }
  if (method() === "kl") {
    const [i, j] = map.kl_dims;
    return `latent dims z${i} (across) and z${j} (up) of all ${n} test images: the two ` +
      (info.kl_per_dim ? "with the largest average KL" : "whose codes vary most") +
      "; the ring is the current code (drag to set these two dims).";
  }
  const [a, b] = map.pca_variance;
  return `PCA of all ${n} latent means: the two directions of largest variance ` +
    `(${pct(a)} and ${pct(b)} of it); the ring is the current code (drag to set it on this plane).`;
}

function computeFrame() {
  const pts = points();
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const [x, y] of pts) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  const W = $("map").width, H = $("map").height, pad = 10; // each axis fills the canvas
  const sx = (W - 2 * pad) / Math.max(x1 - x0, 1e-6), sy = (H - 2 * pad) / Math.max(y1 - y0, 1e-6);
  const {k, tx, ty} = view;
  return {
    pts,
    toPx: ([x, y]) => [(pad + (x - x0) * sx) * k + tx, (H - pad - (y - y0) * sy) * k + ty],
    fromPx: ([px, py]) => [x0 + ((px - tx) / k - pad) / sx, y0 + (H - pad - (py - ty) / k) / sy],
  };
}

function mapChanged() { mapLayer = frame = null; drawMap(); }

function fitMap() { // the canvas's pixels match its displayed size (full width on a phone)
  const canvas = $("map"), w = Math.round(canvas.getBoundingClientRect().width);
  if (w > 0 && w !== canvas.width) {
    const f = w / canvas.width;
    view = {k: view.k, tx: view.tx * f, ty: view.ty * f};
    canvas.width = canvas.height = w;
    mapChanged();
  }
}

function shown(k) { return isolated === null || labelOf(k) === isolated; }

function buildMapLayer() {
  const canvas = $("map");
  mapLayer = document.createElement("canvas");
  mapLayer.width = canvas.width; mapLayer.height = canvas.height;
  const ctx = mapLayer.getContext("2d");
  const {pts, toPx} = mapFrame();
  pts.forEach((p, k) => {
    const [px, py] = toPx(p);
    if (px < -2 || py < -2 || px > canvas.width + 2 || py > canvas.height + 2) return;
    ctx.globalAlpha = isolated === null ? 0.55 : shown(k) ? 0.9 : 0.06;
    ctx.fillStyle = map.labels ? PALETTE[labelOf(k) % PALETTE.length] : "#556";
    ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
  });
}

function drawMap() {
  if (!map || !z.length) return;
  if (!mapLayer) buildMapLayer();
  const canvas = $("map"), ctx = canvas.getContext("2d"), {pts, toPx} = mapFrame();
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(mapLayer, 0, 0);
  ctx.font = "bold 12px system-ui, sans-serif";
  for (const which of ["a", "b"]) { // the interpolation endpoints, where this view has them
    const i = +$(`interp-${which}`).value, k = method() === "tsne" ? tsneAt.get(i) : i;
    if (k === undefined || !pts[k]) continue;
    const [px, py] = toPx(pts[k]);
    ctx.fillStyle = "#000";
    ctx.fillText(which === "a" ? "A" : "B", px + 4, py - 4);
  }
  if (cursor >= 0 && pts[cursor]) {
    const [px, py] = toPx(pts[cursor]);
    ctx.strokeStyle = "#2f6fdf"; ctx.lineWidth = 2;
    ctx.strokeRect(px - 6, py - 6, 12, 12);
  }
  const at = project(z);
  if (!at) return;
  const [px, py] = toPx(at);
  ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.arc(px, py, 7, 0, 2 * Math.PI); ctx.stroke();
}

function nearest(px, py, within) { // the shown point nearest (px, py) within `within` px, or -1
  const {pts, toPx} = mapFrame();
  let best = -1, bestD = within * within;
  pts.forEach((p, k) => {
    if (!shown(k)) return;
    const [qx, qy] = toPx(p), dd = (qx - px) ** 2 + (qy - py) ** 2;
    if (dd < bestD) { best = k; bestD = dd; }
  });
  return best;
}

function canvasXY(ev) { // a pointer event's position in canvas pixels
  const rect = $("map").getBoundingClientRect(), s = $("map").width / rect.width;
  return [(ev.clientX - rect.left) * s, (ev.clientY - rect.top) * s];
}

function mapMsg(msg) { $("map-msg").textContent = msg; say(msg); }

function zoomBy(f, [cx, cy]) { // zoom by f about the canvas point (cx, cy)
  const k = Math.max(0.5, Math.min(200, view.k * f));
  f = k / view.k;
  view = {k, tx: cx - (cx - view.tx) * f, ty: cy - (cy - view.ty) * f};
  mapChanged();
}

function pan(dx, dy) { view = {...view, tx: view.tx + dx, ty: view.ty + dy}; mapChanged(); }

// -- hover preview: the nearest point's image, label, index and score
function tipText(k) {
  const i = testIndex(k), r = thumbs.get(i), lab = labelOf(k);
  return `test #${i}` + (lab === null ? "" : ` · label ${lab}`) +
    (r && r.scores ? ` · ${r.scores.bits_per_dim.toFixed(2)} bits/dim` : "");
}

function showTip(k) {
  const tip = $("tooltip"), canvas = $("map"), i = testIndex(k);
  const s = canvas.getBoundingClientRect().width / canvas.width;
  const [px, py] = mapFrame().toPx(points()[k]);
  tip.dataset.index = i;
  $("tip-text").textContent = tipText(k);
  const r = thumbs.get(i);
  $("tip-img").hidden = !r;
  if (r) $("tip-img").src = r.input;
  tip.hidden = false;
  const w = canvas.getBoundingClientRect().width;
  tip.style.left = `${Math.min(px * s + 12, Math.max(0, w - tip.offsetWidth))}px`;
  tip.style.top = `${py * s + 12}px`;
  if (!r) {
    clearTimeout(tipTimer);
    tipTimer = setTimeout(async () => {
      try {
        thumbs.set(i, await api("/api/encode", {index: i}));
      } catch (e) {
        return say(e.message, true);
      }
      if (!tip.hidden && +tip.dataset.index === i) showTip(k);
    }, 40);
  }
}

function hideTip() { $("tooltip").hidden = true; clearTimeout(tipTimer); }

// -- clicks, drags, keys
async function selectPoint(k) {
  const i = testIndex(k);
  cursor = k;
  $("index").value = i;
  clearError($("index"));
  await encodeIndex(i);
}

function setEndpoint(which, i) {
  $(`interp-${which}`).value = i;
  clearError($(`interp-${which}`));
  drawMap();
  mapMsg(`interpolation ${which === "a" ? "from" : "to"}: test image ${i}`);
}

async function clickAt(px, py, shift) {
  const k = nearest(px, py, PICK_PX);
  if (k < 0) {
    mapMsg(`No test image within ${PICK_PX} px of the click: click on a point, or zoom in ` +
      "(wheel, +)" + (linear() ? "; drag to set the code there." : "."));
    return;
  }
  const mode = shift ? nextEndpoint : $("click-mode").value;
  if (mode === "load") return selectPoint(k);
  setEndpoint(mode, testIndex(k));
  if (shift) nextEndpoint = mode === "a" ? "b" : "a";
}

function dragCode(px, py) { // set z to the map's point under the pointer (linear views)
  const code = unproject(mapFrame().fromPx([px, py]));
  const where = method() === "kl"
    ? `z${map.kl_dims[0]} = ${fmt(code[map.kl_dims[0]])}, z${map.kl_dims[1]} = ${fmt(code[map.kl_dims[1]])}`
    : "a point of the PCA plane";
  loaded = null;
  setZ(code);
  edited(`set on the map: ${where}`);
}

let press = null; // the pointer pressed on the map: where, and whether it has moved (a drag)

function wireMap() {
  const canvas = $("map");
  canvas.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    canvas.setPointerCapture(ev.pointerId);
    const [x, y] = canvasXY(ev);
    press = {x, y, moved: false, shift: ev.shiftKey};
  });
  canvas.addEventListener("pointermove", (ev) => {
    const [x, y] = canvasXY(ev);
    if (!press) {
      const k = nearest(x, y, PICK_PX);
      return k < 0 ? hideTip() : showTip(k);
    }
    if (!press.moved && Math.hypot(x - press.x, y - press.y) < DRAG_PX) return;
    press.moved = true;
    hideTip();
    if (linear() && $("drag-mode").value === "code") return dragCode(x, y);
    pan(x - press.x, y - press.y);
    press.x = x; press.y = y;
  });
  canvas.addEventListener("pointerup", guard(async () => {
    const p = press;
    press = null;
    if (p && !p.moved) await clickAt(p.x, p.y, p.shift);
  }, "map"));
  canvas.addEventListener("pointercancel", () => { press = null; });
  canvas.addEventListener("pointerleave", () => { if (!press) hideTip(); });
  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    zoomBy(Math.exp(-ev.deltaY * 0.0015), canvasXY(ev));
  }, {passive: false});
  canvas.addEventListener("keydown", guard(mapKey, "map"));
  const mid = () => [canvas.width / 2, canvas.height / 2];
  $("zoom-in").addEventListener("click", () => zoomBy(1.5, mid()));
  $("zoom-out").addEventListener("click", () => zoomBy(1 / 1.5, mid()));
  $("zoom-reset").addEventListener("click", () => { view = {k: 1, tx: 0, ty: 0}; mapChanged(); });
  new ResizeObserver(fitMap).observe(canvas);
}

const ARROWS = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]};

async function mapKey(ev) {
  const canvas = $("map");
  if (ARROWS[ev.key]) {
    ev.preventDefault();
    const [dx, dy] = ARROWS[ev.key];
    if (ev.shiftKey) return pan(-40 * dx, -40 * dy);
    return moveCursor(dx, dy);
  }
  if (ev.key === "Enter" || ev.key === " ") {
    ev.preventDefault();
    if (cursor < 0) return mapMsg("no point chosen: the arrow keys move between points");
    hideTip();
    return selectPoint(cursor);
  }
  const mid = [canvas.width / 2, canvas.height / 2];
  if (ev.key === "+" || ev.key === "=") zoomBy(1.5, mid);
  else if (ev.key === "-") zoomBy(1 / 1.5, mid);
  else if (ev.key === "0") { view = {k: 1, tx: 0, ty: 0}; mapChanged(); }
  else if (ev.key === "Escape") hideTip();
}

// The keyboard cursor moves to the nearest shown point in the arrow's direction (within 45°).
function moveCursor(dx, dy) {
  const {pts, toPx} = mapFrame(), canvas = $("map");
  const ring = project(z), W = canvas.width, H = canvas.height;
  let [fx, fy] = cursor >= 0 ? toPx(pts[cursor]) : ring ? toPx(ring) : [W / 2, H / 2];
  if (cursor < 0 && !(fx >= 0 && fy >= 0 && fx <= W && fy <= H)) [fx, fy] = [W / 2, H / 2];
  let best = -1, bestD = Infinity;
  pts.forEach((p, k) => {
    if (k === cursor || !shown(k)) return;
    const [px, py] = toPx(p), along = (px - fx) * dx + (py - fy) * dy;
    const across = Math.abs((px - fx) * dy - (py - fy) * dx);
    if (along <= 0 || across > along) return;
    const d = along + 2 * across;
    if (d < bestD) { best = k; bestD = d; }
  });
  if (best < 0) return mapMsg("no point further that way");
  cursor = best;
  drawMap();
  showTip(best);
  mapMsg(`point: ${tipText(best)} (Enter loads it)`);
}

// -- the legend isolates a class; the label picker walks through a class's images
function buildLegend() {
  if (!map.labels) {
    $("pick-label").closest("label").hidden = $("pick-go").hidden = true;
    return;
  }
  const classes = [...new Set(map.labels)].sort((a, b) => a - b);
  for (const c of classes) { // built node by node: the page's CSP forbids inline style attributes
    const item = document.createElement("button"), dot = document.createElement("i");
    item.type = "button";
    item.className = "legend-item";
    item.dataset.label = c;
    item.setAttribute("aria-pressed", "false");
    item.title = `show class ${c} alone (click again for all)`;
    dot.style.background = PALETTE[c % PALETTE.length];
    item.append(dot, String(c));
    item.addEventListener("click", () => isolate(isolated === c ? null : c));
    $("legend").appendChild(item);
    $("pick-label").append(new Option(String(c), String(c)));
  }
}

function isolate(c) {
  isolated = c;
  for (const b of $("legend").children) b.setAttribute("aria-pressed", String(+b.dataset.label === c));
  if (cursor >= 0 && !shown(cursor)) cursor = -1;
  mapChanged();
  const n = c === null ? 0 : points().filter((_, k) => labelOf(k) === c).length;
  mapMsg(c === null ? "all classes shown" : `class ${c} alone: ${n} points (click it again for all)`);
}

async function pickNext() { // the next image of the chosen label on the current map
  const c = +$("pick-label").value, n = points().length;
  for (let s = 1; s <= n; s++) {
    const k = (Math.max(cursor, -1) + s + n) % n;
    if (labelOf(k) === c) {
      await selectPoint(k);
      return;
    }
  }
  throw new Error(`no test image with label ${c} on this map`);
}

// ---- interpolation strip and traversal grid: codes built here, decoded in one request
function sameCode(a, b) { return a.length === b.length && a.every((v, d) => Math.abs(v - b[d]) < 1e-9); }

function markCurrent() { // outline the strip image and the grid cell that hold the current code
  [...$("strip").children].forEach((fig, k) => fig.classList.toggle("current", sameCode(stripCodes[k], z)));
  drawGrid();
}

async function interpolate() {
  const a = readNumber("interp-a"), b = readNumber("interp-b"), n = readNumber("interp-steps");
  const [ra, rb] = [await api("/api/encode", {index: a}), await api("/api/encode", {index: b})];
  const codes = [];
  for (let k = 0; k < n; k++) {
    const t = k / (n - 1);
    codes.push(ra.mu.map((v, d) => (1 - t) * v + t * rb.mu[d]));
  }
  const r = await api("/api/decode", {z: codes});
  stripCodes = codes;
  $("strip").replaceChildren(...r.images.map((src, k) => {
    const fig = document.createElement("figure"), img = new Image(), cap = document.createElement("figcaption");
    const t = (k / (n - 1)).toFixed(2);
    img.src = src;
    img.alt = `interpolation at t = ${t}`;
    img.title = `t = ${t} (click to load)`;
    cap.textContent = `t ${t}`;
    fig.append(img, cap);
    fig.addEventListener("click", () => {
      setZ(codes[k]);
      edited(`interpolation at t = ${t}`);
    });
    return fig;
  }));
  const lab = (res) => (res.label !== undefined ? ` (label ${res.label})` : "");
  $("strip-axis").textContent = `t = 0: test #${a}${lab(ra)} → t = 1: test #${b}${lab(rb)}; ` +
    `each image decodes (1 − t) z_from + t z_to, ${n} steps. Shift-click two points on the map ` +
    "to choose other endpoints.";
  $("download-strip").hidden = false;
  markCurrent();
  drawMap();
  say(`interpolated test images ${a} -> ${b}`);
}

const GRID = {left: 62, top: 36}; // the traversal grid's margins for its axes (canvas px)

async function traverse() {
  const i = +$("dim-a").value, j = +$("dim-b").value;
  const span = readNumber("span"), n = readNumber("steps");
  const offsets = Array.from({length: n}, (_, k) => (span * (2 * k - (n - 1))) / (n - 1));
  const codes = [];
  for (const dr of offsets) {
    for (const dc of offsets) {
      const code = z.slice();
      code[i] += dr;
      code[j] += dc;
      codes.push(code);
    }
  }
  const res = await api("/api/decode", {z: codes});
  const [, h, w] = info.image_shape, scale = Math.max(1, Math.floor(56 / Math.max(h, w)));
  const cw = w * scale, ch = h * scale;
  gridBase = document.createElement("canvas");
  gridBase.width = GRID.left + n * cw; gridBase.height = GRID.top + n * ch;
  const ctx = gridBase.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, gridBase.width, gridBase.height);
  ctx.imageSmoothingEnabled = false;
  await Promise.all(res.images.map((src, k) => new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      ctx.drawImage(img, GRID.left + (k % n) * cw, GRID.top + Math.floor(k / n) * ch, cw, ch);
      resolve();
    };
    img.src = src;
  })));
  // axes: the column dim and its offsets on top, the row dim and its offsets on the left
  ctx.fillStyle = "#1d232a";
  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "left";
  ctx.fillText(`columns: z${j} ${fmt(-span)} … ${fmt(span)} →`, GRID.left, 13);
  ctx.fillText(`rows: z${i} ↓`, 2, GRID.top - 6);
  ctx.font = "11px ui-monospace, monospace";
  ctx.textAlign = "center";
  const every = Math.ceil(n / Math.max(1, Math.floor((n * cw) / 40)));
  offsets.forEach((o, k) => {
    if (k % every && k !== n - 1) return;
    ctx.fillText(fmt(o), GRID.left + (k + 0.5) * cw, GRID.top - 6);
  });
  ctx.textAlign = "right";
  offsets.forEach((o, k) => ctx.fillText(fmt(o), GRID.left - 6, GRID.top + (k + 0.5) * ch + 4));
  gridCodes = codes;
  const canvas = $("grid");
  canvas.width = gridBase.width; canvas.height = gridBase.height;
  Object.assign(canvas.dataset, {n, cw, ch, span, dims: `${i},${j}`});
  drawGrid();
  $("download-grid").hidden = false;
  say(`traversed z${i} (rows) and z${j} (columns), ±${span} around the current code`);
}

function drawGrid() { // the grid's cells and axes, and an outline on the current code's cell
  if (!gridBase) return;
  const canvas = $("grid"), ctx = canvas.getContext("2d"), n = +canvas.dataset.n;
  const cw = +canvas.dataset.cw, ch = +canvas.dataset.ch;
  ctx.drawImage(gridBase, 0, 0);
  const k = gridCodes.findIndex((c) => sameCode(c, z));
  canvas.dataset.current = k;
  if (k < 0) return;
  ctx.strokeStyle = "#2f6fdf"; ctx.lineWidth = 3;
  ctx.strokeRect(GRID.left + (k % n) * cw + 1.5, GRID.top + Math.floor(k / n) * ch + 1.5, cw - 3, ch - 3);
}

// ---- PNG downloads: the decoded image (enlarged, nearest neighbour), the strip, the grid
function download(url, name) {
  const a = document.createElement("a");
  a.href = url; a.download = name;
  document.body.append(a); a.click(); a.remove();
}

function imagesPng(imgs, scale) { // images side by side, each enlarged `scale` times
  const [, h, w] = info.image_shape, gap = imgs.length > 1 ? 2 : 0;
  const canvas = document.createElement("canvas");
  canvas.width = imgs.length * (w * scale + gap) - gap; canvas.height = h * scale;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  imgs.forEach((img, k) => ctx.drawImage(img, k * (w * scale + gap), 0, w * scale, h * scale));
  return canvas.toDataURL("image/png");
}

function scaleTo(px) { // the whole scale that enlarges an image to about px on its longer side
  const [, h, w] = info.image_shape;
  return Math.max(1, Math.floor(px / Math.max(h, w)));
}

// ---- the state in the URL: #view=kl&i=12&z=0.1,-2,... (restored on load)
function writeHash() {
  if (!z.length) return;
  const parts = [`view=${method()}`];
  if (loaded !== null) parts.push(`i=${loaded}`);
  parts.push(`z=${z.map((v) => +v.toFixed(4)).join(",")}`);
  history.replaceState(null, "", `#${parts.join("&")}`);
}

async function restore() {
  const p = new URLSearchParams(location.hash.slice(1));
  const v = p.get("view"), i = p.get("i"), zs = p.get("z");
  if (v !== null) {
    if (![...$("map-method").options].some((o) => o.value === v)) throw new Error(`the URL's view "${v}" is not offered here`);
    $("map-method").value = v;
    viewChanged();
  }
  if (i !== null) {
    $("index").value = i;
    readNumber("index");
    await encodeIndex(+i);
  }
  if (zs !== null) {
    const code = zs.split(",").map(Number);
    if (code.length !== info.latent_dim || !code.every((c) => Number.isFinite(c) && Math.abs(c) <= MAX_ABS_Z)) {
      throw new Error(`the URL's z has ${code.length} values (or some not numbers within ±${MAX_ABS_Z}); ` +
        `this model has ${info.latent_dim} latent dims: ignored`);
    }
    const rounded = (c) => c.map((v) => +v.toFixed(4));
    if (i === null || !sameCode(rounded(code), rounded(z))) { // else it is test image i's code
      setZ(code);
      edited("the code from the URL");
    }
  }
  say("state restored from the URL");
}

function viewChanged() {
  view = {k: 1, tx: 0, ty: 0};
  cursor = -1;
  hideTip();
  $("map-caption").textContent = caption();
  $("drag-mode").disabled = !linear();
  mapChanged();
  writeHash();
}

// ---- a model with discrete codes (a VQ-VAE): the state is its grid of code indices, shown
// cell by cell and edited by index; the views of a continuous z (sliders, map, interpolation,
// traversal) are hidden.
function setCodes(grid, what) { // a new grid (encoded or sampled): edits count from it
  codes = grid.map((row) => row.slice());
  codesFrom = grid;
  if (cell) $("code-value").value = codes[cell[0]][cell[1]];
  if (what) $("z-caption").textContent = what;
  drawCodes();
  scheduleDecode();
}

function drawCodes() { // one button per cell: its index on a colour of its own, edits outlined
  $("code-grid").replaceChildren(...codes.flatMap((row, i) => row.map((k, j) => {
    const b = document.createElement("button"); // styled node by node: the CSP forbids inline styles
    b.type = "button";
    b.textContent = k;
    b.style.background = `hsl(${(k * 137.508) % 360}, 65%, ${k % 2 ? 88 : 76}%)`;
    b.classList.toggle("edited", k !== codesFrom[i][j]);
    b.setAttribute("aria-pressed", String(cell !== null && cell[0] === i && cell[1] === j));
    b.setAttribute("aria-label", `row ${i + 1}, column ${j + 1}: code ${k}`);
    b.addEventListener("click", () => pickCell(i, j));
    return b;
  })));
}

function pickCell(i, j) {
  cell = [i, j];
  $("code-cell").textContent = `row ${i + 1}, column ${j + 1}:`;
  $("code-value").disabled = $("code-set").disabled = false;
  $("code-value").value = codes[i][j];
  clearError($("code-value"));
  drawCodes();
  $("code-value").focus();
  $("code-value").select();
}

function editCell() { // the chosen cell takes the code index typed; the image decodes the grid
  const k = readNumber("code-value"), [i, j] = cell;
  if (codes[i][j] === k) return;
  codes[i][j] = k;
  drawCodes();
  edited(`edited: row ${i + 1}, column ${j + 1} = code ${k}`);
  scheduleDecode();
}

async function startCodes() {
  const {grid: [h, w], codebook_size: K} = info.codes;
  for (const id of ["latents", "map-section", "interp", "traverse"]) $(id).hidden = true;
  $("reset").closest(".row").hidden = true;
  $("codes").hidden = false;
  $("codes-caption").textContent = `${h}x${w} indices into a codebook of ${K} codes`;
  $("code-grid").style.gridTemplateColumns = `repeat(${w}, minmax(0, 2.4em))`;
  $("code-value").max = K - 1;
  $("encoded-stale").textContent = "The code grid has changed since this encoding.";
  $("temperature").min = 0.05; // a prior over code indices samples softmax(logits / T)
  if (!info.has_prior) { // nothing to sample: say so rather than decode random codes
    $("random").disabled = $("temperature").disabled = true;
    $("sample-note").textContent = `Random sample is off: ${info.note}.`;
    $("sample-note").hidden = false;
  }
  $("code-form").addEventListener("submit", guard(async (ev) => {
    ev.preventDefault();
    editCell();
  }, "code-value"));
  $("code-value").addEventListener("input", guard(editCell, "code-value")); // live, as typed
  await encodeIndex(0); // a grid to start from
}

// ---- wiring
async function main() {
  [info, map] = await Promise.all([api("/api/info"), api("/api/map")]);
  const [c, h, w] = info.image_shape;
  const groups = info.kl_per_group && info.groups > 1
    ? ` · KL per group ${info.kl_per_group.map((k) => k.toFixed(1)).join(" / ")} nats` : "";
  const latents = info.codes
    ? `a ${info.codes.grid.join("x")} grid of codes (codebook of ${info.codes.codebook_size})`
    : `${info.latent_dim} latent dims`;
  $("meta").textContent = `${info.dataset} · ${info.family} · ${latents} · ` +
    `${h}x${w}x${c} images · ${info.likelihood} likelihood · ${info.num_test} test images` +
    groups + (info.note ? ` · ${info.note}` : "");
  for (const id of ["index", "interp-a", "interp-b"]) $(id).max = info.num_test - 1;
  if (info.conditional) { // the class picker: every class, decoding the current code again
    $("label").innerHTML = [...Array(info.num_classes).keys()]
      .map((k) => `<option value="${k}">${k}</option>`).join("");
    $("label-row").hidden = false;
    $("label").addEventListener("change", scheduleDecode);
  }
  for (const el of document.querySelectorAll("input[type=number]")) { // checked as typed
    el.addEventListener("input", () => {
      try { readNumber(el.id); } catch (e) { showError(el, e.message); }
    });
  }
  $("random").addEventListener("click", guard(async () => {
    const t = +$("temperature").value;
    const r = await api("/api/sample", {n: 1, temperature: t});
    $("decoded").src = r.images[0];
    if (r.codes) setCodes(r.codes[0]);
    else setZ(r.z[0]);
    edited(r.codes ? `a sample of the prior over the codes at temperature ${t.toFixed(2)}`
      : `a random sample, z ~ N(0, ${t.toFixed(2)}² I)`);
  }, "random"));
  $("temperature").addEventListener("input", () => {
    $("temperature-out").textContent = (+$("temperature").value).toFixed(2);
  });
  $("encode-form").addEventListener("submit", guard(async (ev) => { // the button or Enter
    ev.preventDefault();
    await encodeIndex(readNumber("index"));
  }, "index"));
  $("upload").addEventListener("change", guard(async () => {
    const file = $("upload").files[0];
    if (!file) return;
    try {
      lastUpload = {name: file.name, data: await readFile(file)};
    } finally {
      $("upload").value = ""; // choosing the same file again is a change: it encodes again
    }
    await encodeUpload("auto");
  }, "upload"));
  $("invert").addEventListener("change", guard(async () => {
    if (lastUpload) await encodeUpload($("invert").checked);
  }, "invert"));
  $("download-decoded").addEventListener("click", () => {
    download(imagesPng([$("decoded")], scaleTo(256)), "vaekit-decoded.png");
  });
  if (info.codes) await startCodes();
  else await startLatents();
  document.body.dataset.ready = "1";
}

async function startLatents() { // the views of a continuous z: sliders, map, strip, grid
  zRange = Math.max(MIN_SLIDER, Math.ceil(info.z_max || 0));
  buildSliders();
  buildLegend();
  z = new Array(info.latent_dim).fill(0);
  $("reset").addEventListener("click", () => {
    setZ(new Array(info.latent_dim).fill(0));
    edited("z = 0");
  });
  if (map.tsne) { // offered first, and shown, when the server computed it
    tsneAt = new Map(map.tsne.index.map((i, k) => [i, k]));
    const option = new Option("t-SNE of the latent means", "tsne");
    $("map-method").prepend(option);
    $("map-method").value = "tsne";
  }
  $("map-caption").textContent = caption();
  $("drag-mode").disabled = !linear();
  $("map-method").addEventListener("change", viewChanged);
  wireMap();
  fitMap();
  $("pick-go").addEventListener("click", guard(pickNext, "pick-go"));
  $("interp-form").addEventListener("submit", guard(async (ev) => {
    ev.preventDefault();
    await interpolate();
  }, "interp-go"));
  for (const id of ["interp-a", "interp-b"]) $(id).addEventListener("change", drawMap);
  $("traverse-form").addEventListener("submit", guard(async (ev) => {
    ev.preventDefault();
    await traverse();
  }, "traverse-go"));
  $("grid").addEventListener("click", (ev) => {
    const canvas = $("grid"), n = +canvas.dataset.n, rect = canvas.getBoundingClientRect();
    if (!n) return;
    const s = canvas.width / rect.width;
    const col = Math.floor(((ev.clientX - rect.left) * s - GRID.left) / +canvas.dataset.cw);
    const row = Math.floor(((ev.clientY - rect.top) * s - GRID.top) / +canvas.dataset.ch);
    if (col < 0 || row < 0 || col >= n || row >= n) return;
    const [i, j] = canvas.dataset.dims.split(",");
    const code = gridCodes[row * n + col];
    setZ(code);
    edited(`traversal cell: row ${row + 1} (z${i}), column ${col + 1} (z${j})`);
  });
  $("download-strip").addEventListener("click", () => {
    download(imagesPng([...$("strip").querySelectorAll("img")], scaleTo(72)), "vaekit-interpolation.png");
  });
  $("download-grid").addEventListener("click", () => {
    download($("grid").toDataURL("image/png"), "vaekit-traversal.png");
  });
  setZ(z);
  announceHidden();
  if (location.hash.length > 1) await guard(restore)();
  else say("ready");
}

main().catch((e) => say(`could not start: ${e.message}`, true));
