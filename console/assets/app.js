// pcm console: renders the pages from the console's JSON API and keeps
// them live with server-sent events. No framework, no CDN.
"use strict";

const STATES = ["succeeded", "failed", "running", "pending", "not_received", "offline",
  "not_applicable", "cancelled", "halted", "not_reported"];
const LABEL = { succeeded: "succeeded", failed: "failed", running: "running", pending: "pending",
  not_received: "not received", offline: "offline", not_applicable: "not applicable",
  cancelled: "cancelled", halted: "halted", not_reported: "not reported" };
const COLOR = { succeeded: "#2e7d32", failed: "#c62828", running: "#1565c0", pending: "#f9a825",
  not_received: "#8d6e63", offline: "#616161", not_applicable: "#90a4ae", cancelled: "#6a1b9a",
  halted: "#ef6c00", not_reported: "#bdbdbd" };

// el builds an element: attributes (on* are listeners), then children
// (strings become text, never HTML).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k.nodeType ? k : String(k));
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
const main = () => document.getElementById("main");
function show(...nodes) { const m = main(); m.replaceChildren(...nodes); }
function fmt(t) { if (!t) return ""; const d = new Date(t); return isNaN(d) ? t : d.toISOString().replace(".000Z", "Z").replace("T", " "); }
async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (!r.ok) throw new Error((await r.text()).trim() || r.statusText);
  return r.json();
}
function failure(err) { return el("div", { class: "error", role: "alert" }, String(err.message || err)); }

// live opens one event stream for the page; each event name has a handler.
let source = null;
function live(url, handlers) {
  if (source) source.close();
  source = new EventSource(url);
  const dot = document.getElementById("live");
  source.onopen = () => dot.classList.add("on");
  source.onerror = () => dot.classList.remove("on");
  for (const [name, fn] of Object.entries(handlers)) source.addEventListener(name, (e) => fn(JSON.parse(e.data)));
}

function bar(counts, total) {
  const b = el("div", { class: "bar", role: "img", "aria-label": STATES.filter((s) => counts[s]).map((s) => counts[s] + " " + LABEL[s]).join(", ") });
  for (const s of STATES) {
    const n = counts[s] || 0;
    if (!n || !total) continue;
    const seg = el("span", { class: "s-" + s, title: n + " " + LABEL[s], "data-state": s });
    seg.style.width = (100 * n / total) + "%";
    b.append(seg);
  }
  return b;
}

let me = { can_act: false };

