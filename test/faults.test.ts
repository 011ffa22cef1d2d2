// Fault injection with real processes: each case has a private Temporal dev server (its own port and
// SQLite file), `nightlab worker` and `nightlab gpu-worker` as subprocesses with their own
// NIGHTLAB_HOME, and a campaign on the quadratic fixture. Training runs are held at a chosen moment
// (test/processes.ts) so each fault lands mid-run; then things are killed for real (SIGKILL,
// SIGINT, SIGTERM), restarted, and the campaign must end with nothing lost and nothing done twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto';
import { parseConfig, type CampaignConfigInput } from '../common/config';
import { experimentRef, RUN_ACTIVITY_NAMES, type CampaignSnapshot } from '../common/shared';
import { prepareStart, startCampaign } from '../client/campaigns';
import { readLedger, readResultsTsv, type LedgerRow } from '../lib/ledger';
import { git, readRef } from '../lib/git';
import { statusQuery } from '../workflows/messages';
import { QUADRATIC_CONFIG, makeRepo, tempDir, uniqueTag, waitFor } from './helpers';
import { PrivateServer, TrainingHold, pidAlive, sleep, startWorker, type Proc } from './processes';

const MAX_EXPERIMENTS = 3;
const STARTED = proto.temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED;

interface Case {
  dir: string;
  home: string;
  server: PrivateServer;
  env: Record<string, string>;
  client: Client;
  hold: TrainingHold;
  worker: Proc | null;
  gpu: Proc | null;
  startWorker(): Promise<Proc>;
  startGpu(): Promise<Proc>;
  close(): Promise<void>;
}

/** A private server, both workers as subprocesses, and a training hold, all under one temp dir. */
async function setup(name: string): Promise<Case> {
  const dir = tempDir(`nightlab-fault-${name}-`);
  const home = path.join(dir, 'home');
  const server = await PrivateServer.create(path.join(dir, 'server'));
  const env = { TEMPORAL_ADDRESS: server.address, NIGHTLAB_HOME: home };
  const client = new Client({ connection: await Connection.connect({ address: server.address }) });
  const c: Case = {
    dir,
    home,
    server,
    env,
    client,
    hold: new TrainingHold(path.join(dir, 'hold')),
    worker: null,
    gpu: null,
    async startWorker() {
      c.worker = await startWorker('worker', env, [], path.join(dir, 'worker.log'));
      return c.worker;
    },
    async startGpu() {
      c.gpu = await startWorker('gpu-worker', env, [], path.join(dir, 'gpu-worker.log'));
      return c.gpu;
    },
    async close() {
      c.hold.release();
      await Promise.all([c.worker?.kill('SIGKILL'), c.gpu?.kill('SIGKILL')]);
      await client.connection.close();
      await server.close(false);
      if (!process.env.NIGHTLAB_KEEP_FAULTS) rmSync(dir, { recursive: true, force: true });
    },
  };
  await Promise.all([c.startWorker(), c.startGpu()]);
  return c;
}

interface Started {
  tag: string;
  repo: string;
  campaignDir: string;
  branch: string;
  handle: WorkflowHandle;
}

/**
 * The quadratic campaign: 2 s runs, one baseline run, one experiment at a time, runs through the
 * hold. Unsandboxed: these cases are about Temporal and process faults, and the hold's files live
 * under /tmp, which a sandboxed run cannot see (a sandboxed run dies with its worker anyway:
 * bubblewrap's --die-with-parent, so there is no orphan to reap).
 */
async function startQuadratic(c: Case, over: Partial<CampaignConfigInput> = {}): Promise<Started> {
  const repo = await makeRepo();
  const tag = uniqueTag('f');
  const config = parseConfig(
    {
      ...QUADRATIC_CONFIG,
      run: c.hold.run({ QUAD_SLEEP: '2' }, 120),
      budget: { maxExperiments: MAX_EXPERIMENTS },
      noise: { baselineRuns: 1 },
      lookahead: 0,
      sandbox: 'off',
      ...over,
    },
    'faults',
  );
  const input = await prepareStart({ config, baseDir: repo, tag, home: c.home });
  const handle = await startCampaign(c.client, input);
  return { tag, repo, campaignDir: input.campaignDir, branch: input.branch, handle };
}

/** Holds the next run after the baseline's record; returns the held python pid and its experiment. */
async function holdAnExperiment(c: Case, s: Started): Promise<{ pid: number; experiment: number }> {
  await waitFor(
    'the baseline recorded',
    () => readLedger(s.campaignDir).some((r) => r.kind === 'experiment' && r.experiment === 0),
    120_000,
  );
  c.hold.engage();
  const pid = await c.hold.heldPid();
  const st = await s.handle.query(statusQuery);
  const training = st.inFlight.filter((f) => f.phase === 'train');
  assert.equal(training.length, 1, `one experiment trains: ${JSON.stringify(st.inFlight)}`);
  assert.ok(training[0].experiment >= 1);
  return { pid, experiment: training[0].experiment };
}

