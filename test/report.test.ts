// `nightlab report` and `status --watch` against a real recorded campaign: the chart's data (points,
// kept labels, crashes, the running-best step line) checked from the ledger, the SVG, PNG and HTML
// written, and the watch view. The report is kept under test-artifacts/report/ to be looked at.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { experiments, readLedger, type LedgerRow } from '../lib/ledger';
import { chartData, chartSpec } from '../client/chart';
import { reportCampaign, reportTotals, writeReport } from '../client/report';
import { figuresText, resultRows } from '../client/results';
import { resultsTable } from '../cli/format';
import { campaignInput } from '../client/live';
import { estimateTimeLeft, progressBar, renderWatch, watchCampaign } from '../client/watch';
import type { CampaignSnapshot, ExperimentRecord, RunRecord } from '../common/shared';
import { lab, makeRepo, plannedProposer, ROOT, tempDir } from './helpers';

const ARTIFACTS = path.join(ROOT, 'test-artifacts');

/** Width and height from a PNG's IHDR chunk, after checking the signature. */
function pngSize(buf: Buffer): { width: number; height: number } {
  assert.deepEqual([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.equal(buf.subarray(12, 16).toString('latin1'), 'IHDR');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

test('the report of a recorded campaign: chart data from the ledger, SVG, PNG and HTML', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    // val = (LEARNING_RATE - 0.12)^2 + (WIDTH - 20)^2 / 400 + 1; the baseline (0.5, 8) gives 1.5044.
    const proposer = plannedProposer({
      1: { LEARNING_RATE: 0.3, desc: 'lower the learning rate to 0.3' }, // 1.3924: keep
      2: { LEARNING_RATE: 0.8, desc: 'raise the learning rate to 0.8' }, // 1.8224: discard
      3: { mode: 1, desc: 'a change that crashes' }, // crash
      4: { WIDTH: 16, desc: 'widen the model to 16' }, // 1.0724: keep
      5: { WIDTH: 40, desc: 'widen the model to 40' }, // 2.0324: discard, far off the scale
      6: { LEARNING_RATE: 0.15, desc: 'learning rate 0.15' }, // 1.0409: keep
    });
    const c = await l.start(repo, {
      proposer,
      crash: { maxFixAttempts: 0 },
      budget: { maxExperiments: 6 },
    });
    const status = await c.result();
    assert.equal(status.state, 'completed');
    // Sorted: experiments may finish out of number order where they run in parallel.
    const rows = experiments(c.campaignDir).sort((a, b) => a.experiment - b.experiment);
    assert.deepEqual(
      rows.map((r) => r.experiment),
      [0, 1, 2, 3, 4, 5, 6],
    );
    assert.equal(rows[3].status, 'crash', 'the planned crash');
    assert.equal(rows[1].status, 'keep');
    assert.equal(rows[5].status, 'discard');

    // The repository comes from the workflow's start input, read from its history.
    assert.equal((await campaignInput(l.client, c.tag)).repo, repo);

    // The chart's data, checked against the ledger row by row.
    const d = chartData(rows, { metricName: 'val_bpb', direction: 'lower', tag: c.tag });
    assert.deepEqual(
      d.points.map((p) => [p.experiment, p.status]),
      rows.map((r) => [r.experiment, r.status]),
    );
    const keeps = rows.filter((r) => r.status === 'keep');
    assert.deepEqual(
      d.kept.map((k) => [k.experiment, k.metric, k.label]),
      keeps.map((r) => [r.experiment, r.metric, r.description]),
    );
    assert.ok(d.kept.at(-1)!.labelled, 'the best run is labelled');
    assert.deepEqual(
      d.crashes.map((x) => x.experiment),
      rows.filter((r) => r.status === 'crash').map((r) => r.experiment),
    );
    // The running best: the best kept metric up to each experiment, a step line ending at the best.
    let best: number | null = null;
    const expected = rows.map((r) => {
      if (r.status === 'keep' && (best === null || r.metric! < best)) best = r.metric;
      return { experiment: r.experiment, metric: best! };
    });
    assert.deepEqual(d.best, expected);
    assert.equal(d.best.at(-1)!.metric, Math.min(...keeps.map((r) => r.metric!)));
    assert.ok(d.best.at(-1)!.metric < rows[0].metric!, 'the campaign improved on the baseline');
    for (let i = 1; i < d.best.length; i++)
      assert.ok(d.best[i].metric <= d.best[i - 1].metric, 'lower is better: the best never rises');
    // Lower is better: the bottom of the scale is below the best, crashes sit on the top edge, the
    // far-off discard (experiment 5, val_bpb over 2) sits just below it, clipped, and every other
    // run is drawn at its metric.
    const [bottom, top] = d.yDomain;
    assert.ok(bottom < d.best.at(-1)!.metric && top > rows[0].metric!);
    const shown = d.points.filter((p) => p.status !== 'crash' && !p.clipped);
    assert.ok(d.points[5].clipped, `experiment 5 is drawn off scale: ${JSON.stringify(d.points[5])}`);
    for (const p of d.points) {
      if (p.status === 'crash') assert.equal(p.y, top);
      else if (p.clipped)
        assert.ok(
          p.y < top && p.metric! > p.y && shown.every((q) => q.y <= p.y),
          `clipped point ${p.experiment} on the edge`,
        );
      else assert.equal(p.y, p.metric);
    }
    assert.deepEqual(d.counts, {
      experiments: 6,
      kept: keeps.length - 1,
      discarded: rows.filter((r) => r.status === 'discard').length,
      crashed: 1,
    });
    assert.match(d.title, new RegExp(`6 experiments, ${keeps.length - 1} kept improvements`));
    // The spec draws exactly these: the step line, the kept dots, the crosses.
    const layers = (
      chartSpec(d) as { layer: { mark: { type: string; interpolate?: string }; data: { values: unknown[] } }[] }
    ).layer;
    assert.equal(layers[0].mark.interpolate, 'step-after');
    assert.equal(layers[0].data.values.length, rows.length);

    // The files: `nightlab report`'s own code path, written under test-artifacts/.
    const out = path.join(ARTIFACTS, 'report');
    rmSync(out, { recursive: true, force: true });
    const files = await reportCampaign(l.client, c.tag, { out });
    assert.deepEqual(files.chart, d);
    const svg = readFileSync(files.svg, 'utf8');
    assert.match(svg, /^<svg[^>]*width="\d+"/);
    for (const k of keeps)
      assert.ok(svg.includes(k.description.replace(/&/g, '&amp;')), `the SVG labels kept experiment ${k.experiment}`);
    assert.ok(svg.includes(d.title), 'the title');
    const png = readFileSync(files.png);
    const size = pngSize(png);
    assert.ok(
      size.width >= 1500 && size.width <= 4000 && size.height >= 700 && size.height <= 2500,
      `PNG of a sensible size: ${size.width}x${size.height}`,
    );
    assert.ok(statSync(files.png).size > 20_000, 'the PNG has content');

    const html = readFileSync(files.html, 'utf8');
    for (const r of rows)
      assert.ok(html.includes(`id="exp-${r.experiment}"`), `section for experiment ${r.experiment}`);
    assert.match(html, /-LEARNING_RATE = 0\.5/, "experiment 1's diff from git");
    assert.match(html, /\+LEARNING_RATE = 0\.3/);
    assert.match(html, /\+mode = 1/, "the crash's diff");
    assert.match(html, /RuntimeError: boom: the model diverged/, "the crash's log tail");
    assert.match(html, /val_bpb: +1\.392400/, 'a log tail with the metric');
    const totals = reportTotals(readLedger(c.campaignDir));
    assert.ok(totals.trainSeconds >= rows.reduce((s, r) => s + r.seconds, 0) - 1e-6, 'GPU time: every run counts');
    assert.ok(html.includes(`${totals.gpuHours.toFixed(3)} GPU-hours`), 'GPU-hours in the report');
    assert.match(html, /proposer cost<\/dt><dd>\$0\.0000/);
    assert.match(html, /no held-out figures/);
    assert.match(html, /<td class="num">1\.504400 ±0 \(n=3\)<\/td>/, "the baseline's three runs, identical");
    assert.match(html, /<td class="status">keep \(best\)<\/td>/, 'the best marked');
    assert.ok(html.includes('<svg'), 'the chart is inline');

    // The watch view of the ended campaign, once.
    let text = '';
    const final = await watchCampaign(l.client, c.tag, { once: true, write: (t) => (text += t), clear: false });
    assert.equal(final.state, 'completed');
    assert.match(text, new RegExp(`campaign ${c.tag}: COMPLETED`));
    assert.match(text, /experiments \[#{20}\] 100% 6\/6/);
    assert.match(text, /last results \(7 in the ledger\)/);
    assert.match(text, /widen the model to 16/);
  } finally {
    await l.close();
  }
});

test('held-out figures, when the ledger has them, reach the report', async () => {
  const base = {
    tag: 't',
    commit: 'a'.repeat(40),
    parent: 'a'.repeat(40),
    outcome: 'ok',
    bestBefore: null,
    memoryGb: 1,
    reason: '',
    seconds: 1800,
    logPath: '',
    host: 'h',
    slot: '0',
    costUsd: 0.5,
    fixOf: null,
    finishedAt: '',
    logTail: 'tail',
  } as const;
  const ledger = [
    {
      kind: 'experiment',
      ...base,
      experiment: 0,
      status: 'keep',
      metric: 2,
      delta: null,
      description: 'baseline',
      heldOut: 2.1,
    },
    {
      kind: 'experiment',
      ...base,
      experiment: 1,
      commit: 'b'.repeat(40),
      status: 'keep',
      metric: 1.5,
      delta: -0.5,
      description: 'better',
      heldOut: { val: 1.6, test: 1.7 },
    },
    {
      kind: 'rejected',
      tag: 't',
      experiment: 2,
      attempt: 0,
      description: 'bad',
      reason: 'edits prepare.py',
      costUsd: 0.25,
      at: '',
    },
  ] as never[];
  const out = tempDir('nightlab-report-');
  const r = await writeReport({ tag: 't', metricName: 'loss', direction: 'lower', ledger, repo: null, outDir: out });
  const html = readFileSync(r.html, 'utf8');
  assert.match(html, /<th>held-out<\/th>/);
  assert.match(html, /baseline 2\.100000, best kept val 1\.600000, test 1\.700000/);
  assert.match(html, /\$1\.2500/, 'proposer cost: experiments and rejections');
  assert.match(html, /1\.000 GPU-hours/);
  assert.match(html, /edits prepare\.py/, 'rejected proposals are listed');
  assert.match(html, /diff unavailable: the campaign repository is unknown/);
  assert.ok(existsSync(r.png) && existsSync(r.svg));
});

test('chart data: higher is better, crashes on the bottom edge, and a campaign with no metric yet', () => {
  const rows: Pick<ExperimentRecord, 'experiment' | 'status' | 'metric' | 'description'>[] = [
    { experiment: 0, status: 'keep', metric: 0.5, description: 'baseline' },
    { experiment: 1, status: 'discard', metric: 0.4, description: 'worse' },
    { experiment: 2, status: 'keep', metric: 0.7, description: 'better' },
    { experiment: 3, status: 'crash', metric: null, description: 'boom' },
  ];
  const d = chartData(rows, { metricName: 'acc', direction: 'higher' });
  assert.deepEqual(
    d.best.map((b) => b.metric),
    [0.5, 0.5, 0.7, 0.7],
  );
  assert.equal(d.yTitle, 'acc (higher is better)');
  const [bottom, top] = d.yDomain;
  assert.ok(bottom < 0.4 && top > 0.7);
  assert.equal(d.crashes[0].y, bottom, 'higher is better: crashes sit on the bottom edge');
  const empty = chartData([{ experiment: 0, status: 'crash', metric: null, description: 'baseline' }], {
    metricName: 'm',
    direction: 'lower',
  });
  assert.deepEqual(empty.best, []);
  assert.equal(empty.crashes.length, 1);
  assert.ok(empty.yDomain[0] < empty.yDomain[1]);
});

test('the watch view: a progress bar from the heartbeat, the last results, budgets and time left', () => {
  const now = Date.parse('2026-01-01T01:00:00Z');
  const status: CampaignSnapshot = {
    tag: 'nov27',
    state: 'running',
    message: 'experiment 3: training — wider',
    experiments: 2,
    kept: 1,
    crashes: 0,
    bestMetric: 1.2,
    bestCommit: 'c'.repeat(40),
    baselineMetric: 1.5,
    metricName: 'val_bpb',
    direction: 'lower',
    costUsd: 0.5,
    budget: { maxExperiments: 10, maxHours: 8, maxCostUsd: 2 },
    startedAt: '2026-01-01T00:00:00Z',
    current: { experiment: 3, phase: 'train', description: 'wider' },
    campaignDir: '/tmp/x',
    branch: 'autoresearch/nov27',
  } as CampaignSnapshot;
  const row = (n: number, s: ExperimentRecord['status'], m: number) =>
    ({
      experiment: n,
      status: s,
      metric: m,
      delta: n ? m - 1.5 : null,
      seconds: 300,
      description: `exp ${n}`,
    }) as ExperimentRecord;
  const rows = [row(0, 'keep', 1.5), row(1, 'keep', 1.2), row(2, 'discard', 1.3)];
  const text = renderWatch({
    status,
    rows,
    runs: [
      {
        elapsedSec: 150,
        timeoutSec: 600,
        lastLine: 'step 00420 | loss 3.1',
        slot: 'gpu0',
        host: 'box',
        attempt: 1,
        sinceHeartbeatSec: 3,
        state: 'started',
      },
    ],
    now,
  });
  assert.match(text, /now: experiment 3 train — wider/);
  assert.ok(text.includes(`${progressBar(0.25)} 2m 30s of 10m 00s timeout on box/gpu0`), text);
  assert.match(text, /last line: step 00420 \| loss 3\.1/);
  assert.match(text, /experiments \[#{4}-{16}\]  20% 2\/10/);
  assert.match(text, /cost +\[#{5}-{15}\]  25% \$0\.50\/\$2\.00/);
  // One hour for three runs (the baseline too): 20 minutes each, 8 experiments left: 2h 40m.
  assert.deepEqual(estimateTimeLeft(status, rows, now), { seconds: 9600, basis: '8 experiments left at 20m 00s each' });
  assert.match(text, /estimated time left: 2h 40m/);
  assert.match(text, /\s2\s+discard\s+1\.300000\s+-0\.200000/);
  const paused = renderWatch({ status: { ...status, state: 'paused', current: null }, rows, runs: [], now });
  assert.match(paused, /now: paused/);
});

/** A ledger as a noise-aware campaign writes it: experiment records, and a `run` row per run. */
function noisyLedger(): LedgerRow[] {
  const sha = (c: string) => c.repeat(40);
  const record = (
    r: Partial<ExperimentRecord> & Pick<ExperimentRecord, 'experiment' | 'commit' | 'parent' | 'status' | 'metric'>,
  ) => ({
    kind: 'experiment' as const,
    tag: 't',
    outcome: 'ok' as const,
    bestBefore: null,
    delta: null,
    memoryGb: 2,
    description: `experiment ${r.experiment}`,
    reason: '',
    evidence: '',
    runs: 1,
    seconds: 10,
    logPath: '',
    host: 'h',
    slot: 'gpu0',
    costUsd: 0,
    fixOf: null,
    finishedAt: '',
    logTail: '',
    ...r,
  });
  const run = (experiment: number, commit: string, n: number, metric: number | null): LedgerRow =>
    ({
      kind: 'run',
      tag: 't',
      experiment,
      run: n,
      commit,
      metric,
      outcome: metric === null ? 'crash' : 'ok',
      memoryMb: null,
      seconds: 10,
      logPath: '',
      host: 'h',
      slot: 'gpu0',
      reason: '',
    }) satisfies RunRecord & { kind: 'run' };
  return [
    run(0, sha('a'), 0, 1.5),
    run(0, sha('a'), 1, 1.51),
    run(0, sha('a'), 2, 1.49),
    record({ experiment: 0, commit: sha('a'), parent: sha('a'), status: 'keep', metric: 1.5, runs: 3 }),
    // 1 is kept on one lucky run; re-run as the best while 2 and 3 are judged, its mean rises to 1.43.
    run(1, sha('b'), 0, 1.4),
    record({
      experiment: 1,
      commit: sha('b'),
      parent: sha('a'),
      status: 'keep',
      metric: 1.4,
      bestBefore: 1.5,
      delta: -0.1,
    }),
    // 2: one run, worse than the best; 3 crashed; 4: rebased onto 1 (its first run was of another commit), confirmed.
    run(2, sha('c'), 0, 1.6),
    run(1, sha('b'), 1, 1.44),
    run(1, sha('b'), 2, 1.45),
    record({
      experiment: 2,
      commit: sha('c'),
      parent: sha('b'),
      status: 'discard',
      metric: 1.6,
      bestBefore: 1.43,
      delta: 0.17,
    }),
    run(3, sha('d'), 0, null),
    record({
      experiment: 3,
      commit: sha('d'),
      parent: sha('b'),
      status: 'crash',
      outcome: 'crash',
      metric: null,
      bestBefore: 1.43,
    }),
    run(4, sha('e'), 0, 1.3),
    run(4, sha('f'), 1, 1.42),
    run(4, sha('f'), 2, 1.42),
    // Kept at 1.42, worse than 1's first figure (1.4), better than 1's figure when it was judged (1.43).
    record({
      experiment: 4,
      commit: sha('f'),
      parent: sha('b'),
      status: 'keep',
      metric: 1.42,
      bestBefore: 1.43,
      delta: -0.01,
      runs: 3,
    }),
  ] as LedgerRow[];
}

test('result rows: each experiment with every run of its commit, the best as its re-runs re-estimated it', () => {
  const rows = resultRows(noisyLedger());
  const by = Object.fromEntries(rows.map((r) => [r.experiment, r]));
  assert.deepEqual(
    rows.map((r) => r.experiment),
    [0, 1, 2, 3, 4],
  );
  // A kept experiment re-estimated by its re-runs: three runs, their mean and spread.
  assert.equal(by[1].figures.n, 3);
  assert.ok(
    Math.abs(by[1].figures.mean! - 1.43) < 1e-12 && Math.abs(by[1].figures.sd! - Math.sqrt(0.0007)) < 1e-12,
    JSON.stringify(by[1].figures),
  );
  assert.equal(figuresText(by[1].figures), '1.430000 ±0.026 (n=3)');
  assert.equal(figuresText(by[0].figures), '1.500000 ±0.010 (n=3)');
  // The keep that followed was judged against that figure: better, though worse than 1's first run.
  assert.ok(by[4].metric! > by[1].metric! && by[4].metric! < by[1].figures.mean!);
  assert.equal(by[4].bestBefore, 1.43);
  assert.deepEqual(
    [by[4].best, by[1].best, by[0].best],
    [true, false, false],
    'the best now: the last keep of the chain',
  );
  // Only runs of the recorded commit: 4's first run was of the commit before its rebase.
  assert.deepEqual(by[4].figures, { n: 2, mean: 1.42, sd: 0, failed: 0 });
  assert.equal(figuresText(by[4].figures), '1.420000 ±0 (n=2)');
  // A single run: no spread. A crash: no figure, one failed run.
  assert.deepEqual(by[2].figures, { n: 1, mean: 1.6, sd: null, failed: 0 });
  assert.equal(figuresText(by[2].figures), '1.600000 (n=1)');
  assert.deepEqual(by[3].figures, { n: 0, mean: null, sd: null, failed: 1 });
  assert.equal(figuresText(by[3].figures), '- (1 failed)');
  // What `results --json` prints: plain data, no log tails.
  assert.deepEqual(JSON.parse(JSON.stringify(rows)), rows);
  assert.ok(rows.every((r) => !('logTail' in r) && !('kind' in r)));
  // Records alone (an older ledger, no run rows): the record's own figure and run count.
  const records = noisyLedger().filter((r) => r.kind === 'experiment');
  assert.deepEqual(
    resultRows(records).map((r) => [r.experiment, figuresText(r.figures)]),
    [
      [0, '1.500000 (n=3)'],
      [1, '1.400000 (n=1)'],
      [2, '1.600000 (n=1)'],
      [3, '- (1 failed)'],
      [4, '1.420000 (n=3)'],
    ],
  );
});

test('the results table and the report show the figure judged against and every run, so a keep never looks worse', async () => {
  const ledger = noisyLedger();
  const table = resultsTable(resultRows(ledger), 'loss').split('\n');
  const line = (n: number) => table.find((l) => l.startsWith(`${n} `))!.replace(/ +/g, ' ');
  assert.match(table[0], /^# +commit +loss +vs best +delta +all runs +mem_gb +status +description$/);
  assert.equal(line(1), '1 bbbbbbb 1.400000 1.500000 -0.100000 1.430000 ±0.026 (n=3) 2.0 keep experiment 1');
  assert.equal(line(4), '4 fffffff 1.420000 1.430000 -0.010000 1.420000 ±0 (n=2) 2.0 keep (best) experiment 4');
  assert.equal(line(3), '3 ddddddd - - (1 failed) 2.0 crash experiment 3');
  assert.ok(
    table.some((l) => /^vs best +the best's figure it was judged against/.test(l)),
    'the table says what its columns mean',
  );
  // The records alone (a ledger without run rows): their own figures, the same best.
  const fromRecords = resultsTable(resultRows(ledger.filter((r) => r.kind === 'experiment')), 'loss').split('\n');
  assert.deepEqual(
    fromRecords.filter((l) => l.includes('(best)')).map((l) => l.split(/ +/)[0]),
    ['4'],
  );
  const out = tempDir('nightlab-report-');
  const html = readFileSync(
    (await writeReport({ tag: 't', metricName: 'loss', direction: 'lower', ledger, repo: null, outDir: out })).html,
    'utf8',
  );
  assert.match(html, /baseline 1\.500000 ±0\.010 \(n=3\), best 1\.420000 ±0 \(n=2\) \(-0\.080000\) at experiment 4/);
  assert.match(html, /<th>vs best<\/th><th>delta<\/th><th>all runs<\/th>/);
  assert.ok(
    html.includes(
      '<td class="num">1.400000</td><td class="num">1.500000</td>\n<td class="num">-0.100000</td><td class="num">1.430000 ±0.026 (n=3)</td>',
    ),
    "experiment 1's row",
  );
  assert.match(html, /<td class="status">keep \(best\)<\/td>/);
  // The chart's best line: each keep at every run of its commit, so 4 steps below 1 as re-estimated.
  const bestLine = chartData(resultRows(ledger), { metricName: 'loss', direction: 'lower' }).best.map((b) =>
    b.metric.toFixed(6),
  );
  assert.deepEqual(bestLine, ['1.500000', '1.430000', '1.430000', '1.430000', '1.420000']);
});
