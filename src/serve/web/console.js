// The owner's console: the server's state, the guard's verdicts (with one-click reversal), keys
// and their usage, the model's provenance. Everything comes from GET /v1/console with an admin
// key, kept for this tab only (sessionStorage); nothing is stored in cookies.
'use strict';

const $ = (id) => document.getElementById(id);
let key = sessionStorage.getItem('distill.admin') || '';
let timer = null;

function card(label, value) { return el('div', { class: 'card' }, el('b', {}, value), el('span', { class: 'muted small' }, label)); }
const fmt = (v, d = 0) => (v === null || v === undefined ? '—' : Number(v).toFixed(d));

function renderServer(s) {
  const m = s.metrics;
  $('server').replaceChildren(el('div', { class: 'cards' },
    card('slots busy', `${m.slots_busy} / ${m.slots_total}`), card('queued', m.queued),
    card('tokens/s (last minute)', fmt(m.tokens_per_s_last_minute, 1)), card('requests', m.requests),
    card('latency p50 / p95 / p99 (s)', `${fmt(m.latency_s.p50, 2)} / ${fmt(m.latency_s.p95, 2)} / ${fmt(m.latency_s.p99, 2)}`),
    card('first token p50 (s)', fmt(m.first_token_s.p50, 3)),
    card('refused (auth / quota / guard / queue)', `${m.rejected.auth ?? 0} / ${m.rejected.quota ?? 0} / ${m.rejected.guard ?? 0} / ${m.rejected.queue_full ?? 0}`)));
}

async function act(name, action) {
  try {
    await api('/v1/guard/keys/' + encodeURIComponent(name), { method: 'POST', body: { action }, key });
    refresh();
  } catch (e) { alert(e.message); }
}

