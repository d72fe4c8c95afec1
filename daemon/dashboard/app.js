// orbit-globus dashboard: plain JavaScript, no build step, no third-party code.
// Every piece of data goes into the page with textContent (never innerHTML).
// The browser holds no token: the daemon's HttpOnly session cookie authenticates every
// request; state changes also send the session's CSRF token (from /dashboard/api/me).
// Served by a bridge (/dashboard/api/me says bridge: true), the page picks one of the
// bridge's endpoints and reads it through the relay: every endpoint path is prefixed with
// /endpoints/NAME (state.base; empty on a daemon, where nothing else changes).
'use strict';

(function () {
  // Globus's task statuses (protocol's STATUSES): both status filters offer them.
  const STATUSES = ['ACTIVE', 'INACTIVE', 'SUCCEEDED', 'FAILED'];
  const TERMINAL = new Set(['SUCCEEDED', 'FAILED']);
  const ACTIVITY_MAX = 200;
  const state = {
    me: null,
    tasks: new Map(), // task_id -> task
    rows: new Map(), // task_id -> <tr>
    cursor: 0, // the last seq applied: resume from it
    ws: null,
    retry: 250,
    received: 0,
    lastLag: null,
    history: { offset: 0, after: 0, stack: [], next: null },
    base: '', // where the endpoint's routes are: '' on a daemon, /endpoints/NAME on a bridge
  };
  const $ = (id) => document.getElementById(id);
  const ep = (path) => state.base + path;

  // -- helpers ----------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }

  function human(bytes) {
    if (bytes === null || bytes === undefined) return '';
    const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
    let value = Number(bytes);
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return (unit === 0 ? String(value) : value.toFixed(value < 10 ? 2 : 1)) + ' ' + units[unit];
  }

  function localTime(seconds) {
    if (!seconds) return '';
    return new Date(seconds * 1000).toLocaleString();
  }

  function short(id) { return id ? String(id).slice(0, 8) : ''; }

  async function api(path, options) {
    const opts = Object.assign({ credentials: 'same-origin', headers: {} }, options || {});
    opts.headers = Object.assign({ Accept: 'application/json' }, opts.headers);
    if (opts.method && opts.method !== 'GET') {
      if (state.me) opts.headers[state.me.csrf_header] = state.me.csrf;
      if (opts.body !== undefined) opts.headers['Content-Type'] = 'application/json';
    }
    const response = await fetch(path, opts);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (response.status === 401 && path !== '/dashboard/api/signin') {
      // Signed out in another tab, the cookie is gone and the server can only ask for a
      // bearer token: a browser has none, so say what happened instead.
      const message = (body && body.message) || '';
      signedOut(state.me && !/sign in again/.test(message)
        ? 'The dashboard session ended (signed out in another tab?): sign in again.'
        : message || 'signed out');
    }
    if (!response.ok) {
      const error = new Error((body && body.message) || response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // -- sign-in ----------------------------------------------------------------------

  function signedOut(message) {
    state.me = null;
    if (state.ws) { const ws = state.ws; state.ws = null; ws.onclose = null; ws.close(); }
    $('app').hidden = true;
    $('logout').hidden = true;
    $('who').textContent = '';
    $('picker').hidden = true;
    state.base = '';
    setConn('offline', '');
    $('signin').hidden = false;
    $('signin-message').textContent = message || '';
    $('token').focus();
  }

  async function start() {
    const params = new URLSearchParams(location.search);
    const expired = params.has('signin');
    if (expired) history.replaceState(null, '', location.pathname);
    try {
      state.me = await api('/dashboard/api/me');
    } catch (e) {
      if (expired) {
        signedOut('That sign-in link was used or has expired: run orbit-globus ui again.');
      } else if (e.status === 401) {
        signedOut('');
      } else {
        signedOut('The daemon did not answer: ' + e.message);
      }
      return;
    }
    signedIn();
  }

  function signedIn() {
    $('signin').hidden = true;
    $('app').hidden = false;
    $('logout').hidden = false;
    $('who').textContent = 'signed in as ' + (state.me.name || state.me.owner);
    if (state.me.bridge) { pickFirst(); return; }
    $('endpoint').textContent = state.me.endpoint + ' · v' + state.me.version;
    loadLive();
  }

  // -- the endpoint (on a bridge) ---------------------------------------------------

  const PICKED = 'orbit.endpoint';

  async function listEndpoints() {
    const endpoints = (await api('/endpoints')).endpoints || [];
    const select = $('endpoint-pick');
    const names = endpoints.map((e) => e.name);
    // In place when the names are the same: an open list is not disturbed by a refresh.
    if (names.join('\n') !== Array.from(select.options, (o) => o.value).join('\n')) {
      const chosen = select.value;
      select.replaceChildren(...names.map((name) => el('option', { value: name })));
      if (chosen) select.value = chosen;
    }
    endpoints.forEach((e, i) => {
      const text = e.name + (e.online ? '' : ' (offline)');
      if (select.options[i].textContent !== text) select.options[i].textContent = text;
    });
    return endpoints;
  }

  async function pickFirst() {
    $('picker').hidden = false;
    let endpoints;
    try { endpoints = await listEndpoints(); } catch (e) { return; }
    if (!endpoints.length) {
      $('endpoint').textContent = 'this token may use no endpoint of the bridge';
      return;
    }
    const stored = sessionStorage.getItem(PICKED);
    const chosen = endpoints.find((e) => e.name === stored) || endpoints.find((e) => e.online) || endpoints[0];
    pick(chosen.name);
  }

  async function pick(name) {
    if (state.ws) { const ws = state.ws; state.ws = null; ws.onclose = null; ws.close(); }
    const base = '/endpoints/' + encodeURIComponent(name);
    state.base = base;
    $('endpoint-pick').value = name;
    sessionStorage.setItem(PICKED, name);
    // What the page shows belongs to one endpoint: start over.
    state.tasks.clear();
    state.rows.clear();
    $('tasks').tBodies[0].replaceChildren();
    $('activity').replaceChildren();
    $('history').tHead.replaceChildren();
    $('history').tBodies[0].replaceChildren();
    closeTimeline();
    renderCounts();
    let health;
    try {
      // The endpoint's ledger head before its snapshot, as /dashboard/api/me on a daemon.
      health = await api(ep('/dashboard/api/health'));
    } catch (e) {
      if (state.base !== base || !state.me) return;
      const why = e.status === 404 ? 'it serves no dashboard (dashboard = false there)' : e.message;
      $('endpoint').textContent = name + ': ' + why;
      setConn('down', 'unavailable');
      // Offline (503) or unreachable: try again while it stays picked.
      if (!e.status || e.status >= 500) {
        setTimeout(() => { if (state.base === base && state.me && !state.ws) pick(name); }, 5000);
      }
      return;
    }
    if (state.base !== base) return; // another endpoint was picked meanwhile
    state.me.head = health.ledger_head;
    $('endpoint').textContent = name + ' · v' + health.version;
    if (!$('view-sessions').hidden) loadSessions().catch(() => {});
    if (!$('view-health').hidden) loadHealth().catch(() => {});
    if (!$('view-history').hidden) searchHistory(true);
    loadLive();
  }

  $('endpoint-pick').addEventListener('change', () => pick($('endpoint-pick').value));

  $('signin-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const input = $('token');
    const token = input.value;
    input.value = '';
    try {
      await api('/dashboard/api/signin', { method: 'POST', body: JSON.stringify({ token: token }) });
      state.me = await api('/dashboard/api/me');
      signedIn();
    } catch (e) {
      $('signin-message').textContent = 'Sign-in refused: ' + e.message;
    }
  });

  $('logout').addEventListener('click', async () => {
    try { await api('/dashboard/api/logout', { method: 'POST', body: '{}' }); } catch (e) { /* ended */ }
    sessionStorage.clear();
    signedOut('Signed out.');
  });

  // -- live tasks -------------------------------------------------------------------

  function cursorKey() { return 'orbit.cursor.' + state.me.owner + state.base; }

  async function loadLive() {
    const base = state.base;
    state.tasks.clear();
    state.rows.clear();
    $('tasks').tBodies[0].replaceChildren();
    // The snapshot is read after /me gave the head, so every event after the head is
    // in the stream; an event the snapshot already holds is skipped by its task's seq.
    const stored = Number(sessionStorage.getItem(cursorKey()));
    state.cursor = stored > 0 && stored <= state.me.head ? stored : state.me.head;
    const page = await api(ep('/globus/history?view=tasks&limit=1000'));
    if (state.base !== base) return; // another endpoint was picked meanwhile
    for (const row of (page.tasks || []).reverse()) upsert(row.task_id, row, row.last_seq || 0, null);
    renderCounts();
    connect();
  }

  function connect() {
    if (!state.me) return;
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const base = state.base;
    const ws = new WebSocket(scheme + location.host + ep('/ws?since=' + state.cursor));
    state.ws = ws;
    setConn('connecting', 'connecting');
    ws.onopen = () => { state.retry = 250; setConn('live', 'live'); };
    ws.onmessage = (message) => {
      const msg = JSON.parse(message.data);
      if (msg.type === 'event') onEvent(msg);
      else if (msg.type === 'heartbeat') $('conn').title = 'ledger head ' + msg.head;
    };
    ws.onclose = async (close) => {
      if (state.ws !== ws) return;
      state.ws = null;
      setConn('down', 'reconnecting');
      if (close.code === 1008) { // the daemon ended this browser session
        signedOut(close.reason || 'Signed out.');
        return;
      }
      // Not once another endpoint was picked: its cursor is not this one's.
      setTimeout(() => { if (state.me && !state.ws && state.base === base) reconnect(); }, state.retry);
      state.retry = Math.min(state.retry * 2, 5000);
    };
  }

  async function reconnect() {
    // A refused handshake looks like any dropped connection: ask whether we are signed in.
    const base = state.base;
    try { await api('/dashboard/api/me'); } catch (e) {
      if (e.status === 401) return;
    }
    if (state.base === base && !state.ws) connect();
  }

  function setConn(cls, text) {
    const node = $('conn');
    node.className = 'conn ' + cls;
    node.textContent = text || 'offline';
  }

  function onEvent(msg) {
    if (msg.seq <= state.cursor) return; // already applied (a replay overlapping the live tail)
    state.cursor = msg.seq;
    later();
    state.received += 1;
    state.lastLag = Date.now() / 1000 - msg.time;
    if (msg.task_id && msg.topic === 'transfer_status') {
      upsert(msg.task_id, Object.assign({ session_id: msg.session_id }, msg.data), msg.seq, msg.time);
    } else if (msg.kind === 'cancel_requested' && state.tasks.has(msg.task_id)) {
      const task = state.tasks.get(msg.task_id);
      task.cancel_requested = true;
      render(task);
    }
    activity(msg);
  }

  // Once per frame, not per event (a sweep brings many at once): the counts and the
  // cursor kept for a reload (also kept when the page goes away).
  let pending = false;
  function later() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(flush);
  }
  function flush() {
    pending = false;
    if (!state.me) return;
    sessionStorage.setItem(cursorKey(), String(state.cursor));
    renderCounts();
  }
  window.addEventListener('pagehide', flush);

  function activity(msg) {
    const list = $('activity');
    const data = msg.data || {};
    const task = msg.task_id ? state.tasks.get(msg.task_id) : null;
    const text = [localTime(msg.time), msg.kind, data.status || '', (task && task.label) || data.label || '',
      msg.task_id ? short(msg.task_id) : (msg.session_id ? 'session ' + short(msg.session_id) : '')]
      .filter(Boolean).join('  ');
    list.prepend(el('li', { 'data-seq': msg.seq, value: msg.seq, text: text }));
    while (list.children.length > ACTIVITY_MAX) list.lastChild.remove();
  }

  const FIELDS = ['status', 'label', 'nice_status', 'bytes_transferred', 'files_transferred', 'is_ok',
    'is_paused', 'faults', 'needs_attention', 'attention_message', 'error', 'session_id', 'type',
    'fatal_error', 'request_time', 'completion_time'];

  // Sent only with some notifications (the label, the newest error, the reason on the
  // needs_attention one): a later null does not erase them while the episode lasts.
  const KEPT = new Set(['label', 'error', 'attention_message']);

  function upsert(taskId, data, seq, time) {
    let task = state.tasks.get(taskId);
    if (!task) {
      task = { task_id: taskId, seq: 0, rate: null, sampleBytes: null, sampleTime: null };
      state.tasks.set(taskId, task);
    }
    if (seq <= task.seq) return; // the snapshot already holds this event
    const when = time || data.completion_time || data.request_time || null;
    const bytes = data.bytes_transferred;
    if (time && bytes !== undefined && task.sampleTime !== null && time > task.sampleTime) {
      task.rate = Math.max(0, (bytes - task.sampleBytes) / (time - task.sampleTime));
    }
    if (time && bytes !== undefined) { task.sampleBytes = bytes; task.sampleTime = time; }
    for (const key of FIELDS) {
      if (data[key] === undefined) continue;
      // A notification carries the label and the newest error only sometimes: keep them.
      if (KEPT.has(key) && data[key] === null) continue;
      task[key] = data[key];
    }
    if (!task.needs_attention) { task.error = null; task.attention_message = null; }
    if (TERMINAL.has(task.status)) task.rate = null;
    task.seq = seq;
    task.updated = when || task.updated;
    render(task);
  }

  function attention(task) {
    // What the task needs, in words: INACTIVE and paused say what to do or what the
    // administrator wrote; an erroring task shows Globus's newest error.
    if (task.status === 'INACTIVE') {
      return task.attention_message || 'credential expired: renew the session\'s Globus credential (orbit-globus session register) and the task resumes';
    }
    if (!task.needs_attention) return '';
    if (task.needs_attention === 'paused') {
      return 'paused' + (task.attention_message ? ': ' + task.attention_message : ' by an administrator');
    }
    const error = task.error && (task.error.code || task.error.description);
    const said = task.attention_message || '';
    const parts = [said, error && !said.includes(error) ? error : null];
    return parts.filter(Boolean).join(' · ') || task.needs_attention;
  }

  function render(task) {
    let tr = state.rows.get(task.task_id);
    if (!tr) {
      tr = el('tr', { 'data-task-id': task.task_id });
      for (let i = 0; i < 10; i += 1) tr.append(el('td'));
      tr.cells[5].className = 'num';
      tr.cells[6].className = 'num';
      tr.cells[7].className = 'num';
      const timeline = el('button', { type: 'button', class: 'timeline-btn', text: 'Timeline' });
      timeline.addEventListener('click', () => openTimeline(task.task_id));
      const cancel = el('button', { type: 'button', class: 'cancel-btn', text: 'Cancel' });
      cancel.addEventListener('click', () => cancelTask(task.task_id));
      tr.cells[9].append(timeline, ' ', cancel);
      state.rows.set(task.task_id, tr);
      $('tasks').tBodies[0].prepend(tr);
    }
    tr.dataset.seq = String(task.seq);
    tr.dataset.status = task.status || '';
    const c = tr.cells;
    c[0].textContent = task.label || '';
    c[0].className = 'label';
    c[1].textContent = short(task.task_id);
    c[1].title = task.task_id;
    c[2].textContent = short(task.session_id);
    c[2].title = task.session_id || '';
    const status = el('span', { class: 'status status-' + (task.status || ''), text: task.status || '' });
    const badges = [];
    if (task.needs_attention || task.status === 'INACTIVE') {
      badges.push(el('span', { class: 'badge attention', text: 'needs attention' + (task.needs_attention ? ': ' + task.needs_attention : '') }));
    }
    if (task.is_paused) badges.push(el('span', { class: 'badge', text: 'paused' }));
    if (task.faults) badges.push(el('span', { class: 'badge', text: task.faults + ' fault' + (task.faults === 1 ? '' : 's') }));
    if (task.cancel_requested && !TERMINAL.has(task.status)) badges.push(el('span', { class: 'badge', text: 'cancelling' }));
    c[3].replaceChildren(status, ...badges);
    const hint = attention(task);
    const fatal = task.fatal_error ? (task.fatal_error.code || '') + ' ' + (task.fatal_error.description || '') : '';
    const details = [el('span', { class: 'nice', text: task.nice_status || fatal.trim() })];
    if (hint) details.push(el('span', { class: 'hint', text: hint }));
    c[4].replaceChildren(...details);
    c[4].className = 'details';
    c[5].textContent = human(task.bytes_transferred || 0);
    c[6].textContent = task.rate ? human(task.rate) + '/s' : '';
    c[7].textContent = String(task.files_transferred || 0);
    c[8].textContent = localTime(task.updated);
    c[9].querySelector('.cancel-btn').disabled = TERMINAL.has(task.status) || Boolean(task.cancel_requested);
    tr.hidden = !matches(task);
  }

  function matches(task) {
    const text = $('f-text').value.trim().toLowerCase();
    const status = $('f-status').value;
    if (text && !((task.label || '').toLowerCase().includes(text) || task.task_id.includes(text))) return false;
    if (status && task.status !== status) return false;
    if ($('f-attention').checked && !(task.needs_attention || task.status === 'INACTIVE')) return false;
    if ($('f-active').checked && TERMINAL.has(task.status)) return false;
    return true;
  }

  function refilter() {
    for (const task of state.tasks.values()) state.rows.get(task.task_id).hidden = !matches(task);
    renderCounts();
  }

  function renderCounts() {
    let active = 0; let trouble = 0;
    for (const task of state.tasks.values()) {
      if (!TERMINAL.has(task.status)) active += 1;
      if (task.needs_attention || task.status === 'INACTIVE') trouble += 1;
    }
    $('counts').textContent = state.tasks.size + ' tasks · ' + active + ' unfinished · ' + trouble + ' need attention';
  }

  for (const id of ['f-status', 'h-status']) {
    for (const status of STATUSES) $(id).add(new Option(status));
  }
  for (const id of ['f-text', 'f-status', 'f-attention', 'f-active']) {
    $(id).addEventListener('input', refilter);
  }
  $('filters').addEventListener('submit', (event) => event.preventDefault());

  async function cancelTask(taskId) {
    const task = state.tasks.get(taskId);
    if (!task || !task.session_id) return;
    if (!confirm('Cancel ' + (task.label || taskId) + '?')) return;
    try {
      await api(ep('/globus/sessions/' + encodeURIComponent(task.session_id) + '/tasks/' +
        encodeURIComponent(taskId) + '/cancel'), { method: 'POST', body: '{}' });
      task.cancel_requested = true;
      render(task);
    } catch (e) {
      alert('Cancel refused: ' + e.message);
    }
  }

  // -- timeline ---------------------------------------------------------------------

  async function openTimeline(taskId) {
    const task = state.tasks.get(taskId) || { task_id: taskId };
    const panel = $('timeline');
    $('timeline-title').textContent = 'Timeline of ' + (task.label || taskId);
    const ours = $('timeline-ledger');
    const theirs = $('timeline-globus');
    ours.replaceChildren(el('li', { text: 'loading…' }));
    theirs.replaceChildren(el('li', { text: 'loading…' }));
    panel.hidden = false;
    $('timeline-close').focus();
    try {
      const page = await api(ep('/globus/history?limit=500&task_id=' + encodeURIComponent(taskId)));
      ours.replaceChildren(...(page.events || []).map((e) => el('li', { 'data-seq': e.seq },
        el('time', { text: localTime(e.time) }), ' ' + e.kind + ' ',
        el('span', { text: [e.data.status, e.data.nice_status, e.data.reason, e.data.attention_message].filter(Boolean).join(' · ') }))));
    } catch (e) { ours.replaceChildren(el('li', { text: 'not available: ' + e.message })); }
    if (!task.session_id) { theirs.replaceChildren(el('li', { text: 'no session known' })); return; }
    try {
      const page = await api(ep('/globus/sessions/' + encodeURIComponent(task.session_id) + '/tasks/' +
        encodeURIComponent(taskId) + '/events?limit=100'));
      const events = (page.DATA || page.events || []).slice().reverse();
      theirs.replaceChildren(...events.map((e) => el('li', {},
        el('time', { text: e.time ? new Date(e.time).toLocaleString() : '' }), ' ' + (e.code || '') + ' ',
        el('span', { text: [e.description, e.details].filter(Boolean).join(': ') }))));
      if (!events.length) theirs.replaceChildren(el('li', { text: 'no events from Globus' }));
    } catch (e) { theirs.replaceChildren(el('li', { text: 'not available: ' + e.message })); }
  }

  function closeTimeline() { $('timeline').hidden = true; }
  $('timeline-close').addEventListener('click', closeTimeline);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !$('timeline').hidden) closeTimeline();
  });

  // -- tabs -------------------------------------------------------------------------

  const TABS = ['live', 'history', 'sessions', 'health'];
  function showTab(name) {
    for (const tab of TABS) {
      $('tab-' + tab).setAttribute('aria-selected', String(tab === name));
      $('tab-' + tab).tabIndex = tab === name ? 0 : -1;
      $('view-' + tab).hidden = tab !== name;
    }
    if (name === 'sessions') loadSessions();
    if (name === 'health') loadHealth();
    if (name === 'history' && !$('history').tHead.rows.length) searchHistory(true);
  }
  TABS.forEach((tab, index) => {
    const button = $('tab-' + tab);
    button.addEventListener('click', () => showTab(tab));
    button.addEventListener('keydown', (event) => {
      const step = event.key === 'ArrowRight' ? 1 : event.key === 'ArrowLeft' ? -1 : 0;
      if (!step) return;
      const next = TABS[(index + step + TABS.length) % TABS.length];
      showTab(next);
      $('tab-' + next).focus();
    });
  });

  // -- history ----------------------------------------------------------------------

  const PAGE = 50;
  function epoch(value) { return value ? String(new Date(value).getTime() / 1000) : null; }

  async function searchHistory(fresh) {
    const h = state.history;
    if (fresh) { h.offset = 0; h.after = 0; h.stack = []; }
    const view = $('h-view').value;
    const params = new URLSearchParams({ view: view, limit: String(PAGE) });
    const fields = { label: $('h-label').value.trim(), status: $('h-status').value,
      since: epoch($('h-since').value), until: epoch($('h-until').value) };
    for (const [key, value] of Object.entries(fields)) if (value) params.set(key, value);
    if (view === 'tasks') params.set('offset', String(h.offset));
    else params.set('after', String(h.after));
    const table = $('history');
    let page;
    try { page = await api(ep('/globus/history?' + params.toString())); } catch (e) {
      table.tBodies[0].replaceChildren(el('tr', {}, el('td', { text: 'search refused: ' + e.message })));
      return;
    }
    let head; let rows;
    if (view === 'tasks') {
      head = ['Label', 'Task', 'Status', 'Bytes', 'Files', 'Requested', 'Completed'];
      rows = (page.tasks || []).map((t) => [t.label || '', t.task_id, t.status, human(t.bytes_transferred),
        String(t.files_transferred || 0), localTime(t.request_time), localTime(t.completion_time)]);
      h.next = rows.length === PAGE ? h.offset + PAGE : null;
      $('h-page').textContent = rows.length ? 'rows ' + (h.offset + 1) + '–' + (h.offset + rows.length) : 'no rows';
    } else {
      head = ['Seq', 'Time', 'Kind', 'Task', 'Status', 'Label'];
      rows = (page.events || []).map((e) => [String(e.seq), localTime(e.time), e.kind, e.task_id || '',
        (e.data && e.data.status) || '', (e.data && e.data.label) || '']);
      h.next = page.next_after;
      $('h-page').textContent = rows.length ? 'events after seq ' + h.after : 'no events';
    }
    table.tHead.replaceChildren(el('tr', {}, ...head.map((name) => el('th', { scope: 'col', text: name }))));
    table.tBodies[0].replaceChildren(...rows.map((cells) => el('tr', {}, ...cells.map((v) => el('td', { text: v })))));
    $('h-next').disabled = h.next === null || h.next === undefined;
    $('h-prev').disabled = view === 'tasks' ? h.offset === 0 : h.stack.length === 0;
  }

  $('history-form').addEventListener('submit', (event) => { event.preventDefault(); searchHistory(true); });
  $('h-next').addEventListener('click', () => {
    const h = state.history;
    if ($('h-view').value === 'tasks') h.offset = h.next; else { h.stack.push(h.after); h.after = h.next; }
    searchHistory(false);
  });
  $('h-prev').addEventListener('click', () => {
    const h = state.history;
    if ($('h-view').value === 'tasks') h.offset = Math.max(0, h.offset - PAGE); else h.after = h.stack.pop() || 0;
    searchHistory(false);
  });

  // -- sessions and health ----------------------------------------------------------

  async function loadSessions() {
    const page = await api(ep('/dashboard/api/sessions'));
    const body = $('sessions').tBodies[0];
    body.replaceChildren(...(page.sessions || []).map((s) => {
      let open = 0; let shown = 0;
      for (const task of state.tasks.values()) {
        if (task.session_id !== s.session_id) continue;
        shown += 1;
        if (!TERMINAL.has(task.status)) open += 1;
      }
      const credential = s.credential === 'valid' ? 'valid'
        : s.credential + ': register a Globus credential again (orbit-globus session register)';
      return el('tr', { 'data-session-id': s.session_id }, el('td', { text: s.session_id }),
        el('td', { class: 'credential-' + s.credential, text: credential }),
        el('td', { text: s.local_collection || '' }), el('td', { class: 'num', text: String(open) }),
        el('td', { class: 'num', text: String(shown) }));
    }));
  }

  async function probe(path) {
    // /ready is the operators' readiness probe (where the daemon has it): 200 ready, 503 not.
    try {
      const response = await fetch(path, { credentials: 'same-origin' });
      if (response.status === 404) return 'not available';
      return response.ok ? 'yes' : 'no (' + response.status + ')';
    } catch (e) { return 'no answer'; }
  }

  async function loadHealth() {
    const health = await api(ep('/dashboard/api/health'));
    const ready = await probe(ep('/ready'));
    const items = [
      ['Ready', ready],
      ['Endpoint', health.endpoint], ['Version', health.version],
      ['Up for', Math.round(health.uptime) + ' s'], ['Ledger head (seq)', health.ledger_head],
      ['Sessions', health.sessions], ['Unfinished tasks', health.open_tasks],
      ['WebSocket clients', health.websocket_clients], ['Poll interval', health.poll_interval + ' s'],
      ['Events received by this page', state.received],
      ['Last event delay', state.lastLag === null ? '' : Math.round(state.lastLag * 1000) + ' ms'],
    ];
    $('health').replaceChildren(...items.flatMap(([name, value]) => [el('dt', { text: name }),
      el('dd', { text: value === null || value === undefined ? '' : String(value) })]));
  }

  setInterval(() => {
    if (!state.me) return;
    if (!$('view-health').hidden) loadHealth().catch(() => {});
    if (state.me.bridge) listEndpoints().catch(() => {}); // which endpoints are online
  }, 5000);

  start();
})();
