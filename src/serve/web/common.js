// Shared by the chat and the console. Everything the model or a client wrote reaches the page as
// text nodes (textContent, createTextNode): never as HTML, so a reply holding <script> or
// <img onerror> shows those characters and runs nothing.
'use strict';

// el('div', {class: 'x', onclick: f}, child, 'text', ...)
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// Calls the server's JSON API; throws an Error carrying the server's message and status.
async function api(path, { method = 'GET', body, key, signal } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (key) headers.Authorization = 'Bearer ' + key;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
  if (!res.ok) {
    const err = new Error((data && data.error && data.error.message) || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

// Inline markdown: `code`, **bold**, *emphasis*; the rest stays text.
function inlineMarkdown(text) {
  const frag = document.createDocumentFragment();
  const re = /(`[^`\n]+`|\*\*[^*\n]+\*\*|\*[^*\n]+\*)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) frag.append(document.createTextNode(text.slice(last, m.index)));
    const t = m[0];
    if (t.startsWith('`')) frag.append(el('code', {}, t.slice(1, -1)));
    else if (t.startsWith('**')) frag.append(el('strong', {}, t.slice(2, -2)));
    else frag.append(el('em', {}, t.slice(1, -1)));
    last = m.index + t.length;
  }
  if (last < text.length) frag.append(document.createTextNode(text.slice(last)));
  return frag;
}

// Block markdown: ``` fences (an unclosed one runs to the end: streaming), # headings, - and 1.
// lists, paragraphs. Builds DOM nodes only.
function renderMarkdown(text) {
  const frag = document.createDocumentFragment();
  const lines = text.split('\n');
  let para = [], list = null;
  const flushPara = () => {
    if (para.length) frag.append(el('p', {}, inlineMarkdown(para.join('\n'))));
    para = [];
  };
  const flushList = () => { if (list) frag.append(list); list = null; };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^```\s*([\w+-]*)/);
    if (fence) {
      flushPara(); flushList();
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith('```'); i++) code.push(lines[i]);
      frag.append(el('pre', {}, el('code', fence[1] ? { 'data-lang': fence[1] } : {}, code.join('\n'))));
      continue;
    }
    const heading = line.match(/^(#{1,4})\s+(.*)/);
    const bullet = line.match(/^\s*[-*]\s+(.*)/);
    const numbered = line.match(/^\s*\d+[.)]\s+(.*)/);
    if (heading) { flushPara(); flushList(); frag.append(el('h' + (heading[1].length + 2), {}, inlineMarkdown(heading[2]))); }
    else if (bullet || numbered) {
      flushPara();
      const tag = bullet ? 'ul' : 'ol';
      if (!list || list.tagName.toLowerCase() !== tag) { flushList(); list = el(tag, {}); }
      list.append(el('li', {}, inlineMarkdown((bullet || numbered)[1])));
    } else if (line.trim() === '') { flushPara(); flushList(); }
    else { flushList(); para.push(line); }
  }
  flushPara(); flushList();
  return frag;
}

// A bar chart as SVG (no library, no network): values over time, the largest labelled.
function barChart(values, { width = 240, height = 40, title = '' } = {}) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title);
  const top = Math.max(0, ...values);
  const max = Math.max(1, top);
  const w = width / Math.max(1, values.length);
  values.forEach((v, i) => {
    const h = Math.max(v > 0 ? 1 : 0, (v / max) * (height - 12));
    const r = document.createElementNS(ns, 'rect');
    r.setAttribute('x', (i * w + 0.5).toFixed(1));
    r.setAttribute('y', (height - h).toFixed(1));
    r.setAttribute('width', Math.max(1, w - 1).toFixed(1));
    r.setAttribute('height', h.toFixed(1));
    r.setAttribute('fill', '#2b59c3');
    const t = document.createElementNS(ns, 'title');
    t.textContent = String(v);
    r.append(t);
    svg.append(r);
  });
  const label = document.createElementNS(ns, 'text');
  label.setAttribute('x', 2);
  label.setAttribute('y', 10);
  label.setAttribute('font-size', 10);
  label.setAttribute('fill', '#6b6b70');
  label.textContent = `max ${top}`;
  svg.append(label);
  return svg;
}

// A line chart as SVG: series of [x, y] points on shared axes, with a legend.
function lineChart(series, { width = 320, height = 120, title = '' } = {}) {
  const ns = 'http://www.w3.org/2000/svg';
  const mk = (tag, attrs) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };
  const svg = mk('svg', { class: 'chart', width, height, role: 'img', 'aria-label': title });
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) return svg;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const px = (x) => 30 + ((x - x0) / Math.max(1e-12, x1 - x0)) * (width - 36);
  const py = (y) => 16 + (1 - (y - y0) / Math.max(1e-12, y1 - y0)) * (height - 30);
  svg.append(mk('rect', { x: 30, y: 16, width: width - 36, height: height - 30, fill: 'none', stroke: '#e3e3e0' }));
  for (const [y, label] of [[y1, y1], [y0, y0]]) {
    const t = mk('text', { x: 2, y: py(y) + 4, 'font-size': 9, fill: '#6b6b70' });
    t.textContent = Number(label).toPrecision(3);
    svg.append(t);
  }
  let lx = 34;
  for (const s of series) {
    if (!s.points.length) continue;
    svg.append(mk('polyline', { fill: 'none', stroke: s.color, 'stroke-width': 1.5, points: s.points.map((p) => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(' ') }));
    const t = mk('text', { x: lx, y: 11, 'font-size': 10, fill: s.color });
    t.textContent = s.name;
    svg.append(t);
    lx += 8 + 6 * s.name.length;
  }
  return svg;
}