// ---- Jobs ----
function jobsPage() {
  const q = new URLSearchParams(location.search);
  const form = el("form", { class: "filters", id: "job-filters" },
    el("label", {}, "group", el("input", { name: "group", value: q.get("group") || "", size: 12 })),
    el("label", {}, "state", el("select", { name: "state" }, el("option", { value: "" }, "any"),
      STATES.map((s) => el("option", { value: s, selected: q.get("state") === s }, LABEL[s])))),
    el("label", {}, "publisher", el("input", { name: "publisher", value: q.get("publisher") || "", size: 12 })),
    el("label", {}, "since", el("select", { name: "since" }, [["", "any time"], ["-1h", "last hour"], ["-24h", "last day"], ["-168h", "last week"]]
      .map(([v, t]) => el("option", { value: v, selected: (q.get("since") || "") === v }, t)))),
    el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) p.set(k, v);
    history.replaceState(null, "", "/" + (p.toString() ? "?" + p : ""));
    render(lastJobs);
  });
  const body = el("tbody", { id: "jobs" });
  show(el("h1", {}, "Jobs"), form, el("div", { class: "legend" }, STATES.map((s) => el("span", {}, el("i", { class: "s-" + s }), LABEL[s]))),
    el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "job"), el("th", { class: "hide-narrow" }, "publisher"),
      el("th", { class: "hide-narrow" }, "offered"), el("th", { class: "hide-narrow" }, "targets"), el("th", {}, "progress"), el("th", {}, "done"))), body)));
  let lastJobs = [];
  function render(jobs) {
    lastJobs = jobs;
    const f = new URLSearchParams(location.search);
    const since = f.get("since") ? Date.now() + parseInt(f.get("since"), 10) * 3600e3 : 0;
    const rows = jobs.filter((j) => (!f.get("group") || (j.groups || []).includes(f.get("group"))) &&
      (!f.get("state") || (j.counts[f.get("state")] || 0) > 0) && (!f.get("publisher") || j.publisher === f.get("publisher")) &&
      (!since || new Date(j.offered_at).getTime() >= since));
    body.replaceChildren(...rows.map((j) => {
      const done = (j.counts.succeeded || 0) + (j.counts.failed || 0) + (j.counts.not_applicable || 0) + (j.counts.cancelled || 0);
      const flags = [j.cancelled ? "cancelled" : "", j.halted ? "halted" : "", j.rings && j.rings.length ? "rings " + j.rings.join(", ") : ""].filter(Boolean).join(" · ");
      return el("tr", { class: "clickable", "data-job": j.id, onclick: () => go("/jobs/" + encodeURIComponent(j.id)) },
        el("td", {}, el("a", { href: "/jobs/" + encodeURIComponent(j.id) }, j.name || j.id), j.name ? el("div", { class: "muted mono" }, j.id) : null,
          flags ? el("div", { class: "muted" }, flags) : null),
        el("td", { class: "hide-narrow" }, j.publisher), el("td", { class: "hide-narrow" }, fmt(j.offered_at)),
        el("td", { class: "hide-narrow mono" }, (j.targets || []).join(" ")), el("td", {}, bar(j.counts, j.total)),
        el("td", { class: "done" }, done + "/" + j.total));
    }));
    if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No job matches.")));
  }
  live("/api/jobs/events", { jobs: render });
}

