// Live views at parallelism 2: while two experiments train side by side on two CPU slots of the real
// GPU worker, `runningRuns` names each run's experiment (from its heartbeat, or, for an older
// worker's heartbeat, from the run's request in the history), `pairRuns` gives each experiment its
// own run, and `status --watch` shows each experiment above its own run. The runs wait at a gate
// the test opens once it has looked, so they are in flight for as long as it needs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { Context } from '@temporalio/activity';
import { defaultPayloadConverter } from '@temporalio/common';
import {
  campaignWorkflowId,
  RUN_ACTIVITY_NAMES,
  type RunHeartbeat,
  type RunRequest,
  type RunResult,
} from '../common/shared';
import { readLedger } from '../lib/ledger';
import { connectWorker } from '../ops/connection';
import { inFlightOf, pairRuns, runningRuns, type RunningRun } from '../client/live';
import { campaignStatus } from '../client/campaigns';
import { renderWatch, watchSnapshot } from '../client/watch';
import { ADDRESS, lab, makeRepo, plannedProposer, tempDir, waitFor, type Lab } from './helpers';

const TWO_SLOTS = [
  { name: 'cpu0', devices: null },
  { name: 'cpu1', devices: null },
];
/** Generous: the runs' first heartbeats with their last line reach the server throttled (up to ~10 s). */
const DEADLINE_MS = 120_000;

/**
 * The quadratic target, where a run of code with HOLD = k prints "holding k" and waits for the
 * file $GATE (a read-only path of its sandbox) before it reports its figure; the baseline (HOLD = 0)
 * does not wait.
 */
function heldRepo(): Promise<string> {
  return makeRepo(undefined, (dir) =>
    appendFileSync(
      path.join(dir, 'train.py'),
      `

HOLD = 0

if HOLD:
    print(f"holding {HOLD}", flush=True)
    while not os.path.exists(os.environ["GATE"]):
        time.sleep(0.2)
`,
    ),
  );
}

/** Status and live runs once both experiments' runs are in flight and named. */
async function bothInFlight(l: Lab, tag: string, ready: (runs: RunningRun[]) => boolean) {
  return waitFor(
    'experiments 1 and 2 training side by side, each run named',
    async () => {
      const status = await campaignStatus(l.client, tag);
      const training = inFlightOf(status)
        .filter((f) => f.phase === 'train')
        .map((f) => f.experiment)
        .sort();
      const runs = await runningRuns(l.client, tag);
      const started = runs.filter((r) => r.state === 'started');
      return training.join() === '1,2' && started.length === 2 && ready(started) ? { status, runs } : null;
    },
    DEADLINE_MS,
  );
}

/** experiment -> slot of its first run, as the ledger recorded it once the campaign ended. */
function recordedSlots(campaignDir: string): Map<number, string> {
  return new Map(
    readLedger(campaignDir).flatMap((r) => (r.kind === 'run' && r.run === 0 ? [[r.experiment, r.slot] as const] : [])),
  );
}

