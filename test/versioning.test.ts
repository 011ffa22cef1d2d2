// Worker Versioning (docs/upgrading.md), on the dev server: orchestrator workers of versions A, B, C on one
// task queue of a worker deployment of the test's own, and an unversioned GPU worker (test/versioned-fleet.ts).
// Each run of a campaign must stay on the version it started on until its first step moves it to the current
// one: never a version change mid-history, never a nondeterminism error, and the experiments go on numbering
// across the moves. Each run of this file registers two worker deployments (a namespace holds 100 by default,
// matching.maxDeployments): the test command's fresh server never nears it; a long-lived one is restarted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultPayloadConverter } from '@temporalio/common';
import { tsToMs } from '@temporalio/common/lib/time';
import type { temporal } from '@temporalio/proto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { tempDir, waitFor } from './helpers';
import { PrivateServer, nightlab, startWorker, type Proc } from './processes';
import { fleet, type Fleet } from './versioned-fleet';
import { connectClient } from '../ops/connection';
import { DEFAULT_NAMESPACE, type CampaignSnapshot } from '../common/shared';
import { versionName, type VersionMove } from '../activities/versioning';

type Event = temporal.api.history.v1.IHistoryEvent;

/** Experiments of each campaign: three runs or more, continued as new every few experiments. */
const EXPERIMENTS = 9;
const MOVE_ACTIVITY = 'moveToCurrentVersion';
/** What workflowTasks() says for a task completed by an unversioned worker. */
const UNVERSIONED = '';

/** The build id that completed each workflow task of a history, in order, with the event's id and time. */
function workflowTasks(events: Event[]): { buildId: string; atMs: number; eventId: number }[] {
  return events.flatMap((e) => {
    const done = e.workflowTaskCompletedEventAttributes;
    // An unversioned worker sends no deployment version (its build id is only the SDK's and a bundle hash).
    const buildId = done?.deploymentVersion?.deploymentName ? done.deploymentVersion.buildId! : UNVERSIONED;
    return done ? [{ buildId, atMs: tsToMs(e.eventTime), eventId: Number(e.eventId) }] : [];
  });
}

/** The result of a run's first step (null: unversioned), and the id of the event that completed it. */
function moveOf(events: Event[]): { move: VersionMove | null; eventId: number } | undefined {
  const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === MOVE_ACTIVITY);
  const done =
    scheduled &&
    events.find((e) => Number(e.activityTaskCompletedEventAttributes?.scheduledEventId) === Number(scheduled.eventId));
  if (!done) return undefined;
  const payload = done.activityTaskCompletedEventAttributes!.result!.payloads![0];
  return { move: defaultPayloadConverter.fromPayload(payload), eventId: Number(done.eventId) };
}

const distinct = (xs: string[]) => [...new Set(xs)];

/**
 * No workflow task failed in any run (a nondeterminism error would be one); the campaign completed, its
 * experiments numbered on across the runs and versions, each recorded once, to the budget.
 */
function carriedOn(f: Fleet, status: CampaignSnapshot, runs: Event[][]): void {
  for (const [i, run] of runs.entries()) {
    const failed = run.filter((e) => e.workflowTaskFailedEventAttributes);
    assert.deepEqual(
      failed.map((e) => e.workflowTaskFailedEventAttributes!.cause),
      [],
      `run ${i + 1}: no task failed`,
    );
  }
  assert.equal(status.state, 'completed');
  assert.deepEqual(
    f.recorded(),
    Array.from({ length: EXPERIMENTS + 1 }, (_, n) => n),
  );
}