function renderGuard(g) {
  if (!g) { $('guard').replaceChildren(el('p', { class: 'muted' }, 'The guard is off on this server.')); return; }
  const rows = g.keys.map((k) => el('tr', { 'data-key': k.key },
    el('td', {}, k.key), el('td', { class: 'level-' + k.level }, k.level + (k.owner !== 'auto' ? ` (owner: ${k.owner})` : '')),
    el('td', {}, fmt(k.score, 2)), el('td', {}, k.requests),
    el('td', {}, el('ul', { class: 'reasons' }, ...k.reasons.map((r) => el('li', {}, r)))),
    el('td', {}, ...['reset', 'allow', 'auto'].map((a) => el('button', { onclick: () => act(k.key, a), 'aria-label': `${a} ${k.key}` }, a)))));
  $('guard').replaceChildren(
    el('p', { class: 'muted small' }, `levels: alert ≥ ${g.thresholds.alert}, strip log-probs ≥ ${g.thresholds.strip_logprobs}, ` +
      `throttle ≥ ${g.thresholds.throttle}, block ≥ ${g.thresholds.block}`),
    el('table', {}, el('thead', {}, el('tr', {}, ...['key', 'level', 'score', 'requests', 'reasons', 'owner'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...rows)));
}

function renderKeys(keys) {
  if (!keys.length) { $('keys').replaceChildren(el('p', { class: 'muted' }, 'No API keys: the server is open to anyone who can connect.')); return; }
  const rows = keys.map((k) => el('tr', { 'data-key': k.name },
    el('td', {}, k.name + (k.admin ? ' (admin)' : '') + (k.watermark ? ' (watermarked)' : '')),
    el('td', {}, k.requests_per_minute || '∞'), el('td', {}, k.tokens_per_day || '∞'), el('td', {}, k.tokens_today),
    el('td', {}, k.requests_24h), el('td', {}, barChart(k.hourly_requests, { title: `${k.name}: requests per hour` }))));
  $('keys').replaceChildren(el('table', {},
    el('thead', {}, el('tr', {}, ...['key', 'requests / min', 'tokens / day', 'tokens today', 'requests (24 h)', 'requests per hour'].map((h) => el('th', {}, h)))),
    el('tbody', {}, ...rows)));
}

// One generation per row: what made the model, from what (parents nested in the record).
function lineageRows(p, depth = 0) {
  if (!p || typeof p !== 'object') return [];
  const named = (f) => (f.path || f.url || '?') + (f.sha256 ? ` (sha256 ${f.sha256.slice(0, 12)}…)` : '');
  const rows = [el('tr', {}, el('td', {}, depth ? `parent ${depth}` : 'this model'), el('td', {}, `${p.command || '?'} by ${p.tool || '?'}, ${p.created || '?'}`),
    el('td', {}, p.teacher ? named(p.teacher) : '—'), el('td', {}, (p.data || []).map(named).join(', ') || '—'))];
  if (p.parent) rows.push(...lineageRows(p.parent.provenance, depth + 1));
  return rows;
}

function renderModel(m) {
  const facts = el('p', {}, `${m.name}: ${m.architecture}, ${(m.parameters / 1e6).toFixed(2)} M parameters, ${m.slots} slots × ${m.context} positions`);
  if (!m.provenance) {
    $('model').replaceChildren(facts, el('p', { class: 'muted' }, 'No provenance record (made outside distill, or before provenance.json).'));
    return;
  }
  $('model').replaceChildren(facts,
    el('table', {}, el('thead', {}, el('tr', {}, ...['generation', 'made by', 'teacher', 'data'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...lineageRows(m.provenance))),
    el('details', {}, el('summary', {}, 'the whole record'), el('pre', { class: 'json' }, JSON.stringify(m.provenance, null, 2))));
}

// The report itself, fetched with the key and saved (a page opened from here could not carry it).
async function downloadReport(name) {
  const res = await fetch('/v1/console/runs/report?name=' + encodeURIComponent(name), { headers: { Authorization: 'Bearer ' + key } });
  if (!res.ok) { alert(`report: HTTP ${res.status}`); return; }
  const a = el('a', { href: URL.createObjectURL(await res.blob()), download: name.replaceAll('/', '-') + '-report.html' });
  document.body.append(a);
  a.click();
  a.remove();
}

async function refreshRuns() {
  try {
    const r = await api('/v1/console/runs', { key });
    if (!r.data.length) {
      $('runs').replaceChildren(el('p', { class: 'muted' }, r.runs_dir ? `No runs with a report.html under ${r.runs_dir}.` : 'Give the server a runs directory (serve --runs DIR) to see training runs here.'));
      return;
    }
    const rows = r.data.map((run) => el('tr', { 'data-run': run.name },
      el('td', {}, run.name), el('td', {}, run.kind), el('td', {}, run.steps),
      el('td', {}, lineChart([{ name: 'loss', color: '#2b59c3', points: run.loss }, { name: 'held-out', color: '#b42318', points: run.eval_loss },
                              { name: 'reward', color: '#067647', points: run.reward }], { title: run.name + ' curves' })),
      el('td', {}, el('button', { onclick: () => downloadReport(run.name) }, 'report.html'))));
    $('runs').replaceChildren(el('table', {}, el('thead', {}, el('tr', {}, ...['run', 'kind', 'steps', 'curves', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...rows)));
  } catch (e) { $('runs').replaceChildren(el('p', { class: 'error' }, e.message)); }
}

async function refresh() {
  try {
    const s = await api('/v1/console', { key });
    $('login').hidden = true;
    $('panels').hidden = false;
    renderServer(s); renderGuard(s.guard); renderKeys(s.keys); renderModel(s.model);
  } catch (e) {
    $('panels').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = key ? e.message : '';
    clearInterval(timer);
    timer = null;
  }
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  key = $('admin-key').value;
  sessionStorage.setItem('distill.admin', key);
  refresh().then(() => { if (!$('panels').hidden) { refreshRuns(); if (!timer) timer = setInterval(refresh, 5000); } });
});
if (key) refresh().then(() => { if (!$('panels').hidden) { refreshRuns(); timer = setInterval(refresh, 5000); } });