test('parallelism 2 through the real GPU worker: each experiment in flight is shown with its own run', async () => {
  const l = await lab({ slots: TWO_SLOTS });
  const gate = tempDir('nightlab-gate-');
  try {
    const proposer = plannedProposer({
      1: { HOLD: 1, LEARNING_RATE: 0.3, desc: 'lower the learning rate' },
      2: { HOLD: 2, LEARNING_RATE: 0.8, desc: 'raise the learning rate' },
    });
    const c = await l.start(await heldRepo(), {
      proposer,
      parallelism: 2,
      budget: { maxExperiments: 2 },
      noise: { baselineRuns: 1 },
      run: { command: 'python3 train.py', env: { GATE: path.join(gate, 'open') }, timeoutSec: 300, readOnly: [gate] },
    });
    // Each run's last line is its own code's "holding k": what the worker saw, not what pairing chose.
    const { status, runs } = await bothInFlight(l, c.tag, (rs) =>
      rs.every((r) => r.lastLine === `holding ${r.experiment}`),
    );
    assert.deepEqual(
      runs.map((r) => [r.experiment, r.run]).sort(),
      [
        [1, 0],
        [2, 0],
      ],
      'each run named',
    );
    // Named by the worker's heartbeat itself (the history is only the fallback for older workers).
    const pending =
      (await l.client.workflow.getHandle(campaignWorkflowId(c.tag)).describe()).raw.pendingActivities ?? [];
    const beats = pending.map((a) =>
      defaultPayloadConverter.fromPayload<RunHeartbeat>(a.heartbeatDetails!.payloads![0]),
    );
    assert.deepEqual(
      beats.map((b) => [b.experiment, b.run]).sort(),
      [
        [1, 0],
        [2, 0],
      ],
      `the heartbeats name experiment and run: ${JSON.stringify(beats)}`,
    );
    const pairs = pairRuns(inFlightOf(status), runs);
    const paired = pairs.filter((p) => p.flight && p.run);
    assert.deepEqual(paired.map((p) => p.flight!.experiment).sort(), [1, 2], `both paired: ${JSON.stringify(pairs)}`);
    for (const p of paired)
      assert.equal(
        p.run!.lastLine,
        `holding ${p.flight!.experiment}`,
        `experiment ${p.flight!.experiment} has its own run`,
      );
    assert.deepEqual(
      pairs.filter((p) => !p.flight),
      [],
      'no run left apart',
    );
    const slotOf = new Map(paired.map((p) => [p.flight!.experiment, p.run!.slot]));
    assert.deepEqual(new Set(slotOf.values()), new Set(['cpu0', 'cpu1']), 'one slot each');

    // `status --watch`: each experiment's line, then its own run's bar and last line.
    const text = renderWatch(await watchSnapshot(l.client, c.tag), { width: 200 });
    for (const [n, desc] of [
      [1, 'lower the learning rate'],
      [2, 'raise the learning rate'],
    ] as const) {
      const lines = text.split('\n');
      const at = lines.indexOf(`now: experiment ${n} train — ${desc}`);
      assert.ok(at >= 0, `experiment ${n} shown in flight:\n${text}`);
      assert.match(
        lines[at + 1],
        new RegExp(`\\] .* on [^ ]+/${slotOf.get(n)}$`),
        `its run's bar on its slot:\n${text}`,
      );
      assert.equal(lines[at + 2], `  last line: holding ${n}`, `its own run's last line:\n${text}`);
    }

    writeFileSync(path.join(gate, 'open'), '');
    const end = await c.result();
    assert.equal(end.experiments, 2);
    // The slots shown are the slots the runs were recorded on.
    const recorded = recordedSlots(c.campaignDir);
    for (const [n, slot] of slotOf) assert.equal(recorded.get(n), slot, `experiment ${n} ran on ${slot}`);
  } finally {
    writeFileSync(path.join(gate, 'open'), '');
    await l.close();
  }
});

test('an older GPU worker, whose heartbeat names no experiment: its runs are named from their requests in the history', async () => {
  const l = await lab({ gpu: false });
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  // The truth the pairing must find: which slot each experiment's run took.
  const slotOf = new Map<number, string>();
  const free = ['old0', 'old1'];
  const connection = await connectWorker(ADDRESS);
  // A worker as before the heartbeat named its run: the same activity, the old heartbeat.
  async function run(req: RunRequest): Promise<RunResult> {
    const slot = free.shift()!;
    slotOf.set(req.experiment, slot);
    const beat: RunHeartbeat = { elapsedSec: 0, timeoutSec: req.timeoutSec, lastLine: 'training', slot, host: 'old' };
    const ctx = Context.current();
    const timer = setInterval(() => ctx.heartbeat(beat), 500);
    ctx.heartbeat(beat);
    try {
      if (req.experiment > 0) await gate;
      return {
        outcome: 'ok',
        exitCode: 0,
        metric: 1.5 - req.experiment / 100,
        memoryMb: null,
        seconds: 1,
        logPath: '',
        host: 'old',
        slot,
        logTail: '',
        reason: '',
      };
    } finally {
      clearInterval(timer);
      free.push(slot);
    }
  }
  const worker = await Worker.create({
    connection,
    taskQueue: l.gpuTaskQueue,
    maxConcurrentActivityTaskExecutions: 2,
    activities: Object.fromEntries(RUN_ACTIVITY_NAMES.map((name) => [name, run])),
  });
  const running = worker.run();
  try {
    const c = await l.start(await makeRepo(), {
      parallelism: 2,
      budget: { maxExperiments: 2 },
      noise: { baselineRuns: 1 },
    });
    const { status, runs } = await bothInFlight(l, c.tag, (rs) =>
      rs.every((r) => r.slot !== '' && r.sinceHeartbeatSec !== null),
    );
    assert.deepEqual(
      runs.map((r) => [r.experiment, r.run]).sort(),
      [
        [1, 0],
        [2, 0],
      ],
      'named from the history',
    );
    const pairs = pairRuns(inFlightOf(status), runs).filter((p) => p.flight && p.run);
    assert.deepEqual(pairs.map((p) => [p.flight!.experiment, p.run!.slot]).sort(), [
      [1, slotOf.get(1)],
      [2, slotOf.get(2)],
    ]);
    open();
    assert.equal((await c.result()).experiments, 2);
  } finally {
    open();
    worker.shutdown();
    await running;
    await connection.close();
    await l.close();
  }
});

