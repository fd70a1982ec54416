// Nopal console: plain JavaScript, no framework. The page opens one
// EventSource on /api/events (a snapshot, then the changes) and asks the
// JSON API for lookups, lists and actions.
'use strict';

const $ = (sel, root) => (root || document).querySelector(sel);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
};
const badge = (text, cls) => el('span', { class: 'badge ' + (cls || text) }, text);

// ---- token: from the URL's #token=…, kept for this tab ----
(function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem('nopal-console-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search + '#cluster');
  }
})();
const token = () => sessionStorage.getItem('nopal-console-token') || '';

async function api(path, opts) {
  opts = opts || {};
  const headers = Object.assign({}, opts.headers || {});
  if (token()) headers['Authorization'] = 'Bearer ' + token();
  let body = opts.body;
  if (body !== undefined) { headers['Content-Type'] = 'application/json'; body = JSON.stringify(body); }
  const res = await fetch(path, { method: opts.method || 'GET', headers, body });
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) {
    if (res.status === 401 && !opts.retried) {
      const t = prompt((data && data.error) || 'This needs the console token', token());
      if (t) { sessionStorage.setItem('nopal-console-token', t.trim()); return api(path, Object.assign({}, opts, { retried: true })); }
    }
    throw new Error((data && data.error) || (res.status + ' ' + res.statusText));
  }
  return data;
}

function toast(msg, err) {
  const t = $('#toast');
  t.textContent = msg;
  t.className = 'toast' + (err ? ' err' : '');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.add('hidden'), 4000);
}

