// The Nightlab dashboard page: polls the server's JSON endpoints and draws what they say.
// Every text from a campaign (descriptions, logs, diffs) goes in as textContent, never as HTML.
'use strict';

const API_TIMEOUT_MS = 60_000;
const state = { tag: null, list: [], view: null, specKey: '', experiment: null, chartView: null, busy: false };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

const fmt = (v, d = 6) => (v === null || v === undefined ? '-' : Number(v).toFixed(d));
function duration(sec) {
  const s = Math.max(0, Math.round(sec));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

async function api(path, options = {}) {
  // A request the server never answers is given up, so a poll cannot hang for good.
  const res = await fetch(path, { signal: AbortSignal.timeout(API_TIMEOUT_MS), ...options });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
  return body;
}

function showError(e) {
  const box = $('error');
  if (!e) {
    box.hidden = true;
    box.textContent = '';
    return;
  }
  box.hidden = false;
  box.textContent = e.message || String(e);
}

/**
 * One call of `fn` at a time: a call made while one runs waits for it and then runs `fn` once
 * more. A slow server then never piles up polls in the browser's few connections, where a click's
 * request (an experiment's diff) would wait behind them.
 */
function oneAtATime(fn) {
  let running = null;
  let again = false;
  return () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await fn();
      } while (again);
    })().finally(() => {
      running = null;
    });
    return running;
  };
}

// --- the campaign list -------------------------------------------------------------------

const refreshList = oneAtATime(async () => {
  try {
    const { campaigns, namespace } = await api('/api/campaigns');
    state.list = campaigns;
    $('namespace').textContent = `namespace ${namespace}`;
    const ul = $('campaigns');
    ul.replaceChildren(
      ...(campaigns.length
        ? campaigns.map((c) =>
            el(
              'li',
              { class: c.tag === state.tag ? 'selected' : '', dataset: { tag: c.tag } },
              el(
                'button',
                { type: 'button', onclick: () => select(c.tag) },
                el('b', {}, c.tag),
                ' ',
                el('span', { class: `badge ${c.state}` }, c.state),
                el(
                  'span',
                  { class: 'sub' },
                  `${c.experiments} experiments, ${c.kept} kept, best ${c.bestMetric === null ? '-' : fmt(c.bestMetric)}`,
                ),
              ),
            ),
          )
        : [el('li', { class: 'muted' }, 'No campaigns on this server yet.')]),
    );
    if (!state.tag) {
      const pick = campaigns.find((c) => !c.ended) || campaigns[0];
      if (pick) select(pick.tag);
    }
    showError(null);
  } catch (e) {
    showError(e);
  }
});

function select(tag) {
  if (state.tag !== tag) {
    state.tag = tag;
    state.view = null;
    state.specKey = '';
    state.experiment = null;
    $('experiment').hidden = true;
    $('chart').replaceChildren();
    history.replaceState(null, '', `#/${encodeURIComponent(tag)}`);
  }
  for (const li of $('campaigns').children) li.classList.toggle('selected', li.dataset.tag === tag);
  refreshCampaign();
}

// --- one campaign ------------------------------------------------------------------------

const refreshCampaign = oneAtATime(async () => {
  const tag = state.tag;
  if (!tag) return;
  try {
    const view = await api(`/api/campaigns/${encodeURIComponent(tag)}`);
    if (tag !== state.tag) return;
    state.view = view;
    render(view);
    showError(null);
  } catch (e) {
    showError(e);
  }
});

