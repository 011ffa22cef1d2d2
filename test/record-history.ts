// Re-records the replay fixtures in test/fixtures/histories/: real campaigns on a real server with
// the current workflow code, each run's history saved as JSON (the format of
// `temporal workflow show -o json`). test/replay.test.ts replays them against the workflow code of
// every later commit, so a change that would break a running campaign fails CI.
//
//   npx tsx test/record-history.ts              # every scenario
//   npx tsx test/record-history.ts crash-keep   # one of them
//
// Uses the server at TEMPORAL_ADDRESS when one answers, else starts a dev server of its own.
// Re-record only when a change is meant to be incompatible and is shipped with a new workflow
// name or after every running campaign has finished (see docs/upgrading.md).
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { historyToJSON } from './history-json';
import { serverForTools } from '../ops/server';
import { campaignWorkflowId, type CampaignSnapshot } from '../common/shared';
import { experiments } from '../lib/ledger';
import type { CampaignConfigInput } from '../common/config';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const HISTORIES_DIR = path.join(ROOT, 'test', 'fixtures', 'histories');

interface Scenario {
  name: string;
  what: string;
  run(): Promise<{ tag: string; status: CampaignSnapshot; statuses: string }>;
}

const server = await serverForTools({ port: 19433, log: console.error });
// The test helpers read TEMPORAL_ADDRESS when they load: after the server is known.
const { lab, makeRepo, plannedProposer, waitFor } = await import('./helpers');
const { statusQuery, pauseSignal, resumeSignal, steerUpdate } = await import('../workflows/messages');

const { fleet } = await import('./versioned-fleet');

const statusWords = (dir: string) =>
  experiments(dir)
    .sort((a, b) => a.experiment - b.experiment)
    .map((r) => `${r.experiment}:${r.status}`)
    .join(' ');

type Lab = Awaited<ReturnType<typeof lab>>;
type Started = Awaited<ReturnType<Lab['start']>>;

/**
 * One planned campaign (command proposer, quadratic target, no sandbox) in a lab of its own:
 * `during` may steer it while it runs; returns what the recording needs once it ends.
 */
async function plannedCampaign(o: {
  slots?: number;
  plan: Parameters<typeof plannedProposer>[0];
  config: Partial<CampaignConfigInput>;
  historyEventsLimit?: number;
  during?: (c: Started, l: Lab) => Promise<void>;
}): Promise<{ tag: string; status: CampaignSnapshot; statuses: string }> {
  const l = await lab(
    o.slots ? { slots: Array.from({ length: o.slots }, (_, i) => ({ name: `cpu${i}`, devices: null })) } : {},
  );
  try {
    const c = await l.start(
      await makeRepo(),
      {
        proposer: plannedProposer(o.plan),
        sandbox: 'off',
        ...o.config,
      },
      { historyEventsLimit: o.historyEventsLimit },
    );
    await o.during?.(c, l);
    const status = await c.result();
    return { tag: c.tag, status, statuses: statusWords(c.campaignDir) };
  } finally {
    await l.close();
  }
}

