// doppel serve — the page's script. No framework, no network beyond this server.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
};
const pct = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.005 ? 0 : 1)} %`;
const VERDICT_TEXT = {
  real: 'real', fake: 'fake (AI-generated)', uncertain: 'uncertain',
};

let token = sessionStorage.getItem('doppel-token') || '';
if (location.hash.startsWith('#token=')) {
  token = decodeURIComponent(location.hash.slice(7));
  sessionStorage.setItem('doppel-token', token);
  history.replaceState(null, '', location.pathname);
}

function status(msg) { $('#status').textContent = msg; }

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (token) headers.Authorization = `Bearer ${token}`;
  let r;
  for (let attempt = 0; ; attempt++) {
    r = await fetch(path, Object.assign({}, opts, { headers }));
    // the server is busy (--max-jobs): wait as it asks, a few times
    if (r.status !== 429 || attempt >= 30) break;
    await sleep(1000 * (Number(r.headers.get('Retry-After')) || 2));
  }
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (r.status === 401) {
    $('#token-box').hidden = false;
    $('#token').focus();
  }
  if (!r.ok) {
    const msg = body && body.error ? body.error.message : `HTTP ${r.status}`;
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return body;
}

function verdictBadge(v) {
  return el('span', { class: `verdict ${v}`, text: VERDICT_TEXT[v] || v });
}

// ------------------------------------------------------------ images
function loadImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => { URL.revokeObjectURL(url); reject(new Error('the browser cannot show this image')); };
    img.src = url;
  });
}

const VCOL = { real: '#0b6b2f', fake: '#c0101e', uncertain: '#9a5b00' }; // white text on each: >= 4.5:1

function drawPhoto(img, res) {
  const c = el('canvas', { class: 'photo-canvas', role: 'img' });
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const th = Math.max(2, Math.round(img.naturalWidth / 250));
  g.font = `bold ${Math.max(12, th * 7)}px system-ui, sans-serif`;
  const desc = [];
  res.faces.forEach((f, i) => {
    const [x, y, w, h] = f.box;
    g.lineWidth = th; g.strokeStyle = VCOL[f.verdict] || '#000';
    g.strokeRect(x, y, w, h);
    const label = `${i + 1}: ${f.verdict} ${pct(f.p_fake)}`;
    const tw = g.measureText(label).width + 8, lh = th * 7 + 6;
    const ly = y - lh >= 0 ? y - lh : y + h;
    g.fillStyle = VCOL[f.verdict] || '#000'; g.fillRect(x - th / 2, ly, tw, lh);
    g.fillStyle = '#fff'; g.fillText(label, x + 4 - th / 2, ly + lh - 5);
    desc.push(`face ${i + 1} at ${x},${y} size ${w}×${h}: ${f.verdict}, ${pct(f.p_fake)}`);
  });
  c.setAttribute('aria-label', `The image with ${res.faces.length} marked face${res.faces.length === 1 ? '' : 's'}: ${desc.join('; ')}`);
  return c;
}

// The crop square of a face with the occlusion heat map laid over it in red.
function drawHeat(img, f) {
  const c = el('canvas', { class: 'heat', width: '192', height: '192', role: 'img' });
  const g = c.getContext('2d');
  const h = f.heatmap;
  const sq = h ? h.square : [f.box[0], f.box[1], f.box[2], f.box[3]];
  g.fillStyle = '#808080'; g.fillRect(0, 0, 192, 192);
  g.drawImage(img, sq[0], sq[1], sq[2], sq[3], 0, 0, 192, 192);
  if (h && h.values) {
    const n = h.side, tile = document.createElement('canvas');
    tile.width = n; tile.height = n;
    const tg = tile.getContext('2d'), data = tg.createImageData(n, n);
    // the grid is relative to its strongest cell; a map whose strongest cell moved the score by
    // less than 5 points is drawn fainter (it says little)
    const k = Math.min(1, (h.max || 0) / 0.05);
    for (let i = 0; i < n * n; i++) {
      const a = k * h.values[i] / 255;
      data.data[4 * i] = 255; data.data[4 * i + 1] = 20; data.data[4 * i + 2] = 20;
      data.data[4 * i + 3] = Math.round(200 * a);
    }
    tg.putImageData(data, 0, 0);
    g.imageSmoothingEnabled = true;
    g.drawImage(tile, 0, 0, 192, 192);
    c.dataset.heat = '1';
  }
  c.setAttribute('aria-label', h ? `Heat map: the redder, the more hiding that part lowered the score (at most by ${pct(h.max || 0)})`
    : 'The face crop (no heat map)');
  return c;
}

function labelList(res) {
  const ul = el('ul', { class: 'labels' });
  const wm = res.watermark, lb = res.label;
  if (wm && wm.found) {
    ul.append(el('li', { class: 'hit watermark', text: `doppel's invisible watermark found (model id ${wm.model_id}, score ${wm.score.toFixed(2)}): this image was generated by doppel.` }));
  } else if (wm) {
    ul.append(el('li', { class: 'watermark', text: 'No doppel watermark.' }));
  }
  if (lb && lb.ai_generated) {
    const who = [lb.software, lb.model].filter(Boolean).join(', ');
    ul.append(el('li', { class: 'hit meta', text: `The file's metadata says it is AI-generated${who ? ` (${who})` : ''}.` }));
  } else if (lb && lb.present) {
    ul.append(el('li', { class: 'meta', text: `Metadata found, no AI-generated label${lb.software ? ` (software: ${lb.software})` : ''}.` }));
  } else {
    ul.append(el('li', { class: 'meta', text: 'No metadata about the origin.' }));
  }
  return ul;
}