function render(v) {
  const s = v.status;
  $('empty').hidden = true;
  $('campaign').hidden = false;
  $('tag').textContent = v.tag;
  const badge = $('state');
  badge.textContent = s.state;
  badge.className = `badge ${s.state}`;
  $('message').textContent = s.message;
  $('ui-link').href = v.uiUrl;
  // Visibility (the list) lags the workflow a little; the selected campaign shows its live state.
  const listed = [...$('campaigns').children].find((li) => li.dataset.tag === v.tag);
  const listedBadge = listed && listed.querySelector('.badge');
  if (listedBadge && listedBadge.textContent !== s.state) {
    listedBadge.textContent = s.state;
    listedBadge.className = `badge ${s.state}`;
  }

  const ended = v.ended;
  if (!state.busy) {
    $('pause').disabled = ended || s.state === 'paused';
    $('resume').disabled = ended || s.state !== 'paused';
    $('stop').disabled = ended;
    $('steer').disabled = ended;
  }

  $('metric-name').textContent = `${s.metricName} (${s.direction} is better)`;
  $('metric-col').textContent = s.metricName;
  $('best').textContent = `best ${fmt(s.bestMetric)}`;
  $('baseline').textContent =
    `baseline ${fmt(s.baselineMetric)}${s.bestMetric !== null && s.baselineMetric !== null ? ` (${s.bestMetric - s.baselineMetric >= 0 ? '+' : ''}${(s.bestMetric - s.baselineMetric).toFixed(6)})` : ''}`;
  $('counts').textContent =
    `${s.experiments}${s.budget.maxExperiments !== null ? ` / ${s.budget.maxExperiments}` : ''}`;
  $('counts-detail').textContent =
    `${s.kept} kept, ${s.crashes} crashed, ${v.totals.rejected} rejected; ${v.totals.gpuHours.toFixed(3)} GPU-h`;

  const elapsedH = (Date.parse(v.now) - Date.parse(s.startedAt)) / 3600e3;
  const budgets = [];
  const budgetRow = (name, frac, text) =>
    el(
      'div',
      { class: 'budget' },
      el('span', {}, name),
      el(
        'div',
        {},
        el(
          'div',
          { class: 'bar' },
          el('div', { style: `width:${Math.min(100, Math.max(0, frac * 100)).toFixed(1)}%` }),
        ),
        el('span', { class: 'muted' }, text),
      ),
    );
  if (s.budget.maxExperiments !== null)
    budgets.push(
      budgetRow(
        'experiments',
        s.experiments / s.budget.maxExperiments,
        `${s.experiments} of ${s.budget.maxExperiments}`,
      ),
    );
  if (s.budget.maxHours !== null)
    budgets.push(budgetRow('hours', elapsedH / s.budget.maxHours, `${elapsedH.toFixed(2)} of ${s.budget.maxHours} h`));
  if (s.budget.maxCostUsd !== null)
    budgets.push(
      budgetRow(
        'cost',
        s.costUsd / s.budget.maxCostUsd,
        `$${s.costUsd.toFixed(2)} of $${s.budget.maxCostUsd.toFixed(2)}`,
      ),
    );
  else budgets.push(el('div', { class: 'muted' }, `proposer cost $${s.costUsd.toFixed(4)}, no cost budget`));
  $('budgets').replaceChildren(...budgets);
  $('eta').textContent = ended ? s.state : v.estimate ? duration(v.estimate.seconds) : 'unbounded';
  $('eta-basis').textContent = ended ? '' : v.estimate ? v.estimate.basis : 'no experiments or hours budget';

  renderRuns(v);
  renderChart(v);
  renderTable(v);
}

function renderRuns(v) {
  const s = v.status;
  // Each experiment in flight with its own run, then the runs no experiment owns (the best's
  // re-runs, more confirmation seeds): the server pairs them (client/live.ts pairRuns).
  const blocks = v.inFlightRuns.map(({ flight, run }) => runBlock(flight, run));
  if (!blocks.length) {
    blocks.push(
      el(
        'div',
        { class: 'muted' },
        s.state === 'paused'
          ? 'Paused: no new experiment starts until you resume.'
          : v.ended
            ? ''
            : 'Between experiments.',
      ),
    );
  }
  $('runs').replaceChildren(...blocks);
}

function runBlock(f, run) {
  const head = f
    ? `experiment ${f.experiment} · ${f.phase}${f.description ? ` — ${f.description}` : ''}`
    : run && run.experiment !== undefined
      ? `a run of experiment ${run.experiment}${run.run ? ` (run ${run.run})` : ''}`
      : 'a run';
  const kids = [el('div', {}, el('b', {}, head))];
  if (run) {
    const frac = run.timeoutSec ? run.elapsedSec / run.timeoutSec : 0;
    kids.push(
      el(
        'div',
        { class: 'bar', title: 'elapsed against the run timeout' },
        el('div', { style: `width:${(Math.min(1, frac) * 100).toFixed(1)}%` }),
      ),
    );
    kids.push(
      el(
        'div',
        { class: 'muted' },
        `${duration(run.elapsedSec)}${run.timeoutSec ? ` of ${duration(run.timeoutSec)} timeout` : ''}${run.host || run.slot ? ` on ${[run.host, run.slot].filter(Boolean).join('/')}` : ''}${run.attempt > 1 ? ` (attempt ${run.attempt})` : ''}`,
      ),
    );
    if (run.lastLine) kids.push(el('code', {}, run.lastLine));
  }
  return el('div', { class: 'run', 'data-testid': 'run' }, ...kids);
}

function renderChart(v) {
  const key = JSON.stringify(v.spec);
  if (key === state.specKey) return;
  state.specKey = key;
  if (typeof vegaEmbed !== 'function') {
    $('chart').textContent = 'The chart library did not load.';
    return;
  }
  vegaEmbed('#chart', v.spec, { actions: false, renderer: 'svg' })
    .then((result) => {
      if (state.chartView) state.chartView.finalize();
      state.chartView = result.view;
      $('chart').dataset.points = String(v.chart.points.length);
      result.view.addEventListener('click', (_event, item) => {
        const n = item && item.datum && item.datum.experiment;
        if (Number.isInteger(n)) showExperiment(n);
      });
    })
    .catch(showError);
}

