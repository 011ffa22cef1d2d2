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
// The four campaigns and the two bash loops run at the same time (each campaign has its own
// orchestrator and GPU worker on task queues of their own): they sleep nearly all the time, and
// contention only lengthens Nightlab's gaps. The trainer's own clock excludes process start-up,
// so the figures are conservative for both systems.
import { benchServer, figure } from './harness';
import {
  benchConfig, benchConnections, benchLab, covered, envNumber, f0, f1, machineLine, makeBenchRepo, percentile, removeTempDirs, runSpans, sum,
  type BenchLab, type RunSpan,
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

async function main(): Promise<void> {
  const server = await benchServer();
  const conn = await benchConnections(server.address);
  const labs: BenchLab[] = [];
  try {
    console.log(`bench:duty — T = ${T} s of training per run, ${N} experiments per campaign, each campaign on one GPU slot of its own`);
    console.log(machineLine());
    const settings = [T / 2, T].flatMap((L) => [1, null].map((lookahead) => ({ L, lookahead })));
    const shells = [T / 2, T].map(async (L) => ({ L, r: await shellLoop(await makeBenchRepo(), SHELL_N, { thinkSec: L, sleepSec: T }) }));
    const runs = settings.map(async ({ L, lookahead }) => {
      const l = await benchLab({ client: conn.client, connection: conn.connection, slots: 1, proposerLatencyMs: L * 1000 });
      labs.push(l);
      const c = await l.start(await makeBenchRepo(), benchConfig({ sleepSec: T, parallelism: 1, lookahead, budget: { maxExperiments: N } }));
      const s = await c.result();
      return { L, lookahead, d: duty(runSpans(c.campaignDir), 1), kept: s.kept, experiments: s.experiments };
    });
    const [shellResults, results] = await Promise.all([Promise.all(shells), Promise.all(runs)]);

    for (const L of [T / 2, T]) {
      const shell = shellResults.find((x) => x.L === L)!.r;
      const shellDuty = (100 * covered(shell.spans)) / (Math.max(...shell.spans.map((s) => s.t1)) - Math.min(...shell.spans.map((s) => s.t0)));
      const analytic = (100 * T) / (L + T);
      console.log(`\nL = ${L} s, T = ${T} s (L = ${L === T ? 'T' : 'T/2'}):`);
      figure('autoresearch', { duty: `${f1(analytic)} % (T/(L+T))`, simulated: `${f1(shellDuty)} % (bash loop, ${shell.experiments} runs, first run to last)` });
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
      }
    }
    console.log(`\nA gap runs from one run's end to the next run's start on the slot: the workflow hears of the end, starts the queued experiment (rebased first after a keep; proposed again if the rebase conflicts), and the GPU worker fetches and checks out the commit and starts the trainer. With one proposal prepared per slot and L = T, it also holds the wait for the proposer.`);
    const at300 = results.map((r) => `L = ${r.L === T ? 'T' : 'T/2'}, lookahead ${r.lookahead ?? 2}: ${f1((100 * 300_000) / (300_000 + sum(r.d.gapsMs) / r.d.gapsMs.length))} %`);
    console.log(`The same mean gaps at autoresearch's T = 300 s (and L <= T): ${at300.join('; ')}.`);
  } finally {
    await Promise.all(labs.map((l) => l.close()));
    await conn.close();
    await server.stop();
    removeTempDirs();
  }
}

await main();
