// A fleet for Worker Versioning tests and fixtures (test/versioning.test.ts, test/record-history.ts): task queues
// and a worker deployment of its own on the suite's server, an unversioned GPU worker, orchestrator workers added
// by version, and one planned campaign that continues as new every HISTORY_EVENTS_LIMIT events.
import { rmSync } from 'node:fs';
import path from 'node:path';
import type { Worker } from '@temporalio/worker';
import type { temporal } from '@temporalio/proto';
import { ADDRESS, QUADRATIC_CONFIG, makeRepo, plannedProposer, tempDir, uniqueTag } from './helpers';
import { TrainingHold } from './processes';
import { connectClient, connectWorker } from '../ops/connection';
import { createOrchestratorWorker, setCurrentVersion, type OrchestratorVersion } from '../workers/orchestrator';
import { createGpuWorkers } from '../gpu-worker/worker';
import { parseConfig } from '../common/config';
import { prepareStart, startCampaign } from '../client/campaigns';
import { campaignWorkflowId, DEFAULT_NAMESPACE, type CampaignSnapshot } from '../common/shared';
import { experiments } from '../lib/ledger';

type Event = temporal.api.history.v1.IHistoryEvent;

/** Events per run before it continues as new: a few experiments each. */
const HISTORY_EVENTS_LIMIT = 70;

/**
 * The fleet: orchestrator workers are added by `deploy` (a version, made current once it polls) or `unversioned`;
 * `start` starts its campaign (planned edits of the quadratic target, one at a time); `hold` holds its training
 * runs, so that a test deploys while a run of the campaign is surely mid-experiment.
 */
export async function fleet() {
  const id = uniqueTag('ver');
  const taskQueue = `orch-${id}`;
  const gpuTaskQueue = `gpu-${id}`;
  const deploymentName = `nightlab-test-${id}`;
  const workflowId = campaignWorkflowId(id);
  const home = tempDir('nightlab-home-');
  const client = await connectClient(ADDRESS);
  const connection = await connectWorker(ADDRESS);
  const workers: Worker[] = [];
  const running: Promise<void>[] = [];
  const add = (w: Worker) => {
    workers.push(w);
    running.push(w.run());
  };
  for (const w of await createGpuWorkers({
    connection,
    home,
    slots: [{ name: 'cpu', devices: null }],
    taskQueue: gpuTaskQueue,
  }))
    add(w);
  const f = {
    tag: id,
    campaignDir: '',
    gpuTaskQueue,
    hold: new TrainingHold(path.join(home, 'hold')),
    version: (buildId: string): OrchestratorVersion => ({ deploymentName, buildId }),
    async unversioned() {
      add(await createOrchestratorWorker({ connection, taskQueue }));
    },
    /** A worker of version `buildId`, made current; returns when it is. */
    async deploy(buildId: string): Promise<number> {
      add(await createOrchestratorWorker({ connection, taskQueue, version: f.version(buildId) }));
      await setCurrentVersion(connection, DEFAULT_NAMESPACE, f.version(buildId));
      return Date.now();
    },
    async start(count: number): Promise<() => Promise<CampaignSnapshot>> {
      const plan = Object.fromEntries(
        Array.from({ length: count }, (_, i) => [i + 1, { LEARNING_RATE: 0.3 - 0.02 * i, desc: `lr ${i + 1}` }]),
      );
      const config = parseConfig(
        {
          ...QUADRATIC_CONFIG,
          proposer: plannedProposer(plan),
          sandbox: 'off',
          lookahead: 0,
          budget: { maxExperiments: count },
          noise: { baselineRuns: 1 },
          run: f.hold.run({ QUAD_SLEEP: '0.3' }, 60),
        },
        'test',
      );
      const input = await prepareStart({ config, baseDir: await makeRepo(), tag: id, home });
      f.campaignDir = input.campaignDir;
      const handle = await startCampaign(
        client,
        { ...input, gpuTaskQueue },
        { taskQueue, historyEventsLimit: HISTORY_EVENTS_LIMIT },
      );
      return () => handle.result() as Promise<CampaignSnapshot>;
    },
    /** Runs `fn` while the campaign's next training run waits for it (the hold engaged, a run held). */
    async whileHeld<T>(fn: () => Promise<T>): Promise<T> {
      f.hold.engage();
      try {
        await f.hold.heldPid();
        return await fn();
      } finally {
        f.hold.release();
      }
    },
    /** The experiments recorded so far, by number. */
    recorded: () =>
      experiments(f.campaignDir)
        .map((r) => r.experiment)
        .sort((a, b) => a - b),
    /** Every run of the campaign, oldest first, with its history. */
    async runs(): Promise<Event[][]> {
      const found: { runId: string; start: number }[] = [];
      for await (const wf of client.workflow.list({ query: `WorkflowId = '${workflowId}'` }))
        found.push({ runId: wf.runId, start: wf.startTime.getTime() });
      found.sort((a, b) => a.start - b.start);
      return Promise.all(
        found.map(async (r) => (await client.workflow.getHandle(workflowId, r.runId).fetchHistory()).events ?? []),
      );
    },
    async close() {
      f.hold.release();
      const h = client.workflow.getHandle(workflowId);
      if ((await h.describe().catch(() => null))?.status.name === 'RUNNING') await h.terminate('test finished');
      workers.forEach((w) => w.shutdown());
      await Promise.allSettled(running);
      await connection.close();
      await client.connection.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
  return f;
}

export type Fleet = Awaited<ReturnType<typeof fleet>>;