// ---- time ----
let skew = 0; // server clock - browser clock, ms
const now = () => Date.now() + skew;
const fmtTime = (t) => { if (!t) return ''; const d = new Date(t); return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0'); };
const fmtDate = (t) => { if (!t) return ''; const d = new Date(t); return d.toLocaleDateString() + ' ' + d.toLocaleTimeString([], { hour12: false }); };
function fmtAge(ms) {
  if (ms < 0) ms = 0;
  if (ms < 10000) return (ms / 1000).toFixed(1) + ' s';
  if (ms < 120000) return Math.round(ms / 1000) + ' s';
  if (ms < 7200000) return Math.round(ms / 60000) + ' min';
  return Math.round(ms / 3600000) + ' h';
}
const ago = (t) => fmtAge(now() - new Date(t).getTime()) + ' ago';

// ---- views ----
function showView() {
  let v = (location.hash || '#cluster').slice(1).split('&')[0];
  if (!$('#view-' + v)) v = 'cluster';
  document.querySelectorAll('.view').forEach((s) => s.classList.toggle('active', s.id === 'view-' + v));
  document.querySelectorAll('#tabs a').forEach((a) => a.classList.toggle('active', a.dataset.view === v));
  if (v === 'jobs' && !state.jobsLoaded) loadJobs();
  if (v === 'jobs') loadDLQ();
}
window.addEventListener('hashchange', showView);

const state = {
  servers: [], serverEvents: [], users: { online: 0, per_frontend: {}, recent: [] }, userEvents: [],
  groups: [], jobCounts: {}, traffic: [], jobs: [], jobsNext: '', jobsLoaded: false,
  selectedJob: '', selectedGroup: '', paused: false, skipped: 0,
};

// ---- cluster ----
function renderServers() {
  const list = state.servers;
  $('#n-servers').textContent = list.length;
  $('#n-frontends').textContent = list.filter((s) => s.frontend).length;
  $('#n-types').textContent = new Set(list.map((s) => s.type)).size;
  const box = $('#servers');
  box.replaceChildren();
  if (!list.length) { box.append(el('p', { class: 'empty' }, 'No server in the cluster.')); return; }
  const byType = {};
  for (const s of list) (byType[s.type] = byType[s.type] || []).push(s);
  for (const type of Object.keys(byType).sort()) {
    const rows = byType[type].map((s) => el('tr', { 'data-server': s.id },
      el('td', {}, el('code', {}, s.id)),
      el('td', {}, s.frontend ? badge('frontend', 'yes') : badge('backend', 'other')),
      el('td', {}, s.frontend ? sessionsText(s) : '—'),
      el('td', { class: 'age', 'data-beat': s.last_beat }, ''),
      el('td', {}, s.version || ''),
      el('td', {}, s.hostname || ''),
      el('td', {}, el('div', { class: 'chips' }, Object.entries(s.metadata || {}).filter(([k]) => !k.startsWith('nopal.')).sort().map(([k, v]) => el('span', { class: 'chip' }, k + '=' + v)))),
    ));
    box.append(el('div', { class: 'type-block' },
      el('h3', {}, type + ' (' + byType[type].length + ')'),
      el('table', {}, el('thead', {}, el('tr', {}, ['id', 'role', 'sessions', 'heartbeat', 'version', 'host', 'metadata'].map((h) => el('th', {}, h)))), el('tbody', {}, rows))));
  }
  tickAges();
}

// sessionsText shows a frontend's connected and suspended sessions (the
// counts it publishes with its heartbeats) and the uids bound on it.
function sessionsText(s) {
  const md = s.metadata || {};
  const bound = String(s.sessions || 0) + ' bound';
  if (md['nopal.connected'] === undefined) return bound;
  return md['nopal.connected'] + ' connected, ' + (md['nopal.suspended'] || '0') + ' suspended, ' + bound;
}

function tickAges() {
  document.querySelectorAll('td.age[data-beat]').forEach((td) => {
    const ms = now() - new Date(td.dataset.beat).getTime();
    td.textContent = fmtAge(ms) + ' ago';
    td.classList.toggle('stale', ms > 2500);
  });
  document.querySelectorAll('[data-expires]').forEach((td) => {
    const ms = new Date(td.dataset.expires).getTime() - now();
    td.textContent = ms > 0 ? 'in ' + fmtAge(ms) : 'expired';
  });
}
setInterval(tickAges, 250);

function feedItem(kind, text, at) {
  return el('li', {}, el('span', { class: 't' }, fmtTime(at)), badge(kind), ' ', text);
}
function renderClusterFeed() {
  const ul = $('#cluster-feed');
  ul.replaceChildren();
  if (!state.serverEvents.length) { ul.append(el('li', { class: 'empty' }, 'Nothing yet: servers that join, leave or die show up here.')); return; }
  for (const ev of state.serverEvents.slice().reverse()) {
    ul.append(feedItem(ev.kind, el('span', {}, el('code', {}, ev.server.id), ' (' + ev.server.type + (ev.server.frontend ? ', frontend' : '') + ')'), ev.at));
  }
}

// ---- users ----
function renderUsers() {
  const u = state.users;
  $('#n-online').textContent = u.online;
  $('#u-online').textContent = u.online;
  const per = $('#u-per');
  per.replaceChildren(...Object.entries(u.per_frontend || {}).sort().map(([f, n]) => el('span', { class: 'chip' }, f + ': ' + n)));
  if (!per.children.length) per.append(el('span', { class: 'empty' }, 'nobody'));
  const tb = $('#users-table tbody');
  tb.replaceChildren(...(u.recent || []).map((x) => el('tr', { class: 'clickable', 'data-uid': x.uid, onclick: () => lookUp(x.uid) },
    el('td', {}, el('code', {}, x.uid)), el('td', {}, x.frontend), el('td', {}, String(x.session)), el('td', {}, fmtTime(x.since)))));
  if (!tb.children.length) tb.append(el('tr', {}, el('td', { colspan: 4, class: 'empty' }, 'Nobody is online.')));
}
function renderUserFeed() {
  const ul = $('#user-feed');
  ul.replaceChildren();
  if (!state.userEvents.length) { ul.append(el('li', { class: 'empty' }, 'Nothing yet.')); return; }
  for (const ev of state.userEvents.slice().reverse().slice(0, 100)) {
    ul.append(feedItem(ev.kind, el('span', {}, el('code', {}, ev.uid), ev.frontend ? ' on ' + ev.frontend : ''), ev.at));
  }
}

async function lookUp(uid) {
  $('#user-uid').value = uid;
  const box = $('#user-info');
  box.replaceChildren(el('p', { class: 'empty' }, 'Looking up…'));
  try {
    const u = await api('/api/user?uid=' + encodeURIComponent(uid));
    const kick = el('button', { class: 'danger', id: 'kick-btn', onclick: async () => {
      if (!confirm('Kick ' + uid + '?')) return;
      try { const r = await api('/api/user/kick', { method: 'POST', body: { uid } }); toast('Kicked ' + r.uid + ' from ' + r.frontend); lookUp(uid); }
      catch (e) { toast(e.message, true); }
    } }, 'Kick');
    box.replaceChildren(el('div', { class: 'panel', id: 'user-panel' },
      el('dl', { class: 'kv' },
        el('dt', {}, 'uid'), el('dd', {}, el('code', {}, u.uid)),
        el('dt', {}, 'online'), el('dd', {}, u.online ? badge('online', 'yes') : badge('offline', 'other')),
        u.online ? [el('dt', {}, 'frontend'), el('dd', {}, u.frontend), el('dt', {}, 'session'), el('dd', {}, String(u.session))] : []),
      u.online ? [el('h3', {}, 'session data'), u.data ? el('pre', {}, JSON.stringify(u.data, null, 2)) : el('p', { class: 'note' }, u.data_note || ''), kick] : []));
  } catch (e) {
    box.replaceChildren(el('p', { class: 'empty' }, e.message));
  }
}
$('#user-form').addEventListener('submit', (e) => { e.preventDefault(); const uid = $('#user-uid').value.trim(); if (uid) lookUp(uid); });

// ---- groups ----
function renderGroups() {
  const tb = $('#groups-table tbody');
  tb.replaceChildren(...state.groups.map((g) => el('tr', { class: 'clickable' + (g.name === state.selectedGroup ? ' sel' : ''), 'data-group': g.name, onclick: () => showGroup(g.name) },
    el('td', {}, el('code', {}, g.name)), el('td', {}, String(g.members)), el('td', {}, g.ttl || 'none'),
    el('td', g.expires_at ? { 'data-expires': g.expires_at } : {}, g.expires_at ? '' : 'never'), el('td', {}, fmtDate(g.created)))));
  if (!tb.children.length) tb.append(el('tr', {}, el('td', { colspan: 5, class: 'empty' }, 'No group.')));
  tickAges();
  if (state.selectedGroup) showGroup(state.selectedGroup, true);
}
async function showGroup(name, quiet) {
  state.selectedGroup = name;
  document.querySelectorAll('#groups-table tbody tr').forEach((tr) => tr.classList.toggle('sel', tr.dataset.group === name));
  $('#group-title').textContent = 'Members of ' + name;
  const box = $('#group-members');
  try {
    const g = await api('/api/group?name=' + encodeURIComponent(name));
    box.replaceChildren(el('p', { class: 'note' }, g.members + ' member' + (g.members === 1 ? '' : 's') + (g.ttl ? ', TTL ' + g.ttl : '')),
      el('ul', { class: 'feed' }, g.uids.length ? g.uids.map((u) => el('li', { class: 'clickable', onclick: () => { location.hash = '#users'; lookUp(u); } }, el('code', {}, u))) : el('li', { class: 'empty' }, 'No member.')));
  } catch (e) {
    if (!quiet) toast(e.message, true);
    box.replaceChildren(el('p', { class: 'empty' }, e.message));
  }
}

// ---- jobs ----
const STATES = ['queued', 'running', 'retrying', 'succeeded', 'failed', 'dead', 'cancelled'];
function renderJobCounts() {
  $('#job-counts').replaceChildren(...STATES.map((s) => el('span', { class: 'chip', 'data-state': s, onclick: () => { $('#jf-state').value = s; loadJobs(); } },
    badge(s), el('b', {}, String(state.jobCounts[s] || 0)))));
}
function jobFilterQuery() {
  const q = new URLSearchParams();
  for (const [id, k] of [['#jf-state', 'state'], ['#jf-route', 'route'], ['#jf-since', 'since'], ['#jf-until', 'until']]) {
    const v = $(id).value.trim();
    if (v) q.set(k, v);
  }
  return q;
}
async function loadJobs(more) {
  state.jobsLoaded = true;
  const q = jobFilterQuery();
  if (more && state.jobsNext) q.set('cursor', state.jobsNext);
  try {
    const page = await api('/api/jobs?' + q);
    state.jobs = more ? state.jobs.concat(page.jobs) : page.jobs;
    state.jobsNext = page.next || '';
    renderJobs();
  } catch (e) { toast(e.message, true); }
}
function jobRow(j) {
  return el('tr', { class: 'clickable' + (j.jid === state.selectedJob ? ' sel' : ''), 'data-jid': j.jid, onclick: () => showJob(j.jid) },
    el('td', {}, el('code', {}, j.jid)), el('td', {}, j.route), el('td', { class: 'state' }, badge(j.state)),
    el('td', {}, String(j.tries !== undefined ? j.tries : (j.attempts || []).filter((a) => !a.skipped).length)), el('td', {}, fmtDate(j.created)), el('td', {}, fmtTime(j.updated)));
}
function renderJobs() {
  const tb = $('#jobs-table tbody');
  tb.replaceChildren(...state.jobs.map(jobRow));
  if (!tb.children.length) tb.append(el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'No job matches.')));
  $('#jobs-more').classList.toggle('hidden', !state.jobsNext);
}
$('#job-filter').addEventListener('submit', (e) => { e.preventDefault(); loadJobs(); });
$('#jobs-more').addEventListener('click', () => loadJobs(true));

