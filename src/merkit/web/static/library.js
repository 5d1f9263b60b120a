// The library page of `merkit serve --library`: tracks as points on the valence-arousal plane.
"use strict";
const COLOURS = {1: "#e69f00", 2: "#d55e00", 3: "#0072b2", 4: "#009e73"};  // Q1..Q4, colour-blind safe
const WORDS = {1: "happy/excited", 2: "angry/tense", 3: "sad/depressed", 4: "calm/relaxed"};
const SVG = "http://www.w3.org/2000/svg";
let token = new URLSearchParams(location.search).get("token");
let tracks = [];

function withToken(url) {
  return token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function prob(p, score) { return p === null || p === undefined ? (score + 1) / 2 : p; }

function draw() {
  const svg = document.getElementById("plane");
  el("rect", {x: -1.1, y: -1.1, width: 2.2, height: 2.2, fill: "#fff", stroke: "#ccc", "stroke-width": 0.005}, svg);
  el("line", {x1: -1.1, y1: 0, x2: 1.1, y2: 0, stroke: "#bbb", "stroke-width": 0.005}, svg);
  el("line", {x1: 0, y1: -1.1, x2: 0, y2: 1.1, stroke: "#bbb", "stroke-width": 0.005}, svg);
  for (const [q, x, y] of [[1, 0.55, -1.0], [2, -0.55, -1.0], [3, -0.55, 1.05], [4, 0.55, 1.05]]) {
    const t = el("text", {x, y, "font-size": 0.06, "text-anchor": "middle", fill: COLOURS[q]}, svg);
    t.textContent = `Q${q} ${WORDS[q]}`;
  }
  const vx = el("text", {x: 1.08, y: -0.02, "font-size": 0.05, "text-anchor": "end", fill: "#666"}, svg);
  vx.textContent = "valence →";
  const ay = el("text", {x: 0.02, y: -1.06, "font-size": 0.05, fill: "#666"}, svg);
  ay.textContent = "↑ arousal";
  for (const t of tracks) {
    const c = el("circle", {cx: t.v, cy: -t.a, r: 0.022, fill: COLOURS[t.quadrant] || "#888",
                            "fill-opacity": 0.8, class: "track", "data-id": t.id, tabindex: 0}, svg);
    const tip = el("title", {}, c);
    tip.textContent = `${t.title}${t.mood ? " (" + t.mood + ")" : ""}`;
    c.addEventListener("mouseenter", () => {
      document.getElementById("hover-info").textContent =
        `${t.title}: Q${t.quadrant} ${WORDS[t.quadrant] || ""}${t.mood ? ", " + t.mood : ""}`;
    });
    c.addEventListener("click", () => play(t));
    c.addEventListener("keydown", (e) => { if (e.key === "Enter") play(t); });
  }
}

function play(t) {
  const player = document.getElementById("player");
  player.src = withToken(`/api/library/audio/${t.id}`);
  document.getElementById("now-playing").textContent = t.title;
  player.play().catch(() => {});  // a browser may refuse autoplay; the controls still work
}

function filter() {
  const num = (id) => parseFloat(document.getElementById(id).value);
  const [vmin, vmax, amin, amax] = ["v-min", "v-max", "a-min", "a-max"].map(num);
  const shown = [];
  for (const c of document.querySelectorAll("circle.track")) {
    const t = tracks[Number(c.dataset.id)];
    const pv = prob(t.valence, t.v), pa = prob(t.arousal, t.a);
    const inside = pv >= vmin && pv <= vmax && pa >= amin && pa <= amax;
    c.style.display = inside ? "" : "none";
    if (inside) shown.push(t.id);
  }
  document.getElementById("count").textContent = `${shown.length} of ${tracks.length} tracks`;
  const link = document.getElementById("export");
  link.href = shown.length ? withToken("/api/library/playlist?ids=" + shown.join(",")) : "#";
}

async function main() {
  const headers = token ? {Authorization: `Bearer ${token}`} : {};
  let resp = await fetch("/api/library", {headers});
  if (resp.status === 401) {
    token = window.prompt("This merkit server needs its access token:");
    resp = await fetch("/api/library", {headers: {Authorization: `Bearer ${token}`}});
  }
  const body = await resp.json();
  if (!resp.ok) {
    const err = document.getElementById("error");
    err.textContent = body.error || `error ${resp.status}`;
    err.hidden = false;
    return;
  }
  tracks = body.tracks;
  draw();
  for (const id of ["v-min", "v-max", "a-min", "a-max"]) document.getElementById(id).addEventListener("input", filter);
  filter();
}

main();