/** Attempt headers written to an experiment run's log, one per attempt that started the command. */
function attemptsInLog(c: Case, s: Started, n: number, run = 0): number[] {
  const log = readFileSync(path.join(c.home, 'logs', s.tag, `${n}-${run}.log`), 'utf8');
  return [...log.matchAll(/^=== nightlab .* attempt (\d+) on /gm)].map((m) => Number(m[1]));
}

/** Every invariant of a campaign that survived faults. */
async function assertIntact(s: Started, status: CampaignSnapshot, max = MAX_EXPERIMENTS): Promise<LedgerRow[]> {
  const ledger = readLedger(s.campaignDir);
  const rows = ledger.flatMap((r) => (r.kind === 'experiment' ? [r] : []));
  const runs = ledger.flatMap((r) => (r.kind === 'run' ? [r] : []));
  const rejected = ledger.flatMap((r) => (r.kind === 'rejected' ? [r] : []));
  const numbers = rows.map((r) => r.experiment).sort((a, b) => a - b);
  // Nothing lost, nothing twice: experiments 0..max, each once; runs and rejections unique by key.
  assert.deepEqual(
    numbers,
    Array.from({ length: max + 1 }, (_, i) => i),
    'experiment rows: 0..max, each once',
  );
  const runKeys = runs.map((r) => `${r.experiment}/${r.run}`);
  assert.equal(new Set(runKeys).size, runKeys.length, `run rows unique by (experiment, run): ${runKeys.join(' ')}`);
  const rejectedKeys = rejected.map((r) => `${r.experiment}/${r.attempt}`);
  assert.equal(new Set(rejectedKeys).size, rejectedKeys.length, 'rejections unique by (experiment, attempt)');
  for (const r of rows) {
    const mine = runs
      .filter((x) => x.experiment === r.experiment && x.commit === r.commit)
      .map((x) => x.run)
      .sort();
    assert.ok(mine.length >= r.runs, `experiment ${r.experiment}: ${r.runs} run rows`);
  }
  // results.tsv: one line per experiment, in the ledger's order, no line twice.
  const tsv = readResultsTsv(s.campaignDir);
  assert.equal(tsv.rows.length, max + 1, 'results.tsv: one row per experiment');
  assert.deepEqual(
    tsv.rows.map((r) => r[0]),
    rows.map((r) => r.commit.slice(0, 7)),
  );
  assert.deepEqual(
    tsv.rows.map((r) => r[3]),
    rows.map((r) => r.status),
  );
  // Git: each experiment's commit under its own ref, no two experiments on one commit, no stray refs.
  const commits = rows.map((r) => r.commit);
  assert.equal(new Set(commits).size, commits.length, 'no two experiments share a commit');
  for (const r of rows)
    assert.equal(
      await readRef(s.repo, experimentRef(s.tag, r.experiment)),
      r.commit,
      `refs/nightlab/${s.tag}/${r.experiment}`,
    );
  const refs = (await git(s.repo).raw(['for-each-ref', '--format=%(refname)', `refs/nightlab/${s.tag}/`]))
    .split('\n')
    .filter(Boolean);
  assert.equal(refs.length, max + 1, `one ref per experiment: ${refs.join(' ')}`);
  // The branch agrees with the results: its head is the best kept commit, its commits are the keeps.
  const kept = rows.filter((r) => r.status === 'keep').sort((a, b) => a.experiment - b.experiment);
  const best = kept.reduce((a, b) => (b.metric! < a.metric! ? b : a));
  assert.equal(await readRef(s.repo, `refs/heads/${s.branch}`), best.commit, 'branch head = best kept commit');
  const base = rows.find((r) => r.experiment === 0)!.commit;
  const onBranch = (await git(s.repo).raw(['rev-list', `${base}..refs/heads/${s.branch}`])).split('\n').filter(Boolean);
  assert.deepEqual(
    new Set(onBranch),
    new Set(kept.filter((r) => r.experiment > 0).map((r) => r.commit)),
    'branch commits = kept experiments',
  );
  // Budgets counted once.
  assert.equal(status.state, 'completed', status.message);
  assert.equal(status.experiments, max, 'status.experiments == maxExperiments');
  assert.equal(rows.length, max + 1, 'ledger experiment rows == maxExperiments + 1');
  assert.equal(status.kept, kept.length - 1);
  assert.equal(status.crashes, rows.filter((r) => r.status === 'crash').length);
  assert.equal(status.bestCommit, best.commit);
  return ledger;
}