async function showJob(jid) {
  state.selectedJob = jid;
  document.querySelectorAll('#jobs-table tbody tr').forEach((tr) => tr.classList.toggle('sel', tr.dataset.jid === jid));
  const box = $('#job-detail');
  let j;
  try { j = await api('/api/job?jid=' + encodeURIComponent(jid)); } catch (e) { box.replaceChildren(el('p', { class: 'empty' }, e.message)); return; }
  const act = (what) => async () => {
    try { const r = await api('/api/job/' + what, { method: 'POST', body: { jid } }); toast(what + ': ' + jid + ' is ' + r.state); updateJobRow(r); showJob(jid); loadDLQ(); }
    catch (e) { toast(e.message, true); }
  };
  const buttons = [];
  if (j.state === 'dead' || j.state === 'failed') buttons.push(el('button', { id: 'job-retry', onclick: act('retry') }, 'Retry'));
  if (j.state === 'queued' || j.state === 'retrying') buttons.push(el('button', { id: 'job-cancel', class: 'danger', onclick: act('cancel') }, 'Cancel'));
  const attempts = (j.attempts || []).map((a) => el('tr', {},
    el('td', {}, String(a.n)), el('td', {}, el('code', {}, a.server)), el('td', {}, fmtTime(a.started)),
    el('td', {}, a.ended ? fmtAge(new Date(a.ended) - new Date(a.started)) : 'running'),
    el('td', {}, a.skipped ? badge('skipped', 'other') : a.error ? [badge(a.error.code, 'error'), ' ', a.error.msg] : (a.ended ? badge('ok', 'yes') : ''))));
  const decode = (b64) => { try { return JSON.stringify(JSON.parse(atob(b64)), null, 2); } catch (e) { try { return atob(b64); } catch (e2) { return b64; } } };
  box.replaceChildren(el('div', { class: 'panel', id: 'job-panel', 'data-state': j.state },
    el('dl', { class: 'kv' },
      el('dt', {}, 'jid'), el('dd', {}, el('code', {}, j.jid)),
      el('dt', {}, 'route'), el('dd', {}, j.route),
      el('dt', {}, 'state'), el('dd', { id: 'job-state' }, badge(j.state)),
      el('dt', {}, 'attempts'), el('dd', {}, (j.attempts || []).length + ' of ' + j.max_attempts),
      el('dt', {}, 'created'), el('dd', {}, fmtDate(j.created)),
      el('dt', {}, 'updated'), el('dd', {}, fmtDate(j.updated)),
      j.not_before ? [el('dt', {}, 'not before'), el('dd', {}, fmtDate(j.not_before))] : [],
      j.deadline ? [el('dt', {}, 'deadline'), el('dd', {}, fmtDate(j.deadline))] : [],
      j.target ? [el('dt', {}, 'target'), el('dd', {}, j.target)] : []),
    el('div', { class: 'row' }, buttons),
    el('h3', {}, 'attempts'),
    attempts.length ? el('table', {}, el('thead', {}, el('tr', {}, ['#', 'server', 'started', 'took', 'outcome'].map((h) => el('th', {}, h)))), el('tbody', {}, attempts)) : el('p', { class: 'note' }, 'No attempt yet.'),
    j.last_error ? [el('h3', {}, 'last error'), el('pre', {}, j.last_error.code + ': ' + j.last_error.msg)] : [],
    j.arg ? [el('h3', {}, 'argument'), el('pre', {}, decode(j.arg))] : [],
    j.result ? [el('h3', {}, 'result'), el('pre', {}, decode(j.result))] : []));
}
function updateJobRow(j) {
  const i = state.jobs.findIndex((x) => x.jid === j.jid);
  if (i >= 0) { state.jobs[i] = Object.assign({}, state.jobs[i], j); const tr = $('#jobs-table tbody tr[data-jid="' + CSS.escape(j.jid) + '"]'); if (tr) tr.replaceWith(jobRow(state.jobs[i])); }
  return i >= 0;
}
async function loadDLQ() {
  try {
    const list = await api('/api/dlq');
    const tb = $('#dlq-table tbody');
    tb.replaceChildren(...list.map((d) => el('tr', { class: 'clickable', onclick: () => showJob(d.job.jid) },
      el('td', {}, el('code', {}, d.job.jid)), el('td', {}, d.job.route), el('td', {}, badge(d.state || d.job.state)),
      el('td', {}, d.job.last_error ? d.job.last_error.code + ': ' + d.job.last_error.msg : ''), el('td', {}, fmtDate(d.time)))));
    if (!tb.children.length) tb.append(el('tr', {}, el('td', { colspan: 5, class: 'empty' }, 'No dead letter.')));
  } catch (e) { toast(e.message, true); }
}
let jobsReload = 0, dlqReload = 0;
function onJobs(d) {
  state.jobCounts = d.counts;
  renderJobCounts();
  let unknown = false;
  for (const j of d.changed) {
    if (!updateJobRow(j)) unknown = true;
    if (j.jid === state.selectedJob) showJob(j.jid);
  }
  if (!$('#view-jobs').classList.contains('active')) return;
  if (unknown && state.jobsLoaded) { clearTimeout(jobsReload); jobsReload = setTimeout(() => loadJobs(), 400); }
  clearTimeout(dlqReload); dlqReload = setTimeout(loadDLQ, 300);
}

