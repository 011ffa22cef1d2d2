// Worker Versioning (docs/upgrading.md): one campaign, orchestrator versions A, B and C on one task queue of a
// deployment of its own, an unversioned GPU worker. The campaign starts on A; B is made current while its first
// run is mid-experiment, C while its second is. Each run's workflow tasks must stay on the version it started
// on until its first step moves it to the current one: never a version change mid-history, never a
// nondeterminism error, and the experiments go on numbering across the moves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { Worker } from '@temporalio/worker';
import { defaultPayloadConverter } from '@temporalio/common';
import { tsToMs } from '@temporalio/common/lib/time';
import type { temporal } from '@temporalio/proto';
import { ADDRESS, QUADRATIC_CONFIG, makeRepo, plannedProposer, tempDir, uniqueTag, waitFor } from './helpers';
import { connectClient, connectWorker } from '../ops/connection';
import { createOrchestratorWorker, setCurrentVersion, type OrchestratorVersion } from '../workers/orchestrator';
import { createGpuWorkers } from '../gpu-worker/worker';
import { parseConfig } from '../common/config';
import { prepareStart, startCampaign } from '../client/campaigns';
import { campaignWorkflowId, DEFAULT_NAMESPACE, type CampaignSnapshot } from '../common/shared';
import { experiments } from '../lib/ledger';
import { versionName, type VersionMove } from '../activities/versioning';

type Event = temporal.api.history.v1.IHistoryEvent;

/** Events per run before it continues as new: a few experiments each, so the campaign has three runs. */
const HISTORY_EVENTS_LIMIT = 70;
const EXPERIMENTS = 9;
const MOVE_ACTIVITY = 'moveToCurrentVersion';

/** The build id that completed each workflow task of a history, in order (with the completion's time). */
function workflowTasks(events: Event[]): { buildId: string; atMs: number; eventId: number }[] {
  return events.flatMap((e) => {
    const done = e.workflowTaskCompletedEventAttributes;
    return done
      ? [{ buildId: done.deploymentVersion?.buildId ?? '', atMs: tsToMs(e.eventTime), eventId: Number(e.eventId) }]
      : [];
  });
}

/** The result of the run's first step (null: unversioned), and the id of the event that completed it. */
function moveOf(events: Event[]): { move: VersionMove | null; eventId: number } | undefined {
  const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === MOVE_ACTIVITY);
  if (!scheduled) return undefined;
  const done = events.find(
    (e) => Number(e.activityTaskCompletedEventAttributes?.scheduledEventId) === Number(scheduled.eventId),
  );
  if (!done) return undefined;
  const payload = done.activityTaskCompletedEventAttributes!.result!.payloads![0];
  return { move: defaultPayloadConverter.fromPayload(payload), eventId: Number(done.eventId) };
}

