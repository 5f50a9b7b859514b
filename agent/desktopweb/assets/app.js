'use strict';
// The Self Service page: renders the snapshot the server sends as
// server-sent events (api/events); Install and Defer post to the API.
// Countdowns and elapsed times tick here: the server is not polled.

const $ = (sel) => document.querySelector(sel);
const pages = ['available', 'required', 'history'];
// The notices listed under the pages (the others show in them).
const shownNotices = ['countdown', 'restart', 'finished', 'failed'];
let snap = null;

// el builds an element; children are nodes or text (never HTML).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function fmtTime(iso) {
  if (!iso) return '-';
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

function fmtDuration(ms) {
  if (ms < 0) ms = 0;
  const s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${r} s`;
  return `${r} s`;
}

function fmtSize(n) {
  if (!n) return null;
  const units = ['bytes', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function title(j) {
  if (j.name) return j.name;
  if (j.package) return `${j.package.name} ${j.package.version}`;
  return j.job_id;
}

function what(j) {
  const c = j.command || {};
  return c.name || (c.argv || []).join(' ');
}

function mayRestart(j) {
  const c = j.command || {};
  return c.may_reboot || (c.restart_exit_codes && c.restart_exit_codes.length > 0);
}

const phaseWords = { starting: 'Preparing…', waiting: 'Waiting for the background installation', running: 'Installing…', error: 'Could not run' };

function runBlock(j) {
  const run = snap.runs[j.job_id];
  if (!run) return null;
  const state = run.phase === 'done' ? run.state : run.phase;
  let words = phaseWords[run.phase] || run.phase;
  if (run.phase === 'done') words = run.state === 'succeeded' ? 'Installed' : `Ended: ${run.state}`;
  return el('div', { class: 'run', role: 'status', 'aria-live': 'polite' },
    el('p', {}, el('span', { class: `run-state state-${state}`, 'data-state': state }, words),
      ' · ', el('span', { class: 'elapsed', 'data-start': run.started_at || run.requested_at, 'data-end': run.finished_at || '' })),
    run.waiting ? el('p', { class: 'waiting' }, run.waiting) : null,
    run.error ? el('p', { class: 'state-error' }, run.error) : null,
    run.reason && run.phase === 'done' && run.state !== 'succeeded' ? el('p', {}, run.reason) : null,
    run.output_tail ? el('pre', { class: 'output', 'aria-label': `Output of ${title(j)}` }, run.output_tail) : null);
}

function running(j) {
  const run = snap.runs[j.job_id];
  return run && run.phase !== 'done' && run.phase !== 'error';
}

function post(path) {
  return fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' } }).then(async (r) => {
    if (!r.ok) {
      let msg = r.statusText;
      try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
      showError(msg);
    } else {
      showError('');
    }
  }, (e) => showError(String(e)));
}

function showError(msg) {
  const e = $('#error');
  e.textContent = msg;
  e.hidden = !msg;
}

function installButton(j, label, cls) {
  return el('button', { type: 'button', class: `${cls} install`, id: `install-${j.job_id}`, disabled: running(j),
    onclick: () => post(`api/jobs/${encodeURIComponent(j.job_id)}/install`) }, running(j) ? 'Installing…' : label);
}

function jobFacts(j) {
  const size = j.package && fmtSize(j.package.size);
  return el('dl', {},
    j.publisher ? [el('dt', {}, 'Publisher'), el('dd', { class: 'publisher' }, j.publisher)] : null,
    j.package ? [el('dt', {}, 'Package'), el('dd', {}, `${j.package.name} ${j.package.version}`)] : null,
    size ? [el('dt', {}, 'Size'), el('dd', { class: 'size' }, size)] : null,
    el('dt', {}, 'What it does'), el('dd', { class: 'what' }, what(j)));
}

function availableCard(j) {
  return el('article', { class: 'job', 'data-job': j.job_id, 'aria-labelledby': `title-${j.job_id}` },
    el('h3', { id: `title-${j.job_id}` }, title(j)),
    jobFacts(j),
    el('div', { class: 'actions' }, installButton(j, 'Install', 'primary')),
    runBlock(j));
}

function requiredCard(j) {
  const d = j.deferrals;
  const left = j.deferrals_left;
  return el('article', { class: 'job', 'data-job': j.job_id, 'aria-labelledby': `title-${j.job_id}` },
    el('h3', { id: `title-${j.job_id}` }, title(j)),
    jobFacts(j),
    el('dl', {},
      el('dt', {}, 'Installs'), el('dd', {}, fmtTime(j.due || j.mandatory_after), ' (', el('span', { class: 'countdown', 'data-due': j.due || j.mandatory_after }), ')'),
      d && d.deadline ? [el('dt', {}, 'Deadline'), el('dd', { class: 'deadline' }, fmtTime(d.deadline))] : null,
      d ? [el('dt', {}, 'Deferrals left'), el('dd', { class: 'deferrals-left' }, `${left ?? 0} of ${d.max}`)] : null),
    mayRestart(j) ? el('p', { class: 'warning' }, 'This installation may restart the computer: save your work first.') : null,
    el('div', { class: 'actions' },
      installButton(j, 'Install now', 'primary'),
      d ? el('button', { type: 'button', class: 'secondary defer', id: `defer-${j.job_id}`, disabled: !j.can_defer || running(j),
        title: j.can_defer ? `Put it off for ${d.each}` : (j.defer_why || ''),
        onclick: () => post(`api/jobs/${encodeURIComponent(j.job_id)}/defer`) }, 'Defer') : null,
      d && !j.can_defer && j.defer_why ? el('p', { class: 'hint' }, `Cannot defer: ${j.defer_why}`) : null),
    runBlock(j));
}

function byWhom(st) {
  if (st.runner === 'desktop') return st.user ? `${st.user} (you)` : 'you';
  return 'the system (in the background)';
}

function historyRow(r) {
  const when = r.finished_at || r.started_at;
  let result = r.exit_code !== undefined && r.exit_code !== null ? `${r.state} (exit code ${r.exit_code})` : r.state;
  if (r.state === 'deferred' && r.deferred_until) result = `deferred until ${fmtTime(r.deferred_until)}`;
  const name = r.name || (r.package ? `${r.package.name} ${r.package.version}` : r.job_id);
  return el('tr', { 'data-job': r.job_id },
    el('td', {}, name),
    el('td', { class: 'by' }, byWhom(r)),
    el('td', {}, fmtTime(when)),
    el('td', { class: `result state-${r.state}` }, result, r.reason ? el('div', { class: 'hint' }, r.reason) : null),
    el('td', {}, r.output_tail ? el('details', { id: `out-${r.job_id}` }, el('summary', {}, 'Show output'), el('pre', { class: 'output' }, r.output_tail)) : '-'));
}

// withRuns is list and the jobs run from this page that are no longer
// listed (they ran), mandatory or not.
function withRuns(list, mandatory) {
  const listed = new Set([...snap.available, ...snap.required].map((j) => j.job_id));
  const ran = Object.values(snap.runs).filter((r) => r.job && !listed.has(r.job_id) && !!r.job.mandatory_after === mandatory).map((r) => r.job);
  return list.concat(ran);
}

function render() {
  if (!snap) return;
  const focused = document.activeElement && document.activeElement.id;
  const open = new Set([...document.querySelectorAll('details[open]')].map((d) => d.id));
  $('#client').textContent = snap.client;
  const banner = $('#banner');
  if (snap.busy) {
    const text = snap.busy.text || 'an installation runs in the background';
    banner.textContent = text.charAt(0).toUpperCase() + text.slice(1) + '. What you install starts when it finishes.';
    banner.hidden = false;
  } else {
    banner.textContent = '';
    banner.hidden = true;
  }
  if (snap.error) showError(snap.error);
  const available = withRuns(snap.available, false), required = withRuns(snap.required, true);
  $('#available').replaceChildren(...(available.length ? available.map(availableCard) : [el('p', { class: 'empty' }, 'Nothing to install right now.')]));
  $('#required').replaceChildren(...(required.length ? required.map(requiredCard) : [el('p', { class: 'empty' }, 'Nothing required right now.')]));
  $('#history tbody').replaceChildren(...(snap.history.length ? snap.history.map(historyRow) : [el('tr', {}, el('td', { colspan: 5, class: 'empty' }, 'Nothing ran here yet.'))]));
  $('#count-available').textContent = snap.available.length || '';
  $('#count-required').textContent = snap.required.length || '';
  const notices = snap.notices.filter((n) => shownNotices.includes(n.kind)).slice(-5).reverse();
  $('#notices').replaceChildren(...notices.map((n) => el('li', { 'data-kind': n.kind }, n.text)));
  $('#notices-section').hidden = notices.length === 0;
  for (const id of open) { const d = document.getElementById(id); if (d) d.open = true; }
  if (focused) { const f = document.getElementById(focused); if (f) f.focus(); }
  tick();
}

// tick updates the countdowns and elapsed times.
function tick() {
  const now = Date.now();
  for (const e of document.querySelectorAll('.countdown')) {
    const ms = new Date(e.dataset.due).getTime() - now;
    e.textContent = ms > 0 ? `in ${fmtDuration(ms)}` : 'now';
  }
  for (const e of document.querySelectorAll('.elapsed')) {
    const end = e.dataset.end ? new Date(e.dataset.end).getTime() : now;
    e.textContent = `${fmtDuration(end - new Date(e.dataset.start).getTime())} elapsed`;
  }
}

function show(page, focus) {
  if (!pages.includes(page)) page = 'available';
  for (const p of pages) {
    const tab = $(`#tab-${p}`);
    tab.setAttribute('aria-selected', String(p === page));
    tab.tabIndex = p === page ? 0 : -1;
    $(`#panel-${p}`).hidden = p !== page;
  }
  if (focus) $(`#tab-${page}`).focus();
}

for (const p of pages) {
  const tab = $(`#tab-${p}`);
  tab.addEventListener('click', () => { location.hash = p; });
  tab.addEventListener('keydown', (ev) => {
    const i = pages.indexOf(p);
    let next = null;
    if (ev.key === 'ArrowRight') next = pages[(i + 1) % pages.length];
    if (ev.key === 'ArrowLeft') next = pages[(i + pages.length - 1) % pages.length];
    if (ev.key === 'Home') next = pages[0];
    if (ev.key === 'End') next = pages[pages.length - 1];
    if (next) { ev.preventDefault(); location.hash = next; show(next, true); }
  });
}
window.addEventListener('hashchange', () => show(location.hash.slice(1)));
show(location.hash.slice(1));

const source = new EventSource('api/events');
source.addEventListener('state', (ev) => {
  snap = JSON.parse(ev.data);
  $('#live').textContent = '';
  render();
});
source.addEventListener('error', () => { $('#live').textContent = '(reconnecting…)'; });
setInterval(tick, 1000);
