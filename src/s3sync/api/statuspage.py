"""``GET /`` for a browser: a status page; for anything else, the JSON service info as before.

One self-contained page (HTML, CSS and a little JS inline; nothing loaded from
anywhere else, so it works offline and its Content-Security-Policy can forbid
every other origin). The page itself holds no data and is served without a
token; everything it shows comes from the API it polls (``/api/v1/health``,
``/api/v1/stats``, ``/api/v1/config``), with the bearer token the user types
into the page when the daemon wants one. The token stays in a JS variable:
never in a URL, a cookie or browser storage.

Untrusted text (object keys, error messages) is put into the page with
``textContent`` only, never parsed as HTML.
"""

from __future__ import annotations

from aiohttp import web

from s3sync.api import handlers as h

CSP = (
    "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def wants_html(request: web.Request) -> bool:
    """A browser asking for a page: text/html accepted ahead of JSON."""
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]


async def index(request: web.Request) -> web.StreamResponse:
    if not wants_html(request):
        return await h.index(request)
    return web.Response(
        text=PAGE,
        content_type="text/html",
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>s3sync status</title>
<link rel="icon" href="data:,">
<style>
:root { --ok:#1a7f37; --warn:#9a6700; --bad:#cf222e; --fg:#1f2328; --mute:#656d76; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0;
       background: #f6f8fa; }
header { display: flex; align-items: center; gap: 1rem; padding: .8rem 1.2rem; background: #fff;
         border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.1rem; margin: 0; }
#health { font-weight: 600; padding: .15rem .6rem; border-radius: 1rem; color: #fff;
          background: var(--mute); }
#health.healthy { background: var(--ok); } #health.degraded { background: var(--warn); }
#health.unhealthy { background: var(--bad); }
#reason { color: var(--mute); }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 1rem;
       padding: 1rem 1.2rem; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .8rem 1rem; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: var(--mute);
     margin: 0 0 .5rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dt { color: var(--mute); } dd { margin: 0; font-variant-numeric: tabular-nums; word-break: break-all; }
.big { font-size: 1.6rem; font-weight: 600; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th, td { text-align: left; padding: .2rem .4rem; border-bottom: 1px solid #eaeef2; vertical-align: top; }
td.key { font-family: ui-monospace, monospace; word-break: break-all; }
#chart { width: 100%; height: 90px; display: block; }
#chart rect { fill: #0969da; }
#login { display: none; gap: .5rem; align-items: center; }
#login.shown { display: flex; }
#error { color: var(--bad); }
.mute { color: var(--mute); }
</style></head>
<body>
<header>
  <h1>s3sync</h1><span id="health">…</span><span id="reason"></span>
  <form id="login" autocomplete="off">
    <label for="token">API token</label>
    <input id="token" type="password" autocomplete="off" spellcheck="false">
    <button type="submit">Show status</button>
  </form>
  <span id="error"></span>
</header>
<main>
  <section><h2>Mirror</h2>
    <dl><dt>bucket</dt><dd id="bucket">-</dd><dt>directory</dt><dd id="directory">-</dd>
    <dt>S3</dt><dd id="s3">-</dd></dl></section>
  <section><h2>Freshness</h2>
    <dl><dt>events applied through</dt><dd id="events-through">-</dd>
    <dt>reconciled through</dt><dd id="reconciled-through">-</dd>
    <dt>lag</dt><dd id="lag" class="big">-</dd><dt>pending</dt><dd id="pending">-</dd></dl></section>
  <section><h2>Queue</h2>
    <dl><dt>queued</dt><dd id="queue">-</dd><dt>in flight</dt><dd id="in-flight">-</dd>
    <dt>journal</dt><dd id="journal">-</dd><dt>hooks pending</dt><dd id="hooks">-</dd></dl></section>
  <section><h2>Synced</h2>
    <dl><dt>files</dt><dd id="files-synced" class="big">-</dd><dt>bytes</dt><dd id="bytes">-</dd>
    <dt>deleted</dt><dd id="files-deleted">-</dd><dt>failed / skipped</dt><dd id="failed-skipped">-</dd>
    <dt>rate, last minute</dt><dd id="rate">-</dd></dl></section>
  <section><h2>Reconcile</h2>
    <dl><dt>last</dt><dd id="last-reconcile">-</dd><dt>last successful</dt><dd id="last-ok">-</dd>
    <dt>next</dt><dd id="next-reconcile">-</dd><dt>running</dt><dd id="running">-</dd></dl></section>
  <section class="wide"><h2>Files per second, last 5 minutes</h2>
    <svg id="chart" viewBox="0 0 300 90" preserveAspectRatio="none" role="img"
      aria-label="files per second"></svg><div class="mute" id="chart-scale"></div></section>
  <section class="wide"><h2>Latest changes</h2>
    <table><thead><tr><th>when</th><th>op</th><th>key</th><th>size</th><th>source</th></tr></thead>
    <tbody id="changes"></tbody></table></section>
  <section class="wide"><h2>Latest skips and failures</h2>
    <table><thead><tr><th>when</th><th>kind</th><th>reason</th><th>message</th></tr></thead>
    <tbody id="problems"></tbody></table></section>
</main>
<script>
"use strict";
let token = null;  // typed by the user; kept in memory only
let locked = false;  // the daemon wants a token we do not have: ask, do not retry (401s are rate-limited)
const $ = (id) => document.getElementById(id);
const set = (id, text) => { $(id).textContent = text; };
function bytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + u[i];
}
function when(iso) {
  if (!iso) return "never";
  const t = new Date(iso), s = Math.round((Date.now() - t.getTime()) / 1000);
  const a = Math.abs(s);
  const ago = a < 60 ? a + " s" : a < 3600 ? Math.round(a / 60) + " min" : Math.round(a / 3600) + " h";
  const stamp = t.toISOString().replace("T", " ").replace(/\\.\\d+Z$/, "Z");
  return stamp + (s >= 0 ? " (" + ago + " ago)" : " (in " + ago + ")");
}
async function api(path) {
  const headers = token ? {"Authorization": "Bearer " + token} : {};
  const resp = await fetch(path, {headers, cache: "no-store"});
  if (resp.status === 401) { throw {auth: true}; }
  return resp.json();
}
function rows(tbody, items, cells) {
  const body = $(tbody); body.replaceChildren();
  for (const it of items.slice().reverse()) {
    const tr = document.createElement("tr");
    cells(it).forEach(([text, cls]) => {
      const td = document.createElement("td");
      td.textContent = text; if (cls) td.className = cls; tr.append(td);
    });
    body.append(tr);
  }
}
function chart(points) {
  const svg = $("chart"); svg.replaceChildren();
  const max = Math.max(1, ...points.map(p => p.files_per_second)), w = 300 / points.length;
  points.forEach((p, i) => {
    const h = 88 * p.files_per_second / max;
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    r.setAttribute("x", (i * w + 0.5).toFixed(1)); r.setAttribute("width", Math.max(0.5, w - 1).toFixed(1));
    r.setAttribute("y", (90 - h).toFixed(1)); r.setAttribute("height", h.toFixed(1));
    svg.append(r);
  });
  set("chart-scale", "peak " + max.toFixed(1) + " files/s");
}
async function refresh() {
  try {
    const health = await api("/api/v1/health");
    const el = $("health"); el.textContent = health.status; el.className = health.status;
    set("reason", health.reason || "");
    if (locked) return;
    const [st, cfg] = await Promise.all([api("/api/v1/stats"), api("/api/v1/config")]);
    $("login").classList.remove("shown"); set("error", "");
    set("bucket", "s3://" + cfg.s3.bucket + "/" + (cfg.s3.prefix || ""));
    set("directory", cfg.sync.local_dir);
    set("s3", st.s3_reachable ? "reachable" : "unreachable");
    const f = st.freshness;
    set("events-through", f.events_applied_through ? when(f.events_applied_through) : "no events yet");
    set("reconciled-through", when(f.reconciled_through));
    set("lag", f.lag_seconds.toFixed(1) + " s"); set("pending", String(f.pending));
    set("queue", String(st.queue_depth)); set("in-flight", String(st.in_flight));
    set("journal", String(st.journal_pending));
    set("hooks", st.hooks.enabled ? String(st.hooks.pending) : "no hooks");
    set("files-synced", String(st.files_synced)); set("bytes", bytes(st.bytes_downloaded));
    set("files-deleted", String(st.files_deleted));
    set("failed-skipped", st.files_failed + " / " + st.files_skipped);
    const last = st.throughput.slice(-6);
    const fps = last.reduce((a, p) => a + p.files_per_second, 0) / last.length;
    const bps = last.reduce((a, p) => a + p.bytes_per_second, 0) / last.length;
    set("rate", fps.toFixed(2) + " files/s, " + bytes(Math.round(bps)) + "/s");
    set("last-reconcile", when(st.last_reconcile)); set("last-ok", when(st.last_successful_reconcile));
    set("next-reconcile", st.next_reconcile ? when(st.next_reconcile) : "not scheduled");
    set("running", st.reconcile_running ? "yes" : "no");
    chart(st.throughput);
    rows("changes", st.recent_changes, c => [[when(c.at)], [c.op], [c.key, "key"],
      [c.size == null ? "" : bytes(c.size)], [c.source]]);
    rows("problems", st.recent_problems, p => [[when(p.at)], [p.kind], [p.reason], [p.message, "key"]]);
  } catch (e) {
    if (e && e.auth) {
      locked = true; $("login").classList.add("shown"); set("error", token ? "token refused" : "");
      token = null;
    }
    else { set("error", "cannot reach the daemon"); }
  }
}
$("login").addEventListener("submit", (ev) => {
  ev.preventDefault(); token = $("token").value; $("token").value = ""; locked = false; refresh();
});
refresh(); setInterval(refresh, 2000);
</script>
</body></html>
"""