function runRowsOf(ledger: LedgerRow[], n: number) {
  return ledger.flatMap((r) => (r.kind === 'run' && r.experiment === n ? [r] : []));
}

/** Polls the pending training activity: when its attempt went up (noticed) and when the retry started. */
async function watchRetry(
  handle: WorkflowHandle,
  since: number,
  timeoutMs = 150_000,
): Promise<{ noticedMs: number; restartedMs: number; failure: string }> {
  let noticedMs = -1;
  let failure = '';
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = await handle.describe().catch(() => null);
    const act = d?.raw.pendingActivities?.find((a) => RUN_ACTIVITY_NAMES.includes(a.activityType?.name ?? ''));
    if (act && (act.attempt ?? 1) >= 2) {
      if (noticedMs < 0) {
        noticedMs = Date.now() - since;
        failure = act.lastFailure?.message ?? '';
      }
      if (act.state === STARTED) return { noticedMs, restartedMs: Date.now() - since, failure };
    }
    if (Date.now() > deadline) throw new Error('the training activity was not retried');
    await sleep(250);
  }
}

test('kill -9 of the GPU worker mid-run: noticed within a minute, the orphan is reaped, the run goes again once, one result row', async () => {
  const c = await setup('gpu');
  try {
    const s = await startQuadratic(c);
    const { pid, experiment: n } = await holdAnExperiment(c, s);
    const killedAt = Date.now();
    await c.gpu!.kill('SIGKILL');
    assert.ok(pidAlive(pid), 'the training process outlives its worker (an orphan)');
    // A new GPU worker started at once: it reaps the orphan's process group before taking work.
    const gpu2 = c.startGpu();
    const retry = watchRetry(s.handle, killedAt);
    await gpu2;
    await waitFor('the orphan reaped', () => !pidAlive(pid), 30_000);
    c.hold.release();
    const { noticedMs, restartedMs, failure } = await retry;
    console.log(
      `# GPU worker killed: noticed after ${(noticedMs / 1000).toFixed(1)} s (${failure}), run ${n} started again after ${(restartedMs / 1000).toFixed(1)} s`,
    );
    // The server times the attempt out 60 s after the last heartbeat it got (heartbeats reach it every
    // <= 10 s), so within a minute of the kill, plus its timer queue's lag and this poll's.
    assert.ok(
      noticedMs <= 66_000,
      `a dead GPU worker is noticed within the 60 s heartbeat timeout (took ${noticedMs} ms)`,
    );
    assert.match(failure, /heartbeat/i);
    assert.ok(restartedMs <= 80_000, `retried within heartbeat timeout + backoff (took ${restartedMs} ms)`);

    const status = (await s.handle.result()) as CampaignSnapshot;
    const ledger = await assertIntact(s, status);
    const rows = runRowsOf(ledger, n);
    assert.equal(rows.length, 1, `experiment ${n}: one run row`);
    assert.equal(rows[0].outcome, 'ok');
    assert.deepEqual(attemptsInLog(c, s, n), [1, 2], 'the log keeps both attempts');
    assert.equal(ledger.filter((r) => r.kind === 'experiment' && r.status === 'crash').length, 0, 'no crash row');
  } finally {
    await c.close();
  }
});

test('kill -9 of the orchestrator worker mid-experiment: the campaign resumes when it restarts, nothing runs twice', async () => {
  const c = await setup('orch');
  try {
    const s = await startQuadratic(c);
    const { experiment: n } = await holdAnExperiment(c, s);
    await c.worker!.kill('SIGKILL');
    // The run finishes while no orchestrator is alive; its result waits in the server.
    c.hold.release();
    await waitFor(
      `run ${n} finished`,
      () => /val_bpb/.test(readFileSync(path.join(c.home, 'logs', s.tag, `${n}-0.log`), 'utf8')),
      60_000,
    );
    await sleep(1000);
    await c.startWorker();
    const status = (await s.handle.result()) as CampaignSnapshot;
    const ledger = await assertIntact(s, status);
    assert.deepEqual(attemptsInLog(c, s, n), [1], `experiment ${n} trained once`);
    const runs = ledger.filter((r) => r.kind === 'run');
    assert.equal(c.hold.startedPids().length, runs.length, 'one training process per run row: nothing ran twice');
  } finally {
    await c.close();
  }
});