// ---- traffic ----
function trafficFilter() {
  return { route: $('#tf-route').value.trim(), uid: $('#tf-uid').value.trim(), server: $('#tf-server').value.trim() };
}
// subjectServer is the server id a subject names (<p>.srv.<id>.… or <p>.reply.<id>.…), as node replay matches -server.
function subjectServer(subj) {
  const rest = subj.startsWith(state.prefix + '.') ? subj.slice(state.prefix.length + 1) : '';
  const t = rest.split('.');
  return (t[0] === 'srv' || t[0] === 'reply') ? t[1] || '' : '';
}
function matches(e, f) {
  if (f.route && e.route !== f.route && !((e.route || '').startsWith(f.route + '.'))) return false;
  if (f.uid && e.uid !== f.uid && !(e.uids || []).includes(f.uid)) return false;
  if (f.server && e.recorder !== f.server && subjectServer(e.subject) !== f.server) return false;
  return true;
}
function trafficRow(e) {
  const payload = e.error ? e.error.code + ' ' + (e.error.msg || '') : (e.payload !== undefined ? JSON.stringify(e.payload) : '');
  return el('tr', { class: 'clickable', 'data-kind': e.kind, 'data-route': e.route || '', onclick: () => showHops(e) },
    el('td', {}, fmtTime(e.time)), el('td', {}, badge(e.error ? 'error' : e.kind, e.error ? 'error' : e.kind)), el('td', {}, e.route || ''),
    el('td', {}, e.uid || (e.uids || []).join(',')), el('td', {}, e.recorder), el('td', { class: 'subject', title: e.subject }, e.subject), el('td', { class: 'payload', title: payload }, payload));
}
function renderTraffic() {
  const f = trafficFilter();
  const rows = state.traffic.filter((e) => matches(e, f)).slice(-300).reverse().map(trafficRow);
  const tb = $('#traffic-table tbody');
  tb.replaceChildren(...rows);
  if (!rows.length) tb.append(el('tr', {}, el('td', { colspan: 7, class: 'empty' }, 'No traffic yet (servers record it unless started with -traffic=false).')));
  $('#tf-info').textContent = (state.paused ? 'paused · ' : '') + state.traffic.length + ' lines kept' + (state.skipped ? ' · ' + state.skipped + ' skipped under load' : '');
}
function addTraffic(lines) {
  state.traffic = state.traffic.concat(lines);
  if (state.traffic.length > 2000) state.traffic = state.traffic.slice(-2000);
  if (state.paused) { renderTrafficInfo(); return; }
  const f = trafficFilter();
  const tb = $('#traffic-table tbody');
  const empty = tb.querySelector('td.empty');
  if (empty) tb.replaceChildren();
  for (const e of lines) if (matches(e, f)) tb.prepend(trafficRow(e));
  while (tb.children.length > 300) tb.lastChild.remove();
  renderTrafficInfo();
}
function renderTrafficInfo() {
  $('#tf-info').textContent = (state.paused ? 'paused · ' : '') + state.traffic.length + ' lines kept' + (state.skipped ? ' · ' + state.skipped + ' skipped under load' : '');
}
for (const id of ['#tf-route', '#tf-uid', '#tf-server']) $(id).addEventListener('input', renderTraffic);
$('#traffic-filter').addEventListener('submit', (e) => e.preventDefault());
$('#tf-pause').addEventListener('click', () => { state.paused = !state.paused; $('#tf-pause').textContent = state.paused ? 'Resume' : 'Pause'; renderTraffic(); });
$('#tf-clear').addEventListener('click', () => { state.traffic = []; state.skipped = 0; renderTraffic(); });

