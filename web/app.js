// costmesh dashboard: a single page over costmeshd's REST API.
// No framework, no build step. Text from the API is only ever put into the
// page with textContent (never parsed as markup), and money is kept as the exact
// decimal text the API sent.
'use strict';

(function () {
  const KEY_STORE = 'costmesh.apiKey';
  const REFRESH_MS = 10000;
  const MONEY_KEY = /_usd$|_usd_per_hour$|^limit_value$|^current$/;
  const JSON_NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;
  const LIMIT_FIELDS = ['max_cost_per_hour_usd', 'max_cost_per_day_usd', 'max_cost_per_month_usd',
    'max_intents_per_hour', 'max_intents_per_day'];
  const POLICY_FIELDS = LIMIT_FIELDS.concat(['action_on_breach', 'alert_thresholds']);
  const NANOS = 1000000000n;

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------ JSON, money

  // JSON.parse reviver keeping money as text. With the JSON.parse source text
  // access proposal (Chromium 114+), the reviver's third argument holds the
  // number's original text; elsewhere the number's shortest String() is used,
  // which is the same text for every amount of up to 15 significant digits.
  function reviver(key, value, context) {
    if (typeof value === 'number' && MONEY_KEY.test(key)) {
      if (context && typeof context.source === 'string') return context.source;
      return String(value);
    }
    return value;
  }

  function parseJSON(text) {
    return JSON.parse(text, reviver);
  }

  // Money text -> BigInt nano-dollars (null when not a number).
  function toNanos(v) {
    if (v === null || v === undefined) return null;
    const s = String(v).trim();
    const m = /^(-?)([0-9]+)(?:\.([0-9]*))?$/.exec(s);
    if (!m) {
      const n = Number(s);
      if (!Number.isFinite(n)) return null;
      return toNanos(n.toFixed(9));
    }
    const frac = ((m[3] || '') + '000000000').slice(0, 9);
    const n = BigInt(m[2]) * NANOS + BigInt(frac);
    return m[1] ? -n : n;
  }

  // BigInt nano-dollars -> the API's decimal text (no trailing zeros).
  function fromNanos(n) {
    const neg = n < 0n;
    if (neg) n = -n;
    const ip = n / NANOS;
    let frac = (n % NANOS).toString().padStart(9, '0').replace(/0+$/, '');
    return (neg ? '-' : '') + ip.toString() + (frac ? '.' + frac : '');
  }

  function money(v) {
    if (v === null || v === undefined || v === '') return '–';
    return '$' + String(v);
  }

  // used/limit as a percentage text with two decimals, and a 0..100 width.
  function percent(used, limit) {
    const u = toNanos(used), l = toNanos(limit);
    if (u === null || l === null) return null;
    if (l <= 0n) return { text: u > 0n || l === 0n ? '100%' : '0%', width: 100, over: true };
    const p = (u * 10000n) / l;
    const text = (p / 100n).toString() + '.' + (p % 100n).toString().padStart(2, '0') + '%';
    const width = Number(p > 10000n ? 10000n : p) / 100;
    return { text: text.replace(/\.00%$/, '%'), width, over: u >= l };
  }

  function intText(v) {
    if (v === null || v === undefined) return '–';
    return typeof v === 'number' ? v.toLocaleString('en-US') : String(v);
  }

  // A limit's unit is in its name: max_cost_*_usd are dollars, max_intents_*
  // are counts.
  function inDollars(limitName) {
    return /_usd$/.test(String(limitName));
  }

  // ------------------------------------------------------------ time

  function parseTs(s) {
    const t = Date.parse(s);
    return Number.isFinite(t) ? t : null;
  }

  function ago(s) {
    const t = parseTs(s);
    if (t === null) return 'never';
    let d = Math.round((Date.now() - t) / 1000);
    if (d < 0) d = 0;
    if (d < 60) return d + 's ago';
    if (d < 3600) return Math.floor(d / 60) + 'm ago';
    if (d < 86400) return Math.floor(d / 3600) + 'h ago';
    return Math.floor(d / 86400) + 'd ago';
  }

  function pad2(n) { return String(n).padStart(2, '0'); }

  function fmtUtc(s) {
    const t = parseTs(s);
    if (t === null) return String(s || '');
    const d = new Date(t);
    return d.getUTCFullYear() + '-' + pad2(d.getUTCMonth() + 1) + '-' + pad2(d.getUTCDate()) + ' ' +
      pad2(d.getUTCHours()) + ':' + pad2(d.getUTCMinutes()) + ':' + pad2(d.getUTCSeconds()) + ' UTC';
  }

  function clock(d) {
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
  }

  function utcDayStart() {
    const d = new Date();
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  }

  // ------------------------------------------------------------ DOM helpers

  function el(tag, props, children) {
    const e = document.createElement(tag);
    if (props) {
      for (const k of Object.keys(props)) {
        const v = props[k];
        if (v === undefined || v === null) continue;
        if (k === 'text') e.textContent = v;
        else if (k === 'className') e.className = v;
        else if (k === 'dataset') Object.assign(e.dataset, v);
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v);
      }
    }
    for (const c of children || []) {
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  function setText(id, text) {
    const e = $(id);
    if (e) e.textContent = text;
  }

  function clear(e) {
    while (e.firstChild) e.removeChild(e.firstChild);
  }

  function agentName(address) {
    const parts = String(address).split('/');
    return parts[parts.length - 1] || String(address);
  }

  function agentHref(address) {
    return '#/agent/' + encodeURIComponent(address);
  }

  // An address wraps between its segments (agent://org/ env/ name), never
  // inside a name that fits on a line: each segment is its own box (.addr-seg in
  // app.css).
  function fillAddress(e, address) {
    clear(e);
    for (const part of String(address).split(/(?<=\/)(?!\/)/)) {
      e.appendChild(el('span', { className: 'addr-seg', text: part }));
    }
    return e;
  }

  function addressEl(address) {
    return fillAddress(el('div', { className: 'mono muted small address' }), address);
  }

  // "unknown" is an agent known by its policy or intents that has never sent
  // a heartbeat: not to be mistaken for one that went silent (unreachable).
  const HEALTH_HINT = {
    unknown: 'No heartbeat yet: known by its cost policy or intents',
  };

  function healthEl(health) {
    const h = String(health || 'unknown');
    return el('span', { className: 'health health-' + h.replace(/[^a-z]/g, ''), title: HEALTH_HINT[h] }, [
      el('span', { className: 'dot', 'aria-hidden': 'true' }), h]);
  }

  function stateBadge(e, state) {
    const s = String(state || 'unknown');
    e.textContent = s;
    e.className = 'badge state state-' + s.replace(/[^a-z]/g, '');
  }

  let noticeTimer = null;
  function notice(text, kind) {
    const n = $('notice');
    n.textContent = text;
    n.className = 'notice' + (kind ? ' notice-' + kind : '');
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, kind === 'error' ? 10000 : 4000);
  }

  // ------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field;
    }
  }

  function apiKey() {
    try { return sessionStorage.getItem(KEY_STORE) || ''; } catch (e) { return ''; }
  }

  async function api(method, path, body, keyOverride) {
    const key = keyOverride || apiKey();
    const headers = { 'x-api-key': key, 'Accept': 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let r;
    try {
      r = await fetch(path, { method, headers, body, cache: 'no-store', credentials: 'omit', redirect: 'error' });
    } catch (e) {
      throw new ApiError(0, 'network', 'costmeshd did not answer (' + e.message + ')', null);
    }
    const text = await r.text();
    let data = null;
    if (text) {
      try { data = parseJSON(text); } catch (e) { data = null; }
    }
    if (!r.ok) {
      const err = data && typeof data.error === 'object' && data.error ? data.error : {};
      const e = new ApiError(r.status, err.code || 'http_' + r.status,
        typeof err.message === 'string' && err.message ? err.message : 'HTTP ' + r.status, err.field || null);
      if (r.status === 401 && !keyOverride) signOut('The server refused the key (401): sign in again.');
      throw e;
    }
    return data;
  }

  const enc = encodeURIComponent;

  // ------------------------------------------------------------ state

  const state = {
    page: null,
    period: 'day',
    health: '',
    search: '',
    agents: [],
    spendCache: new Map(), // "window|address" -> cost text
    agent: null,           // address on the agent page
    agentData: null,
    chartWindow: 'day',
    spend: null,
    chart: null,
    policyLoadedFor: null,
    eventType: '',
    eventLimit: '100',
    runsWindow: 'day',
    busy: false,
    gen: 0,
  };

  // ------------------------------------------------------------ session

  function showPage(name) {
    if (name !== 'agent') destroyChart();
    for (const p of ['login', 'agents', 'agent', 'runs', 'budgets', 'pricing', 'events']) $('page-' + p).hidden = p !== name;
    const signedIn = name !== 'login';
    $('nav').hidden = !signedIn;
    $('session').hidden = !signedIn;
    $('nav-agents').classList.toggle('active', name === 'agents' || name === 'agent');
    $('nav-events').classList.toggle('active', name === 'events');
    $('nav-runs').classList.toggle('active', name === 'runs');
    $('nav-budgets').classList.toggle('active', name === 'budgets');
    $('nav-pricing').classList.toggle('active', name === 'pricing');
    state.page = name;
  }

  function signOut(message) {
    try { sessionStorage.removeItem(KEY_STORE); } catch (e) { /* ignore */ }
    destroyChart();
    // The next key may be another org's: its agent page starts afresh.
    state.agent = null;
    showPage('login');
    const le = $('login-error');
    le.textContent = message || '';
    le.hidden = !message;
    $('login-key').value = '';
    $('login-key').focus();
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const key = $('login-key').value.trim();
    const le = $('login-error');
    le.hidden = true;
    if (!key) return;
    $('login-submit').disabled = true;
    try {
      await api('GET', '/v1/mesh/agents?limit=1', undefined, key);
      sessionStorage.setItem(KEY_STORE, key);
      $('login-key').value = '';
      route();
    } catch (e) {
      le.textContent = e.status === 401 ? 'This key was refused (401).' : e.message;
      le.hidden = false;
    } finally {
      $('login-submit').disabled = false;
    }
  }

  function markRefreshed() {
    const u = $('updated');
    u.textContent = 'Updated ' + clock(new Date());
    u.dataset.refreshes = String((Number(u.dataset.refreshes) || 0) + 1);
  }

  // ------------------------------------------------------------ routing

  function route() {
    if (!apiKey()) { signOut(''); $('login-error').hidden = true; return; }
    const h = location.hash || '#/agents';
    state.gen++;
    if (h.startsWith('#/agent/')) {
      let address;
      try { address = decodeURIComponent(h.slice('#/agent/'.length)); } catch (e) { address = ''; }
      if (state.agent !== address) openAgent(address);
      showPage('agent');
      loadAgent(true);
    } else if (h === '#/events') {
      showPage('events');
      loadEvents();
    } else if (h === '#/runs') {
      showPage('runs');
      loadRuns();
    } else if (h === '#/budgets') {
      showPage('budgets');
      loadBudgets();
    } else if (h === '#/pricing') {
      showPage('pricing');
      loadPricing();
    } else {
      showPage('agents');
      loadAgents();
    }
  }

  function refreshCurrent() {
    if (state.page === 'agents') return loadAgents();
    if (state.page === 'agent') return loadAgent(false);
    if (state.page === 'events') return loadEvents();
    if (state.page === 'runs') return loadRuns();
    if (state.page === 'budgets') return loadBudgets();
    if (state.page === 'pricing') return loadPricing();
    return Promise.resolve();
  }

  // ------------------------------------------------------------ agents page

  async function mapLimit(items, n, fn) {
    let i = 0;
    const workers = [];
    for (let w = 0; w < Math.min(n, items.length); w++) {
      workers.push((async () => {
        while (i < items.length) {
          const k = i++;
          await fn(items[k]);
        }
      })());
    }
    await Promise.all(workers);
  }

  async function countIncidentsToday() {
    const since = utcDayStart();
    let n = 0;
    for (const t of ['policy_breached', 'agent_killed']) {
      const d = await api('GET', '/v1/mesh/events?event_type=' + t + '&limit=1000');
      for (const e of (d && d.events) || []) {
        const ts = parseTs(e.ts);
        if (ts !== null && ts >= since) n++;
      }
    }
    return n;
  }

  async function loadAgents() {
    const gen = state.gen;
    try {
      const all = await api('GET', '/v1/mesh/agents?limit=1000');
      let list = (all && all.agents) || [];
      const allAgents = list;
      if (state.health) {
        const f = await api('GET', '/v1/mesh/agents?limit=1000&health=' + enc(state.health));
        list = (f && f.agents) || [];
      }
      if (state.period !== 'day') {
        const w = state.period;
        await mapLimit(list, 4, async (a) => {
          try {
            const s = await api('GET', '/v1/mesh/agents/' + enc(a.address) + '/spend?window=' + w);
            state.spendCache.set(w + '|' + a.address, s.cost_usd);
          } catch (e) {
            if (e.status === 401) throw e;
            state.spendCache.set(w + '|' + a.address, null);
          }
        });
      }
      let incidents = null;
      try { incidents = await countIncidentsToday(); } catch (e) { if (e.status === 401) throw e; }
      if (gen !== state.gen || state.page !== 'agents') return;
      state.agents = list;
      renderAgentCards(allAgents, incidents);
      renderAgentsTable();
      markRefreshed();
    } catch (e) {
      if (e.status !== 401) notice('Could not load agents: ' + e.message, 'error');
    }
  }

  function renderAgentCards(all, incidents) {
    let healthy = 0, intents = 0, cost = 0n;
    for (const a of all) {
      if (a.health === 'healthy') healthy++;
      if (typeof a.intents_today === 'number') intents += a.intents_today;
      const n = toNanos(a.cost_today_usd);
      if (n !== null) cost += n;
    }
    setText('card-agents', String(all.length));
    setText('card-healthy', healthy + ' healthy');
    setText('card-intents', intents.toLocaleString('en-US'));
    setText('card-cost', money(fromNanos(cost)));
    setText('card-incidents', incidents === null ? '–' : String(incidents));
  }

  function costFor(a) {
    if (state.period === 'day') return a.cost_today_usd;
    const k = state.period + '|' + a.address;
    return state.spendCache.has(k) ? state.spendCache.get(k) : null;
  }

  function renderAgentsTable() {
    const body = $('agents-body');
    const q = state.search.trim().toLowerCase();
    const rows = state.agents.filter((a) => !q || String(a.address).toLowerCase().includes(q));
    setText('cost-head', { day: 'Cost today', week: 'Cost this week', month: 'Cost this month' }[state.period]);
    clear(body);
    for (const a of rows) {
      const killed = a.state === 'killed';
      const btn = el('button', {
        type: 'button', className: 'btn btn-small ' + (killed ? 'btn-resume' : 'btn-kill'),
        text: killed ? 'Resume' : 'Kill', 'aria-label': (killed ? 'Resume ' : 'Kill ') + a.address,
      });
      btn.addEventListener('click', () => toggleKill(a.address, killed, btn));
      const st = el('span');
      stateBadge(st, a.state);
      const tr = el('tr', { dataset: { address: a.address } }, [
        el('td', { className: 'agent-cell', 'data-label': 'Agent' }, [
          el('a', { href: agentHref(a.address), className: 'agent-link', text: agentName(a.address) }),
          addressEl(a.address)]),
        el('td', { className: 'health-cell', 'data-label': 'Health' }, [healthEl(a.health)]),
        el('td', { className: 'hb-cell', 'data-label': 'Last heartbeat' }, [
          el('span', { className: 'ago', 'data-ts': a.last_heartbeat || '', title: a.last_heartbeat ? fmtUtc(a.last_heartbeat) : '',
            text: ago(a.last_heartbeat) })]),
        el('td', { className: 'num intents-cell', 'data-label': 'Intents today', text: intText(a.intents_today) }),
        el('td', { className: 'num cost-cell', 'data-label': $('cost-head').textContent, text: money(costFor(a)) }),
        el('td', { className: 'state-cell', 'data-label': 'State' }, [st]),
        el('td', { className: 'action-cell' }, [btn]),
      ]);
      body.appendChild(tr);
    }
    const empty = $('agents-empty');
    empty.hidden = rows.length > 0;
    empty.textContent = state.agents.length === 0 && !state.health
      ? 'No agents yet. An agent appears with its first heartbeat, intent or cost policy.'
      : 'No agent matches.';
  }

  async function toggleKill(address, killed, btn) {
    if (btn) btn.disabled = true;
    try {
      const r = await api('POST', '/v1/mesh/agents/' + enc(address) + (killed ? '/resume' : '/kill'));
      notice(agentName(address) + (r && r.state ? ' is now ' + r.state : (killed ? ' resumed' : ' killed')), 'ok');
    } catch (e) {
      if (e.status !== 401) notice((killed ? 'Resume' : 'Kill') + ' failed: ' + e.message, 'error');
    } finally {
      if (btn) btn.disabled = false;
    }
    await refreshCurrent();
  }

  // ------------------------------------------------------------ agent page

  // Another agent's page shows nothing of the previous one (figures, badges,
  // budget bars, typed policy values): only the new name until its own
  // figures are in.
  function openAgent(address) {
    state.agent = address;
    state.agentData = null;
    state.policyLoadedFor = null;
    destroyChart();
    setText('agent-name', agentName(address));
    fillAddress($('agent-address'), address);
    showAgent('loading');
  }

  // what: 'loading' (the name only), 'found' or 'missing'.
  function showAgent(what) {
    $('agent-status').hidden = what !== 'found';
    $('agent-body').hidden = what !== 'found';
    $('agent-missing').hidden = what !== 'missing';
  }

  async function loadAgent(first) {
    const gen = state.gen;
    const address = state.agent;
    if (!address) { location.hash = '#/agents'; return; }
    try {
      const path = '/v1/mesh/agents/' + enc(address);
      const [a, s] = await Promise.all([
        api('GET', path),
        api('GET', path + '/spend?window=' + state.chartWindow),
      ]);
      if (gen !== state.gen || state.page !== 'agent' || state.agent !== address) return;
      state.agentData = a;
      state.spend = s;
      renderAgent(a);
      if (first || state.policyLoadedFor !== address) fillPolicyForm(a.policy);
      // Shown before the chart is drawn: Chart.js sizes it from its box.
      showAgent('found');
      renderChart(a, s);
      markRefreshed();
    } catch (e) {
      if (e.status === 401 || gen !== state.gen || state.agent !== address) return;
      if (e.status === 404) {
        state.agentData = null;
        setText('agent-missing-text', 'Nothing is known of ' + address + ': no heartbeat, intent or cost policy.');
        showAgent('missing');
      } else {
        notice('Could not load the agent: ' + e.message, 'error');
      }
    }
  }

  function renderAgent(a) {
    const h = $('agent-health');
    clear(h);
    h.appendChild(healthEl(a.health));
    stateBadge($('agent-state'), a.state);
    const killed = a.state === 'killed';
    const t = $('agent-toggle');
    t.textContent = killed ? 'Resume' : 'Kill';
    t.className = 'btn ' + (killed ? 'btn-resume' : 'btn-kill');
    const hour = a.hour || {}, today = a.today || {}, month = a.month || {};
    setText('hour-cost', money(hour.cost_usd));
    setText('hour-intents', intText(hour.intents) + ' intents');
    setText('today-cost', money(today.cost_usd));
    setText('today-intents', intText(today.intents) + ' intents');
    setText('month-cost', money(month.cost_usd));
    const hb = $('agent-heartbeat');
    clear(hb);
    hb.appendChild(document.createTextNode('last heartbeat '));
    hb.appendChild(el('span', { className: 'ago', 'data-ts': a.last_heartbeat || '', text: ago(a.last_heartbeat) }));
    renderBudget(a);
    renderEventRows($('agent-events-body'), $('agent-events-empty'), a.recent_events || [], false);
  }

  // One limit as a labelled bar: `text` says what is counted, the bar fills
  // used/limit.
  function meterRow(label, used, limit, text) {
    const pc = percent(used, limit);
    const fill = el('div', { className: 'meter-fill' + (pc && pc.over ? ' over' : pc && pc.width >= 75 ? ' warn' : '') });
    fill.style.width = (pc ? pc.width : 0) + '%';
    return el('div', { className: 'budget-row' }, [
      el('div', { className: 'budget-label' }, [
        el('span', { text: label }),
        el('span', { className: 'budget-num', text: text + (pc ? ' · ' + pc.text : '') })]),
      el('div', { className: 'meter', role: 'progressbar', 'aria-label': label,
        'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(pc ? Math.round(pc.width) : 0) }, [fill]),
    ]);
  }

  function renderBudget(a) {
    const list = $('budget-list');
    clear(list);
    const p = a.policy;
    const hour = a.hour || {}, today = a.today || {}, month = a.month || {};
    const rows = [];
    if (p) {
      const add = (name, used, label) => {
        const limit = p[name];
        if (limit === null || limit === undefined) return;
        rows.push({ name, limit, used: used === undefined || used === null ? '0' : used, label });
      };
      add('max_cost_per_hour_usd', hour.cost_usd, 'Cost this hour');
      add('max_cost_per_day_usd', today.cost_usd, 'Cost today');
      add('max_cost_per_month_usd', month.cost_usd, 'Cost this month');
      add('max_intents_per_hour', hour.intents, 'Intents this hour');
      add('max_intents_per_day', today.intents, 'Intents today');
    }
    for (const r of rows) {
      const fmt = inDollars(r.name) ? money : intText;
      list.appendChild(meterRow(r.label, String(r.used), String(r.limit), fmt(r.used) + ' of ' + fmt(r.limit)));
    }
    if (p && rows.length) {
      list.appendChild(el('p', { className: 'muted small',
        text: p.action_on_breach === 'alert' ? 'On breach: alert only (intents are never refused).'
          : 'On breach: new intents are refused (429).' }));
    }
    const empty = $('budget-empty');
    empty.hidden = rows.length > 0;
    empty.textContent = p ? 'The policy sets no limit: this agent is unlimited.' : 'No cost policy: this agent is unlimited.';
  }

  // ------------------------------------------------------------ chart

  function destroyChart() {
    if (state.chart) {
      state.chart.destroy();
      state.chart = null;
    }
  }

  function bucketLabel(from, hourly) {
    const t = parseTs(from);
    if (t === null) return String(from);
    const d = new Date(t);
    if (hourly) return pad2(d.getUTCHours()) + ':00';
    const wd = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getUTCDay()];
    const mo = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][d.getUTCMonth()];
    return wd + ' ' + d.getUTCDate() + ' ' + mo;
  }

  // The spend reply's burn rate projected from now to the window's cost
  // limit: the window's cost at now, then at the end of each later bucket
  // spent + burn x the hours to it, up to the bucket where it reaches the
  // limit (shown at the limit). Exact text beside each point, as for the
  // other money series. null when nothing burns.
  function forecastLine(s, series, hourly, limit) {
    const f = s.forecast;
    const burn = f ? toNanos(f.burn_rate_usd_per_hour) : null;
    const spent = toNanos(s.cost_usd), cap = toNanos(limit);
    if (!burn || burn <= 0n || spent === null || cap === null) return null;
    const step = hourly ? 3600000 : 86400000;
    const now = Date.now();
    const data = [], exact = [];
    let started = false, done = false;
    for (const b of series) {
      const from = parseTs(b.from);
      let v = null;
      if (!done && from !== null && from + step > now) {
        const ms = started ? from + step - now : 0;
        let n = spent + (burn * BigInt(Math.max(0, Math.round(ms)))) / 3600000n;
        if (n >= cap) { n = cap; done = true; }
        v = fromNanos(n);
        started = true;
        if (spent >= cap) done = true;
      }
      exact.push(v);
      data.push(v === null ? null : Number(v));
    }
    return started ? { burn: String(f.burn_rate_usd_per_hour), data, exact } : null;
  }

  function renderChart(a, s) {
    const series = (s && s.series) || [];
    const hourly = s.window === 'hour' || s.window === 'day';
    const p = a.policy || {};
    const bucketLimit = hourly ? p.max_cost_per_hour_usd : p.max_cost_per_day_usd;
    const windowLimit = s.window === 'day' ? p.max_cost_per_day_usd : s.window === 'month' ? p.max_cost_per_month_usd : null;
    const now = Date.now();
    const labels = [], costText = [], cost = [], tokens = [], cumText = [], cum = [];
    let run = 0n;
    for (const b of series) {
      labels.push(bucketLabel(b.from, hourly));
      const c = b.cost_usd === undefined || b.cost_usd === null ? '0' : String(b.cost_usd);
      costText.push(c);
      cost.push(Number(c));
      const n = toNanos(c);
      if (n !== null) run += n;
      const started = (parseTs(b.from) || 0) <= now;
      tokens.push(started ? (Number(b.tokens_in) || 0) + (Number(b.tokens_out) || 0) : null);
      cumText.push(started ? fromNanos(run) : null);
      cum.push(started ? Number(fromNanos(run)) : null);
    }
    const datasets = [{
      type: 'bar', label: hourly ? 'Cost per hour' : 'Cost per day', data: cost, yAxisID: 'y',
      backgroundColor: 'rgba(37, 99, 235, 0.75)', borderRadius: 3, order: 3, exact: costText, pointStyle: 'rect',
    }];
    const present = (v) => v !== null && v !== undefined;
    if (present(windowLimit)) {
      datasets.push({
        type: 'line', label: 'Cumulative cost', data: cum, yAxisID: 'y', borderColor: '#7c3aed',
        backgroundColor: '#7c3aed', pointRadius: 0, borderWidth: 2, tension: 0, order: 2, exact: cumText,
        pointStyle: 'line',
      });
      datasets.push({
        type: 'line', label: 'Budget per ' + s.window + ' ($' + windowLimit + ')',
        data: series.map(() => Number(windowLimit)), yAxisID: 'y', borderColor: '#dc2626', borderDash: [6, 4],
        borderWidth: 2, pointRadius: 0, order: 1, exact: series.map(() => String(windowLimit)), pointStyle: 'line',
      });
    }
    const fc = present(windowLimit) ? forecastLine(s, series, hourly, windowLimit) : null;
    if (fc) {
      datasets.push({
        type: 'line', label: 'Forecast at $' + fc.burn + '/h', data: fc.data, yAxisID: 'y', borderColor: '#7c3aed',
        borderDash: [3, 3], borderWidth: 2, pointRadius: 0, order: 2, exact: fc.exact, pointStyle: 'line', forecast: true,
      });
    }
    if (present(bucketLimit)) {
      datasets.push({
        type: 'line', label: 'Budget per ' + (hourly ? 'hour' : 'day') + ' ($' + bucketLimit + ')',
        data: series.map(() => Number(bucketLimit)), yAxisID: 'y', borderColor: '#ea580c', borderDash: [2, 3],
        borderWidth: 2, pointRadius: 0, order: 1, exact: series.map(() => String(bucketLimit)), pointStyle: 'line',
      });
    }
    datasets.push({
      type: 'line', label: 'Tokens (in + out)', data: tokens, yAxisID: 'y1', borderColor: '#059669',
      backgroundColor: '#059669', pointRadius: 2, borderWidth: 2, cubicInterpolationMode: 'monotone', order: 0,
      pointStyle: 'circle',
    });

    const summary = $('chart-summary');
    clear(summary);
    const parts = [
      ['Window', fmtUtc(s.from).slice(0, 16) + ' – ' + fmtUtc(s.to).slice(0, 16)],
      ['Cost', money(s.cost_usd)],
      ['Tokens', intText((Number(s.tokens_in) || 0) + (Number(s.tokens_out) || 0))],
      ['LLM calls', intText(s.llm_calls)],
      ['Heartbeats', intText(s.heartbeats)],
    ];
    if (present(windowLimit)) {
      const pc = percent(String(s.cost_usd), String(windowLimit));
      if (pc) parts.push(['Budget used', pc.text + ' of ' + money(windowLimit)]);
    }
    if (s.forecast && present(windowLimit)) {
      parts.push(['Burn rate', money(s.forecast.burn_rate_usd_per_hour) + '/h']);
      const at = (s.forecast.exhaustion || {})['max_cost_per_' + s.window + '_usd'];
      parts.push(['Runs out', at ? fmtUtc(at) : 'not this ' + s.window]);
    }
    for (const [k, v] of parts) {
      summary.appendChild(el('span', { className: 'summary-item' }, [el('span', { className: 'muted', text: k + ' ' }),
        el('strong', { className: k === 'Cost' ? 'window-cost' : null, text: v })]));
    }

    if (typeof window.Chart !== 'function') {
      summary.appendChild(el('span', { className: 'muted', text: ' (chart library not loaded)' }));
      return;
    }
    const config = {
      data: { labels, datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: 'index', intersect: false },
        plugins: {
          legend: {
            position: 'bottom',
            labels: { boxWidth: 14, boxHeight: 8, usePointStyle: true, sort: (a, b) => a.datasetIndex - b.datasetIndex },
          },
          tooltip: {
            callbacks: {
              label(ctx) {
                const ds = ctx.dataset;
                if (ds.exact) {
                  const v = ds.exact[ctx.dataIndex];
                  return v === null || v === undefined ? null : ds.label + ': $' + v;
                }
                return ds.label + ': ' + intText(ctx.parsed.y);
              },
            },
          },
        },
        scales: {
          x: { grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true } },
          y: { beginAtZero: true, position: 'left', title: { display: true, text: 'USD' },
            ticks: { callback: (v) => '$' + v } },
          y1: { beginAtZero: true, position: 'right', grid: { drawOnChartArea: false },
            title: { display: true, text: 'tokens' } },
        },
      },
    };
    if (state.chart && state.chart.$window === s.window) {
      state.chart.data = config.data;
      state.chart.options = config.options;
      state.chart.update('none');
    } else {
      destroyChart();
      state.chart = new window.Chart($('spend-chart'), config);
      state.chart.$window = s.window;
    }
  }

  // ------------------------------------------------------------ policy form

  function fillPolicyForm(p) {
    state.policyLoadedFor = state.agent;
    clearPolicyMessages();
    for (const f of LIMIT_FIELDS) {
      const v = p ? p[f] : null;
      $('pol-' + f).value = v === null || v === undefined ? '' : String(v);
    }
    $('pol-action_on_breach').value = p && p.action_on_breach === 'alert' ? 'alert' : 'block';
    const th = p && Array.isArray(p.alert_thresholds) ? p.alert_thresholds.join(', ') : '';
    $('pol-alert_thresholds').value = th === '0.5, 0.75, 0.9, 1' ? '' : th;
    $('policy-delete').disabled = !p;
  }

  // A form's messages (ids <form>-error, <form>-ok) and its inputs'
  // marks (ids <prefix><field>) cleared.
  function clearFormMessages(form, prefix, fields) {
    $(form + '-error').hidden = true;
    $(form + '-ok').hidden = true;
    for (const f of fields) {
      const i = $(prefix + f);
      i.removeAttribute('aria-invalid');
      i.classList.remove('invalid');
    }
  }

  // The server's refusal under the form, and the field it names marked.
  function showFormError(form, prefix, e) {
    const pe = $(form + '-error');
    pe.textContent = e.message + (e.field ? ' (field: ' + e.field + ')' : '');
    pe.hidden = false;
    if (e.field) {
      const base = String(e.field).replace(/\[.*$/, '');
      const i = $(prefix + base);
      if (i) {
        i.setAttribute('aria-invalid', 'true');
        i.classList.add('invalid');
        i.focus();
      }
    }
  }

  function clearPolicyMessages() {
    clearFormMessages('policy', 'pol-', POLICY_FIELDS);
  }

  // Raw JSON text for a value typed in the form: a valid JSON number is sent
  // as typed (so money keeps its exact text), anything else as a string for
  // the server to refuse with its own message.
  function rawValue(v) {
    return JSON_NUMBER.test(v) ? v : JSON.stringify(v);
  }

  function policyBody() {
    const parts = [];
    for (const f of LIMIT_FIELDS) {
      const v = $('pol-' + f).value.trim();
      if (v !== '') parts.push(JSON.stringify(f) + ':' + rawValue(v));
    }
    parts.push('"action_on_breach":' + JSON.stringify($('pol-action_on_breach').value));
    const th = $('pol-alert_thresholds').value.trim();
    if (th !== '') {
      const items = th.split(/[\s,]+/).filter(Boolean).map(rawValue);
      parts.push('"alert_thresholds":[' + items.join(',') + ']');
    }
    return '{' + parts.join(',') + '}';
  }

  function showPolicyError(e) {
    showFormError('policy', 'pol-', e);
  }

  async function onPolicySave(ev) {
    ev.preventDefault();
    clearPolicyMessages();
    const address = state.agent;
    const btn = $('policy-save');
    btn.disabled = true;
    try {
      const p = await api('PUT', '/v1/mesh/agents/' + enc(address) + '/policies/cost', policyBody());
      if (state.agent !== address) return;
      fillPolicyForm(p);
      const ok = $('policy-ok');
      ok.textContent = 'Policy saved.';
      ok.hidden = false;
      await loadAgent(false);
    } catch (e) {
      if (e.status !== 401 && state.agent === address) showPolicyError(e);
    } finally {
      btn.disabled = false;
    }
  }

  async function onPolicyDelete() {
    clearPolicyMessages();
    const address = state.agent;
    const btn = $('policy-delete');
    btn.disabled = true;
    try {
      await api('DELETE', '/v1/mesh/agents/' + enc(address) + '/policies/cost');
      if (state.agent !== address) return;
      fillPolicyForm(null);
      const ok = $('policy-ok');
      ok.textContent = 'Policy removed: the agent is unlimited.';
      ok.hidden = false;
      await loadAgent(false);
    } catch (e) {
      btn.disabled = false;
      if (state.agent !== address) return;
      if (e.status === 404) {
        fillPolicyForm(null);
      } else if (e.status !== 401) {
        showPolicyError(e);
      }
    }
  }

  // ------------------------------------------------------------ events

  // The name that says a detail's unit: a breach's or a threshold's figures
  // (limit_value, current) are in the unit of the limit it names.
  function unitOf(o, key) {
    return key === 'limit_value' || key === 'current' ? o.limit : key;
  }

  function detailText(details) {
    if (!details || typeof details !== 'object') return details === undefined || details === null ? '' : String(details);
    const out = [];
    const walk = (o, prefix) => {
      for (const k of Object.keys(o)) {
        const v = o[k];
        const name = prefix ? prefix + '.' + k : k;
        if (v === null || v === undefined) continue;
        if (Array.isArray(v)) out.push(name + ' ' + v.map(String).join(', '));
        else if (typeof v === 'object') walk(v, name);
        else out.push(name + ' ' + (inDollars(unitOf(o, k)) ? money(v) : String(v)));
      }
    };
    walk(details, '');
    return out.join(' · ');
  }

  function renderEventRows(body, empty, events, withAgent) {
    clear(body);
    for (const e of events) {
      const type = String(e.event_type || '');
      const cells = [
        el('td', { className: 'nowrap', 'data-label': 'Time', title: fmtUtc(e.ts) }, [el('span', null, [
          el('span', { text: fmtUtc(e.ts) }), el('span', { className: 'muted small', text: ' · ' }),
          el('span', { className: 'ago muted small', 'data-ts': e.ts || '', text: ago(e.ts) })])]),
        el('td', { 'data-label': 'Event' }, [el('span', { className: 'badge ev ev-' + type.replace(/[^a-z_]/g, ''), text: type })]),
      ];
      if (withAgent) {
        // Name and address in one box: a narrow window lays the cell out as
        // a row of its label and its content, and would squeeze them apart.
        cells.push(el('td', { 'data-label': 'Agent' }, e.agent
          ? [el('div', null, [el('a', { href: agentHref(e.agent), className: 'agent-link', text: agentName(e.agent) }),
            addressEl(e.agent)])]
          : []));
      }
      cells.push(el('td', { className: 'details', 'data-label': 'Details', text: detailText(e.details) }));
      body.appendChild(el('tr', { dataset: { type } }, cells));
    }
    empty.hidden = events.length > 0;
  }

  async function loadEvents() {
    const gen = state.gen;
    try {
      let q = '?limit=' + enc(state.eventLimit);
      if (state.eventType) q += '&event_type=' + enc(state.eventType);
      const d = await api('GET', '/v1/mesh/events' + q);
      if (gen !== state.gen || state.page !== 'events') return;
      renderEventRows($('events-body'), $('events-empty'), (d && d.events) || [], true);
      markRefreshed();
    } catch (e) {
      if (e.status !== 401) notice('Could not load events: ' + e.message, 'error');
    }
  }

  // ------------------------------------------------------------ runs page

  // Money that may be negative (a margin): "−$1.5" rather than "$-1.5".
  function signedMoney(v) {
    const s = String(v);
    return s.startsWith('-') ? '\u2212$' + s.slice(1) : money(s);
  }

  // The most expensive runs of the period, margin beside cost (GET /v1/mesh/top).
  async function loadRuns() {
    const gen = state.gen;
    try {
      const d = await api('GET', '/v1/mesh/top?by=run&limit=50&window=' + enc(state.runsWindow));
      if (gen !== state.gen || state.page !== 'runs') return;
      const body = $('runs-body');
      clear(body);
      const runs = (d && d.top) || [];
      for (const r of runs) {
        const m = toNanos(r.margin_usd);
        body.appendChild(el('tr', { dataset: { run: r.id } }, [
          el('td', { 'data-label': 'Run', className: 'run-id', text: r.id }),
          el('td', { 'data-label': 'Cost', className: 'num cost-cell', text: money(r.cost_usd) }),
          el('td', { 'data-label': 'Revenue', className: 'num', text: money(r.revenue_usd) }),
          el('td', { 'data-label': 'Margin', className: 'num margin-cell' + (m !== null && m < 0n ? ' loss' : ''),
            text: signedMoney(r.margin_usd) }),
          el('td', { 'data-label': 'Agents', className: 'num', text: intText(r.agents) }),
          el('td', { 'data-label': 'Heartbeats', className: 'num', text: intText(r.heartbeats) }),
        ]));
      }
      $('runs-empty').hidden = runs.length > 0;
      markRefreshed();
    } catch (e) {
      if (e.status !== 401) notice('Could not load runs: ' + e.message, 'error');
    }
  }

  // ------------------------------------------------------------ budgets page

  // Every scope's cost policy (GET /v1/mesh/policies, widest scope first),
  // each limit against what its window holds: a cost limit against spent +
  // reserved, as admission counts it; then the forecast.
  const BUDGET_LIMITS = [
    ['max_cost_per_hour_usd', 'hour', 'Cost this hour'],
    ['max_cost_per_day_usd', 'today', 'Cost today'],
    ['max_cost_per_month_usd', 'month', 'Cost this month'],
    ['max_intents_per_hour', 'hour', 'Intents this hour'],
    ['max_intents_per_day', 'today', 'Intents today'],
  ];

  async function loadBudgets() {
    const gen = state.gen;
    try {
      const all = [];
      let cursor = null;
      do {
        const d = await api('GET', '/v1/mesh/policies?limit=1000' + (cursor ? '&cursor=' + enc(cursor) : ''));
        all.push(...((d && d.policies) || []));
        cursor = d && d.next_cursor;
      } while (cursor && gen === state.gen);
      if (gen !== state.gen || state.page !== 'budgets') return;
      const list = $('budgets-list');
      clear(list);
      for (const p of all) list.appendChild(budgetCard(p));
      $('budgets-empty').hidden = all.length > 0;
      markRefreshed();
    } catch (e) {
      if (e.status !== 401) notice('Could not load budgets: ' + e.message, 'error');
    }
  }

  function scopeTitle(p) {
    if (p.scope === 'agent') {
      return el('div', null, [el('a', { href: agentHref(p.scope_id), className: 'agent-link', text: agentName(p.scope_id) }),
        addressEl(p.scope_id)]);
    }
    return el('div', { className: 'scope-id', text: p.scope === 'org' ? 'the whole org' : String(p.scope_id) });
  }

  function budgetCard(p) {
    const pol = p.policy || {};
    const reserved = p.reserved_usd === undefined || p.reserved_usd === null ? '0' : String(p.reserved_usd);
    const held = toNanos(reserved) || 0n;
    const rows = [];
    for (const [name, win, label] of BUDGET_LIMITS) {
      const limit = pol[name];
      if (limit === null || limit === undefined) continue;
      const w = p[win] || {};
      if (inDollars(name)) {
        const spent = w.cost_usd === undefined || w.cost_usd === null ? '0' : String(w.cost_usd);
        const used = fromNanos((toNanos(spent) || 0n) + held);
        const text = money(spent) + (held > 0n ? ' + ' + money(reserved) + ' reserved' : '') + ' of ' + money(limit);
        rows.push(meterRow(label, used, String(limit), text));
      } else {
        rows.push(meterRow(label, String(w.intents || 0), String(limit), intText(w.intents || 0) + ' of ' + intText(limit)));
      }
    }
    const facts = [];
    if (p.forecast) {
      facts.push(['Burn rate', money(p.forecast.burn_rate_usd_per_hour) + '/h']);
      const ex = p.forecast.exhaustion || {};
      for (const name of Object.keys(ex)) {
        facts.push(['Runs out (' + name + ')', ex[name] ? fmtUtc(ex[name]) : 'not before its window ends']);
      }
    }
    facts.push(['Reserved', money(reserved)]);
    facts.push(['On breach', pol.action_on_breach === 'alert' ? 'alert only' : 'refuse new intents (429)']);
    return el('div', { className: 'panel budget-card', dataset: { scope: p.scope, scopeId: p.scope_id === null ? '' : p.scope_id } }, [
      el('div', { className: 'budget-head' }, [el('span', { className: 'badge scope-badge', text: p.scope }), scopeTitle(p)]),
      rows.length ? el('div', { className: 'budget-list' }, rows) : el('p', { className: 'muted small', text: 'No limit set.' }),
      el('dl', { className: 'budget-facts' }, facts.flatMap(([k, v]) => [el('dt', { text: k }),
        el('dd', { className: 'fact-' + k.replace(/[^A-Za-z]+/g, '-').toLowerCase().replace(/-+$/, ''), text: v })])),
    ]);
  }

  // ------------------------------------------------------------ rate cards page

  const PRICE_FIELDS = ['model', 'input_per_million_usd', 'cached_input_per_million_usd', 'cache_write_per_million_usd',
    'output_per_million_usd', 'effective_from'];

  async function loadPricing() {
    const gen = state.gen;
    try {
      const d = await api('GET', '/v1/mesh/pricing/models');
      if (gen !== state.gen || state.page !== 'pricing') return;
      const body = $('pricing-body');
      clear(body);
      const models = (d && d.models) || [];
      for (const m of models) {
        for (const v of m.versions || []) {
          body.appendChild(el('tr', { dataset: { model: m.model, from: v.effective_from } }, [
            el('td', { 'data-label': 'Model', className: 'mono', text: m.model }),
            el('td', { 'data-label': 'Effective from', className: 'nowrap', text: fmtUtc(v.effective_from) }),
            el('td', { 'data-label': 'Input', className: 'num', text: money(v.input_per_million_usd) }),
            el('td', { 'data-label': 'Cached input', className: 'num', text: money(v.cached_input_per_million_usd) }),
            el('td', { 'data-label': 'Cache write', className: 'num', text: money(v.cache_write_per_million_usd) }),
            el('td', { 'data-label': 'Output', className: 'num', text: money(v.output_per_million_usd) }),
            el('td', { 'data-label': 'In force', text: v.in_force ? 'yes' : '' }),
          ]));
        }
      }
      $('pricing-empty').hidden = models.length > 0;
      markRefreshed();
    } catch (e) {
      if (e.status !== 401) notice('Could not load rate cards: ' + e.message, 'error');
    }
  }

  // The PUT body as typed: prices as their exact text (rawValue), an empty
  // optional price left out for the server's default.
  function priceBody() {
    const parts = [];
    for (const f of PRICE_FIELDS.slice(1, 5)) {
      const v = $('price-' + f).value.trim();
      if (v !== '') parts.push(JSON.stringify(f) + ':' + rawValue(v));
    }
    parts.push('"effective_from":' + JSON.stringify($('price-effective_from').value.trim()));
    return '{' + parts.join(',') + '}';
  }

  async function onPriceSave(ev) {
    ev.preventDefault();
    clearFormMessages('price', 'price-', PRICE_FIELDS);
    const model = $('price-model').value.trim();
    if (!model) {
      showFormError('price', 'price-', { message: 'Name the model', field: 'model' });
      return;
    }
    const btn = $('price-save');
    btn.disabled = true;
    try {
      const r = await api('PUT', '/v1/mesh/pricing/models/' + enc(model), priceBody());
      const ok = $('price-ok');
      ok.textContent = 'Version of ' + model + ' from ' + fmtUtc(r && r.version ? r.version.effective_from : '') + ' saved.';
      ok.hidden = false;
      await loadPricing();
    } catch (e) {
      if (e.status !== 401) showFormError('price', 'price-', e);
    } finally {
      btn.disabled = false;
    }
  }

  // ------------------------------------------------------------ wiring

  function setSegmented(group, value) {
    for (const b of group.querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.window === value));
  }

  function tickAgo() {
    for (const e of document.querySelectorAll('.ago[data-ts]')) {
      const ts = e.getAttribute('data-ts');
      if (ts) e.textContent = ago(ts);
    }
  }

  async function autoRefresh() {
    if (!$('auto-refresh').checked || document.hidden || state.busy || !apiKey() || state.page === 'login') return;
    state.busy = true;
    try { await refreshCurrent(); } finally { state.busy = false; }
  }

  function init() {
    $('login-form').addEventListener('submit', onLogin);
    $('signout').addEventListener('click', () => signOut(''));
    $('refresh').addEventListener('click', () => refreshCurrent());
    $('period').addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-window]');
      if (!b) return;
      state.period = b.dataset.window;
      setSegmented($('period'), state.period);
      renderAgentsTable();
      loadAgents();
    });
    $('chart-period').addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-window]');
      if (!b) return;
      state.chartWindow = b.dataset.window;
      setSegmented($('chart-period'), state.chartWindow);
      loadAgent(false);
    });
    $('runs-period').addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-window]');
      if (!b) return;
      state.runsWindow = b.dataset.window;
      setSegmented($('runs-period'), state.runsWindow);
      state.gen++;
      loadRuns();
    });
    $('agent-search').addEventListener('input', (ev) => { state.search = ev.target.value; renderAgentsTable(); });
    $('health-filter').addEventListener('change', (ev) => { state.health = ev.target.value; state.gen++; loadAgents(); });
    $('event-type').addEventListener('change', (ev) => { state.eventType = ev.target.value; state.gen++; loadEvents(); });
    $('event-limit').addEventListener('change', (ev) => { state.eventLimit = ev.target.value; state.gen++; loadEvents(); });
    $('agent-toggle').addEventListener('click', (ev) => {
      const a = state.agentData;
      if (a) toggleKill(a.address, a.state === 'killed', ev.currentTarget);
    });
    $('policy-form').addEventListener('submit', onPolicySave);
    $('policy-delete').addEventListener('click', onPolicyDelete);
    $('price-form').addEventListener('submit', onPriceSave);
    window.addEventListener('hashchange', route);
    setInterval(autoRefresh, REFRESH_MS);
    setInterval(tickAgo, 1000);
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