const SCENARIOS: Scenario[] = [
  {
    name: 'crash-keep',
    what: 'a keep, a crash, a fix of the crash that is kept, a discard; a steer update and a pause/resume mid-campaign',
    run: () =>
      plannedCampaign({
        plan: {
          1: { LEARNING_RATE: 0.2, desc: 'lower learning rate' },
          2: { mode: 1, desc: 'a change that crashes' },
          3: { mode: 0, WIDTH: 12, desc: 'fix the crash; width 12' },
          4: { LEARNING_RATE: 0.9, desc: 'much higher learning rate' },
        },
        config: {
          lookahead: 0,
          budget: { maxExperiments: 4 },
          noise: { baselineRuns: 1 },
          crash: { maxFixAttempts: 1 },
          run: { command: 'python3 train.py', env: { QUAD_SLEEP: '0.5' }, timeoutSec: 60 },
        },
        async during(c, l) {
          const handle = l.client.workflow.getHandle(campaignWorkflowId(c.tag));
          await waitFor('experiment 1 recorded', () => experiments(c.campaignDir).some((r) => r.experiment === 1));
          await handle.executeUpdate(steerUpdate, {
            args: [{ note: 'recorded for the replay fixtures: try the width next' }],
          });
          await handle.signal(pauseSignal);
          await waitFor('paused', async () => (await handle.query(statusQuery)).state === 'paused');
          await handle.signal(resumeSignal);
        },
      }),
  },
  {
    name: 'continue-as-new',
    what: 'parallelism 2 with lookahead 2 on two slots, a noisy target (two baseline runs), a keep, a proposal rebased onto it and confirmed with fresh seeds while the best is re-run, a rebase conflict proposed again; continued as new every ~60 events',
    run: () =>
      plannedCampaign({
        slots: 2,
        plan: {
          1: { LEARNING_RATE: 0.2, desc: 'lower learning rate' },
          2: { WIDTH: 12, desc: 'width 12', delay: 0.3 },
          3: { LEARNING_RATE: 0.15, desc: 'learning rate 0.15', delay: 0.6 },
          4: { WIDTH: 16, desc: 'width 16', delay: 0.9 },
          5: { WIDTH: 20, desc: 'width 20' },
          6: { LEARNING_RATE: 0.12, desc: 'learning rate 0.12' },
        },
        config: {
          parallelism: 2,
          lookahead: 2,
          budget: { maxExperiments: 6 },
          noise: { baselineRuns: 2, confirmRuns: 2, bestRuns: 3 },
          run: { command: 'python3 train.py', env: { QUAD_NOISE: '0.01', QUAD_SLEEP: '1' }, timeoutSec: 60 },
        },
        historyEventsLimit: 60,
      }),
  },
  {
    name: 'rebase-while-queued',
    what: 'the default lookahead (2 x parallelism): two proposals wait while a keep trains; both are rebased at once without a slot, one conflicts and is proposed again while the other trains; keeps adopted at the decision (patched rebase-while-queued and keep-at-decision)',
    run: () =>
      plannedCampaign({
        plan: {
          1: { WIDTH: 16, desc: 'wider' },
          2: { WIDTH: 12, desc: 'width 12', delay: 0.3 },
          '2/1': { WIDTH: 14, desc: 'width 14, on the new best', delay: 3 },
          3: { LEARNING_RATE: 0.2, desc: 'lower lr', delay: 0.6 },
        },
        config: {
          budget: { maxExperiments: 3 },
          noise: { baselineRuns: 1 },
          run: { command: 'python3 train.py', env: { QUAD_SLEEP: '1' }, timeoutSec: 60 },
        },
      }),
  },
  {
    name: 'suspect-gain',
    what: 'a noisy target (three baseline runs) and a first gain of hundreds of noise sigmas: never kept on one run, confirmed with fresh runs on clean caches while the best is re-run, kept and flagged (patched suspect-gains); then an ordinary discard',
    run: () =>
      plannedCampaign({
        plan: {
          1: { LEARNING_RATE: 0.12, WIDTH: 20, desc: 'the optimum at once' },
          2: { WIDTH: 24, desc: 'width 24' },
        },
        config: {
          lookahead: 0,
          budget: { maxExperiments: 2 },
          noise: { baselineRuns: 3, confirmRuns: 2, bestRuns: 4 },
          run: { command: 'python3 train.py', env: { QUAD_NOISE: '0.001' }, timeoutSec: 60 },
        },
      }),
  },
  {
    name: 'activity-names',
    what: 'recorded after the workflow was split into modules and runs were scheduled as `run` (patched activity-names): two slots, a noisy target, a keep confirmed while the best is re-run, a crash, a discard',
    run: () =>
      plannedCampaign({
        slots: 2,
        plan: {
          1: { LEARNING_RATE: 0.2, desc: 'lower learning rate' },
          2: { mode: 1, desc: 'a change that crashes', delay: 0.3 },
          3: { LEARNING_RATE: 0.9, desc: 'much higher learning rate' },
        },
        config: {
          parallelism: 2,
          lookahead: 1,
          budget: { maxExperiments: 3 },
          crash: { maxFixAttempts: 0 },
          noise: { baselineRuns: 2, confirmRuns: 2, bestRuns: 3 },
          run: { command: 'python3 train.py', env: { QUAD_NOISE: '0.01', QUAD_SLEEP: '0.5' }, timeoutSec: 60 },
        },
      }),
  },
  {
    name: 'sequential-judging',
    what: 'judged run by run (patched sequential-judging): two slots, a noisy target, a gain inside the noise given more runs while the best is re-run, a clear win kept on one run, a crash',
    run: () =>
      plannedCampaign({
        slots: 2,
        plan: {
          1: { LEARNING_RATE: 0.28, desc: 'slightly lower learning rate' },
          2: { mode: 1, desc: 'a change that crashes', delay: 0.3 },
          3: { LEARNING_RATE: 0.12, WIDTH: 20, desc: 'the optimum' },
        },
        config: {
          parallelism: 2,
          lookahead: 1,
          budget: { maxExperiments: 3 },
          crash: { maxFixAttempts: 0 },
          noise: { baselineRuns: 3, confirmRuns: 3, bestRuns: 4 },
          run: { command: 'python3 train.py', env: { QUAD_NOISE: '0.01', QUAD_SLEEP: '0.5' }, timeoutSec: 60 },
        },
      }),
  },
  {
    name: 'search',
    what: "the search (patched search) and promotion: a noisy target, a keep promoted beside the baseline, a proposal of the baseline's files reused without a run, a second keep, then an ablation of the first judged with its slack",
    run: () =>
      plannedCampaign({
        plan: {
          1: { WIDTH: 16, desc: 'wider' },
          2: { WIDTH: 8, desc: 'back to width 8' },
          3: { LEARNING_RATE: 0.2, desc: 'lower learning rate' },
          4: { WIDTH: 12, desc: 'unused: an ablation (seed 0 draws it)' },
        },
        config: {
          lookahead: 0,
          budget: { maxExperiments: 4 },
          noise: { baselineRuns: 2, confirmRuns: 2, bestRuns: 3 },
          search: { combine: 0, ablate: 0.9, revisit: 0 },
          promote: { env: { QUAD_SLEEP: '0.2' } },
          run: { command: 'python3 train.py', env: { QUAD_NOISE: '0.001', QUAD_SLEEP: '0.3' }, timeoutSec: 60 },
        },
      }),
  },
  {
    name: 'versioning',
    what:
      'Worker Versioning: started on orchestrator version A, B made current during the first run; the continued ' +
      'run starts on A, its first step moves it to B (patched versioning) and B goes on',
    async run() {
      const f = await fleet();
      try {
        await f.deploy('A');
        const result = await f.start(4);
        await f.whileHeld(() => f.deploy('B'));
        return { tag: f.tag, status: await result(), statuses: statusWords(f.campaignDir) };
      } finally {
        await f.close();
      }
    },
  },
];