function traceOf(e) {
  for (const [k, v] of Object.entries(e.headers || {})) if (k.toLowerCase() === 'traceparent') { const p = v.split('-'); if (p.length === 4) return p[1]; }
  return '';
}
async function showHops(e) {
  const box = $('#hops');
  box.classList.remove('hidden');
  let hops = [e];
  if ((e.kind === 'call' || e.kind === 'reply') && e.route) {
    const q = new URLSearchParams({ kind: e.kind, at: e.time, route: e.route, frontend: e.frontend || subjectServer(e.subject) });
    const uid = e.uid || (e.uids || [])[0];
    if (uid) q.set('uid', uid);
    const trace = traceOf(e);
    if (trace) q.set('trace', trace);
    try { const r = await api('/api/traffic/hops?' + q); if (r.hops.length) hops = r.hops; } catch (err) { toast(err.message, true); }
  }
  const t0 = new Date(hops[0].time).getTime();
  const head = el('div', { class: 'hops-head' },
    el('b', {}, 'Hops of ' + (e.route || e.subject)), ' ',
    el('span', { class: 'note' }, hops.length === 1 ? (e.kind === 'call' ? 'no reply found: a notify has none' : 'a single record') : hops.length + ' records, from its call to its reply'),
    el('button', { class: 'secondary', onclick: () => box.classList.add('hidden') }, 'Close'));
  box.replaceChildren(head, el('div', { class: 'hops-row' }, hops.map((h) => el('div', { class: 'hop' },
    el('span', { class: 'delta' }, '+' + (new Date(h.time).getTime() - t0) + ' ms'),
    badge(h.error ? 'error' : h.kind, h.error ? 'error' : h.kind), ' ', el('b', {}, h.route || ''),
    el('dl', { class: 'kv' },
      el('dt', {}, 'time'), el('dd', {}, fmtTime(h.time)),
      el('dt', {}, 'recorder'), el('dd', {}, h.recorder),
      el('dt', {}, 'subject'), el('dd', {}, el('code', {}, h.subject)),
      h.reply ? [el('dt', {}, 'reply'), el('dd', {}, el('code', {}, h.reply))] : [],
      h.uid ? [el('dt', {}, 'uid'), el('dd', {}, h.uid)] : [],
      h.frontend ? [el('dt', {}, 'frontend'), el('dd', {}, h.frontend)] : []),
    h.error ? el('pre', {}, JSON.stringify(h.error, null, 2)) : (h.payload !== undefined ? el('pre', {}, JSON.stringify(h.payload, null, 2)) : null)))));
}