test('a campaign moves A -> B -> C at continue-as-new, each run on one version; GPU runs unversioned', async () => {
  const f = await fleet();
  try {
    await f.deploy('A');
    const result = await f.start(EXPERIMENTS);
    // B, while the first run is mid-experiment: its baseline waits to train meanwhile.
    const bCurrentAt = await f.whileHeld(() => f.deploy('B'));
    const runsWhenB = (await f.runs()).length;
    // C, once the second run has moved to B and gone on there (while a training run waits).
    await waitFor(
      'the second run on B',
      async () => {
        const second = (await f.runs())[1];
        const moved = second && moveOf(second);
        return moved?.move?.to && workflowTasks(second).some((t) => t.buildId === 'B' && t.eventId > moved.eventId);
      },
      120_000,
    );
    await f.whileHeld(() => f.deploy('C'));
    const status = await result();
    const runs = await f.runs();

    assert.equal(runsWhenB, 1, 'B became current during the first run');
    // Run 1: every task on A, those after B became current too.
    const first = workflowTasks(runs[0]);
    assert.deepEqual(distinct(first.map((t) => t.buildId)), ['A'], 'the first run stays on A');
    assert.ok(
      first.some((t) => t.atMs > bCurrentAt),
      'the first run went on on A after B was current',
    );
    // Every later run: its start on the version the run before ended on, its first step the move (if any),
    // every later task on the version it moved to. The moves: A -> B in the second run, then B -> C.
    let on = 'A';
    const moves: string[] = [];
    for (const [i, run] of runs.slice(1).entries()) {
      const what = `run ${i + 2}`;
      const moved = moveOf(run);
      assert.ok(moved?.move, `${what}: its first step ran, on a pinned run`);
      assert.equal(moved.move.from, versionName(f.version(on)), `${what} started on ${on}`);
      const tasks = workflowTasks(run);
      assert.deepEqual(
        tasks.filter((t) => t.eventId < moved.eventId).map((t) => t.buildId),
        [on],
        `${what}: one task on ${on} (its start and the first step)`,
      );
      if (moved.move.to) {
        on = moved.move.to.split(':')[1];
        moves.push(`${moved.move.from} -> ${moved.move.to}`);
        assert.ok(
          run.some((e) => e.workflowExecutionOptionsUpdatedEventAttributes?.versioningOverride?.pinned),
          `${what}: the override is in its history`,
        );
      }
      const after = tasks.filter((t) => t.eventId > moved.eventId);
      assert.ok(after.length > 1, `${what} went on after its first step`);
      assert.deepEqual(distinct(after.map((t) => t.buildId)), [on], `${what}: on ${on} after its first step`);
    }
    const [a, b, c] = ['A', 'B', 'C'].map((v) => versionName(f.version(v)));
    assert.deepEqual(moves, [`${a} -> ${b}`, `${b} -> ${c}`], 'moved A -> B, then B -> C');
    assert.ok(moveOf(runs[1])?.move?.to, 'the second run moved');
    // The runs on B and C had their GPU runs done by the unversioned GPU worker.
    for (const run of runs.slice(1)) {
      const scheduled = run.filter((e) => e.activityTaskScheduledEventAttributes);
      assert.ok(
        scheduled.some((e) => e.activityTaskScheduledEventAttributes!.taskQueue?.name === f.gpuTaskQueue),
        'GPU runs scheduled after the move',
      );
      assert.equal(
        run.filter((e) => e.activityTaskCompletedEventAttributes).length,
        scheduled.length,
        'every activity completed, the GPU runs included',
      );
    }
    carriedOn(f, status, runs);
  } finally {
    await f.close();
  }
});

test('turning versioning on: the first current version takes running unversioned campaigns over at once', async () => {
  const f = await fleet();
  try {
    await f.unversioned();
    const result = await f.start(EXPERIMENTS);
    // A made current while the first run is mid-experiment (its baseline waits to train). The unversioned worker
    // keeps polling: the server sends the campaign's tasks to the current version all the same.
    await f.whileHeld(() => f.deploy('A'));
    const status = await result();
    const runs = await f.runs();

    // Its first run: unversioned tasks, then A's to its end (A replayed the unversioned history mid-run).
    const first = workflowTasks(runs[0]).map((t) => t.buildId);
    const takeover = first.indexOf('A');
    assert.ok(takeover > 0, `the first run started unversioned and A took it over (${first.join(' ')})`);
    assert.deepEqual(distinct(first.slice(0, takeover)), [UNVERSIONED]);
    assert.deepEqual(distinct(first.slice(takeover)), ['A'], 'never back to the unversioned worker');
    assert.ok(runs.length >= 2, 'it continued as new');
    for (const run of runs.slice(1)) {
      assert.deepEqual(distinct(workflowTasks(run).map((t) => t.buildId)), ['A'], 'later runs pinned to A');
      assert.deepEqual(moveOf(run)?.move, { from: versionName(f.version('A')), to: null }, 'nothing to move');
    }
    carriedOn(f, status, runs);
  } finally {
    await f.close();
  }
});

test('nightlab worker --build-id B --set-current makes B current once it polls (a private server)', async () => {
  const usage = nightlab(['worker', '--set-current'], { TEMPORAL_ADDRESS: '127.0.0.1:1' });
  assert.equal((await usage.exited).code, 2, usage.output());
  assert.match(usage.output(), /--set-current needs --build-id/);

  // A server of its own: a current version on the default task queue would take every campaign of the suite's.
  const dir = tempDir('nightlab-versioning-');
  const server = await PrivateServer.create(path.join(dir, 'server'));
  const env = { TEMPORAL_ADDRESS: server.address, NIGHTLAB_HOME: path.join(dir, 'home') };
  const workers: Proc[] = [];
  const client = await connectClient(server.address);
  const current = async () =>
    (
      await client.workflowService.describeWorkerDeployment({
        namespace: DEFAULT_NAMESPACE,
        deploymentName: 'nightlab',
      })
    ).workerDeploymentInfo?.routingConfig?.currentDeploymentVersion?.buildId;
  try {
    workers.push(await startWorker('worker', env, ['--build-id', 'A', '--set-current']));
    await waitFor('A current', () => /nightlab:A is the current version/.test(workers[0].output()), 120_000);
    assert.equal(await current(), 'A');
    // The same from the environment.
    workers.push(await startWorker('worker', { ...env, NIGHTLAB_BUILD_ID: 'B' }, ['--set-current']));
    await waitFor('B current', () => /nightlab:B is the current version/.test(workers[1].output()), 120_000);
    assert.equal(await current(), 'B');
  } finally {
    for (const w of workers) await w.kill('SIGINT');
    await client.connection.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