// ---- One job ----
function jobPage(id) {
  show(el("h1", {}, "Job ", el("span", { class: "mono" }, id)), el("p", { class: "muted", id: "job-loading" }, "Waiting for the rollout…"));
  let built = null;
  function build(v) {
    const counts = el("div", { class: "counts", id: "counts" });
    const actions = el("div", { class: "actions", id: "actions" });
    if (me.can_act) {
      for (const [a, label, cls] of [["cancel", "Cancel job", "danger"], ["halt", "Halt", ""], ["resume", "Resume", ""]]) {
        actions.append(el("button", { id: a, class: cls, type: "button", onclick: () => act(id, a) }, label));
      }
    } else {
      actions.append(el("span", { class: "muted", id: "read-only" }, "Read-only: " + (me.why || "no rights to act")));
    }
    const chart = svg("svg", { id: "chart", viewBox: "0 0 600 200", preserveAspectRatio: "none", role: "img", "aria-label": "rollout over time" });
    const clients = el("tbody", { id: "clients" });
    built = { counts, chart, clients, meta: el("dl", { class: "meta", id: "meta" }), notes: el("div", { id: "notes" }),
      rings: el("div", { id: "rings" }), msg: el("div", { id: "act-msg" }) };
    show(el("h1", {}, v.name ? v.name + " " : "", el("span", { class: "mono muted" }, id)), built.meta, built.notes, actions, built.msg, counts,
      el("h2", {}, "Rollout over time"), el("div", { class: "legend" }, STATES.slice(0, 9).map((s) => el("span", {}, el("i", { class: "s-" + s }), LABEL[s]))), chart,
      built.rings, el("h2", {}, "Clients"),
      el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "client"), el("th", {}, "state"), el("th", {}, "why"),
        el("th", { class: "hide-narrow" }, "ring"), el("th", { class: "hide-narrow" }, "time"), el("th", { class: "hide-narrow" }, "exit"), el("th", {}, "output"))), clients)));
  }
  function update(v) {
    if (!built) build(v);
    // Halt and resume apply to a staged rollout only; cancel until cancelled.
    const shown = { cancel: !v.cancelled, halt: !!v.plan && !v.halted && !v.cancelled, resume: !!v.halted };
    for (const [a, on] of Object.entries(shown)) { const b = document.getElementById(a); if (b) b.hidden = !on; }
    const meta = [["publisher", v.publisher + (v.signer ? " (signed)" : "")], ["command", v.command || ""], ["targets", (v.targets || []).join(" ")],
      ["offered", fmt(v.offered_at)], ["offer after", fmt(v.offer_after)], ["mandatory", fmt(v.mandatory_after)], ["expires", fmt(v.expire_after)], ["verdict", v.verdict]];
    built.meta.replaceChildren(...meta.filter(([, x]) => x).flatMap(([k, x]) => [el("dt", {}, k), el("dd", { "data-meta": k }, x)]));
    built.notes.replaceChildren(...[v.cancelled, v.halted].filter(Boolean).map((n) => el("div", { class: "notice" }, n)));
    built.counts.replaceChildren(el("span", { class: "count s-not_reported", id: "count-total" }, "clients", el("b", {}, String(v.total))),
      ...STATES.slice(0, 9).map((s) => el("span", { class: "count s-" + s, id: "count-" + s, "data-count": v.counts[s] || 0 }, LABEL[s], el("b", {}, String(v.counts[s] || 0)))));
    drawChart(built.chart, v);
    if (v.rings && v.rings.length) {
      built.rings.replaceChildren(el("h2", {}, "Rings"), el("table", { id: "ring-table" }, el("thead", {}, el("tr", {}, ["ring", "spec", "opens", "state", "clients", "done", "failed"].map((h) => el("th", {}, h)))),
        el("tbody", {}, v.rings.map((r) => el("tr", {}, el("td", {}, r.ring), el("td", {}, r.spec), el("td", {}, fmt(r.opens_at)), el("td", {}, r.state), el("td", {}, r.clients), el("td", {}, r.done), el("td", {}, r.failed))))));
    }
    built.clients.replaceChildren(...v.clients.map((c) => {
      const lines = (c.output_tail || "").trimEnd().split("\n");
      return el("tr", { "data-client": c.client, "data-state": c.state },
        el("td", { class: "mono" }, el("a", { href: "/fleet/" + encodeURIComponent(c.client) }, c.client)),
        el("td", {}, el("span", { class: "badge s-" + c.state }, LABEL[c.state] || c.state)),
        el("td", { class: "why" }, c.why || ""), el("td", { class: "hide-narrow" }, c.ring || ""), el("td", { class: "hide-narrow" }, fmt(c.time)),
        el("td", { class: "hide-narrow" }, c.exit_code ?? ""),
        el("td", { class: "mono" }, c.output_tail ? el("details", {}, el("summary", {}, lines[lines.length - 1].slice(0, 80)), el("pre", {}, c.output_tail)) : ""));
    }));
  }
  live("/api/jobs/" + encodeURIComponent(id) + "/events", {
    job: update,
    failure: (e) => main().prepend(failure(e.error)),
  });
  source.addEventListener("error", () => { if (source.readyState === 2 && !built) show(failure("The job could not be followed (unknown job?)")); });
}

// drawChart draws, per state, the clients whose job ended against time.
function drawChart(chart, v) {
  const W = 600, H = 200, pad = 4;
  const pts = v.finished || [];
  const t0 = new Date(v.offered_at).getTime();
  const t1 = Math.max(v.at, pts.length ? pts[pts.length - 1].t : t0, t0 + 1000);
  const total = Math.max(v.total, 1);
  const x = (t) => pad + (W - 2 * pad) * (t - t0) / (t1 - t0);
  const y = (n) => H - pad - (H - 2 * pad) * n / total;
  const label = (x0, y0, text, anchor) => { const t = svg("text", { x: x0, y: y0, "font-size": 10, fill: "#757575", "text-anchor": anchor }); t.textContent = text; return t; };
  chart.replaceChildren(svg("line", { x1: pad, y1: y(total), x2: W - pad, y2: y(total), stroke: "#e0e0e0", "stroke-dasharray": "4 4" }),
    label(pad + 2, y(total) + 12, total + " clients", "start"), label(pad + 2, H - pad - 2, fmt(t0), "start"), label(W - pad - 2, H - pad - 2, fmt(t1), "end"));
  const byState = {};
  for (const p of pts) (byState[p.state] = byState[p.state] || []).push(p.t);
  for (const s of STATES) {
    const ts = byState[s];
    if (!ts) continue;
    let d = "M" + x(t0) + "," + y(0), n = 0;
    for (const t of ts) { d += " L" + x(t) + "," + y(n); n++; d += " L" + x(t) + "," + y(n); }
    d += " L" + x(t1) + "," + y(n);
    chart.append(svg("path", { d, fill: "none", stroke: COLOR[s], "stroke-width": 2, "data-state": s, class: "series" }));
  }
}

