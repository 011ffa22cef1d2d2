// bench:duty — the fraction of GPU-slot time spent training, when the proposer takes L seconds to
// think and a run trains for T seconds, for L = T/2 and L = T.
//
//   npm run bench:duty     (BENCH_T seconds of training per run, default 5; BENCH_N experiments per campaign, default 8)
//
// autoresearch  the sequential loop: think L, edit, commit, train T, keep or reset. Analytic
//               T / (L + T), and simulated: the bash loop of bench:overhead with `sleep L` as the
//               agent, on the same trainer.
// nightlab      one campaign per setting, each on a GPU slot of its own (parallelism 1), the
//               `mutate` proposer after L seconds of sleep, the trainer sleeping T. Measured from
//               the runs themselves: each run's trainer prints its start and end (epoch ms), and
//                 duty = sum of (end - start) / (slots x (last end - first start)).
//               "steady" starts at experiment 1's run; "from baseline" at the baseline's run, so it
//               also counts the campaign's start. Each setting runs with lookahead 1 (one
//               proposal ready per slot) and with the default lookahead (2 x parallelism = 2).
// The two bash loops run at the same time (they sleep nearly all the time); then the four
// Nightlab campaigns run one after another, each with its own orchestrator and GPU worker, so no
// campaign's gaps are lengthened by another's work on this 2-core machine. The trainer's own
// clock excludes process start-up, so the figures are conservative for both systems.
// Each Nightlab line is followed by where its gaps went, read from the workflow history.
import { RUN_ACTIVITY_NAMES } from '../common/shared';
import { figure } from './harness';
import { serverForTools } from '../ops/server';
import {
  benchConfig,
  benchConnections,
  benchLab,
  covered,
  envNumber,
  f0,
  f1,
  historyFacts,
  machineLine,
  makeBenchRepo,
  percentile,
  removeTempDirs,
  runSpans,
  sum,
  type ActivitySpan,
  type BenchLab,
  type RunSpan,
} from './lib';
import { shellLoop } from './shell-loop';

const T = envNumber('BENCH_T', 5);
const N = envNumber('BENCH_N', 8);
/** The simulated sequential loop needs few runs: it has nothing to amortise. */
const SHELL_N = Math.min(N, 5);
const TARGET = 97;

interface Duty {
  steady: number;
  whole: number;
  gapsMs: number[];
}

/** Duty from run spans on `slots` slots; the steady window starts at the first non-baseline run. */
function duty(spans: RunSpan[], slots: number): Duty {
  const exp = spans.filter((s) => s.experiment > 0);
  const window = (xs: RunSpan[]) => slots * (Math.max(...xs.map((s) => s.t1)) - Math.min(...xs.map((s) => s.t0)));
  const bySlot = new Map<string, RunSpan[]>();
  for (const s of exp) bySlot.set(s.slot, [...(bySlot.get(s.slot) ?? []), s]);
  const gapsMs: number[] = [];
  for (const xs of bySlot.values()) {
    const sorted = xs.sort((a, b) => a.t0 - b.t0);
    for (let i = 1; i < sorted.length; i++) gapsMs.push(sorted[i].t0 - sorted[i - 1].t1);
  }
  return { steady: (100 * covered(exp)) / window(exp), whole: (100 * covered(spans)) / window(spans), gapsMs };
}

/**
 * Where the gaps between a slot's runs went, median ms per part: the GPU worker finishing a run,
 * the workflow deciding and starting the next (a rebase after a keep included), the task queue,
 * and the GPU worker preparing the next run (fetch, checkout, locked-file hashes, spawn).
 */
function gapParts(spans: RunSpan[], activities: ActivitySpan[]): Record<string, number[]> {
  const runOf = new Map<string, ActivitySpan>();
  for (const a of activities) {
    const m = /^experiment (\d+)(?: run (\d+))?:/.exec(a.summary);
    if (RUN_ACTIVITY_NAMES.includes(a.type) && m && a.closed !== null && a.started !== null)
      runOf.set(`${m[1]}/${m[2] ?? 0}`, a);
  }
  const parts: Record<string, number[]> = {
    'run end -> activity completed': [],
    'completed -> next run scheduled': [],
    'scheduled -> started': [],
    'started -> trainer start': [],
  };
  const sorted = [...spans].sort((a, b) => a.t0 - b.t0);
  for (let i = 1; i < sorted.length; i++) {
    const prev = runOf.get(`${sorted[i - 1].experiment}/${sorted[i - 1].run}`);
    const next = runOf.get(`${sorted[i].experiment}/${sorted[i].run}`);
    if (!prev || !next || sorted[i - 1].experiment === 0) continue;
    parts['run end -> activity completed'].push(prev.closed! - sorted[i - 1].t1);
    parts['completed -> next run scheduled'].push(next.scheduled - prev.closed!);
    parts['scheduled -> started'].push(next.started! - next.scheduled);
    parts['started -> trainer start'].push(sorted[i].t0 - next.started!);
  }
  return parts;
}

