// Metrics and health (ops/metrics.ts, lib/telemetry.ts): during a real campaign, the orchestrator worker (in
// this process) and `nightlab gpu-worker --metrics-port` (a subprocess, as an operator runs it) each serve
// Prometheus text with the SDK's metrics and Nightlab's own, whose figures match the campaign's records, and
// /healthz says 200 while the worker runs and 503 once it has stopped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DefaultLogger, type NativeConnection, type Worker } from '@temporalio/worker';
import { campaignWorkflowId } from '../common/shared';
import { connectWorker } from '../ops/connection';
import { healthCheck, prepareMetrics } from '../ops/metrics';
import { experiments, readLedger } from '../lib/ledger';
import { startWorker } from './processes';

// The runtime is made once per process, with its exporter: before helpers.ts, whose import would make it.
const metrics = await prepareMetrics({ port: 0, logger: new DefaultLogger('WARN') });
const { ADDRESS, lab, makeRepo, plannedProposer, waitFor } = await import('./helpers');

interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** The samples of one metric in Prometheus text. */
function samples(text: string, name: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]),
    );
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of a metric's samples whose labels include `where`. */
function total(text: string, name: string, where: Record<string, string> = {}): number {
  return samples(text, name)
    .filter((s) => Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

const scrape = async (url: string) => {
  const r = await fetch(`${url}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
  return r.text();
};
const health = async (url: string) => {
  const r = await fetch(`${url}/healthz`);
  return { status: r.status, body: (await r.json()) as { ok: boolean; workers: { state: string }[]; server: string } };
};

test(
  "each worker serves Prometheus metrics with Nightlab's counters, and /healthz, during a campaign",
  { timeout: 240_000 },
  async (t) => {
    const l = await lab({ gpu: false });
    const connection = await connectWorker(ADDRESS);
    const orchestrator = await metrics.serve([l.orchestrator], connection);
    const env = { NIGHTLAB_HOME: l.home, TEMPORAL_ADDRESS: ADDRESS };
    const args = ['--gpus', 'cpu', '--task-queue', l.gpuTaskQueue, '--metrics-port', '0'];
    const gpuWorker = await startWorker('gpu-worker', env, args);
    try {
      const gpu = (
        await waitFor('the GPU worker endpoint', () => /Metrics on (\S+)\/metrics/.exec(gpuWorker.output()))
      )[1];
      for (const url of [orchestrator.url, gpu]) {
        const h = await health(url);
        assert.deepEqual([h.status, h.body.ok, h.body.server, h.body.workers[0].state], [200, true, 'ok', 'RUNNING']);
      }
      const repo = await makeRepo();
      const proposer = plannedProposer({
        1: { mode: 1, desc: 'crash on purpose' },
        2: { WIDTH: 12, desc: 'width 12' },
        3: { WIDTH: 8, desc: 'width 8, as the baseline' },
      });
      const c = await l.start(repo, {
        proposer,
        crash: { maxFixAttempts: 0 },
        lookahead: 0,
        budget: { maxExperiments: 3 },
        run: { command: 'python3 train.py', env: { QUAD_SLEEP: '2' }, timeoutSec: 60 },
      });

      // During the campaign: the baseline is counted, runs are counted on the GPU worker's endpoint.
      const mid = await waitFor('the baseline counted', async () => {
        const t = await scrape(orchestrator.url);
        return total(t, 'nightlab_experiments_total', { decision: 'keep' }) >= 1 && t;
      });
      const handle = l.client.workflow.getHandle(campaignWorkflowId(c.tag));
      assert.equal((await handle.describe()).status.name, 'RUNNING', 'scraped while the campaign runs');
      assert.deepEqual(samples(mid, 'nightlab_experiments_total')[0].labels, {
        activityType: 'recordExperiment',
        campaign: c.tag,
        decision: 'keep',
        namespace: 'default',
        taskQueue: l.taskQueue,
      });
      const gpuMid = await scrape(gpu);
      assert.ok(total(gpuMid, 'nightlab_run_seconds_count') >= 3, 'the baseline runs are counted');
      assert.ok(samples(gpuMid, 'temporal_activity_execution_latency_count').length > 0, "the SDK's own metrics");

      const s = await c.result();
      assert.equal(s.state, 'completed');
      const o = await scrape(orchestrator.url);
      const g = await scrape(gpu);
      const rows = experiments(c.campaignDir);
      const runs = readLedger(c.campaignDir).filter((r) => r.kind === 'run');
      for (const decision of ['keep', 'discard', 'crash']) {
        const recorded = rows.filter((r) => r.status === decision).length;
        assert.equal(total(o, 'nightlab_experiments_total', { decision }), recorded, `${decision}: as recorded`);
      }
      assert.deepEqual(
        rows.map((r) => r.status),
        ['keep', 'crash', 'keep', 'discard'],
      );
      // Experiment 3 proposed the baseline's files: its result was reused (a duplicate), and counted as a discard.
      assert.equal(total(o, 'nightlab_proposal_seconds_count', { kind: 'candidate' }), 2);
      assert.equal(total(o, 'nightlab_proposal_seconds_count', { kind: 'duplicate' }), 1);
      assert.equal(total(o, 'nightlab_proposal_cost_usd_sum'), 0, 'planned proposals cost nothing');
      assert.ok(total(o, 'nightlab_queue_wait_seconds_count', { activityType: 'propose' }) >= 3);

      // The GPU worker: every run, by outcome, on slot cpu; busy time at least the runs' sleeps.
      assert.equal(total(g, 'nightlab_run_seconds_count', { campaign: c.tag, slot: 'cpu' }), runs.length);
      assert.equal(total(g, 'nightlab_run_seconds_count', { outcome: 'crash' }), 1);
      const busy = total(g, 'nightlab_run_seconds_sum');
      const slept = 2 * runs.filter((r) => r.outcome === 'ok').length;
      assert.ok(busy >= slept && busy < slept + 60, `GPU-slot busy seconds ${busy} (runs slept ${slept} s)`);
      const figures = ['keep', 'discard', 'crash'].map(
        (d) => `${d} ${total(o, 'nightlab_experiments_total', { decision: d })}`,
      );
      t.diagnostic(`experiments: ${figures.join(', ')}; runs ${runs.length}, GPU-slot busy ${busy.toFixed(1)} s`);
      const waits = total(o, 'nightlab_proposal_seconds_sum') / total(o, 'nightlab_proposal_seconds_count');
      t.diagnostic(
        `proposal ${waits.toFixed(2)} s on average; run queue wait ${total(g, 'nightlab_queue_wait_seconds_sum').toFixed(3)} s in all`,
      );
      assert.equal(total(g, 'nightlab_queue_wait_seconds_count', { campaign: c.tag }), runs.length);
      assert.equal(total(g, 'nightlab_gpu_slots_busy'), 0, 'no run in flight now');

      // Stopped workers are unhealthy.
      await gpuWorker.kill('SIGTERM');
      await l.close();
      const h = await health(orchestrator.url);
      assert.equal(h.status, 503);
      assert.equal(h.body.ok, false);
      assert.notEqual(h.body.workers[0].state, 'RUNNING');
    } finally {
      await gpuWorker.kill('SIGKILL');
      await orchestrator.close();
      await connection.close().catch(() => {});
      await l.close().catch(() => {});
    }
  },
);

test('health: a running worker whose server does not answer is unhealthy, and says why', async () => {
  const worker = { options: { taskQueue: 'q' }, getState: () => 'RUNNING' } as unknown as Worker;
  const down = {
    withDeadline: () => Promise.reject(new Error('14 UNAVAILABLE: tcp connect error')),
    workflowService: {},
  } as unknown as NativeConnection;
  const h = await healthCheck([worker], down)();
  assert.deepEqual(h, {
    ok: false,
    workers: [{ taskQueue: 'q', state: 'RUNNING' }],
    server: 'the Temporal server does not answer (14 UNAVAILABLE: tcp connect error)',
  });
});
