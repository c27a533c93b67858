// leadbot sandbox page: polls /api/state, inserts the server-rendered (already escaped) HTML
// fragments, and turns clicks into JSON POSTs. It never builds HTML from data itself: text it
// shows (toasts, dates, command hints) goes through textContent.
'use strict';

(() => {
  const POLL_MS = 700;
  const S = {
    user: localStorage.getItem('sandbox.user') || '',
    conv: localStorage.getItem('sandbox.conv') || '',
    thread: null,
    version: null,
    clock: Math.floor(Date.now() / 1000),
    modalKey: null,
    inflight: false,
    requests: 0,
    commands: [],
    focusTs: null,
  };
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  // --- talking to the sandbox -----------------------------------------------------------------

  async function api(path, body) {
    let data;
    try {
      const r = await fetch(path, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      data = await r.json().catch(() => ({ ok: false, error: `HTTP ${r.status}` }));
    } catch (err) {
      data = { ok: false, error: 'The sandbox is not answering. Is `leadbot sandbox` still running?' };
    }
    if (data.ok === false) toast(data.error || 'Something went wrong.', 'error');
    return data;
  }

  async function refresh(force) {
    if (S.inflight && !force) return;
    S.inflight = true;
    // Answers can arrive out of order (a poll, then a click); only the newest request counts.
    const mine = ++S.requests;
    try {
      const q = new URLSearchParams({ user: S.user, conv: S.conv });
      if (S.thread) q.set('thread', S.thread);
      if (!force && S.version) q.set('since', S.version);
      const r = await fetch(`/api/state?${q}`, { cache: 'no-store' });
      const st = await r.json();
      if (mine !== S.requests) return;
      if (!r.ok) {
        toast(st.error || `HTTP ${r.status}`, 'error');
        return;
      }
      apply(st);
    } catch (err) {
      setOffline(true);
      return;
    } finally {
      if (mine === S.requests) S.inflight = false;
    }
    setOffline(false);
  }

  function setOffline(off) {
    document.body.classList.toggle('offline', off);
  }

  function setHTML(el, html) {
    if (el.dataset.rendered === html) return false;
    el.innerHTML = html; // server-rendered and escaped by bot/sandbox/render_html.py
    el.dataset.rendered = html;
    return true;
  }

  function apply(st) {
    if (st.unchanged) return;
    const convChanged = st.conv !== S.conv;
    S.version = st.version;
    S.conv = st.conv;
    S.clock = st.clock.epoch;
    S.commands = st.commands || [];
    localStorage.setItem('sandbox.conv', S.conv);
    $('#clock-label').textContent = st.clock.label;
    $('#clock-tz').textContent = st.clock.tz;
    setHTML($('#sidebar'), st.sidebar_html);
    setHTML($('#conv-header'), st.header_html);

    const list = $('#messages');
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    if (setHTML(list, st.main_html) && (nearBottom || convChanged)) list.scrollTop = list.scrollHeight;
    document.body.classList.toggle('on-home', st.conv === 'home');

    const composer = $('#composer-input');
    composer.disabled = !st.composer.enabled;
    composer.placeholder = st.composer.placeholder;
    $('#composer').hidden = !st.composer.enabled;

    const thread = $('#thread');
    if (st.thread_html) {
      const body = $('.thread-body', thread);
      const atEnd = !body || body.scrollHeight - body.scrollTop - body.clientHeight < 80;
      setHTML($('#thread-content'), st.thread_html);
      thread.hidden = false;
      const nb = $('.thread-body', thread);
      if (nb && atEnd) nb.scrollTop = nb.scrollHeight;
    } else {
      thread.hidden = true;
      S.thread = null;
    }

    applyModal(st.modal);
    formatTimes(document);
    if (S.focusTs) {
      const el = document.getElementById(`msg-${S.focusTs}`);
      if (el) {
        el.scrollIntoView({ block: 'center' });
        el.classList.add('flash');
        S.focusTs = null;
      }
    }
  }

  function applyModal(modal) {
    const layer = $('#modal-layer');
    if (!modal) {
      layer.hidden = true;
      layer.innerHTML = '';
      S.modalKey = null;
      return;
    }
    if (modal.key === S.modalKey) return;
    const old = $('.modal', layer);
    const sameView = old && old.dataset.viewId === modal.view_id;
    const kept = sameView ? collectState(old) : null;
    layer.innerHTML = modal.html; // server-rendered and escaped
    layer.hidden = false;
    S.modalKey = modal.key;
    const now = $('.modal', layer);
    if (kept) restoreState(now, kept);
    const firstError = $('.has-error .bk-input-el, .has-error select', now);
    const first = firstError || $('.bk-input-el, select', now);
    if (first && (!sameView || firstError)) first.focus();
  }

  // --- Block Kit state ------------------------------------------------------------------------

  function valueOf(el) {
    const t = el.dataset.type;
    if (t === 'checkboxes') return $$('input:checked', el).map((i) => i.value);
    if (t === 'radio_buttons') {
      const i = $('input:checked', el);
      return i ? i.value : null;
    }
    if (el.tagName === 'SELECT' && el.multiple) return Array.from(el.selectedOptions).map((o) => o.value);
    if (el.tagName === 'SELECT') return el.value || null;
    return el.value;
  }

  function collectState(root) {
    const out = {};
    $$('[data-state]', root).forEach((el) => {
      const b = el.dataset.blockId;
      (out[b] = out[b] || {})[el.dataset.actionId] = valueOf(el);
    });
    return out;
  }

  function restoreState(root, values) {
    $$('[data-state]', root).forEach((el) => {
      const v = (values[el.dataset.blockId] || {})[el.dataset.actionId];
      if (v === undefined || v === null) return;
      const t = el.dataset.type;
      if (t === 'checkboxes' || t === 'radio_buttons') {
        const want = new Set(Array.isArray(v) ? v : [v]);
        $$('input', el).forEach((i) => { i.checked = want.has(i.value); });
      } else if (el.tagName === 'SELECT' && el.multiple) {
        const want = new Set(v);
        Array.from(el.options).forEach((o) => { o.selected = want.has(o.value); });
      } else {
        el.value = v;
      }
    });
  }

  function confirmDialog(source) {
    const layer = $('#confirm-layer');
    const box = $('.confirm-box', layer);
    box.innerHTML = source.innerHTML; // server-rendered and escaped
    layer.hidden = false;
    return new Promise((resolve) => {
      const done = (answer) => {
        layer.hidden = true;
        box.innerHTML = '';
        layer.removeEventListener('click', onClick);
        document.removeEventListener('keydown', onKey, true);
        resolve(answer);
      };
      const onClick = (ev) => {
        if (ev.target.closest('[data-confirm-ok]')) done(true);
        else if (ev.target.closest('[data-confirm-deny]') || ev.target === layer) done(false);
      };
      const onKey = (ev) => {
        if (ev.key === 'Escape') {
          ev.stopPropagation();
          done(false);
        }
      };
      layer.addEventListener('click', onClick);
      document.addEventListener('keydown', onKey, true);
      const ok = $('[data-confirm-ok]', box);
      if (ok) ok.focus();
    });
  }

  async function dispatch(el, value) {
    const confirmSource = el.nextElementSibling && el.nextElementSibling.classList.contains('bk-confirm')
      ? el.nextElementSibling : null;
    if (confirmSource && !(await confirmDialog(confirmSource))) return;
    if (el.dataset.url) window.open(el.dataset.url, '_blank', 'noopener,noreferrer');
    const body = {
      user: S.user,
      action_id: el.dataset.actionId,
      block_id: el.dataset.blockId,
      value: value === undefined ? null : value,
    };
    const view = el.closest('[data-view-id]');
    const msg = el.closest('.msg');
    if (view) {
      body.source = 'view';
      body.view_id = view.dataset.viewId;
      body.state = collectState(view);
    } else if (msg) {
      body.source = 'message';
      body.channel = msg.dataset.channel;
      body.ts = msg.dataset.ts;
    } else {
      return;
    }
    el.classList.add('busy');
    await api('/api/action', body);
    el.classList.remove('busy');
    await refresh(true);
  }

  // --- dates, in the viewer's time zone (relative ones against the bot's clock) ------------------

  const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August',
    'September', 'October', 'November', 'December'];
  const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

  function ordinal(n) {
    const s = (n % 100 >= 11 && n % 100 <= 13) ? 'th' : ({ 1: 'st', 2: 'nd', 3: 'rd' }[n % 10] || 'th');
    return `${n}${s}`;
  }
  function clockText(d, secs) {
    const h = d.getHours() % 12 || 12;
    const m = String(d.getMinutes()).padStart(2, '0');
    const s = secs ? `:${String(d.getSeconds()).padStart(2, '0')}` : '';
    return `${h}:${m}${s} ${d.getHours() < 12 ? 'AM' : 'PM'}`;
  }
  function dayNumber(d) {
    return Math.floor(new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() / 86400000);
  }
  function ago(d, now) {
    const secs = (now - d) / 1000;
    const span = Math.abs(secs);
    if (span < 60) return 'just now';
    const units = [[31536000, 'year'], [2592000, 'month'], [86400, 'day'], [3600, 'hour'], [60, 'minute']];
    for (const [size, unit] of units) {
      if (span >= size) {
        const n = Math.floor(span / size);
        const text = `${n} ${unit}${n === 1 ? '' : 's'}`;
        return secs > 0 ? `${text} ago` : `in ${text}`;
      }
    }
    return 'just now';
  }
  function token(tok, d, now) {
    const month = MONTHS[d.getMonth()];
    switch (tok) {
      case 'date_num':
        return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
      case 'time': return clockText(d, false);
      case 'time_secs': return clockText(d, true);
      case 'ago': return ago(d, now);
      default: break;
    }
    const base = tok.replace(/_pretty$/, '');
    if (!['date', 'date_short', 'date_long'].includes(base)) return null;
    if (tok.endsWith('_pretty')) {
      const rel = { 0: 'today', '-1': 'yesterday', 1: 'tomorrow' }[dayNumber(d) - dayNumber(now)];
      if (rel) return rel;
    }
    if (base === 'date_short') return `${month.slice(0, 3)} ${d.getDate()}, ${d.getFullYear()}`;
    const long = `${month} ${ordinal(d.getDate())}, ${d.getFullYear()}`;
    return base === 'date_long' ? `${DAYS[d.getDay()]}, ${long}` : long;
  }
  function formatTimes(root) {
    const now = new Date(S.clock * 1000);
    $$('time.slack-date', root).forEach((el) => {
      const d = new Date(Number(el.dataset.epoch) * 1000);
      el.textContent = el.dataset.format.replace(/\{(\w+)\}/g, (m, tok) => {
        const out = token(tok, d, now);
        return out === null ? m : out;
      });
      el.title = d.toString();
    });
    // Attachment stripes: the server only passes validated hex colours.
    $$('.attachment[data-color]', root).forEach((el) => {
      el.style.borderLeftColor = `#${el.dataset.color}`;
    });
    $$('time.msg-time, time.reply-time', root).forEach((el) => {
      const d = new Date(Number(el.dataset.epoch) * 1000);
      el.textContent = el.classList.contains('reply-time') ? ago(d, now) : clockText(d, false);
    });
  }

  // --- toasts, hints --------------------------------------------------------------------------

  function toast(text, kind) {
    const box = $('#toasts');
    // One status line at a time; errors stay until they time out.
    if (kind === 'info') $$('.toast.info', box).forEach((t) => t.remove());
    while (box.children.length >= 3) box.firstElementChild.remove();
    const el = document.createElement('div');
    el.className = `toast ${kind || ''}`;
    el.textContent = text;
    box.appendChild(el);
    setTimeout(() => el.remove(), kind === 'error' ? 8000 : 5000);
  }

  function updateHints() {
    const input = $('#composer-input');
    const box = $('#command-hints');
    const v = input.value;
    const typing = v.startsWith('/') && !/\s/.test(v);
    const matches = typing ? S.commands.filter((c) => c.command.startsWith(v.toLowerCase())) : [];
    box.replaceChildren();
    matches.forEach((c) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'cmd-hint';
      b.dataset.command = c.command;
      const name = document.createElement('b');
      name.textContent = c.command;
      const hint = document.createElement('span');
      hint.className = 'cmd-usage';
      hint.textContent = c.usage_hint || '';
      const desc = document.createElement('div');
      desc.className = 'cmd-desc';
      desc.textContent = c.description || '';
      b.append(name, ' ', hint, desc);
      box.appendChild(b);
    });
    box.hidden = matches.length === 0;
  }

  // --- user actions ---------------------------------------------------------------------------

  async function send(input, threadTs) {
    const text = input.value;
    if (!text.trim()) return;
    input.disabled = true;
    const r = await api('/api/send', { user: S.user, conv: S.conv, text, thread_ts: threadTs || null });
    input.disabled = false;
    if (r.ok !== false) {
      input.value = '';
      autosize(input);
      updateHints();
    }
    input.focus();
    await refresh(true);
  }

  function autosize(t) {
    t.style.height = 'auto';
    t.style.height = `${Math.min(t.scrollHeight, 200)}px`;
  }

  function openConv(conv, ts, thread) {
    S.conv = conv;
    S.thread = thread || null;
    S.focusTs = ts || null;
    S.version = null;
    if (conv === 'home') api('/api/open', { user: S.user, conv }).then(() => refresh(true));
    refresh(true);
  }

  async function clockStep(step, btn) {
    btn.disabled = true;
    const r = await api('/api/clock', { user: S.user, step });
    btn.disabled = false;
    if (r.ok) toast(`Clock moved. ${r.jobs.join(' · ')}`, 'info');
    await refresh(true);
  }

  document.addEventListener('click', async (ev) => {
    // Like Slack's menus, an open overflow menu closes when you click anywhere else.
    $$('details.bk-overflow[open]').forEach((d) => {
      if (!d.contains(ev.target)) d.open = false;
    });
    const t = ev.target.closest(
      '[data-open-conv], [data-thread], [data-close-thread], [data-view-submit], [data-view-close],'
      + ' [data-dispatch], [data-clock], .cmd-hint, #send',
    );
    if (!t || t.disabled) return;
    if (t.matches('select, input, textarea, .bk-choices')) return; // handled on change
    if (t.tagName === 'A') ev.preventDefault();
    if (t.dataset.openConv !== undefined && !t.matches('[data-dispatch]')) {
      openConv(t.dataset.openConv, t.dataset.ts, t.dataset.thread);
    } else if (t.dataset.thread !== undefined && t.classList.contains('thread-link')) {
      S.thread = t.dataset.thread;
      await refresh(true);
      $('#thread-input').focus();
    } else if (t.dataset.closeThread !== undefined) {
      S.thread = null;
      await refresh(true);
    } else if (t.dataset.viewSubmit !== undefined) {
      const modal = t.closest('.modal');
      t.disabled = true;
      await api('/api/view/submit', { user: S.user, view_id: modal.dataset.viewId, values: collectState(modal) });
      t.disabled = false;
      await refresh(true);
    } else if (t.dataset.viewClose !== undefined) {
      const modal = t.closest('.modal');
      await api('/api/view/close', { user: S.user, view_id: modal.dataset.viewId, all: t.dataset.viewClose === 'all' });
      await refresh(true);
    } else if (t.dataset.dispatch !== undefined) {
      const menu = t.closest('details');
      if (menu) menu.open = false;
      await dispatch(t, t.dataset.value);
    } else if (t.dataset.clock !== undefined) {
      await clockStep(t.dataset.clock, t);
    } else if (t.classList.contains('cmd-hint')) {
      const input = $('#composer-input');
      input.value = `${t.dataset.command} `;
      updateHints();
      input.focus();
    } else if (t.id === 'send') {
      await send($('#composer-input'), null);
    }
  });

  document.addEventListener('change', async (ev) => {
    if (ev.target.id === 'person') return;
    const el = ev.target.closest('[data-dispatch]');
    if (!el || el.tagName === 'BUTTON') return;
    await dispatch(el, valueOf(el));
  });

  document.addEventListener('keydown', async (ev) => {
    const modalOpen = !$('#modal-layer').hidden;
    if (ev.key === 'Escape' && modalOpen && $('#confirm-layer').hidden) {
      const x = $('#modal-layer [data-view-close="all"]');
      if (x) x.click();
      return;
    }
    const t = ev.target;
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && (t.id === 'composer-input' || t.id === 'thread-input')) {
      ev.preventDefault();
      await send(t, t.id === 'thread-input' ? S.thread : null);
    }
  });

  document.addEventListener('input', (ev) => {
    if (ev.target.id === 'composer-input' || ev.target.id === 'thread-input') autosize(ev.target);
    if (ev.target.id === 'composer-input') updateHints();
  });

  function init() {
    const person = $('#person');
    if (!S.user || !Array.from(person.options).some((o) => o.value === S.user)) S.user = person.value;
    person.value = S.user;
    person.addEventListener('change', () => {
      S.user = person.value;
      localStorage.setItem('sandbox.user', S.user);
      S.thread = null;
      S.version = null;
      S.modalKey = null;
      refresh(true);
    });
    refresh(true);
    setInterval(() => refresh(false), POLL_MS);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) refresh(true);
    });
  }

  init();
})();