async function main(): Promise<void> {
  const server = await serverForTools({ port: 19233, log: console.error });
  const conn = await benchConnections(server.address);
  const labs: BenchLab[] = [];
  try {
    console.log(
      `bench:duty — T = ${T} s of training per run, ${N} experiments per campaign, each campaign on one GPU slot of its own`,
    );
    console.log(machineLine());
    const shellResults = await Promise.all(
      [T / 2, T].map(async (L) => ({
        L,
        r: await shellLoop(await makeBenchRepo(), SHELL_N, { thinkSec: L, sleepSec: T }),
      })),
    );
    const results = [];
    for (const L of [T / 2, T]) {
      for (const lookahead of [1, null]) {
        const l = await benchLab({
          client: conn.client,
          connection: conn.connection,
          slots: 1,
          proposerLatencyMs: L * 1000,
        });
        labs.push(l);
        const c = await l.start(
          await makeBenchRepo(),
          benchConfig({ sleepSec: T, parallelism: 1, lookahead, budget: { maxExperiments: N } }),
        );
        const s = await c.result();
        const spans = runSpans(c.campaignDir);
        const parts = gapParts(spans, (await historyFacts(conn.client, c.workflowId)).activities);
        results.push({ L, lookahead, d: duty(spans, 1), parts, kept: s.kept, experiments: s.experiments });
        await l.close();
        labs.splice(labs.indexOf(l), 1);
      }
    }

    for (const L of [T / 2, T]) {
      const shell = shellResults.find((x) => x.L === L)!.r;
      const shellDuty =
        (100 * covered(shell.spans)) /
        (Math.max(...shell.spans.map((s) => s.t1)) - Math.min(...shell.spans.map((s) => s.t0)));
      const analytic = (100 * T) / (L + T);
      console.log(`\nL = ${L} s, T = ${T} s (L = ${L === T ? 'T' : 'T/2'}):`);
      figure('autoresearch', {
        duty: `${f1(analytic)} % (T/(L+T))`,
        simulated: `${f1(shellDuty)} % (bash loop, ${shell.experiments} runs, first run to last)`,
      });
      for (const r of results.filter((x) => x.L === L)) {
        figure('nightlab', {
          lookahead: r.lookahead === null ? '2 (default, 2 x P)' : String(r.lookahead),
          duty: `${f1(r.d.steady)} % steady`,
          'from baseline': `${f1(r.d.whole)} %`,
          'gap between runs': `p50 ${f0(percentile(r.d.gapsMs, 50))} ms, mean ${f0(sum(r.d.gapsMs) / r.d.gapsMs.length)} ms, max ${f0(Math.max(...r.d.gapsMs))} ms`,
          'vs autoresearch': `${(r.d.steady / analytic).toFixed(2)}x`,
          experiments: `${r.experiments} (${r.kept} kept)`,
          target: `${r.d.steady >= TARGET ? 'met' : 'NOT met'} (>= ${TARGET} %)`,
        });
        console.log(
          `              gaps, median ms: ${Object.entries(r.parts)
            .map(([k, v]) => `${k} ${f0(percentile(v, 50))}`)
            .join(', ')}`,
        );
      }
    }
    console.log(
      `\nA gap runs from one run's end to the next run's start on the slot: the workflow hears of the end, starts the queued experiment (rebased after a keep, as soon as the keep is decided; proposed again if the rebase conflicts), and the GPU worker fetches and checks out the commit and starts the trainer. With one proposal prepared per slot and L = T, it can also hold the wait for the proposer.`,
    );
    const at300 = results.map(
      (r) =>
        `L = ${r.L === T ? 'T' : 'T/2'}, lookahead ${r.lookahead ?? 2}: ${f1((100 * 300_000) / (300_000 + sum(r.d.gapsMs) / r.d.gapsMs.length))} %`,
    );
    console.log(`The same mean gaps at autoresearch's T = 300 s (and L <= T): ${at300.join('; ')}.`);
  } finally {
    await Promise.all(labs.map((l) => l.close()));
    await conn.close();
    await server.stop();
    removeTempDirs();
  }
}

await main();