async function act(id, action) {
  const msg = document.getElementById("act-msg");
  if (action === "cancel" && !confirm("Cancel job " + id + " on every client that has not started it?")) return;
  const r = await fetch("/api/jobs/" + encodeURIComponent(id) + "/" + action, {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json", "X-PCM-Console": "1" }, body: "{}" });
  const text = (await r.text()).trim();
  msg.replaceChildren(r.ok ? el("div", { class: "notice", id: "act-done" }, action + ": done") : el("div", { class: "error", id: "act-error" }, action + ": " + text));
}

// ---- Fleet ----
async function fleetPage() {
  const body = el("tbody", { id: "fleet" });
  show(el("h1", {}, "Fleet"), el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "client"), el("th", {}, "state"),
    el("th", { class: "hide-narrow" }, "version"), el("th", { class: "hide-narrow" }, "platform"), el("th", {}, "groups"), el("th", { class: "hide-narrow" }, "last seen"), el("th", {}, "running"))), body)));
  async function load() {
    try {
      const list = await getJSON("/api/fleet");
      body.replaceChildren(...list.map((a) => el("tr", { class: "clickable", "data-client": a.client, onclick: () => go("/fleet/" + encodeURIComponent(a.client)) },
        el("td", { class: "mono" }, el("a", { href: "/fleet/" + encodeURIComponent(a.client) }, a.client)), el("td", {}, a.liveness.replace("_", " ")),
        el("td", { class: "hide-narrow" }, a.version || ""), el("td", { class: "hide-narrow" }, a.platform || ""), el("td", {}, (a.groups || []).join(", ")),
        el("td", { class: "hide-narrow" }, fmt(a.last_seen)), el("td", { class: "mono" }, a.running || (a.lock ? "lock: " + a.lock : "")))));
    } catch (e) { main().prepend(failure(e)); }
  }
  await load();
  let pending = null;
  live("/api/jobs/events", { jobs: () => { if (!pending) pending = setTimeout(() => { pending = null; load(); }, 2000); } });
}