function renderTable(v) {
  // Column headings explain themselves on hover, in the words of the terminal table's legend.
  const legend = Object.fromEntries(v.legend);
  for (const th of $('results').tHead.rows[0].cells) if (legend[th.textContent]) th.title = legend[th.textContent];
  const body = $('results').tBodies[0];
  const rows = [...v.rows].reverse(); // newest first
  body.replaceChildren(
    ...rows.map((r) =>
      el(
        'tr',
        {
          class: r.experiment === state.experiment ? 'selected' : '',
          dataset: { experiment: String(r.experiment) },
          onclick: () => showExperiment(r.experiment),
        },
        el('td', { class: 'num' }, r.experiment),
        el('td', {}, el('code', {}, r.commit.slice(0, 7))),
        el('td', { class: 'num' }, r.cells.metric),
        el('td', { class: 'num' }, r.cells.vsBest),
        el('td', { class: 'num' }, r.cells.delta),
        el('td', { class: 'num' }, r.cells.runs),
        el('td', { class: 'num' }, r.memoryGb.toFixed(1)),
        // A promoted keep (config promote) says whether it transfers beside its decision.
        el(
          'td',
          { class: `status ${r.status}` },
          r.cells.promoted ? `${r.cells.status} · ${r.cells.promoted}` : r.cells.status,
        ),
        el('td', { class: 'num' }, r.seconds.toFixed(1)),
        el('td', {}, r.description),
        el(
          'td',
          {},
          el(
            'a',
            {
              href: v.uiUrl,
              target: '_blank',
              rel: 'noopener',
              title: "this experiment's workflow in the Temporal Web UI",
              onclick: (e) => e.stopPropagation(),
            },
            'Web UI ↗',
          ),
        ),
      ),
    ),
  );
}

function diffNodes(diff) {
  return diff.split('\n').flatMap((line) => {
    const cls = /^(\+\+\+|---|diff |index )/.test(line)
      ? 'meta'
      : line.startsWith('+')
        ? 'add'
        : line.startsWith('-')
          ? 'del'
          : line.startsWith('@@')
            ? 'hunk'
            : '';
    return [cls ? el('span', { class: cls }, line) : document.createTextNode(line), '\n'];
  });
}

async function showExperiment(n) {
  state.experiment = n;
  for (const tr of $('results').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.experiment === String(n));
  try {
    const { row, diff, curves, uiUrl } = await api(`/api/campaigns/${encodeURIComponent(state.tag)}/experiments/${n}`);
    $('experiment').hidden = false;
    $('experiment-title').textContent = `experiment ${row.experiment}: ${row.status} — ${row.description}`;
    const meta = $('experiment-meta');
    meta.replaceChildren(
      `${row.reason} · commit ${row.commit.slice(0, 12)} (parent ${String(row.parent).slice(0, 12)}) · ${row.outcome} in ${row.seconds.toFixed(1)} s · log ${row.logPath} · `,
      el('a', { href: uiUrl, target: '_blank', rel: 'noopener' }, 'Temporal Web UI ↗'),
    );
    // The server draws the curves from numbers only; parsed as SVG (never as HTML), so nothing runs.
    const svg = curves ? new DOMParser().parseFromString(curves, 'image/svg+xml').documentElement : null;
    $('experiment-curves').replaceChildren(...(svg ? [document.importNode(svg, true)] : []));
    $('experiment-curves-title').hidden = !svg;
    $('experiment-diff').replaceChildren(...(diff ? diffNodes(diff) : ['(no diff: the baseline)']));
    $('experiment-log').textContent = row.logTail || '(empty)';
  } catch (e) {
    showError(e);
  }
}

// --- controls ----------------------------------------------------------------------------

async function control(action, body = {}) {
  if (!state.tag) return;
  state.busy = true;
  for (const id of ['pause', 'resume', 'stop', 'steer']) $(id).disabled = true;
  $('control-result').textContent = `${action}…`;
  try {
    const r = await api(`/api/campaigns/${encodeURIComponent(state.tag)}/${action}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    $('control-result').textContent =
      action === 'steer' ? `steered: ${r.notes} note(s) in the proposer's context` : `sent ${action}`;
    return r;
  } catch (e) {
    $('control-result').textContent = `${action} failed: ${e.message}`;
  } finally {
    state.busy = false;
    await refreshCampaign();
    refreshList();
  }
}

$('pause').addEventListener('click', () => control('pause'));
$('resume').addEventListener('click', () => control('resume'));
$('stop').addEventListener('click', () => {
  // The button's title says what stop does (index.html), the same words as `nightlab stop --help`.
  if (confirm(`Stop campaign ${state.tag}? It will ${$('stop').title}. It cannot be resumed.`)) control('stop');
});
$('steer-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const note = $('note').value.trim();
  if (!note) return;
  const r = await control('steer', { note });
  if (r) $('note').value = '';
});

// A link such as http://127.0.0.1:8234/#/nov27 opens that campaign, listed yet or not.
const hashTag = () => decodeURIComponent(location.hash.replace(/^#\/?/, ''));
window.addEventListener('hashchange', () => {
  if (hashTag()) select(hashTag());
});
if (hashTag()) select(hashTag());
refreshList();
setInterval(refreshList, 5000);
setInterval(refreshCampaign, 2000);
