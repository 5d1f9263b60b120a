// merkit web page: upload a file to /api/predict and draw the result with plain SVG.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const WORDS = {1: "happy/excited", 2: "angry/tense", 3: "sad/depressed", 4: "calm/relaxed"};

function el(name, attrs, parent, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
// Position on the plane: 2P - 1 for each dimension (0 = undecided, also for a model without that
// dimension); SVG y grows downwards.
const half = (x) => (x === null || x === undefined ? 0.5 : x);
// a dimension on [0, 1]: the probability, or (score + 1) / 2 for a model without probabilities
const level = (p, key) => (p[key] !== null && p[key] !== undefined ? p[key]
  : (p[`${key}_score`] !== null && p[`${key}_score`] !== undefined ? (p[`${key}_score`] + 1) / 2 : null));
const point = (p) => [2 * half(level(p, "valence")) - 1, -(2 * half(level(p, "arousal")) - 1)];
const fmt = (x, nd = 2) => (x === null || x === undefined ? "\u2013" : x.toFixed(nd));
// timeline windows without music (silence) carry a warning and no emotion: not drawn
const musical = (timeline) => (timeline || []).filter((p) => !p.warning);

function drawPlane(track, timeline) {
  const svg = $("va-plane");
  svg.replaceChildren();
  el("circle", {cx: 0, cy: 0, r: 1, fill: "none", stroke: "#bbb", "stroke-width": 0.01}, svg);
  el("line", {x1: -1.1, y1: 0, x2: 1.1, y2: 0, stroke: "#bbb", "stroke-width": 0.01}, svg);
  el("line", {x1: 0, y1: -1.1, x2: 0, y2: 1.1, stroke: "#bbb", "stroke-width": 0.01}, svg);
  const lab = {1: [0.55, -0.55], 2: [-0.55, -0.55], 3: [-0.55, 0.55], 4: [0.55, 0.55]};
  for (const q of [1, 2, 3, 4]) {
    el("text", {x: lab[q][0], y: lab[q][1], "font-size": 0.09, "text-anchor": "middle", fill: "#999"}, svg,
       `Q${q} ${WORDS[q]}`);
  }
  el("text", {x: 1.2, y: -0.03, "font-size": 0.08, "text-anchor": "end", fill: "#666"}, svg, "valence");
  el("text", {x: 0.03, y: -1.15, "font-size": 0.08, fill: "#666"}, svg, "arousal");
  if (timeline && timeline.length > 1) {
    el("polyline", {points: timeline.map((p) => point(p).join(",")).join(" "), fill: "none",
                    stroke: "#48c", "stroke-width": 0.012, opacity: 0.7}, svg);
    for (const p of timeline) {
      const [x, y] = point(p);
      el("circle", {cx: x, cy: y, r: 0.02, fill: "#48c"}, svg);
    }
  }
  const [x, y] = point(track);
  el("circle", {id: "va-point", cx: x, cy: y, r: 0.06, fill: "#d33", stroke: "#fff", "stroke-width": 0.015}, svg);
}

function drawTimeline(timeline) {
  const svg = $("timeline");
  svg.replaceChildren();
  const W = 600, H = 260, L = 45, R = 10, T = 10, B = 35;
  if (!timeline || timeline.length === 0) {
    el("text", {x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#999"}, svg, "no timeline");
    return;
  }
  const t = timeline.map((p) => (p.start + p.end) / 2);
  const t0 = Math.min(...timeline.map((p) => p.start)), t1 = Math.max(...timeline.map((p) => p.end));
  const sx = (v) => L + (W - L - R) * (v - t0) / Math.max(t1 - t0, 1e-9);
  const sy = (v) => T + (H - T - B) * (1 - v);
  for (const v of [0, 0.5, 1]) {
    el("line", {x1: L, x2: W - R, y1: sy(v), y2: sy(v), stroke: v === 0.5 ? "#aaa" : "#ddd",
                "stroke-dasharray": v === 0.5 ? "4 3" : ""}, svg);
    el("text", {x: L - 6, y: sy(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#666"}, svg, v.toFixed(1));
  }
  el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 11, fill: "#666"}, svg,
     `time (s), ${t0.toFixed(0)}\u2013${t1.toFixed(0)}`);
  const series = [["valence", "#2a2"], ["arousal", "#d33"]].filter(([key]) => timeline.some((p) => level(p, key) !== null));
  series.forEach(([key, color], i) => {
    // the 2 Hz curve's band: the spread of the 10 s windows inside each passage
    const band = timeline.map((p) => p[`${key}_band`]);
    if (band.every((b) => typeof b === "number")) {
      const clip = (v) => Math.min(1, Math.max(0, v));
      const upper = timeline.map((p, j) => `${sx(t[j])},${sy(clip(level(p, key) + band[j]))}`);
      const lower = timeline.map((p, j) => `${sx(t[j])},${sy(clip(level(p, key) - band[j]))}`).reverse();
      el("polygon", {points: upper.concat(lower).join(" "), fill: color, "fill-opacity": 0.15, stroke: "none",
                     class: `band-${key}`}, svg);
    }
    el("polyline", {points: timeline.map((p, j) => `${sx(t[j])},${sy(level(p, key))}`).join(" "), fill: "none",
                    stroke: color, "stroke-width": 2, class: `series-${key}`}, svg);
    el("text", {x: W - R - 5, y: T + 14 + 14 * i, "text-anchor": "end", "font-size": 12, fill: color}, svg, key);
  });
}

function show(data) {
  const p = data.prediction;
  $("quadrant").textContent = p.quadrant ? `Q${p.quadrant}` : "\u2013";
  $("quadrant-word").textContent = p.quadrant_word || "this model predicts one dimension only";
  $("arousal").textContent = fmt(p.arousal !== null && p.arousal !== undefined ? p.arousal : p.arousal_score);
  $("valence").textContent = fmt(p.valence !== null && p.valence !== undefined ? p.valence : p.valence_score);
  const scores = (p.valence === null || p.valence === undefined) && p.valence_score !== null && p.valence_score !== undefined;
  $("arousal-note").textContent = scores ? "arousal score (\u22121 to 1)" : "P(high arousal)";
  $("valence-note").textContent = scores ? "valence score (\u22121 to 1)" : "P(positive valence)";
  $("certainty").textContent = fmt(p.certainty);
  // certainty: the probability of the answer; DAMER's agreement of its two views is shown beside it
  $("certainty-note").textContent = (p.quadrant ? "probability of the quadrant" : "probability of the answer") +
    (p.view_agreement !== null && p.view_agreement !== undefined ? `; view agreement ${fmt(p.view_agreement)}` : "");
  $("mood-card").hidden = !p.mood_words;
  if (p.mood_words) {
    $("mood").textContent = `cluster ${p.mood_cluster}`;
    $("mood-words").textContent = p.mood_words;
  }
  $("meta").textContent = `${data.filename}: ${data.duration.toFixed(1)} s; track window ` +
    `${p.start.toFixed(1)}\u2013${p.end.toFixed(1)} s${p.looped ? " (short clip, looped)" : ""}; ` +
    `${(data.timeline || []).length} timeline points` +
    (musical(data.timeline).length < (data.timeline || []).length ? " (silent ones not drawn)" : "") +
    (data.note ? `; ${data.note}` : "");
  drawPlane(p, musical(data.timeline));
  drawTimeline(musical(data.timeline));
  $("result").hidden = false;
}

let maxUploadMB = null;  // from /api/health: refuse oversize files before sending them
let token = new URLSearchParams(location.search).get("token");  // servers started with --token
let tokenRequired = false;
fetch("/api/health").then((r) => r.json()).then((h) => {
  maxUploadMB = h.max_upload_mb;
  tokenRequired = h.token_required;
}).catch(() => {});

function fail(message) {
  $("status").textContent = "";
  $("error").textContent = message;
  $("error").hidden = false;
}

async function upload(file) {
  $("error").hidden = true;
  $("result").hidden = true;
  if (maxUploadMB !== null && file.size > maxUploadMB * 1e6) {
    fail(`${file.name}: file too large (limit ${maxUploadMB} MB)`);
    return;
  }
  $("status").textContent = `analysing ${file.name} \u2026`;
  const form = new FormData();
  form.append("file", file, file.name);
  let data;
  try {
    if (tokenRequired && !token) token = window.prompt("This merkit server needs its access token:");
    const headers = token ? {Authorization: `Bearer ${token}`} : {};
    const resp = await fetch("/api/predict?timeline=1", {method: "POST", body: form, headers});
    if (resp.status === 401) token = null;  // ask again next time
    const text = await resp.text();
    try { data = JSON.parse(text); } catch (e) { data = {ok: false, error: `server error ${resp.status}`}; }
  } catch (e) {
    data = {ok: false, error: `cannot reach the server (${e.message})`};
  }
  if (!data.ok) {
    fail(data.error || "unknown error");
    return;
  }
  $("status").textContent = `done: ${file.name}`;
  show(data);
}

$("file-input").addEventListener("change", (ev) => {
  if (ev.target.files.length) upload(ev.target.files[0]);
});
const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  if (ev.dataTransfer.files.length) upload(ev.dataTransfer.files[0]);
});
