// bench:recovery — how fast a campaign gets going again after it loses its GPU worker, and what an
// experiment costs in workflow history.
//
//   npm run bench:recovery            (BENCH_KILLS kill -9 rounds, default 2; BENCH_N experiments
//                                      per history measurement, default 20)
//
// Figures:
//   kill -9       a GPU worker (a `nightlab gpu-worker` subprocess) is killed mid-run and a new one
//                 is started at once: `noticed` is kill → the server times the attempt out (the
//                 heartbeat timeout: nobody else can know the worker is gone), `running` is kill →
//                 the retry started on the new worker (+ the retry policy's first interval).
//   policy        what the run activity's options predict, read from the campaign's own history.
//   SIGTERM       the same run stopped cleanly: the worker gives it its shutdown grace, cancels it,
//                 and the failed attempt is retried at once (no timeout to wait for).
//   events        history events per experiment (all runs of the workflow together), sequential and
//                 with 4 experiments at a time, and how many experiments fit in one run before
//                 continue-as-new (at 4,000 events).
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import proto from '@temporalio/proto';
import type { WorkflowHandle } from '@temporalio/client';
import { figure } from './harness';
import { serverForTools } from '../ops/server';
import { connectClient, connectWorker } from '../ops/connection';
import { parseConfig, type CampaignConfigInput } from '../common/config';
import { campaignWorkflowId, RUN_ACTIVITY_NAMES } from '../common/shared';
import { makeExampleRepo } from '../cli/demo';
import { prepareStart, startCampaign } from '../client/campaigns';
import { readLedger } from '../lib/ledger';
import { createOrchestratorWorker } from '../workers/orchestrator';
import { createGpuWorkers } from '../gpu-worker/worker';
import { TrainingHold, pidAlive, sleep, startWorker, type Proc } from '../test/processes';

const { temporal } = proto;
const STARTED = temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;
const KILLS = Number(process.env.BENCH_KILLS || 2);
const N = Number(process.env.BENCH_N || 20);
const QUADRATIC = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'test', 'fixtures', 'quadratic');
/** The quadratic loss computed by awk from train.py: a few ms per run. */
const INSTANT_TRAINER = `awk -F' = ' '/^LEARNING_RATE/{lr=$2} /^WIDTH/{w=$2} END{print "---"; printf "val_bpb: %.6f\\n", (lr-0.12)^2+(w-20)^2/400+1}' train.py`;

