// blackout dashboard charts: plain SVG, no library (works offline, a few KB).
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";
const COLORS = ["#1d4ed8", "#15803d", "#7c3aed", "#0891b2", "#ca8a04", "#be185d", "#4b5563"];

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function fmtNum(v) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  const a = Math.abs(v);
  for (const [d, s] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) if (a >= d) return (v / d).toPrecision(3) + s;
  return a >= 100 || a === 0 ? String(Math.round(v)) : v.toPrecision(3);
}

function fmtTime(s) { return new Date(s * 1000).toISOString().replace(".000Z", "Z").replace("T", " "); }

// A time-series chart. series: [{name, from, step, values}], bands: [[startS, endS]], markers: [{t, label, href}].
// onZoom(fromS, untilS) is called after a drag selection.
function timeChart(parent, opts) {
  const W = 1000, H = opts.height || 220, L = 60, R = 12, T = 10, B = 26;
  const wrap = document.createElement("div");
  wrap.className = "chart";
  if (opts.title) { const t = document.createElement("div"); t.className = "title"; t.textContent = opts.title; wrap.appendChild(t); }
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.title || "chart" }, wrap);
  parent.appendChild(wrap);
  let t0 = Infinity, t1 = -Infinity, y1 = 0;
  // a series is either on a grid (from, step, values) or a list of points [[t, v], ...]
  for (const s of opts.series) {
    if (!s.points) s.points = s.values.map((v, i) => [s.from + s.step * (i + 0.5), v]);
    for (const [t, v] of s.points) { t0 = Math.min(t0, t); t1 = Math.max(t1, t); if (v !== null && v > y1) y1 = v; }
  }
  if (opts.from !== undefined && opts.from !== null) t0 = opts.from;
  if (opts.until !== undefined && opts.until !== null) t1 = opts.until;
  if (!isFinite(t0) || t1 <= t0) { const p = document.createElement("p"); p.className = "muted"; p.textContent = "no data in this range"; wrap.appendChild(p); return wrap; }
  y1 = y1 > 0 ? y1 * 1.08 : 1;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => H - B - (v / y1) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = (y1 * i) / 4;
    svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }, svg);
    svgEl("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11 }, svg).textContent = fmtNum(v);
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    svgEl("text", { x: x(t), y: H - 8, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", "font-size": 11 }, svg)
      .textContent = fmtTime(t).slice(t1 - t0 < 3600 ? 11 : 0, t1 - t0 < 3600 ? 19 : 16);
  }
  for (const [a, b] of opts.bands || []) {
    const xa = x(Math.max(a, t0)), xb = x(Math.min(b === null ? t1 : b, t1));
    if (xb > xa) svgEl("rect", { x: xa, y: T, width: Math.max(2, xb - xa), height: H - T - B, class: "band" }, svg)
      .appendChild(svgEl("title", {})).textContent = `outage ${fmtTime(a)} → ${b === null ? "ongoing" : fmtTime(b)}`;
  }
  opts.series.forEach((s, k) => {
    let d = "", pen = false;
    s.points.forEach(([t, v]) => {
      if (v === null) { pen = false; return; }
      const px = x(t).toFixed(1), py = y(v).toFixed(1);
      d += (pen ? "L" : "M") + px + " " + py; pen = true;
    });
    const path = svgEl("path", { d: d, class: "series", stroke: COLORS[k % COLORS.length] }, svg);
    svgEl("title", {}, path).textContent = s.name;
    if (s.dots) for (const [t, v] of s.points) {
      const c = svgEl("circle", { cx: x(t), cy: y(v), r: 5, fill: COLORS[k % COLORS.length] }, svg);
      svgEl("title", {}, c).textContent = `${s.name} ${fmtNum(v)} at ${fmtTime(t)}`;
    }
  });
  for (const m of opts.markers || []) {
    if (m.t < t0 || m.t > t1) continue;
    const g = svgEl("a", { href: m.href || "#" }, svg);
    svgEl("line", { x1: x(m.t), x2: x(m.t), y1: T, y2: H - B, class: "marker" }, g);
    svgEl("circle", { cx: x(m.t), cy: T + 5, r: 5, fill: "#c2410c" }, g);
    svgEl("title", {}, g).textContent = m.label;
  }
  svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }, svg);
  svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }, svg);
  // legend
  const legend = document.createElement("div");
  legend.className = "muted";
  legend.innerHTML = opts.series.map((s, k) => `<span style="color:${COLORS[k % COLORS.length]}">■</span> ${s.name}`).join(" &nbsp; ");
  wrap.appendChild(legend);
  // drag to zoom
  if (opts.onZoom) {
    const sel = svgEl("rect", { y: T, height: H - T - B, width: 0, class: "sel" }, svg);
    let start = null;
    const toT = (ev) => {
      const r = svg.getBoundingClientRect();
      const px = ((ev.clientX - r.left) / r.width) * W;
      return t0 + ((Math.min(Math.max(px, L), W - R) - L) / (W - L - R)) * (t1 - t0);
    };
    svg.addEventListener("mousedown", (ev) => { start = toT(ev); });
    svg.addEventListener("mousemove", (ev) => {
      if (start === null) return;
      const t = toT(ev);
      sel.setAttribute("x", x(Math.min(start, t))); sel.setAttribute("width", Math.abs(x(t) - x(start)));
    });
    svg.addEventListener("mouseup", (ev) => {
      const t = toT(ev), a = Math.min(start, t), b = Math.max(start, t);
      start = null; sel.setAttribute("width", 0);
      if (b - a > (t1 - t0) / 200) opts.onZoom(Math.floor(a), Math.ceil(b));
    });
  }
  return wrap;
}

// Horizontal bars: items [{label, value}] with value in 0..1 (shares).
function barChart(parent, title, items) {
  const wrap = document.createElement("div");
  wrap.className = "chart";
  const t = document.createElement("div"); t.className = "title"; t.textContent = title; wrap.appendChild(t);
  if (!items.length) { const p = document.createElement("p"); p.className = "muted"; p.textContent = "unknown"; wrap.appendChild(p); parent.appendChild(wrap); return wrap; }
  const W = 400, row = 22, H = items.length * row + 4, L = 120;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title }, wrap);
  items.forEach((it, i) => {
    svgEl("text", { x: L - 6, y: i * row + 14, "text-anchor": "end", class: "barlabel" }, svg).textContent = it.label;
    svgEl("rect", { x: L, y: i * row + 3, height: row - 6, width: Math.max(1, it.value * (W - L - 50)), class: "bar" }, svg);
    svgEl("text", { x: L + Math.max(1, it.value * (W - L - 50)) + 4, y: i * row + 14, class: "barlabel" }, svg)
      .textContent = (it.value * 100).toFixed(1) + "%";
  });
  parent.appendChild(wrap);
  return wrap;
}