function faceRow(img, f, i, res) {
  const det = f.detectors || {};
  const bar = el('div', { class: 'bar', role: 'presentation' }, el('span'));
  bar.firstChild.style.width = `${Math.round(100 * f.p_fake)}%`;
  const dl = el('dl', {},
    el('dt', { text: 'verdict' }), el('dd', {}, verdictBadge(f.verdict)),
    el('dt', { text: 'score' }), el('dd', {}, el('span', { class: 'score', text: pct(f.p_fake) }), bar),
    el('dt', { text: 'box' }), el('dd', { text: `x ${f.box[0]}, y ${f.box[1]}, ${f.box[2]}×${f.box[3]} px` }),
    el('dt', { text: 'detectors' }), el('dd', { text: `Meso-4 ${pct(det.meso4 || 0)}, spectral ${pct(det.spectral || 0)}` }));
  if (f.fallback) dl.append(el('dt', { text: 'note' }), el('dd', { text: 'no face found: the centre of the image was scored' }));
  return el('div', { class: 'face' },
    el('figure', {}, drawHeat(img, f), el('figcaption', { text: `face ${i + 1}${!f.heatmap ? '' : f.heatmap.max < 0.005 ? ': heat map flat (hiding no part lowered the score)' : `: heat map (hiding the reddest part lowers the score by ${pct(f.heatmap.max)})`}` })),
    dl);
}

async function checkImage(file, card) {
  const img = await loadImage(file);
  const fd = new FormData();
  fd.append('file', file, file.name.replace(/[\\/]/g, '_') || 'image');
  const heat = $('#heatmap').checked ? '1' : '0';
  const res = await api(`/api/v1/detect?heatmap=${heat}`, { method: 'POST', body: fd });
  const sum = el('div', { class: 'summary' }, verdictBadge(res.verdict),
    el('span', { text: `highest score ${pct(res.p_fake)} · ${res.faces_found} face${res.faces_found === 1 ? '' : 's'} found · ${res.width}×${res.height}` }));
  const faces = el('div', { class: 'faces' });
  res.faces.forEach((f, i) => faces.append(faceRow(img, f, i, res)));
  card.body.replaceChildren(sum, labelList(res), el('div', { class: 'layout' }, el('div', { class: 'photo' }, drawPhoto(img, res)), faces));
  card.root.dataset.verdict = res.verdict;
}