/** A run in flight as the live views see it, naming its experiment (or, from an older worker, not). */
function runningRun(experiment: number | undefined, slot: string): RunningRun {
  return {
    ...(experiment === undefined ? {} : { experiment, run: 0 }),
    elapsedSec: 1,
    timeoutSec: 60,
    lastLine: '',
    slot,
    host: 'h',
    attempt: 1,
    sinceHeartbeatSec: 0,
    state: 'started',
  };
}

test('pairRuns: runs are paired by the experiment they name, only with an experiment that is training', () => {
  const shown = (pairs: ReturnType<typeof pairRuns>) =>
    pairs.map((p) => [p.flight?.experiment ?? null, p.run?.slot ?? null]);
  const eight = { experiment: 8, phase: 'train', description: '' };
  const nine = { experiment: 9, phase: 'confirm', description: '' };
  // In any order, each with its own; a second confirmation seed of 9 stands apart.
  assert.deepEqual(
    shown(pairRuns([nine, eight], [runningRun(8, 'gpu0'), runningRun(9, 'gpu1'), runningRun(9, 'gpu2')])),
    [
      [9, 'gpu1'],
      [8, 'gpu0'],
      [null, 'gpu2'],
    ],
  );
  // Kept and recording, 9 is re-run as the new best for another experiment: a run apart, not 9's bar.
  assert.deepEqual(shown(pairRuns([{ ...nine, phase: 'record' }], [runningRun(9, 'gpu1')])), [
    [9, null],
    [null, 'gpu1'],
  ]);
});

test("pairRuns: each experiment in flight gets its own run, none while it judges; the best's re-runs stand apart", () => {
  const five = { experiment: 5, phase: 'train', description: 'wider' };
  const six = { experiment: 6, phase: 'judge', description: 'lower lr' };
  const seven = { experiment: 7, phase: 'propose', description: '' };
  const own = runningRun(5, 'gpu0');
  const bestReRun = runningRun(3, 'gpu1');
  const pairs = pairRuns([five, six, seven], [bestReRun, own]);
  assert.deepEqual(
    pairs.map((p) => [p.flight?.experiment ?? null, p.run?.slot ?? null]),
    [
      [5, 'gpu0'],
      [6, null],
      [7, null],
      [null, 'gpu1'],
    ],
  );
  // A run that has not beaten yet (no experiment named) goes to the one experiment training.
  const fresh = runningRun(undefined, 'gpu0');
  assert.deepEqual(
    pairRuns([six, five], [fresh]).map((p) => [p.flight?.experiment ?? null, p.run?.slot ?? null]),
    [
      [6, null],
      [5, 'gpu0'],
    ],
  );
  // With two training it cannot say whose: a block of its own.
  assert.deepEqual(
    pairRuns([five, { ...six, phase: 'confirm' }], [fresh]).map((p) => [
      p.flight?.experiment ?? null,
      p.run?.slot ?? null,
    ]),
    [
      [5, null],
      [6, null],
      [null, 'gpu0'],
    ],
  );
});
