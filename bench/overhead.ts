// bench:overhead — what the engine costs per experiment when neither the proposer nor the trainer
// costs anything: an instant proposer (`mutate`) and a no-op trainer (sh + awk, a few ms), against
// autoresearch's loop as a bash script in a scratch clone doing the same git work per experiment.
//
//   npm run bench:overhead            (BENCH_N experiments per system, default 30)
//
// Figures (one line per system):
//   per-experiment   wall time of N experiments / N (the baseline excluded; for Nightlab from the
//                    baseline's record to the last experiment's record)
//   orchestration    per-experiment minus the trainer's own time (measured alone, same machine)
// Nightlab is measured twice: lookahead 0 (strictly one experiment after another, like the shell
// loop: the figure held to the target) and the default lookahead (2 x parallelism = 2: the next
// proposals are made while one trains).
// A profile of the strictly sequential run follows: where each experiment's time goes, read from
// the workflow history, and the git/ledger/preflight steps of an experiment timed one by one.
import { RUN_ACTIVITY, RUN_ACTIVITY_NAMES } from '../common/shared';
import { figure } from './harness';
import { serverForTools } from '../ops/server';
import {
  benchConfig,
  benchConnections,
  benchLab,
  envNumber,
  experimentRows,
  f0,
  f1,
  historyFacts,
  machineLine,
  makeBenchRepo,
  percentile,
  removeTempDirs,
  sum,
  TRAINER,
  type BenchLab,
  type HistoryFacts,
} from './lib';
import { shellLoop, trainerAloneMs } from './shell-loop';
import { stepProfile } from './steps';

const N = envNumber('BENCH_N', 30);
const TARGET_MS = 300;

interface NightlabRun {
  label: string;
  perExperimentMs: number;
  experiments: number;
  kept: number;
  facts: HistoryFacts;
  rows: ReturnType<typeof experimentRows>;
}

async function nightlab(l: BenchLab, label: string, lookahead: number | null): Promise<NightlabRun> {
  const repo = await makeBenchRepo();
  const c = await l.start(repo, benchConfig({ lookahead, budget: { maxExperiments: N } }));
  const status = await c.result();
  const rows = experimentRows(c.campaignDir);
  const base = rows.find((r) => r.experiment === 0)!;
  const last = Math.max(...rows.map((r) => Date.parse(r.finishedAt)));
  const facts = await historyFacts(l.client, c.workflowId);
  return {
    label,
    perExperimentMs: (last - Date.parse(base.finishedAt)) / status.experiments,
    experiments: status.experiments,
    kept: status.kept,
    facts,
    rows,
  };
}

/** Where a strictly sequential experiment's time goes, from the history's event times. */
function historyProfile(run: NightlabRun): Record<string, number> {
  const acts = run.facts.activities.filter((a) => a.started !== null && a.closed !== null);
  const perExp = (xs: number[]) => sum(xs) / run.experiments;
  const ofType = (t: string) =>
    acts.filter(
      (a) =>
        (t === RUN_ACTIVITY ? RUN_ACTIVITY_NAMES.includes(a.type) : a.type === t) &&
        !/^experiment 0[ :]/.test(a.summary) &&
        !a.summary.includes('baseline'),
    );
  const execMs = (t: string) => perExp(ofType(t).map((a) => a.closed! - a.started!));
  const queueMs = perExp(
    acts
      .filter((a) => a.type !== 'prepareCampaign' && !a.summary.startsWith('experiment 0'))
      .map((a) => a.started! - a.scheduled),
  );
  return {
    propose: execMs('propose'),
    rebase: execMs('rebaseCandidate'),
    train: execMs(RUN_ACTIVITY),
    record: execMs('recordExperiment'),
    advanceBranch: execMs('advanceBranch'),
    queue: queueMs,
  };
}