// ------------------------------------------------------------ video
const TRACK_COLORS = ['#1747c2', '#a3121b', '#0b6b2f', '#7a4a00', '#6a1b9a', '#00695c'];
const svg = (tag, attrs = {}) => {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};

function timelineChart(res) {
  const W = 640, H = 220, L = 40, R = 10, T = 10, B = 30;
  const dur = Math.max(res.video && res.video.duration_s > 0 ? res.video.duration_s : 0, res.seconds_analysed || 0, 1);
  const x = (t) => L + (W - L - R) * t / dur, y = (p) => T + (H - T - B) * (1 - p);
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'timeline', role: 'img' });
  for (const r of res.fake_ranges || []) s.append(svg('rect', { x: x(r.start_s), y: T, width: Math.max(2, x(r.end_s) - x(r.start_s)), height: H - T - B, fill: '#fbe5e6' }));
  for (const p of [0, 0.3, 0.7, 1]) {
    s.append(svg('line', { x1: L, x2: W - R, y1: y(p), y2: y(p), stroke: p === 0.3 || p === 0.7 ? '#999' : '#ccc', 'stroke-dasharray': p === 0.3 || p === 0.7 ? '4 3' : '' }));
    const t = svg('text', { x: 4, y: y(p) + 4 }); t.textContent = `${Math.round(p * 100)}%`; s.append(t);
  }
  const steps = Math.min(10, Math.ceil(dur));
  for (let k = 0; k <= steps; k++) {
    const t = dur * k / steps, tx = svg('text', { x: x(t) - 8, y: H - 8 });
    tx.textContent = `${t.toFixed(dur < 10 ? 1 : 0)}s`; s.append(tx);
  }
  const desc = [];
  (res.tracks || []).forEach((tr, i) => {
    const pts = (tr.timeline || []).map(([sec, p]) => `${x(sec + 0.5).toFixed(1)},${y(p).toFixed(1)}`);
    if (pts.length === 1) pts.push(pts[0]);
    if (pts.length) s.append(svg('polyline', { points: pts.join(' '), fill: 'none', stroke: TRACK_COLORS[i % TRACK_COLORS.length], 'stroke-width': 2.5 }));
    desc.push(`face ${tr.id}: ${tr.verdict}, ${pct(tr.p_fake)}`);
  });
  s.setAttribute('aria-label', `Score per face over time (${dur.toFixed(1)} s): ${desc.join('; ') || 'no face tracked'}`);
  return s;
}

function videoResult(file, res, card) {
  const sum = el('div', { class: 'summary' }, verdictBadge(res.verdict),
    el('span', { text: `highest score ${pct(res.p_fake)} · ${(res.tracks || []).length} face track(s) · ${res.frames ? res.frames.analysed : 0} frames analysed` }));
  const legend = el('div', { class: 'legend' });
  const tl = el('ul', { class: 'tracks' });
  (res.tracks || []).forEach((tr, i) => {
    const sp = el('span', { text: `face ${tr.id}` });
    sp.style.setProperty('--c', TRACK_COLORS[i % TRACK_COLORS.length]);
    legend.append(sp);
    tl.append(el('li', {}, `face ${tr.id} (${tr.start_s.toFixed(1)}–${tr.end_s.toFixed(1)} s, ${tr.scored} frames scored): `,
      verdictBadge(tr.verdict), ` ${pct(tr.p_fake)}${tr.confident ? '' : ' — too few frames for a confident verdict'}`));
  });
  const video = el('video', { controls: '', preload: 'metadata', 'aria-label': `the video ${file.name}` });
  video.src = URL.createObjectURL(file);
  const ranges = el('ul', { class: 'ranges' });
  for (const r of res.fake_ranges || []) {
    const b = el('button', { type: 'button', text: `${r.start_s.toFixed(1)}–${r.end_s.toFixed(1)} s` });
    b.addEventListener('click', () => { video.currentTime = r.start_s; video.focus(); });
    ranges.append(el('li', {}, b, ` face ${r.track}, mean score ${pct(r.p_fake)}`));
  }
  card.body.replaceChildren(sum,
    el('h4', { text: 'Score per face over time' }), timelineChart(res), legend, tl,
    el('h4', { text: 'Time ranges that look fake' }),
    (res.fake_ranges || []).length ? ranges : el('p', { class: 'muted no-ranges', text: 'None.' }),
    video);
  card.root.dataset.verdict = res.verdict;
}