test('a campaign moves A -> B -> C at continue-as-new, each run on one version; GPU runs unversioned', async () => {
  const id = uniqueTag('ver');
  const taskQueue = `orch-${id}`;
  const gpuTaskQueue = `gpu-${id}`;
  const deploymentName = `nightlab-test-${id}`;
  const version = (buildId: string): OrchestratorVersion => ({ deploymentName, buildId });
  const home = tempDir('nightlab-home-');
  const client = await connectClient(ADDRESS);
  const connection = await connectWorker(ADDRESS);
  const workers: Worker[] = [];
  const running: Promise<void>[] = [];
  const startWorker = (w: Worker) => {
    workers.push(w);
    running.push(w.run());
  };
  /** An orchestrator worker of version `buildId`, made current once it polls; returns when it is. */
  async function deploy(buildId: string): Promise<number> {
    startWorker(await createOrchestratorWorker({ connection, taskQueue, version: version(buildId) }));
    await setCurrentVersion(connection, DEFAULT_NAMESPACE, version(buildId));
    return Date.now();
  }
  const workflowId = campaignWorkflowId(id);
  async function runs(): Promise<{ runId: string; events: Event[] }[]> {
    const found: { runId: string; start: number }[] = [];
    for await (const wf of client.workflow.list({ query: `WorkflowId = '${workflowId}'` }))
      found.push({ runId: wf.runId, start: wf.startTime.getTime() });
    found.sort((a, b) => a.start - b.start);
    return Promise.all(
      found.map(async (r) => ({
        runId: r.runId,
        events: (await client.workflow.getHandle(workflowId, r.runId).fetchHistory()).events ?? [],
      })),
    );
  }
  const recorded = (campaignDir: string) => experiments(campaignDir).map((r) => r.experiment);

  try {
    for (const w of await createGpuWorkers({
      connection,
      home,
      slots: [{ name: 'cpu', devices: null }],
      taskQueue: gpuTaskQueue,
    }))
      startWorker(w);
    await deploy('A');

    const plan = Object.fromEntries(
      Array.from({ length: EXPERIMENTS }, (_, i) => [
        i + 1,
        { LEARNING_RATE: 0.3 - 0.02 * i, desc: `lr step ${i + 1}` },
      ]),
    );
    const config = parseConfig(
      {
        ...QUADRATIC_CONFIG,
        proposer: plannedProposer(plan),
        sandbox: 'off',
        lookahead: 0,
        budget: { maxExperiments: EXPERIMENTS },
        noise: { baselineRuns: 1 },
        run: { command: 'python3 train.py', env: { QUAD_SLEEP: '0.3' }, timeoutSec: 60 },
      },
      'test',
    );
    const input = await prepareStart({ config, baseDir: await makeRepo(), tag: id, home });
    const handle = await startCampaign(
      client,
      { ...input, gpuTaskQueue },
      { taskQueue, historyEventsLimit: HISTORY_EVENTS_LIMIT },
    );

    // B, while the first run is mid-experiment (the baseline recorded, experiment 1 under way).
    await waitFor('the baseline recorded', () => recorded(input.campaignDir).includes(0), 120_000);
    const bCurrentAt = await deploy('B');
    const firstRunWhenB = (await runs()).length;
    // C, once the second run has moved to B and recorded an experiment there.
    await waitFor(
      'the second run on B',
      async () => {
        const r = await runs();
        const moved = r[1] && moveOf(r[1].events);
        return (
          moved?.move?.to && workflowTasks(r[1].events).some((t) => t.buildId === 'B' && t.eventId > moved.eventId)
        );
      },
      120_000,
    );
    await deploy('C');

    const status = (await handle.result()) as CampaignSnapshot;
    const all = await runs();

    assert.equal(firstRunWhenB, 1, 'B became current during the first run');
    assert.ok(all.length >= 3, `three runs at least (${all.length})`);
    // No workflow task failed in any run: no nondeterminism when a version took a run over.
    for (const [i, r] of all.entries())
      assert.deepEqual(
        r.events
          .filter((e) => e.workflowTaskFailedEventAttributes)
          .map((e) => e.workflowTaskFailedEventAttributes!.cause),
        [],
        `run ${i + 1}: no workflow task failed`,
      );
    // Run 1: every task on A, even those after B became current.
    const first = workflowTasks(all[0].events);
    assert.deepEqual([...new Set(first.map((t) => t.buildId))], ['A'], 'the first run stays on A');
    assert.ok(
      first.some((t) => t.atMs > bCurrentAt),
      'the first run went on on A after B was current',
    );
    // Runs 2 and 3: their start on the version before, their first step the move, every later task on the new one.
    const expected = [
      ['A', 'B'],
      ['B', 'C'],
    ];
    for (const [i, [from, to]] of expected.entries()) {
      const run = all[i + 1].events;
      const moved = moveOf(run);
      assert.deepEqual(
        moved?.move,
        { from: versionName(version(from)), to: versionName(version(to)) },
        `run ${i + 2}: its first step moved it ${from} -> ${to}`,
      );
      const tasks = workflowTasks(run);
      assert.deepEqual(
        tasks.filter((t) => t.eventId < moved!.eventId).map((t) => t.buildId),
        [from],
        `run ${i + 2}: one task on ${from} (its start and the move)`,
      );
      const after = tasks.filter((t) => t.eventId > moved!.eventId);
      assert.ok(after.length > 1, `run ${i + 2} went on after the move`);
      assert.deepEqual([...new Set(after.map((t) => t.buildId))], [to], `run ${i + 2}: on ${to} after the move`);
      assert.ok(
        run.some((e) => e.workflowExecutionOptionsUpdatedEventAttributes?.versioningOverride?.pinned),
        `run ${i + 2}: the override is in its history`,
      );
    }
    // The runs that went on on B and C had their GPU runs done by the unversioned GPU worker.
    for (const r of all.slice(1, 3)) {
      const gpuRuns = r.events.filter(
        (e) => e.activityTaskScheduledEventAttributes?.taskQueue?.name === gpuTaskQueue,
      ).length;
      assert.ok(gpuRuns > 0, 'GPU runs scheduled after the move');
      assert.equal(
        r.events.filter((e) => e.activityTaskCompletedEventAttributes).length,
        r.events.filter((e) => e.activityTaskScheduledEventAttributes).length,
        'every activity completed, the GPU runs included',
      );
    }
    // The experiments carried on: one numbering across the moves, to the budget.
    assert.equal(status.state, 'completed');
    assert.deepEqual(
      recorded(input.campaignDir).sort((a, b) => a - b),
      Array.from({ length: EXPERIMENTS + 1 }, (_, n) => n),
    );
  } finally {
    const h = client.workflow.getHandle(workflowId);
    if ((await h.describe().catch(() => null))?.status.name === 'RUNNING') await h.terminate('test finished');
    workers.forEach((w) => w.shutdown());
    await Promise.allSettled(running);
    await connection.close();
    await client.connection.close();
    rmSync(home, { recursive: true, force: true });
  }
});