Runtime.install({ logger: new DefaultLogger('ERROR') });
const server = await serverForTools({ port: 19533, log: console.error });
const dirs: string[] = [];
const temp = (prefix: string) => {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
};
const id = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`;
const home = temp('nightlab-bench-recovery-');
const taskQueue = `recovery-orch-${id}`;
const gpuTaskQueue = `recovery-gpu-${id}`;
const env = { TEMPORAL_ADDRESS: server.address, NIGHTLAB_HOME: home };
const client = await connectClient(server.address);
const connection = await connectWorker(server.address);
const orchestrator = await createOrchestratorWorker({ connection, taskQueue });
const orchestratorRun = orchestrator.run();
let gpu: Proc | null = null;
const startGpu = async () =>
  (gpu = await startWorker(
    'gpu-worker',
    env,
    ['--task-queue', gpuTaskQueue],
    path.join(home, `gpu-worker-${Date.now()}.log`),
  ));

async function campaign(
  config: Partial<CampaignConfigInput>,
  tag: string,
): Promise<{ handle: WorkflowHandle; campaignDir: string }> {
  const repo = await makeExampleRepo(path.join(temp('nightlab-bench-repo-'), 'target'), QUADRATIC);
  const cfg = parseConfig(
    {
      target: '.',
      editable: ['train.py'],
      locked: ['prepare.py'],
      metric: { name: 'val_bpb', direction: 'lower' },
      proposer: { kind: 'mutate', seed: 1 },
      noise: { baselineRuns: 1 },
      sandbox: 'off',
      run: { command: INSTANT_TRAINER, timeoutSec: 60 },
      ...config,
    },
    'bench',
  );
  const input = await prepareStart({ config: cfg, baseDir: repo, tag, home });
  const handle = await startCampaign(client, { ...input, gpuTaskQueue }, { taskQueue });
  return { handle, campaignDir: input.campaignDir };
}

/** Polls the pending run: when its attempt went up (the loss noticed) and when the retry started. */
async function watchRetry(
  handle: WorkflowHandle,
  since: number,
): Promise<{ noticed: number; running: number; why: string }> {
  let noticed = NaN;
  let why = '';
  for (;;) {
    const d = await handle.describe().catch(() => null);
    const act = d?.raw.pendingActivities?.find((a) => RUN_ACTIVITY_NAMES.includes(a.activityType?.name ?? ''));
    if (act && (act.attempt ?? 1) >= 2) {
      if (Number.isNaN(noticed)) {
        noticed = (Date.now() - since) / 1000;
        why = act.lastFailure?.message ?? '';
      }
      if (act.state === STARTED) return { noticed, running: (Date.now() - since) / 1000, why };
    }
    if (Date.now() - since > 300_000) throw new Error('the run was not retried within 5 minutes');
    await sleep(100);
  }
}

const seconds = (d: { seconds?: unknown; nanos?: number | null } | null | undefined) =>
  Number(d?.seconds ?? 0) + (d?.nanos ?? 0) / 1e9;
const range = (xs: number[]) =>
  xs.length > 1 ? ` (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}, n=${xs.length})` : '';
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

try {
  // 1. kill -9 of the GPU worker mid-run, a new worker started at once; then a clean SIGTERM.
  const hold = new TrainingHold(temp('nightlab-bench-hold-'));
  await startGpu();
  const c = await campaign(
    { run: hold.run({ QUAD_SLEEP: '1' }, 600), budget: { maxExperiments: KILLS + 2 }, lookahead: 0 },
    `recovery-${id}`,
  );
  const noticed: number[] = [];
  const running: number[] = [];
  const recordedRows = () => readLedger(c.campaignDir).filter((r) => r.kind === 'experiment').length;
  for (let k = 0; k < KILLS + 1; k++) {
    const before = recordedRows();
    hold.engage();
    const pid = await hold.heldPid();
    // Kill at a different moment of the heartbeat cycle each round.
    await sleep((k * 3_700) % 10_000);
    const at = Date.now();
    const clean = k === KILLS;
    if (clean) await gpu!.kill('SIGTERM');
    else {
      await gpu!.kill('SIGKILL');
      // The orphan (an unsandboxed run outlives its worker) is reaped by the next worker on this host.
    }
    const retry = watchRetry(c.handle, at);
    await startGpu();
    while (pidAlive(pid)) await sleep(100);
    hold.release();
    const r = await retry;
    if (clean) figure('SIGTERM', { running: `${r.running.toFixed(1)} s`, why: JSON.stringify(r.why) });
    else {
      noticed.push(r.noticed);
      running.push(r.running);
      console.error(
        `  kill ${k + 1}: noticed ${r.noticed.toFixed(1)} s, running again ${r.running.toFixed(1)} s (${r.why})`,
      );
    }
    while (recordedRows() === before) await sleep(200);
  }
  figure('kill -9', {
    noticed: `${mean(noticed).toFixed(1)} s${range(noticed)}`,
    running: `${mean(running).toFixed(1)} s${range(running)}`,
  });
  await c.handle.result();

  // The figures the run activity's options predict, as the workflow scheduled it.
  const history = await c.handle.fetchHistory();
  const scheduled = history.events!.find((e) =>
    RUN_ACTIVITY_NAMES.includes(e.activityTaskScheduledEventAttributes?.activityType?.name ?? ''),
  )!.activityTaskScheduledEventAttributes!;
  const hb = seconds(scheduled.heartbeatTimeout);
  const first = seconds(scheduled.retryPolicy?.initialInterval);
  figure('policy', {
    'heartbeat-timeout': `${hb} s`,
    'first-retry': `${first} s (x${scheduled.retryPolicy?.backoffCoefficient}, max ${seconds(scheduled.retryPolicy?.maximumInterval)} s, ${scheduled.retryPolicy?.maximumAttempts} attempts)`,
    'kill -9 → running': `≤ ${hb + first} s (heartbeats reach the server every ≤10 s: noticed ${hb - 10}–${hb} s after the kill, then the retry)`,
    'SIGTERM → running': '≈ shutdown grace 10 s + first retry',
  });

  // 2. History events per experiment.
  for (const parallelism of [1, 4]) {
    if (parallelism === 4) {
      await gpu!.kill('SIGTERM');
      gpu = null;
    }
    const slots =
      parallelism === 4
        ? await createGpuWorkers({
            connection,
            home: temp('nightlab-bench-slots-'),
            slots: [0, 1, 2, 3].map((i) => ({ name: `cpu${i}`, devices: null })),
            taskQueue: gpuTaskQueue,
          })
        : [];
    const slotRuns = slots.map((w) => w.run());
    const e = await campaign({ parallelism, budget: { maxExperiments: N } }, `events-${parallelism}-${id}`);
    await e.handle.result();
    let events = 0;
    let runs = 0;
    for await (const wf of client.workflow.list({
      query: `WorkflowId = '${campaignWorkflowId(`events-${parallelism}-${id}`)}'`,
    })) {
      events += wf.historyLength;
      runs += 1;
    }
    const per = events / (N + 1);
    figure(`events p=${parallelism}`, {
      'per experiment': per.toFixed(1),
      total: `${events} in ${runs} run${runs > 1 ? 's' : ''}`,
      'experiments per run': `~${Math.floor(4000 / per)} (continue-as-new at 4,000 events)`,
    });
    slots.forEach((w) => w.shutdown());
    await Promise.all(slotRuns);
  }
} finally {
  await (gpu as Proc | null)?.kill('SIGKILL');
  orchestrator.shutdown();
  await orchestratorRun.catch(() => {});
  await connection.close();
  await client.connection.close();
  await server.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
process.exit(0);