const only = process.argv.slice(2);
const { connectClient } = await import('../ops/connection');
const client = await connectClient(server.address);
mkdirSync(HISTORIES_DIR, { recursive: true });
try {
  for (const s of SCENARIOS.filter((x) => !only.length || only.includes(x.name))) {
    console.log(`recording ${s.name}: ${s.what}`);
    const { tag, status, statuses } = await s.run();
    // Every run of the workflow, oldest first: the first and each one continued as new.
    const runs: { runId: string; start: number }[] = [];
    for await (const wf of client.workflow.list({ query: `WorkflowId = '${campaignWorkflowId(tag)}'` }))
      runs.push({ runId: wf.runId, start: wf.startTime.getTime() });
    runs.sort((a, b) => a.start - b.start);
    for (const f of readdirSync(HISTORIES_DIR))
      if (f.startsWith(`${s.name}.`) && f.endsWith('.json')) rmSync(path.join(HISTORIES_DIR, f));
    for (const [i, r] of runs.entries()) {
      const history = await client.workflow.getHandle(campaignWorkflowId(tag), r.runId).fetchHistory();
      const file = path.join(HISTORIES_DIR, `${s.name}.${i + 1}.json`);
      writeFileSync(file, `${historyToJSON(history)}\n`);
      console.log(`  ${path.relative(ROOT, file)}: ${history.events?.length} events`);
    }
    console.log(
      `  ${status.state}: ${status.experiments} experiments, ${status.kept} kept, ${status.crashes} crashed; ${statuses}`,
    );
  }
} finally {
  await client.connection.close();
  await server.stop();
}
process.exit(0);