// ---- live updates ----
function connect() {
  const url = '/api/events' + (token() ? '?token=' + encodeURIComponent(token()) : '');
  const es = new EventSource(url);
  const conn = $('#conn');
  es.onopen = () => { conn.textContent = 'live'; conn.className = 'conn on'; };
  es.onerror = () => { conn.textContent = 'reconnecting…'; conn.className = 'conn off'; };
  const on = (name, f) => es.addEventListener(name, (m) => f(JSON.parse(m.data)));
  on('snapshot', (s) => {
    skew = new Date(s.now).getTime() - Date.now();
    state.prefix = s.prefix;
    state.servers = s.servers || [];
    state.serverEvents = s.server_events || [];
    state.users = s.users;
    state.userEvents = s.user_events || [];
    state.groups = s.groups || [];
    state.jobCounts = s.job_counts || {};
    state.traffic = s.traffic || [];
    renderServers(); renderClusterFeed(); renderUsers(); renderUserFeed(); renderGroups(); renderJobCounts(); renderTraffic();
  });
  on('servers', (list) => { state.servers = list; renderServers(); });
  on('cluster', (ev) => { state.serverEvents.push(ev); if (state.serverEvents.length > 100) state.serverEvents.shift(); renderClusterFeed(); });
  on('beats', (d) => {
    skew = new Date(d.now).getTime() - Date.now();
    for (const s of state.servers) if (d.beats[s.id]) s.last_beat = d.beats[s.id];
    for (const [id, t] of Object.entries(d.beats)) { const td = $('tr[data-server="' + CSS.escape(id) + '"] td.age'); if (td) td.dataset.beat = t; }
    tickAges();
  });
  on('users', (d) => { state.users = d.users; state.userEvents = state.userEvents.concat(d.events || []).slice(-100); renderUsers(); renderUserFeed(); });
  on('groups', (g) => { state.groups = g || []; renderGroups(); });
  on('jobs', onJobs);
  on('dlq', () => { if ($('#view-jobs').classList.contains('active')) { clearTimeout(dlqReload); dlqReload = setTimeout(loadDLQ, 100); } });
  on('traffic', (b) => { state.skipped += b.skipped || 0; addTraffic(b.lines || []); });
}

showView();
connect();