async function clientPage(client) {
  show(el("h1", {}, "Client ", el("span", { class: "mono" }, client)));
  try {
    const d = await getJSON("/api/fleet/" + encodeURIComponent(client));
    const i = d.info || {};
    const groups = (d.enrollment && d.enrollment.groups) || i.groups || [];
    main().append(el("dl", { class: "meta", id: "client-meta" }, [["state", d.liveness], ["host", i.host], ["platform", i.os ? i.os + "/" + i.arch : ""], ["version", i.version],
      ["groups", groups.join(", ")], ["last seen", fmt(i.last_seen)], ["running", i.current_job], ["lock", d.lock ? d.lock.holder + (d.lock.user ? " (" + d.lock.user + ")" : "") : ""]]
      .filter(([, v]) => v).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    el("h2", {}, "Pending jobs"), el("table", { id: "pending" }, el("thead", {}, el("tr", {}, ["job", "received", "offer after", "mandatory", "expires", "last state"].map((h) => el("th", {}, h)))),
      el("tbody", {}, (d.pending || []).map((p) => el("tr", {}, el("td", {}, el("a", { href: "/jobs/" + encodeURIComponent(p.job_id) }, p.name || p.job_id)), el("td", {}, p.received ? "yes" : "no"),
        el("td", {}, fmt(p.offer_after)), el("td", {}, fmt(p.mandatory_after)), el("td", {}, fmt(p.expire_after)), el("td", {}, p.last_state || ""))))),
    el("h2", {}, "History"), el("table", { id: "history" }, el("thead", {}, el("tr", {}, ["time", "job", "state", "exit", "reason"].map((h) => el("th", {}, h)))),
      el("tbody", {}, (d.recent || []).map((s) => el("tr", {}, el("td", {}, fmt(s.time)), el("td", {}, el("a", { href: "/jobs/" + encodeURIComponent(s.job_id) }, s.job_id)),
        el("td", {}, s.state), el("td", {}, s.exit_code ?? ""), el("td", {}, s.reason || ""))))));
  } catch (e) { main().append(failure(e)); }
}

// ---- Audit ----
async function auditPage() {
  const q = new URLSearchParams(location.search);
  const form = el("form", { class: "filters", id: "audit-filters" },
    ...["job", "client"].map((k) => el("label", {}, k, el("input", { name: k, value: q.get(k) || "", size: 14 }))),
    el("label", {}, "type", el("select", { name: "type" }, [["", "any"], ["offered", "offered"], ["cancelled", "cancelled"], ["status", "status"], ["halted", "halted"], ["resumed", "resumed"]]
      .map(([v, t]) => el("option", { value: v, selected: (q.get("type") || "") === v }, t)))),
    ...["since", "until"].map((k) => el("label", {}, k, el("input", { name: k, value: q.get(k) || "", placeholder: k === "since" ? "-24h or RFC 3339" : "", size: 14 }))),
    el("button", { type: "submit" }, "Filter"),
    el("a", { id: "download", href: "/api/audit/download" + location.search, download: "pcm-audit.jsonl" }, "Download JSON lines"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) p.set(k, v);
    history.replaceState(null, "", "/audit" + (p.toString() ? "?" + p : ""));
    auditPage();
  });
  const body = el("tbody", { id: "audit" });
  const json = el("pre", { id: "event-json", class: "mono" }, "Select an event to see it as stored.");
  show(el("h1", {}, "Audit"), form, el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "stored"), el("th", {}, "type"),
    el("th", { class: "hide-narrow" }, "stream#seq"), el("th", {}, "job"), el("th", {}, "summary"))), body)), el("h2", {}, "Event"), json);
  try {
    const rows = await getJSON("/api/audit" + location.search);
    body.replaceChildren(...rows.map((r) => el("tr", { class: "clickable", "data-seq": r.stream + "#" + r.seq, onclick: () => { json.textContent = JSON.stringify(r.event, null, 2); } },
      el("td", {}, fmt(r.stored)), el("td", {}, r.type), el("td", { class: "hide-narrow mono" }, r.stream + "#" + r.seq), el("td", { class: "mono" }, r.job || ""), el("td", {}, r.summary || ""))));
    if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No event matches.")));
  } catch (e) { main().prepend(failure(e)); }
}

function go(path) { location.assign(path); }

async function start() {
  try {
    me = await getJSON("/api/me");
    document.getElementById("me").textContent = me.user + " (" + me.role + (me.can_act ? "" : ", read-only") + ")";
  } catch (e) { show(failure(e)); return; }
  const p = location.pathname;
  let m;
  for (const id of ["jobs", "fleet", "audit"]) document.getElementById("nav-" + id).classList.remove("active");
  if ((m = p.match(/^\/jobs\/([^/]+)$/))) { document.getElementById("nav-jobs").classList.add("active"); jobPage(decodeURIComponent(m[1])); }
  else if ((m = p.match(/^\/fleet\/([^/]+)$/))) { document.getElementById("nav-fleet").classList.add("active"); clientPage(decodeURIComponent(m[1])); }
  else if (p === "/fleet") { document.getElementById("nav-fleet").classList.add("active"); fleetPage(); }
  else if (p === "/audit") { document.getElementById("nav-audit").classList.add("active"); auditPage(); }
  else { document.getElementById("nav-jobs").classList.add("active"); jobsPage(); }
}
document.addEventListener("DOMContentLoaded", start);