async function checkVideo(file, card) {
  const fd = new FormData();
  fd.append('file', file, file.name.replace(/[\\/]/g, '_') || 'video');
  const job = await api('/api/v1/scan', { method: 'POST', body: fd });
  const prog = el('progress', { max: '1', value: '0', 'aria-label': `scanning ${file.name}` });
  const txt = el('span', { text: ' queued' });
  card.body.replaceChildren(prog, txt);
  for (;;) {
    await sleep(500);
    const j = await api(`/api/v1/jobs/${encodeURIComponent(job.id)}`);
    if (j.progress && j.progress.fraction != null) prog.value = j.progress.fraction;
    txt.textContent = ` ${j.status}${j.progress ? ` — ${j.progress.frames_analysed} frames, ${(j.progress.time_s || 0).toFixed(1)} s of video` : ''}`;
    if (j.status === 'done') return videoResult(file, j.result, card);
    if (j.status === 'failed') throw new Error(j.error || 'the scan failed');
  }
}

// ------------------------------------------------------------ files
function newCard(file) {
  const root = el('article', { class: 'card', 'aria-busy': 'true' });
  const body = el('div', {}, el('p', { text: 'Analysing…' }));
  root.append(el('h3', { text: file.name || 'upload' }), body);
  $('#list').prepend(root);
  $('#empty').hidden = true;
  return { root, body };
}

let pending = 0;
async function handle(files) {
  const list = Array.from(files);
  if (!list.length) return;
  pending += list.length;
  status(`Checking ${pending} file${pending === 1 ? '' : 's'}…`);
  const cards = list.map((file) => newCard(file));
  let next = 0;
  // at most three files in flight: the server analyses two at a time anyway
  const worker = async () => {
    while (next < list.length) {
      const i = next++;
      await checkOne(list[i], cards[i]);
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  status(pending ? `Checking ${pending} file${pending === 1 ? '' : 's'}…` : 'Done. The results are below.');
}

async function checkOne(file, card) {
  try {
    if (file.type.startsWith('video/') || /\.(mp4|mov|m4v|webm|mkv|avi)$/i.test(file.name)) await checkVideo(file, card);
    else await checkImage(file, card);
  } catch (e) {
    card.body.replaceChildren(el('p', { class: 'error', role: 'alert', text: `Could not check this file: ${e.message}` }));
    card.root.dataset.verdict = 'error';
  } finally {
    card.root.setAttribute('aria-busy', 'false');
    pending--;
  }
}

async function modelInfo() {
  try {
    const m = await api('/api/v1/models');
    const d = m.models[0];
    const box = $('#model-info');
    box.classList.remove('muted');
    box.replaceChildren(
      el('p', { text: `${d.name}: real below ${pct(d.thresholds.real_below)}, fake from ${pct(d.thresholds.fake_from)}; face finder: ${m.face_detector.kind}.` }),
      el('pre', { class: 'card-text', text: d.card || '(no model card next to the model file)' }));
  } catch (e) {
    $('#model-info').textContent = `Not available: ${e.message}`;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  const input = $('#files'), drop = $('#pick');
  $('#token').value = token;
  $('#token').addEventListener('change', (e) => {
    token = e.target.value.trim();
    sessionStorage.setItem('doppel-token', token);
    modelInfo();
  });
  input.addEventListener('change', () => { handle(input.files); input.value = ''; });
  drop.addEventListener('submit', (e) => e.preventDefault());
  for (const ev of ['dragenter', 'dragover']) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add('over'); });
  for (const ev of ['dragleave', 'drop']) drop.addEventListener(ev, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); handle(e.dataTransfer.files); });
  modelInfo();
});