test('the Temporal server stopped mid-campaign and restarted on the same database: the campaign continues', async () => {
  const c = await setup('server');
  try {
    const s = await startQuadratic(c);
    const { experiment: n } = await holdAnExperiment(c, s);
    const stoppedAt = Date.now();
    await c.server.kill('SIGINT');
    // The run ends while the server is down; then the server comes back on the same SQLite file.
    c.hold.release();
    await sleep(5000);
    await c.server.start();
    console.log(`# server down for ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s`);
    const status = (await s.handle.result()) as CampaignSnapshot;
    const ledger = await assertIntact(s, status);
    assert.equal(runRowsOf(ledger, n).length, 1);
    assert.equal(runRowsOf(ledger, n)[0].outcome, 'ok');
    // The run that ended during the outage reported its result when the server came back (the SDK
    // retries the call for ~30 s); an outage longer than that costs a re-run, never a lost result.
    assert.deepEqual(attemptsInLog(c, s, n), [1], `experiment ${n} trained once`);
    assert.ok(c.worker!.alive() && c.gpu!.alive(), 'the workers rode out the outage');
  } finally {
    await c.close();
  }
});

test('reboot: the server, both workers and the training run killed at once, then restarted: the campaign continues', async () => {
  const c = await setup('reboot');
  try {
    const s = await startQuadratic(c);
    const { pid, experiment: n } = await holdAnExperiment(c, s);
    // Everything dies at the same instant, as in a power loss (the run's process group too).
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone already
    }
    await Promise.all([c.server.kill('SIGKILL'), c.worker!.kill('SIGKILL'), c.gpu!.kill('SIGKILL')]);
    const downAt = Date.now();
    c.hold.release();
    // Boot: the server on the same database, then the workers (as systemd or compose would).
    await c.server.start();
    await Promise.all([c.startWorker(), c.startGpu()]);
    const status = (await s.handle.result()) as CampaignSnapshot;
    console.log(`# rebooted campaign finished ${((Date.now() - downAt) / 1000).toFixed(1)} s after the crash`);
    const ledger = await assertIntact(s, status);
    const rows = runRowsOf(ledger, n);
    assert.equal(rows.length, 1, `experiment ${n}: one run row`);
    assert.equal(rows[0].outcome, 'ok');
    assert.deepEqual(attemptsInLog(c, s, n), [1, 2]);
  } finally {
    await c.close();
  }
});

test('SIGTERM on the GPU worker mid-run: the run is cancelled and retried on another worker, not recorded as a crash', async () => {
  const c = await setup('sigterm');
  try {
    const s = await startQuadratic(c);
    const { pid, experiment: n } = await holdAnExperiment(c, s);
    const stoppedAt = Date.now();
    const exit = await c.gpu!.kill('SIGTERM');
    console.log(
      `# GPU worker stopped ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s after SIGTERM (${JSON.stringify(exit)})`,
    );
    assert.equal(exit.code, 0, `a clean exit: ${c.gpu!.output().slice(-2000)}`);
    assert.ok(!pidAlive(pid), 'the run was killed with its worker');
    await c.startGpu();
    const retry = watchRetry(s.handle, stoppedAt);
    c.hold.release();
    const { restartedMs, failure } = await retry;
    console.log(`# run ${n} started again ${(restartedMs / 1000).toFixed(1)} s after the SIGTERM (${failure})`);
    assert.doesNotMatch(failure, /heartbeat/i, 'the failure was reported at once, not found by a timeout');
    const status = (await s.handle.result()) as CampaignSnapshot;
    const ledger = await assertIntact(s, status);
    const rows = runRowsOf(ledger, n);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].outcome, 'ok', JSON.stringify(rows[0]));
    assert.equal(status.crashes, 0, 'no crash row');
    assert.deepEqual(attemptsInLog(c, s, n), [1, 2]);
  } finally {
    await c.close();
  }
});

test('SIGTERM to the GPU worker and its run at once (systemd, a cluster draining a node): retried, not a crash', async () => {
  const c = await setup('sigterm-all');
  try {
    const s = await startQuadratic(c);
    const { pid, experiment: n } = await holdAnExperiment(c, s);
    const stoppedAt = Date.now();
    // A whole-cgroup stop: every process of the unit gets SIGTERM, the training run included.
    const exited = c.gpu!.kill('SIGTERM');
    process.kill(-pid, 'SIGTERM');
    const exit = await exited;
    assert.equal(exit.code, 0, c.gpu!.output().slice(-2000));
    await c.startGpu();
    const retry = watchRetry(s.handle, stoppedAt);
    c.hold.release();
    const { failure } = await retry;
    assert.match(failure, /stopping|shut/i);
    const status = (await s.handle.result()) as CampaignSnapshot;
    const ledger = await assertIntact(s, status);
    assert.equal(runRowsOf(ledger, n).length, 1);
    assert.equal(runRowsOf(ledger, n)[0].outcome, 'ok');
    assert.equal(status.crashes, 0, 'no crash row');
  } finally {
    await c.close();
  }
});
