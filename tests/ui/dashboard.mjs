// Browser test of the costmesh dashboard, in Debian's Chromium driven by
// playwright-core (web/node_modules; no browser is downloaded).
//
//   SERVER_URL=http://127.0.0.1:8080 ADMIN_KEY=... [AGENT_ORG=default] \
//   [SCREENSHOT_DIR=build/screenshots] [CHROMIUM=/usr/bin/chromium] node tests/ui/dashboard.mjs
//
// Prints PASS/FAIL lines and "N passed, M failed"; exits non-zero on failure.
import { createRequire } from 'node:module';
import { mkdtempSync, mkdirSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const SERVER = (process.env.SERVER_URL || '').replace(/\/+$/, '');
const KEY = process.env.ADMIN_KEY || '';
const ORG = process.env.AGENT_ORG || 'default';
const SHOTS = path.resolve(REPO, process.env.SCREENSHOT_DIR || 'build/screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const BUDGET_MS = Number(process.env.UI_TEST_TIMEOUT_MS || 150000);

let passed = 0, failed = 0;
function pass(name) { passed++; console.log('PASS ' + name); }
function fail(name, why) { failed++; console.log('FAIL ' + name + ': ' + String(why).replace(/\n/g, '\n    ')); }
function finish(code) {
  console.log(passed + ' passed, ' + failed + ' failed');
  process.exit(code !== undefined ? code : (failed ? 1 : 0));
}

if (!SERVER || !KEY) {
  fail('setup', 'SERVER_URL and ADMIN_KEY must be set');
  finish(2);
}
if (!existsSync(CHROMIUM)) {
  fail('setup', CHROMIUM + ' is missing: install Debian\'s chromium (apt-get install -y chromium)');
  finish(2);
}
let chromium;
try {
  const require = createRequire(path.join(REPO, 'web', 'package.json'));
  ({ chromium } = require('playwright-core'));
} catch (e) {
  fail('setup', 'playwright-core is not installed in web/node_modules (run make, which runs npm ci in web/): ' + e.message);
  finish(2);
}

const watchdog = setTimeout(() => {
  fail('timeout', 'the UI test did not finish within ' + BUDGET_MS + ' ms');
  finish(1);
}, BUDGET_MS);

// ------------------------------------------------------------------ API from node

async function api(method, p, body) {
  const r = await fetch(SERVER + p, {
    method, body, headers: { 'x-api-key': KEY, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    signal: AbortSignal.timeout(20000),
  });
  const text = await r.text();
  return { status: r.status, text, json: text ? JSON.parse(text) : null };
}

// The exact text of the first "name":number in a JSON reply.
function rawNumber(text, name) {
  const m = new RegExp('"' + name + '"\\s*:\\s*(-?[0-9][0-9.eE+-]*)').exec(text);
  if (!m) throw new Error('no ' + name + ' in ' + text.slice(0, 300));
  return m[1];
}

function toNanos(s) {
  const m = /^([0-9]+)(?:\.([0-9]{0,9}))?$/.exec(s);
  if (!m) throw new Error('not plain money text: ' + s);
  return BigInt(m[1]) * 1000000000n + BigInt(((m[2] || '') + '000000000').slice(0, 9));
}
function fromNanos(n) {
  const f = (n % 1000000000n).toString().padStart(9, '0').replace(/0+$/, '');
  return (n / 1000000000n).toString() + (f ? '.' + f : '');
}

const enc = encodeURIComponent;
const tag = randomBytes(4).toString('hex');
let hbn = 0;
// Every heartbeat accepted, as [agent, cost text, time in ms]: the figures the page must show are
// sums of these, never what the server answers.
const sent = [];
async function heartbeat(agent, costText, tsMs, extra = '') {
  const ts = tsMs ? ',"ts":"' + new Date(tsMs).toISOString().replace(/\.\d+Z$/, 'Z') + '"' : '';
  const body = '{"agent":' + JSON.stringify(agent) + ',"id":"ui-' + tag + '-' + (hbn++) + '"' + ts +
    ',"metrics":{"cost_usd":' + costText + ',"tokens_in":1200,"tokens_out":400,"llm_calls":3' + extra + '}}';
  const at = tsMs || Date.now();
  const r = await api('POST', '/v1/mesh/heartbeat', body);
  if (r.status !== 202) throw new Error('heartbeat: ' + r.status + ' ' + r.text);
  sent.push([agent, costText, Math.floor(at / 1000) * 1000]);
  return r;
}

// The UTC window (day, week from Monday, month) containing ms, as [from, to) in ms.
function windowOf(w, ms) {
  const d = new Date(ms);
  const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  if (w === 'day') return [day, day + 86400000];
  if (w === 'week') {
    const monday = day - ((d.getUTCDay() + 6) % 7) * 86400000;
    return [monday, monday + 7 * 86400000];
  }
  return [Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)];
}

// What the agent was sent in the window w of now, as exact money text.
function costIn(agent, w) {
  const [from, to] = windowOf(w, Date.now());
  return sum(sent.filter(([a, , t]) => a === agent && t >= from && t < to).map(([, c]) => c));
}

async function spendText(agent, window) {
  const r = await api('GET', '/v1/mesh/agents/' + enc(agent) + '/spend?window=' + window);
  if (r.status !== 200) throw new Error('spend: ' + r.status + ' ' + r.text);
  return rawNumber(r.text, 'cost_usd');
}

async function putPolicy(agent, body) {
  const r = await api('PUT', '/v1/mesh/agents/' + enc(agent) + '/policies/cost', JSON.stringify(body));
  if (r.status !== 200) throw new Error('policy: ' + r.status + ' ' + r.text);
}

async function agentState(agent) {
  const r = await api('GET', '/v1/mesh/agents/' + enc(agent));
  if (r.status !== 200) throw new Error('agent: ' + r.status + ' ' + r.text);
  return r.json.state;
}

// ------------------------------------------------------------------ helpers

function check(cond, msg) { if (!cond) throw new Error(msg); }

async function step(name, fn) {
  try {
    await fn();
    pass(name);
    return true;
  } catch (e) {
    fail(name, e && e.stack ? e.stack.split('\n').slice(0, 3).join('\n') : e);
    return false;
  }
}

async function waitText(page, selector, want, timeout = 15000) {
  const loc = page.locator(selector).first();
  const deadline = Date.now() + timeout;
  let got = null;
  while (Date.now() < deadline) {
    try { got = (await loc.textContent({ timeout: 1000 })); } catch (e) { got = null; }
    if (got !== null && (want instanceof RegExp ? want.test(got.trim()) : got.trim() === want)) return got.trim();
    await page.waitForTimeout(150);
  }
  throw new Error(selector + ': want ' + want + ', got ' + JSON.stringify(got));
}

async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
}

// ------------------------------------------------------------------ the test

const A = 'agent://' + ORG + '/production/research-agent-' + tag;
const B = 'agent://' + ORG + '/production/support-bot-' + tag;
const C = 'agent://' + ORG + '/staging/etl-summarizer-' + tag;
const E = 'agent://' + ORG + '/staging/big-spender-' + tag;
const row = (a) => 'tr[data-address="' + a + '"]';
const sum = (costs) => fromNanos(costs.map(toNanos).reduce((x, y) => x + y, 0n));
const A_DAY_LIMIT = '0.5';
const A_TODAY = sum(['0.1', '0.1', '0.1', '0.25']); // its heartbeats of today, the last one after its policy
// F reaches its intent limit.
const F = 'agent://' + ORG + '/production/intent-capped-' + tag;
const F_INTENT_LIMIT = 2;
let fAdmitted = 0;
// G is known by its cost policy only: it never sent a heartbeat.
const G = 'agent://' + ORG + '/production/not-started-' + tag;
const G_DAY_LIMIT = '1';
// D is seen and has no policy; U is no agent at all.
const D = 'agent://' + ORG + '/staging/doc-writer-' + tag;
const D_COSTS = ['0.07', '0.05'];
const U = 'agent://' + ORG + '/nowhere/ghost-' + tag;

// The visible part of the agent page: its text, the values of its inputs,
// its budget bars and its buttons.
function agentPageShown(page) {
  return page.evaluate(() => {
    const p = document.getElementById('page-agent');
    const shown = (e) => e.getClientRects().length > 0;
    return {
      text: p.innerText,
      values: [...p.querySelectorAll('input')].filter(shown).map((e) => e.value).filter(Boolean),
      meters: [...p.querySelectorAll('.meter')].filter(shown).length,
      controls: [...p.querySelectorAll('input, select, button')].filter(shown).map((e) => e.id || e.textContent),
    };
  });
}

async function goHash(page, hash) {
  await page.evaluate((h) => { location.hash = h; }, hash);
}

const userData = mkdtempSync(path.join(tmpdir(), 'cmui-chromium-'));
let context = null;
const consoleErrors = [];
const requestUrls = [];

async function main() {
  // Static check: data never goes into the page as HTML.
  await step('static.no_html_injection', async () => {
    const js = readFileSync(path.join(REPO, 'web', 'app.js'), 'utf8');
    for (const bad of ['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'eval(', 'new Function']) {
      check(!js.includes(bad), 'web/app.js uses ' + bad);
    }
    const html = readFileSync(path.join(REPO, 'web', 'index.html'), 'utf8');
    check(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(html), 'index.html has an inline script');
    check(!/\sstyle=|<style/i.test(html), 'index.html has inline styles');
    check(!/\son[a-z]+=/i.test(html), 'index.html has inline event handlers');
  });

  // Data: A gets exactly 0.1 three times today; B and C have some history.
  const now = Date.now();
  const dayStart = Math.floor(now / 86400000) * 86400000;
  const setupOk = await step('setup.heartbeats', async () => {
    for (let i = 2; i >= 0; i--) await heartbeat(A, '0.1', Math.max(dayStart, now - i * 3600000));
    for (let d = 6; d >= 1; d--) await heartbeat(B, (0.05 * d + 0.013).toFixed(3), now - d * 86400000);
    for (let h = 5; h >= 0; h--) {
      const t = now - h * 3600000;
      if (t >= dayStart) await heartbeat(B, '0.0' + (h + 2), t);
    }
    await heartbeat(C, '1.25', now - 3 * 86400000);
    await heartbeat(C, '0.75');
    // 17 significant digits: a double cannot hold it, only the reply's text.
    for (let i = 0; i < 10; i++) await heartbeat(E, '1000000');
    await heartbeat(E, '0.000000001');
    check(await spendText(E, 'day') === '10000000.000000001', 'API day cost of E');
    check(await spendText(A, 'day') === '0.3', 'API day cost of A is not 0.3');
    await putPolicy(F, { max_intents_per_day: F_INTENT_LIMIT, action_on_breach: 'block' });
    const st = [];
    for (let i = 0; i <= F_INTENT_LIMIT; i++) st.push((await api('POST', '/v1/mesh/intents', JSON.stringify({ agent: F }))).status);
    fAdmitted = st.filter((x) => x === 201).length;
    check(fAdmitted === F_INTENT_LIMIT && st[F_INTENT_LIMIT] === 429, 'intents of F: ' + st);
    await putPolicy(G, { max_cost_per_day_usd: Number(G_DAY_LIMIT) });
    for (const c of D_COSTS) await heartbeat(D, c);
  });
  if (!setupOk) return;

  context = await chromium.launchPersistentContext(userData, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1360, height: 900 },
    deviceScaleFactor: 1,
    timeout: 30000,
  });
  context.setDefaultTimeout(15000);
  const page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push('pageerror: ' + e.message));
  page.on('request', (r) => requestUrls.push(r.url()));

  await step('page.served_with_csp', async () => {
    const r = await page.goto(SERVER + '/', { waitUntil: 'load' });
    check(r && r.status() === 200, 'GET / answered ' + (r && r.status()));
    const csp = (await r.allHeaders())['content-security-policy'] || '';
    check(csp.includes("default-src 'self'"), 'no CSP header: ' + csp);
    await page.locator('#login-form').waitFor({ state: 'visible' });
    await shot(page, 'login.png');
  });

  await step('login.wrong_key_refused', async () => {
    await page.fill('#login-key', 'not-a-key-' + tag);
    await page.click('#login-submit');
    await waitText(page, '#login-error', /refused/);
    check(await page.locator('#page-agents').isHidden(), 'agents page shown for a wrong key');
  });

  await step('login.key_kept_in_session_storage', async () => {
    await page.fill('#login-key', KEY);
    await page.click('#login-submit');
    await page.locator('#page-agents').waitFor({ state: 'visible' });
    const stored = await page.evaluate(() => sessionStorage.getItem('costmesh.apiKey'));
    check(stored === KEY, 'key not in sessionStorage');
    check(!page.url().includes(KEY), 'key in the page URL');
  });

  await step('agents.exact_cost_and_row', async () => {
    await waitText(page, row(A) + ' .cost-cell', '$0.3');
    await waitText(page, row(A) + ' .state-cell', 'active');
    await waitText(page, row(A) + ' .health-cell', 'healthy');
    await waitText(page, row(A) + ' .hb-cell', /^\d+s ago$/);
    await waitText(page, row(A) + ' .agent-link', 'research-agent-' + tag);
    await waitText(page, row(C) + ' .cost-cell', '$0.75');
    await waitText(page, row(E) + ' .cost-cell', '$10000000.000000001');
  });

  await step('agents.never_seen_agent_health_unknown', async () => {
    await waitText(page, row(G) + ' .health-cell', 'unknown');
    await waitText(page, row(G) + ' .hb-cell', 'never');
    // Never seen is not gone silent: its dot must not look like unreachable's.
    const look = await page.evaluate((g) => {
      const dot = (h) => {
        const s = getComputedStyle(h.querySelector('.dot'));
        return [s.backgroundColor, s.borderTopStyle, s.borderTopColor].join(' ');
      };
      const unknown = document.querySelector('tr[data-address="' + g + '"] .health');
      const probe = document.createElement('span');
      probe.className = 'health health-unreachable';
      probe.appendChild(document.createElement('span')).className = 'dot';
      document.body.appendChild(probe);
      const r = { unknown: dot(unknown), unreachable: dot(probe), title: unknown.title };
      probe.remove();
      return r;
    }, G);
    check(look.unknown !== look.unreachable, 'unknown looks like unreachable: ' + look.unknown);
    check(/no heartbeat/i.test(look.title), 'no hint on the unknown badge: ' + JSON.stringify(look.title));
  });

  await step('agents.cards', async () => {
    // The org is this test's own (AGENT_ORG): every agent in it is one of these. F and G never sent a
    // heartbeat; the others did, within the last 90 s.
    const all = [A, B, C, D, E, F, G];
    const want = { '#card-cost': '$' + sum(all.map((a) => costIn(a, 'day'))), '#card-agents': String(all.length),
      '#card-healthy': '5 healthy', '#card-intents': String(fAdmitted) };
    const before = await page.getAttribute('#updated', 'data-refreshes');
    await page.click('#refresh');
    await page.waitForFunction((b) => document.getElementById('updated').dataset.refreshes !== b, before);
    for (const [sel, text] of Object.entries(want)) await waitText(page, sel, text);
    await waitText(page, '#updated', /^Updated \d\d:\d\d:\d\d$/);
    await shot(page, 'agents.png');
  });

  await step('agents.period_day_week_month', async () => {
    for (const [w, label] of [['week', 'Week'], ['month', 'Month'], ['day', 'Day']]) {
      await page.click('#period button[data-window="' + w + '"]');
      const head = { day: 'Cost today', week: 'Cost this week', month: 'Cost this month' }[w];
      await waitText(page, '#cost-head', head);
      for (const a of [A, B, C]) {
        check(await spendText(a, w) === costIn(a, w), 'API ' + w + ' cost of ' + a + ': ' + await spendText(a, w));
        await waitText(page, row(a) + ' .cost-cell', '$' + costIn(a, w));
      }
      check(await page.getAttribute('#period button[data-window="' + w + '"]', 'aria-pressed') === 'true', label + ' not pressed');
    }
  });

  await step('agents.search_and_health_filter', async () => {
    await page.fill('#agent-search', 'support-bot-' + tag);
    await page.waitForFunction(() => document.querySelectorAll('#agents-body tr').length === 1);
    check(await page.locator(row(B)).count() === 1, 'search lost B');
    await page.fill('#agent-search', tag);
    await page.waitForFunction(() => document.querySelectorAll('#agents-body tr').length >= 3);
    await page.selectOption('#health-filter', 'killed');
    await page.waitForFunction((a) => !document.querySelector('tr[data-address="' + a + '"]'), A);
    await page.selectOption('#health-filter', 'healthy');
    await page.locator(row(A)).waitFor();
    await page.selectOption('#health-filter', '');
    await page.fill('#agent-search', '');
  });

  await step('agent.page_counters_and_chart', async () => {
    await page.click(row(A) + ' .agent-link');
    await page.locator('#page-agent').waitFor({ state: 'visible' });
    check(page.url().includes('#/agent/' + enc(A)), 'hash route: ' + page.url());
    await waitText(page, '#agent-address', A);
    await waitText(page, '#today-cost', '$0.3');
    await waitText(page, '#today-intents', '0 intents');
    await waitText(page, '#month-cost', '$' + costIn(A, 'month'));
    await waitText(page, '#chart-summary .window-cost', '$0.3');
    const bars = await page.evaluate(() => {
      const c = window.Chart && window.Chart.getChart(document.getElementById('spend-chart'));
      return c ? c.data.datasets[0].data.length : -1;
    });
    check(bars === 24, 'day chart should have 24 hourly buckets, has ' + bars);
    for (const [w, n] of [['week', 7], ['month', null], ['day', 24]]) {
      await page.click('#chart-period button[data-window="' + w + '"]');
      await page.waitForFunction(([w2, n2]) => {
        const c = window.Chart && window.Chart.getChart(document.getElementById('spend-chart'));
        if (!c) return false;
        const len = c.data.datasets[0].data.length;
        return n2 ? len === n2 : len >= 28 && len <= 31;
      }, [w, n]);
      await waitText(page, '#chart-summary .window-cost', '$' + costIn(A, w));
    }
  });

  await step('agent.policy_bad_value_shows_server_message', async () => {
    const ref = await api('PUT', '/v1/mesh/agents/' + enc(A) + '/policies/cost', '{"max_cost_per_day_usd":-5}');
    check(ref.status === 400, 'API accepted -5: ' + ref.text);
    const msg = ref.json.error.message;
    await page.fill('#pol-max_cost_per_day_usd', '-5');
    await page.click('#policy-save');
    await waitText(page, '#policy-error', msg + ' (field: ' + ref.json.error.field + ')');
    check(await page.getAttribute('#pol-max_cost_per_day_usd', 'aria-invalid') === 'true', 'field not marked invalid');
    const r = await api('GET', '/v1/mesh/agents/' + enc(A) + '/policies/cost');
    check(r.status === 404, 'a policy exists after a refused PUT: ' + r.text);
  });

  await step('agent.policy_set_then_blocked_after_spend', async () => {
    await page.fill('#pol-max_cost_per_day_usd', '0.5');
    await page.fill('#pol-max_intents_per_hour', '100');
    await page.click('#policy-save');
    await waitText(page, '#policy-ok', 'Policy saved.');
    check(await page.locator('#policy-error').isHidden(), 'error still shown');
    const r = await api('GET', '/v1/mesh/agents/' + enc(A) + '/policies/cost');
    check(r.status === 200 && rawNumber(r.text, 'max_cost_per_day_usd') === '0.5' && r.json.max_intents_per_hour === 100,
      'policy not stored: ' + r.text);
    await waitText(page, '#budget-list', /Cost today\$0\.3 of \$0\.5 · 60%/);
    await waitText(page, '#agent-state', 'active');
    const hb = await heartbeat(A, '0.25');
    check(hb.json.agents[A].state === 'blocked', 'heartbeat reply state: ' + hb.text);
    await page.click('#refresh');
    await waitText(page, '#agent-state', 'blocked');
    await waitText(page, '#today-cost', '$0.55');
    await waitText(page, '#budget-list', /\$0\.55 of \$0\.5 · 110%/);
    check(await page.evaluate(() => {
      const c = window.Chart.getChart(document.getElementById('spend-chart'));
      return c.data.datasets.some((d) => /^Budget per day/.test(d.label));
    }), 'no budget line in the chart');
    await waitText(page, '#agent-events-body', /policy_changed/);
    await shot(page, 'agent.png');
    await page.click('#nav-agents');
    await waitText(page, row(A) + ' .state-cell', 'blocked');
    await waitText(page, row(A) + ' .cost-cell', '$0.55');
  });

  await step('agents.kill_and_resume_from_table', async () => {
    await page.click(row(A) + ' .action-cell button');
    await waitText(page, row(A) + ' .state-cell', 'killed');
    await waitText(page, row(A) + ' .health-cell', 'killed');
    await waitText(page, row(A) + ' .action-cell button', 'Resume');
    check(await agentState(A) === 'killed', 'API state is not killed');
    const it = await api('POST', '/v1/mesh/intents', JSON.stringify({ agent: A }));
    check(it.status === 403, 'intent of a killed agent: ' + it.status);
    await page.click(row(A) + ' .action-cell button');
    await waitText(page, row(A) + ' .state-cell', 'blocked');
    await waitText(page, row(A) + ' .action-cell button', 'Kill');
    check(await agentState(A) === 'blocked', 'API state after resume is not blocked');
  });

  await step('agents.incidents_today', async () => {
    // F's refused intent, A's cost limit and A's kill. A breach is recorded just after the reply that
    // found it, so the page may need a refresh or two; the refreshes' data-refreshes tells them apart.
    const want = '3';
    const deadline = Date.now() + 15000;
    let got = null;
    while (Date.now() < deadline) {
      const before = await page.getAttribute('#updated', 'data-refreshes');
      await page.click('#refresh');
      await page.waitForFunction((b) => document.getElementById('updated').dataset.refreshes !== b, before);
      got = (await page.textContent('#card-incidents')).trim();
      if (got === want) break;
      await page.waitForTimeout(200);
    }
    check(got === want, 'incidents card: want ' + want + ', got ' + got);
  });

  await step('agent.another_agent_starts_blank', async () => {
    await goHash(page, '#/agent/' + enc(A));
    await waitText(page, '#today-cost', '$' + A_TODAY);
    await waitText(page, '#agent-state', 'blocked');
    await page.fill('#pol-max_intents_per_day', '7'); // typed, never saved
    // D's figures are held back: until they come, the page shows D's name
    // and nothing of A's.
    let release;
    const held = new Promise((r) => { release = r; });
    const isD = (u) => u.href.startsWith(SERVER + '/v1/mesh/agents/' + enc(D));
    const hold = async (r) => { await held; await r.continue(); };
    await page.route(isD, hold);
    try {
      await goHash(page, '#/agent/' + enc(D));
      await waitText(page, '#agent-name', 'doc-writer-' + tag);
      const seen = await agentPageShown(page);
      check(!seen.text.includes('$' + A_TODAY) && !seen.text.includes('blocked'), 'A\'s figures under D: ' + seen.text);
      check(seen.values.length === 0, 'inputs show ' + seen.values);
      check(seen.meters === 0, seen.meters + ' budget bars shown');
      check(!seen.controls.includes('agent-toggle'), 'a Kill button before D is known');
    } finally {
      release();
    }
    await waitText(page, '#today-cost', '$' + sum(D_COSTS));
    await page.unroute(isD, hold);
    await waitText(page, '#agent-state', 'active');
    await waitText(page, '#agent-health', 'healthy');
    await waitText(page, '#budget-empty', 'No cost policy: this agent is unlimited.');
    const seen = await agentPageShown(page);
    check(seen.values.length === 0 && seen.meters === 0, 'D shows A\'s policy: ' + JSON.stringify(seen));

    // G was never seen: its page has its policy, nothing spent, health unknown.
    await goHash(page, '#/agent/' + enc(G));
    await waitText(page, '#agent-health', 'unknown');
    await waitText(page, '#today-cost', '$0');
    await waitText(page, '#budget-list .budget-row', 'Cost today$0 of $' + G_DAY_LIMIT + ' · 0%');
    check(await page.inputValue('#pol-max_cost_per_day_usd') === G_DAY_LIMIT, 'G\'s policy is not in the form');
  });

  await step('agent.unknown_address_is_not_found', async () => {
    check((await api('GET', '/v1/mesh/agents/' + enc(U))).status === 404, 'U exists');
    await page.fill('#pol-max_intents_per_hour', '7'); // typed on G's page, never saved
    await goHash(page, '#/agent/' + enc(U));
    await page.locator('#agent-missing').waitFor({ state: 'visible' });
    await waitText(page, '#agent-name', 'ghost-' + tag);
    check((await page.textContent('#agent-missing')).includes(U), 'the not-found text does not name ' + U);
    const seen = await agentPageShown(page);
    check(seen.controls.length === 0, 'controls on a missing agent\'s page: ' + seen.controls);
    check(!seen.text.includes('$') && seen.meters === 0, 'figures on a missing agent\'s page: ' + seen.text);
    await shot(page, 'agent-missing.png');
  });

  await step('events.list_and_filter', async () => {
    await page.click('#nav-events');
    await page.locator('#page-events').waitFor({ state: 'visible' });
    await waitText(page, '#events-body tr:first-child td:nth-child(2)', /^[a-z_]+$/);
    const first = (await api('GET', '/v1/mesh/events?limit=1')).json.events[0];
    await waitText(page, '#events-body tr:first-child td:nth-child(2)', first.event_type);
    await page.selectOption('#event-type', 'agent_killed');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#events-body tr')];
      return rows.length > 0 && rows.every((r) => r.dataset.type === 'agent_killed');
    });
    const killed = await page.evaluate(() => [...document.querySelectorAll('#events-body tr .address')]
      .map((e) => e.textContent));
    check(JSON.stringify(killed) === JSON.stringify([A]), 'agent_killed rows: want only A, got ' + JSON.stringify(killed));
    await page.selectOption('#event-type', '');
    await page.waitForFunction(() => [...document.querySelectorAll('#events-body tr')].some((r) => r.dataset.type === 'policy_changed'));
    await shot(page, 'events.png');
  });

  await step('events.limits_in_their_units', async () => {
    await page.selectOption('#event-type', 'policy_breached');
    const details = (agent) => page.evaluate((a) => [...document.querySelectorAll('#events-body tr')]
      .filter((r) => r.dataset.type === 'policy_breached' && (r.querySelector('.address') || {}).textContent === a)
      .map((r) => r.querySelector('td.details').textContent.split(' · ')), agent);
    await page.waitForFunction((f) => [...document.querySelectorAll('#events-body .address')].some((e) => e.textContent === f), F);
    const f = await details(F), a = await details(A);
    check(f.length === 1 && f[0].includes('limit_value ' + F_INTENT_LIMIT) && f[0].includes('current ' + fAdmitted),
      'intent limit breach of F: ' + JSON.stringify(f));
    check(a.length === 1 && a[0].includes('limit_value $' + A_DAY_LIMIT) && a[0].includes('current $' + A_TODAY),
      'cost limit breach of A: ' + JSON.stringify(a));
    await page.selectOption('#event-type', '');
  });

  await step('events.addresses_wrap_after_a_slash', async () => {
    // Each line of a wrapped address or name starts after a '/' or, in a name
    // too long for a narrow window (other tests' names are), after a '-':
    // never inside a word.
    const midWord = () => page.evaluate(() => {
      const bad = [];
      for (const e of document.querySelectorAll('#events-body .address, #events-body .agent-link')) {
        let text = '', top = null;
        const w = document.createTreeWalker(e, NodeFilter.SHOW_TEXT);
        for (let n = w.nextNode(); n; n = w.nextNode()) {
          for (let i = 0; i < n.data.length; i++) {
            const r = document.createRange();
            r.setStart(n, i);
            r.setEnd(n, i + 1);
            const t = r.getBoundingClientRect().top;
            if (top !== null && t > top + 2 && !/[/-]$/.test(text)) bad.push(text + '|' + e.textContent.slice(text.length));
            top = t;
            text += n.data[i];
          }
        }
      }
      return bad;
    });
    await page.waitForFunction((f) => [...document.querySelectorAll('#events-body .address')].some((e) => e.textContent === f), F);
    for (const width of [1360, 390]) {
      await page.setViewportSize({ width, height: 900 });
      const bad = await midWord();
      check(bad.length === 0, bad.length + ' names broken mid-word at ' + width + 'px, e.g. ' + bad[0]);
    }
    await shot(page, 'events-narrow.png');
    await page.setViewportSize({ width: 1360, height: 900 });
  });

  await step('runs.most_expensive_first_with_margin', async () => {
    // Two runs of an agent of their own: the dearer one loses money (cost 0.7 > revenue 0.5), the
    // other earns.
    const R = 'agent://' + ORG + '/production/run-maker-' + tag;
    const runs = ['run-dear-' + tag, 'run-cheap-' + tag];
    const beats = [[runs[0], '0.7', '0.5'], [runs[1], '0.2', '1']];
    for (const [run, cost, revenue] of beats) {
      const r = await api('POST', '/v1/mesh/heartbeat', '{"agent":' + JSON.stringify(R) + ',"id":"ui-' + tag + '-' +
        (hbn++) + '","run_id":' + JSON.stringify(run) + ',"metrics":{"cost_usd":' + cost + ',"revenue_usd":' +
        revenue + '}}');
      check(r.status === 202, 'run heartbeat: ' + r.status + ' ' + r.text);
      sent.push([R, cost, Math.floor(Date.now() / 1000) * 1000]);
    }
    await page.click('#nav-runs');
    await page.locator('#page-runs').waitFor({ state: 'visible' });
    await page.waitForFunction((rs) => rs.every((r) => document.querySelector('#runs-body tr[data-run="' + r + '"]')), runs);
    const rows = await page.evaluate(() => [...document.querySelectorAll('#runs-body tr')].map((r) =>
      [...r.querySelectorAll('td')].map((td) => td.textContent)));
    check(rows.length === 2, 'runs rows: ' + JSON.stringify(rows));
    check(JSON.stringify(rows[0].slice(0, 6)) === JSON.stringify([runs[0], '$0.7', '$0.5', '\u2212$0.2', '1', '1']),
      'dearest run first, with its margin: ' + JSON.stringify(rows[0]));
    check(JSON.stringify(rows[1].slice(0, 4)) === JSON.stringify([runs[1], '$0.2', '$1', '$0.8']),
      'second run: ' + JSON.stringify(rows[1]));
    check(await page.evaluate((r) => document.querySelector('#runs-body tr[data-run="' + r + '"] .margin-cell')
      .classList.contains('loss'), runs[0]), 'a loss is not marked as one');
    await shot(page, 'runs.png');
  });

  // Budgets: a customer's and an environment's policy, and K's own, with K's spend and reservation; the
  // page's figures are what this test sent.
  const K = 'agent://' + ORG + '/budget-' + tag + '/worker-' + tag;
  const CU = 'cust-' + tag;
  const K_COSTS = ['0.5', '0.25'];
  const K_RESERVED = '1.5';
  await step('budgets.scopes_with_their_figures', async () => {
    const put = async (p, body) => {
      const r = await api('PUT', p, JSON.stringify(body));
      check(r.status === 200, 'PUT ' + p + ': ' + r.status + ' ' + r.text);
    };
    await put('/v1/mesh/customers/' + enc(CU) + '/policies/cost', { max_cost_per_day_usd: 5, max_intents_per_day: 4 });
    await put('/v1/mesh/envs/budget-' + tag + '/policies/cost', { max_cost_per_hour_usd: 2, action_on_breach: 'alert' });
    await put('/v1/mesh/agents/' + enc(K) + '/policies/cost', { max_cost_per_day_usd: 3 });
    const hours = [];
    for (const c of K_COSTS) {
      const r = await api('POST', '/v1/mesh/heartbeat', '{"agent":' + JSON.stringify(K) + ',"id":"ui-' + tag + '-' +
        (hbn++) + '","customer":' + JSON.stringify(CU) + ',"metrics":{"cost_usd":' + c + '}}');
      check(r.status === 202, 'heartbeat of K: ' + r.status + ' ' + r.text);
      sent.push([K, c, Math.floor(Date.now() / 1000) * 1000]);
      hours.push(Math.floor(Date.now() / 3600000));
    }
    const it = await api('POST', '/v1/mesh/intents', JSON.stringify({ agent: K, customer: CU, estimated_cost_usd: Number(K_RESERVED) }));
    check(it.status === 201, 'intent of K: ' + it.status + ' ' + it.text);
    const spent = sum(K_COSTS);
    const card = (scope, id) => '.budget-card[data-scope="' + scope + '"][data-scope-id="' + id + '"]';
    await page.click('#nav-budgets');
    await page.locator('#page-budgets').waitFor({ state: 'visible' });
    // spent 0.75 + reserved 1.5 of 5 is 45%; 1 intent of 4 is 25%.
    await waitText(page, card('customer', CU) + ' .budget-row:nth-child(1)',
      'Cost today$' + spent + ' + $' + K_RESERVED + ' reserved of $5 · 45%');
    await waitText(page, card('customer', CU) + ' .budget-row:nth-child(2)', 'Intents today1 of 4 · 25%');
    await waitText(page, card('customer', CU) + ' .fact-reserved', '$' + K_RESERVED);
    await waitText(page, card('env', 'budget-' + tag) + ' .budget-row', /^Cost this hour\$[0-9.]+ \+ \$1\.5 reserved of \$2 · [0-9.]+%$/);
    await waitText(page, card('agent', K) + ' .agent-link', 'worker-' + tag);
    // Both heartbeats in this hour, nothing in the last: the burn is what they sum to.
    if (hours[0] === hours[1] && hours[1] === Math.floor(Date.now() / 3600000)) {
      await waitText(page, card('customer', CU) + ' .fact-burn-rate', '$' + spent + '/h');
    }
    const listed = (await api('GET', '/v1/mesh/policies?limit=1000')).json.policies
      .find((p) => p.scope === 'customer' && p.scope_id === CU);
    const at = listed.forecast.exhaustion.max_cost_per_day_usd;
    await waitText(page, card('customer', CU) + ' [class^="fact-runs-out"]', at ? /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/ : 'not before its window ends');
    // Widest scope first: the environment's card before the customer's, the agents' last.
    const order = await page.evaluate(() => [...document.querySelectorAll('.budget-card')].map((c) => c.dataset.scope));
    const rank = ['org', 'env', 'customer', 'workflow', 'run', 'agent'];
    check(order.every((s, i) => i === 0 || rank.indexOf(order[i - 1]) <= rank.indexOf(s)), 'cards out of order: ' + order);
    await shot(page, 'budgets.png');
    await page.setViewportSize({ width: 390, height: 844 });
    const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(over <= 0, 'budgets page scrolls sideways by ' + over + 'px at 390px');
    await page.setViewportSize({ width: 1360, height: 900 });
  });

  await step('agent.forecast_line_when_burning', async () => {
    const forecast = () => page.evaluate(() => {
      const c = window.Chart && window.Chart.getChart(document.getElementById('spend-chart'));
      if (!c) return undefined;
      const d = c.data.datasets.find((x) => x.forecast);
      return d ? { label: d.label, exact: d.exact.filter((v) => v !== null) } : null;
    });
    await goHash(page, '#/agent/' + enc(K));
    await waitText(page, '#today-cost', '$' + sum(K_COSTS));
    await page.waitForFunction(() => {
      const c = window.Chart && window.Chart.getChart(document.getElementById('spend-chart'));
      return c && c.data.datasets.some((x) => x.forecast);
    });
    const f = await forecast();
    const s = await api('GET', '/v1/mesh/agents/' + enc(K) + '/spend?window=day');
    const burn = rawNumber(s.text, 'burn_rate_usd_per_hour');
    check(f.label === 'Forecast at $' + burn + '/h', 'forecast label: ' + f.label + ', burn ' + burn);
    check(f.exact[0] === sum(K_COSTS), 'the forecast starts at today\'s cost: ' + JSON.stringify(f.exact));
    const n = f.exact.map(toNanos);
    check(n.every((v, i) => i === 0 || v > n[i - 1]) && n[n.length - 1] <= toNanos('3'),
      'the forecast rises to the limit at most: ' + JSON.stringify(f.exact));
    await waitText(page, '#chart-summary', /Burn rate\s*\$[0-9.]+\/h/);
    // G burns nothing: no forecast line beside its budget.
    await goHash(page, '#/agent/' + enc(G));
    await waitText(page, '#agent-health', 'unknown');
    await page.waitForFunction(() => {
      const c = window.Chart && window.Chart.getChart(document.getElementById('spend-chart'));
      return c && c.data.datasets.some((x) => /^Budget per day/.test(x.label));
    });
    check(await forecast() === null, 'a forecast line for an agent that burns nothing');
  });

  await step('pricing.add_version_then_listed', async () => {
    const model = 'ui-model-' + tag;
    await page.click('#nav-pricing');
    await page.locator('#page-pricing').waitFor({ state: 'visible' });
    await page.fill('#price-model', model);
    await page.fill('#price-input_per_million_usd', '0.15');
    await page.fill('#price-cached_input_per_million_usd', '0.075');
    await page.fill('#price-output_per_million_usd', '0.600000001');
    await page.fill('#price-effective_from', '2026-01-01T00:00:00Z');
    await page.click('#price-save');
    await waitText(page, '#price-ok', /saved/);
    const r = await api('GET', '/v1/mesh/pricing/models/' + enc(model));
    check(r.status === 200 && r.json.versions.length === 1 && r.json.versions[0].effective_from === '2026-01-01T00:00:00Z',
      'the version is not in the API: ' + r.text);
    check(rawNumber(r.text, 'output_per_million_usd') === '0.600000001', 'output price not exact: ' + r.text);
    check(rawNumber(r.text, 'cache_write_per_million_usd') === '0.15', 'cache write not the input price: ' + r.text);
    const row = '#pricing-body tr[data-model="' + model + '"]';
    await waitText(page, row + ' td:nth-child(3)', '$0.15');
    await waitText(page, row + ' td:nth-child(6)', '$0.600000001');
    await waitText(page, row + ' td:nth-child(7)', 'yes');
    await shot(page, 'pricing.png');
  });

  await step('pricing.bad_price_shows_field', async () => {
    const model = 'ui-model-' + tag;
    const ref = await api('PUT', '/v1/mesh/pricing/models/' + enc(model),
      '{"input_per_million_usd":-1,"output_per_million_usd":1,"effective_from":"2026-02-01T00:00:00Z"}');
    check(ref.status === 400 && ref.json.error.field === 'input_per_million_usd', 'API accepted -1: ' + ref.text);
    await page.fill('#price-input_per_million_usd', '-1');
    await page.fill('#price-cached_input_per_million_usd', '');
    await page.fill('#price-output_per_million_usd', '1');
    await page.fill('#price-effective_from', '2026-02-01T00:00:00Z');
    await page.click('#price-save');
    await waitText(page, '#price-error', ref.json.error.message + ' (field: input_per_million_usd)');
    check(await page.getAttribute('#price-input_per_million_usd', 'aria-invalid') === 'true', 'field not marked invalid');
    check(await page.locator('#price-ok').isHidden(), 'success still shown');
    const r = await api('GET', '/v1/mesh/pricing/models/' + enc(model));
    check(r.json.versions.length === 1, 'a refused version was stored: ' + r.text);
  });

  await step('layout.narrow_window', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.click('#nav-agents');
    await waitText(page, row(A) + ' .cost-cell', '$0.55');
    const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(over <= 0, 'agents page scrolls sideways by ' + over + 'px at 390px');
    await shot(page, 'agents-narrow.png');
    await page.goto(SERVER + '/#/agent/' + enc(A));
    await waitText(page, '#today-cost', '$0.55');
    const over2 = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(over2 <= 0, 'agent page scrolls sideways by ' + over2 + 'px at 390px');
    await shot(page, 'agent-narrow.png');
    await page.setViewportSize({ width: 1360, height: 900 });
  });

  await step('session.sign_out_forgets_key', async () => {
    await page.click('#signout');
    await page.locator('#login-form').waitFor({ state: 'visible' });
    check(await page.evaluate(() => sessionStorage.getItem('costmesh.apiKey')) === null, 'key still stored');
  });

  await step('page.no_errors_and_key_never_in_urls', async () => {
    const leaked = requestUrls.filter((u) => u.includes(KEY));
    check(leaked.length === 0, 'the key is in a URL: ' + leaked[0]);
    // The wrong key (401), the bad policy value (400) and the missing agent
    // (404) each log a failed resource load; anything else (a CSP violation,
    // a script error) is a bug.
    const errs = consoleErrors.filter((e) => !/status of (400|401|404)\b/.test(e));
    check(errs.length === 0, 'console errors: ' + errs.slice(0, 5).join(' | '));
  });
}

try {
  await main();
} catch (e) {
  fail('unexpected', e && e.stack ? e.stack : e);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(userData, { recursive: true, force: true });
  clearTimeout(watchdog);
}
finish();
