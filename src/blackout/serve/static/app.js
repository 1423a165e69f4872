// blackout dashboard: overview, entity and attack pages over the REST API. State lives in the URL hash
// (#/entity/country/KP?from=...&until=...&norm=1) so every view is a shareable link; live mode polls /health.
"use strict";
const view = document.getElementById("view");
let generation = null;

function esc(s) { return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]); }

function route() {
  const [path, qs] = (location.hash.slice(1) || "/").split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(qs || "") };
}

function go(parts, params) {
  const qs = params && params.toString();
  location.hash = "/" + parts.map(encodeURIComponent).join("/") + (qs ? "?" + qs : "");
}

async function api(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const r = await fetch(path + (q.toString() ? "?" + q : ""));
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function range() {
  const p = route().params;
  return { from: p.get("from") || "", until: p.get("until") || "" };
}

const names = new Map(); // "asn/131279" -> "AS131279 STAR-KP", from /entities/query
async function loadNames() {
  if (names.size) return;
  const res = await api("/entities/query", { limit: 1000 });
  for (const e of res.data) if (e.name !== e.code) names.set(`${e.type}/${e.code}`, e.name);
}
const entityLink = (type, code, label) => `<a href="#/entity/${type}/${encodeURIComponent(code)}${keepRange()}">${esc(label || names.get(`${type}/${code}`) || type + " " + code)}</a>`;
const attackLink = (a) => `<a href="#/attack/${encodeURIComponent(a.id)}${keepRange()}">${esc(a.target)}</a>`;
function keepRange() { const r = range(); const q = new URLSearchParams(); if (r.from) q.set("from", r.from); if (r.until) q.set("until", r.until); return q.toString() ? "?" + q : ""; }
const ongoing = (e) => e.end === null ? '<span class="pill ongoing">ongoing</span>' : esc(e.end);
const secs = (iso) => iso === null ? null : Date.parse(iso) / 1000;
const vectors = (a) => (a.vectors || []).map((v) => `<span class="pill">${esc(v.name)} ${(v.share * 100).toFixed(0)}%</span>`).join("");

function attacksTable(rows) {
  if (!rows.length) return '<p class="muted">no attacks in this range</p>';
  return `<table class="attacks"><tr><th>start</th><th>end</th><th>target</th><th>vectors</th><th>peak pps</th><th>peak bps</th><th>sources</th><th>rule</th></tr>` +
    rows.map((a) => `<tr data-id="${esc(a.id)}"><td>${esc(a.start)}</td><td>${ongoing(a)}</td><td>${attackLink(a)}</td><td>${vectors(a)}</td>` +
      `<td class="num">${fmtNum(a.peak_pps)}</td><td class="num">${fmtNum(a.peak_bps)}</td><td class="num">${fmtNum(a.unique_sources)}</td><td>${esc(a.rule)}</td></tr>`).join("") + "</table>";
}

function outagesTable(rows) {
  if (!rows.length) return '<p class="muted">no outages in this range</p>';
  return `<table class="outages"><tr><th>start</th><th>end</th><th>entity</th><th>signals</th><th>severity</th><th>score</th><th>verdict</th></tr>` +
    rows.map((o) => {
      const causes = ((o.verdict || {}).causes || []).map((c) => `${esc(c.cause)} ${(c.confidence * 100).toFixed(0)}%`).join(", ") || "–";
      return `<tr data-id="${esc(o.id)}"><td>${esc(o.start)}</td><td>${ongoing(o)}</td><td>${entityLink(o.entity_type, o.entity)}</td>` +
        `<td>${(o.signals || []).map((s) => `<span class="pill">${esc(s)}</span>`).join("")}</td><td class="num">${((o.severity || 0) * 100).toFixed(0)}%</td>` +
        `<td class="num">${fmtNum(o.score)}</td><td>${causes}</td></tr>`;
    }).join("") + "</table>";
}

async function overview() {
  const r = range();
  const [att, , out] = await Promise.all([
    api("/attacks", { ...r, limit: 1000 }),
    loadNames(),
    api("/outages/events", { ...r, format: "blackout", limit: 5000 }),
  ]);
  const darkNow = out.data.filter((o) => o.end === null), hitNow = att.data.filter((a) => a.end === null);
  const recentA = att.data.slice(-50).reverse(), recentO = out.data.slice(-50).reverse();
  view.innerHTML = `<h1>Overview</h1>
    <div class="cards">
      <div class="card dark"><div class="big" id="n-dark">${darkNow.length}</div>dark now ${darkNow.map((o) => entityLink(o.entity_type, o.entity)).join(", ")}</div>
      <div class="card attack"><div class="big" id="n-hit">${hitNow.length}</div>under attack now ${hitNow.map(attackLink).join(", ")}</div>
      <div class="card"><div class="big" id="n-attacks">${att.total}</div>attacks in range</div>
      <div class="card"><div class="big" id="n-outages">${out.total}</div>outages in range</div>
    </div>
    <h2>Recent outages</h2>${outagesTable(recentO)}
    <h2>Recent attacks</h2>${attacksTable(recentA)}`;
}

async function entityPage(type, code) {
  const r = range(), p = route().params, norm = p.get("norm") === "1";
  const filter = type === "prefix" ? { target: code } : type === "asn" ? { asn: code } : { country: code };
  const [sig, out, att] = await Promise.all([
    api(`/signals/raw/${encodeURIComponent(type)}/${encodeURIComponent(code)}`, { ...r, normalised: norm }),
    api("/outages/events", { ...r, entityType: type, entityCode: code, format: "blackout", limit: 5000 }),
    api("/attacks", { ...r, ...filter, limit: 1000 }),
    loadNames(),
  ]);
  view.innerHTML = `<h1>${esc(sig.entity.name)} <span class="muted">${esc(type)} ${esc(code)}</span></h1>
    <div class="toolbar"><label><input type="checkbox" id="norm" ${norm ? "checked" : ""}> normalised (÷ median)</label>
    <span class="muted">drag on a chart to zoom</span> <a href="#" id="reset">reset range</a></div>
    <div id="charts"></div><h2>Verdicts</h2><div id="verdicts"></div>
    <h2>Outages</h2>${outagesTable(out.data)}<h2>Attacks</h2>${attacksTable(att.data)}`;
  document.getElementById("norm").onchange = (ev) => { p.set("norm", ev.target.checked ? "1" : "0"); go(route().parts, p); };
  document.getElementById("reset").onclick = (ev) => { ev.preventDefault(); p.delete("from"); p.delete("until"); go(route().parts, p); };
  const bands = out.data.map((o) => [secs(o.start), secs(o.end)]);
  const markers = att.data.map((a) => ({ t: secs(a.start), label: `attack on ${a.target} (${(a.vectors || []).map((v) => v.name).join(", ")})`, href: `#/attack/${a.id}` }));
  const charts = document.getElementById("charts");
  const zoom = (a, b) => { p.set("from", String(a)); p.set("until", String(b)); go(route().parts, p); };
  const bounds = { from: r.from && /^\d+$/.test(r.from) ? +r.from : null, until: r.until && /^\d+$/.test(r.until) ? +r.until : null };
  if (!sig.data.length) charts.innerHTML = '<p class="muted">no signals stored for this entity</p>';
  const groups = norm ? [sig.data] : sig.data.map((s) => [s]);
  for (const g of groups) {
    timeChart(charts, { title: norm ? "signals (normalised)" : `${g[0].signal} (${g[0].datasource})`, series: g.map((s) => ({ name: s.signal, from: s.from, step: s.step, values: s.values })),
      bands, markers, onZoom: zoom, ...bounds });
  }
  const v = document.getElementById("verdicts");
  v.innerHTML = out.data.map((o) => {
    const causes = ((o.verdict || {}).causes || []);
    return `<div class="card"><b>${esc(o.start)} → ${o.end === null ? "ongoing" : esc(o.end)}</b> severity ${((o.severity || 0) * 100).toFixed(0)}%` +
      (causes.length ? causes.map((c) => `<div><b>${esc(c.cause)}</b> ${(c.confidence * 100).toFixed(0)}%<ul class="evidence">` +
        (c.evidence || []).map((e) => `<li>${esc(e.time)} <span class="pill">${esc(e.signal)}</span> ${esc(e.text)} <span class="muted">${esc(e.source)}</span></li>`).join("") + "</ul></div>").join("")
        : '<div class="muted">no cause attributed yet</div>') + "</div>";
  }).join("") || '<p class="muted">no outages in this range</p>';
}

async function attackPage(id) {
  const a = await api(`/attacks/${encodeURIComponent(id)}`);
  const t0 = secs(a.start), t1 = a.end === null ? Date.now() / 1000 : secs(a.end);
  view.innerHTML = `<h1>Attack on ${esc(a.target)} ${a.end === null ? '<span class="pill ongoing">ongoing</span>' : ""}</h1>
    <div class="cards">
      <div class="card attack"><div class="big">${fmtNum(a.peak_pps)}</div>peak packets/s at ${esc(a.peak_pps_at)}</div>
      <div class="card attack"><div class="big">${fmtNum(a.peak_bps)}</div>peak bits/s at ${esc(a.peak_bps_at)}</div>
      <div class="card"><div class="big">${fmtNum(a.unique_sources)}</div>distinct sources, spoofed ≈ ${((a.spoofing || 0) * 100).toFixed(0)}%</div>
      <div class="card"><div class="big">${fmtNum(a.total_packets)}</div>packets, ${fmtNum(a.total_bytes)} bytes</div>
    </div>
    <table class="facts"><tr><th>start</th><td>${esc(a.start)}</td><th>end</th><td>${ongoing(a)}</td></tr>
    <tr><th>target prefix</th><td>${a.target_prefix ? entityLink("prefix", a.target_prefix, a.target_prefix) : "–"}</td>
        <th>origin AS</th><td>${a.target_asn !== null ? entityLink("asn", String(a.target_asn), "AS" + a.target_asn) : "–"}</td></tr>
    <tr><th>country</th><td>${a.target_country ? entityLink("country", a.target_country, a.target_country) : "–"}</td><th>role</th><td>${esc(a.target_role)}</td></tr>
    <tr><th>rule</th><td>${esc(a.rule)}</td><th>id</th><td>${esc(a.id)}</td></tr></table>
    <div id="timeline"></div><div class="cards" id="bars"></div><h2>Top sources</h2><div id="sources"></div>`;
  // the store keeps the attack's span and peaks (no per-second series): draw those, not an invented curve
  const pad = Math.max(5, (t1 - t0) * 0.2);
  timeChart(document.getElementById("timeline"), {
    title: "attack span and peak rate", height: 160, from: t0 - pad, until: t1 + pad, bands: [[t0, a.end === null ? null : t1]],
    series: [{ name: "peak packets/s", points: [[secs(a.peak_pps_at) ?? t0, a.peak_pps || 0]], dots: true }],
  });
  const bars = document.getElementById("bars");
  barChart(bars, "vectors", (a.vectors || []).map((v) => ({ label: v.name, value: v.share })));
  barChart(bars, "source countries", (a.source_countries || []).slice(0, 10).map((c) => ({ label: c.country, value: c.share })));
  barChart(bars, "source ASes", (a.source_asns || []).slice(0, 10).map((c) => ({ label: "AS" + c.asn, value: c.share })));
  document.getElementById("sources").innerHTML = (a.top_sources || []).length
    ? "<table><tr><th>address</th><th>share</th></tr>" + a.top_sources.map((s) => `<tr><td>${esc(s.address)}</td><td class="num">${(s.share * 100).toFixed(2)}%</td></tr>`).join("") + "</table>"
    : '<p class="muted">none recorded</p>';
}

async function render() {
  const { parts, params } = route();
  names.clear(); // the store may have new entities
  syncRange(params);
  try {
    if (parts[0] === "entity" && parts.length >= 3) await entityPage(parts[1], parts.slice(2).join("/"));
    else if (parts[0] === "attack" && parts[1]) await attackPage(parts[1]);
    else await overview();
    document.getElementById("status").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
  } catch (err) {
    view.innerHTML = `<p class="error">${esc(err.message)}</p>`;
  }
}

function syncRange(params) {
  const f = params.get("from") || "", u = params.get("until") || "";
  const preset = document.getElementById("preset");
  preset.value = !f && !u ? "" : (!u && [...preset.options].some((o) => o.value === f) ? f : "custom");
  document.getElementById("from").value = /^\d+$/.test(f) ? fmtTime(+f) : f;
  document.getElementById("until").value = /^\d+$/.test(u) ? fmtTime(+u) : u;
}

function setRange(f, u) {
  const { parts, params } = route();
  f ? params.set("from", f) : params.delete("from");
  u ? params.set("until", u) : params.delete("until");
  go(parts, params);
}

document.getElementById("preset").onchange = (ev) => { if (ev.target.value !== "custom") setRange(ev.target.value, ""); };
for (const id of ["from", "until"]) {
  document.getElementById(id).onchange = () => setRange(document.getElementById("from").value.replace(" ", "T"), document.getElementById("until").value.replace(" ", "T"));
}

const q = document.getElementById("q"), suggest = document.getElementById("suggest");
q.oninput = async () => {
  if (!q.value.trim()) { suggest.innerHTML = ""; return; }
  try {
    const res = await api("/entities/query", { search: q.value.trim(), limit: 10 });
    suggest.innerHTML = res.data.map((e) => `<a href="#/entity/${e.type}/${encodeURIComponent(e.code)}">${esc(e.name)} <span class="muted">${e.type} · ${e.outages} outages · ${e.attacks} attacks</span></a>`).join("");
  } catch (err) { suggest.innerHTML = ""; }
};
document.getElementById("search").onsubmit = (ev) => { ev.preventDefault(); const a = suggest.querySelector("a"); if (a) location.hash = a.getAttribute("href"); };
suggest.onclick = () => { suggest.innerHTML = ""; q.value = ""; };

async function poll() {
  if (document.getElementById("live").checked && !document.hidden) {
    try {
      const h = await api("/health");
      if (generation !== null && h.generation !== generation) await render();
      generation = h.generation;
    } catch (err) { document.getElementById("status").textContent = "server unreachable"; }
  }
  setTimeout(poll, 5000);
}

window.addEventListener("hashchange", render);
render().then(poll);
