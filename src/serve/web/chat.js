// The chat page: conversations kept in this browser's storage, answers streamed from
// /v1/chat/completions (SSE), reasoning (<think>…</think>, or a harmony model's
// reasoning_content) folded away, a stop button, sampling settings and tokens/s.
'use strict';

const store = {
  load(name, fallback) { try { return JSON.parse(localStorage.getItem('distill.' + name)) ?? fallback; } catch (e) { return fallback; } },
  save(name, value) { localStorage.setItem('distill.' + name, JSON.stringify(value)); },
};
const $ = (id) => document.getElementById(id);
let conversations = store.load('conversations', []);
let current = store.load('current', null);
let model = null;
let running = null;  // {controller} while an answer streams

const settingIds = ['system', 'temperature', 'top_p', 'max_tokens'];
function loadSettings() {
  const s = store.load('settings', {});
  for (const id of settingIds) if (s[id] !== undefined) $(id).value = s[id];
  $('api-key').value = sessionStorage.getItem('distill.key') || '';
}
function saveSettings() {
  const s = {};
  for (const id of settingIds) s[id] = $(id).value;
  store.save('settings', s);
  sessionStorage.setItem('distill.key', $('api-key').value);
}

function conversation() { return conversations.find((c) => c.id === current); }
function persist() { store.save('conversations', conversations); store.save('current', current); }

function newConversation() {
  const c = { id: String(Date.now()) + Math.random().toString(16).slice(2, 6), title: 'New conversation', messages: [] };
  conversations.unshift(c);
  current = c.id;
  persist();
  render();
  $('input').focus();
}

// <think>…</think> at the start of a reply is its reasoning (an unclosed one is still thinking).
function splitThink(text) {
  const m = text.match(/^\s*<think>([\s\S]*?)(<\/think>|$)([\s\S]*)/);
  return m ? { reasoning: m[1], answer: m[3] } : { reasoning: '', answer: text };
}

function messageView(m) {
  const box = el('div', { class: 'msg ' + m.role });
  if (m.role === 'user') {
    box.append(el('div', { class: 'text pre-wrap' }, m.content));
    return box;
  }
  const { reasoning, answer } = splitThink(m.content || '');
  const thinking = (m.reasoning || '') + reasoning;
  if (thinking) box.append(el('details', { class: 'reasoning' }, el('summary', {}, 'Reasoning'), el('div', { class: 'pre-wrap' }, thinking)));
  const body = el('div', { class: 'text' });
  body.append(renderMarkdown(answer));
  box.append(body);
  if (m.stats) box.append(el('div', { class: 'meta' }, m.stats));
  return box;
}

function render() {
  const list = $('conversations');
  list.replaceChildren();
  for (const c of conversations) {
    list.append(el('li', { class: c.id === current ? 'current' : '' },
      el('button', { class: 'open', title: c.title, onclick: () => { current = c.id; persist(); render(); $('sidebar').classList.remove('open'); } }, c.title),
      el('button', { class: 'icon', 'aria-label': 'Delete ' + c.title, onclick: () => {
        conversations = conversations.filter((x) => x !== c);
        if (current === c.id) current = conversations[0]?.id ?? null;
        persist(); render();
      } }, '×')));
  }
  const box = $('messages');
  box.replaceChildren(...(conversation()?.messages ?? []).map(messageView));
  box.scrollTop = box.scrollHeight;
}

function setRunning(r) {
  running = r;
  $('send').hidden = !!r;
  $('stop').hidden = !r;
}

async function send(text) {
  if (!model) await findModel();
  if (!model) return;
  if (!conversation()) newConversation();
  const c = conversation();
  if (c.messages.length === 0) c.title = text.slice(0, 40);
  c.messages.push({ role: 'user', content: text });
  const reply = { role: 'assistant', content: '', reasoning: '' };
  c.messages.push(reply);
  persist();
  render();
  saveSettings();
  const messages = [];
  if ($('system').value.trim()) messages.push({ role: 'system', content: $('system').value });
  for (const m of c.messages.slice(0, -1)) messages.push({ role: m.role, content: m.content });
  const body = { model, messages, stream: true, stream_options: { include_usage: true },
                 temperature: Number($('temperature').value), top_p: Number($('top_p').value), max_tokens: Number($('max_tokens').value) };
  const controller = new AbortController();
  setRunning({ controller });
  $('status').textContent = 'answering…';
  const t0 = performance.now();
  let tokens = 0, first = null, stopped = false;
  const view = () => $('messages').lastElementChild;
  try {
    const headers = { 'Content-Type': 'application/json' };
    if ($('api-key').value) headers.Authorization = 'Bearer ' + $('api-key').value;
    const res = await fetch('/v1/chat/completions', { method: 'POST', headers, body: JSON.stringify(body), signal: controller.signal });
    if (!res.ok) {
      const err = await res.json().catch(() => ({}));
      throw new Error(err.error?.message || `HTTP ${res.status}`);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split('\n')) {
          if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
          const chunk = JSON.parse(line.slice(6));
          if (chunk.usage) tokens = chunk.usage.completion_tokens;
          const delta = chunk.choices?.[0]?.delta;
          if (!delta) continue;
          if (first === null) first = performance.now();
          if (delta.content) reply.content += delta.content;
          if (delta.reasoning_content) reply.reasoning += delta.reasoning_content;
          if (delta.content || delta.reasoning_content) {
            if (!chunk.usage) tokens += 1;
            view().replaceWith(messageView(reply));
            $('messages').scrollTop = $('messages').scrollHeight;
          }
        }
      }
    }
  } catch (e) {
    if (e.name === 'AbortError') stopped = true;
    else reply.stats = 'error: ' + e.message;
  }
  const secs = (performance.now() - (first ?? t0)) / 1000;
  if (!reply.stats) reply.stats = `${tokens} tokens · ${secs > 0 ? (tokens / secs).toFixed(1) : '—'} tokens/s` + (stopped ? ' · stopped' : '');
  persist();
  view().replaceWith(messageView(reply));
  $('status').textContent = '';
  setRunning(null);
}

async function findModel() {
  try {
    const list = await api('/v1/models', { key: $('api-key').value });
    model = list.data[0].id;
    $('model-name').textContent = model;
    $('status').textContent = '';
  } catch (e) {
    $('status').textContent = e.status === 401 ? 'This server needs an API key: open Settings.' : 'Cannot reach the server: ' + e.message;
    if (e.status === 401) $('settings').open = true;
  }
}

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('input').value.trim();
  if (!text || running) return;
  $('input').value = '';
  send(text);
});
$('input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); $('composer').requestSubmit(); }
});
document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && running) running.controller.abort(); });
$('stop').addEventListener('click', () => running?.controller.abort());
$('new-chat').addEventListener('click', newConversation);
$('toggle-sidebar').addEventListener('click', () => {
  const open = $('sidebar').classList.toggle('open');
  $('toggle-sidebar').setAttribute('aria-expanded', String(open));
});
for (const id of [...settingIds, 'api-key']) $(id).addEventListener('change', () => { saveSettings(); if (id === 'api-key') findModel(); });

loadSettings();
render();
findModel();