async function main(): Promise<void> {
  const server = await serverForTools({ port: 19233, log: console.error });
  const conn = await benchConnections(server.address);
  const { client, connection } = conn;
  let l: BenchLab | null = null;
  try {
    console.log(
      `bench:overhead — ${N} experiments per system, instant proposer (mutate), no-op trainer (${TRAINER}: sh + awk)`,
    );
    console.log(machineLine());
    l = await benchLab({ client, connection, slots: 1 });
    // Warm-up: the workflow bundle, the server's task queues, the first git calls.
    await (await l.start(await makeBenchRepo(), benchConfig({ budget: { maxExperiments: 2 } }))).result();

    const repo = await makeBenchRepo();
    const trainerMs = await trainerAloneMs(repo, 20);
    const shell = await shellLoop(repo, N);
    const shellMs = shell.wallMs / shell.experiments;
    const serial = await nightlab(l, '0', 0);
    const piped = await nightlab(l, '2 (default)', null);

    console.log('');
    figure('shell-loop', {
      'per-experiment': `${f1(shellMs)} ms`,
      orchestration: `${f1(shellMs - trainerMs)} ms`,
      trainer: `${f1(trainerMs)} ms`,
      experiments: `${shell.experiments} (${shell.kept} kept)`,
    });
    for (const r of [serial, piped]) {
      figure(`nightlab`, {
        lookahead: r.label,
        'per-experiment': `${f1(r.perExperimentMs)} ms`,
        orchestration: `${f1(r.perExperimentMs - trainerMs)} ms`,
        'vs shell-loop': `${f1((r.perExperimentMs - trainerMs) / (shellMs - trainerMs))}x orchestration, ${f1(r.perExperimentMs / shellMs)}x per-experiment`,
        experiments: `${r.experiments} (${r.kept} kept)`,
        target: `${r.perExperimentMs - trainerMs <= TARGET_MS ? 'met' : 'NOT met'} (<= ${TARGET_MS} ms)`,
      });
    }

    // Profile of the strictly sequential run: per experiment, mean ms.
    const p = historyProfile(serial);
    const accounted = p.propose + p.rebase + p.train + p.record + p.advanceBranch + p.queue;
    console.log('');
    console.log(
      `where a sequential Nightlab experiment's ${f0(serial.perExperimentMs)} ms go (from its workflow history, mean per experiment):`,
    );
    console.log(
      `  activities running: propose ${f0(p.propose)} ms, run ${f0(p.train)} ms, recordExperiment ${f0(p.record)} ms, advanceBranch ${f0(p.advanceBranch)} ms, rebaseCandidate ${f0(p.rebase)} ms`,
    );
    console.log(`  activity tasks waiting for a worker (scheduled -> started): ${f0(p.queue)} ms`);
    console.log(
      `  the rest (workflow tasks between activities, history writes): ${f0(serial.perExperimentMs - accounted)} ms`,
    );
    const wft = serial.facts.workflowTaskMs;
    console.log(
      `  workflow tasks: ${f1(serial.facts.workflowTasks / (serial.experiments + 1))} per experiment, scheduled -> completed p50 ${f0(percentile(wft, 50))} ms, p99 ${f0(percentile(wft, 99))} ms; history ${f1(serial.facts.events / (serial.experiments + 1))} events per experiment`,
    );

    const steps0 = await stepProfile(7, 0);
    const steps1k = await stepProfile(5, 1000);
    console.log('');
    console.log(
      'the steps of one experiment outside Temporal, median ms (the ledger-reading ones also with 1000 experiments recorded, 4 KB log tails):',
    );
    const bare = (k: string) => k.replace(/ \(\d+ rows before\)/, '');
    for (const [k, v] of Object.entries(steps0)) {
      const big = Object.entries(steps1k).find(([k2]) => bare(k2) === bare(k))?.[1];
      const ledger = /ledger/.test(k);
      console.log(
        `  ${bare(k).padEnd(78)} ${f1(v).padStart(6)} ms${ledger ? `   ${f1(big ?? NaN)} ms at 1000 experiments` : ''}`,
      );
    }
  } finally {
    await l?.close();
    await conn.close();
    await server.stop();
    removeTempDirs();
  }
}

await main();
