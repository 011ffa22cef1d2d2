// bench:scale — many campaigns sharing one fleet of simulated GPU slots.
//
//   npm run bench:scale
//     BENCH_CAMPAIGNS (default 16) campaigns, each with parallelism BENCH_P (default 2), over
//     BENCH_SLOTS (default 32) slots of one GPU worker process; BENCH_N experiments per campaign
//     (default 10), each training BENCH_T seconds (default 30), instant proposer (mutate);
//     BENCH_ORCH_ACTIVITIES: concurrent activities of the orchestrator worker (default: the
//     shipped worker's DEFAULT_MAX_ACTIVITIES).
// Why T = 30 s and not 2-3 s: 32 slots of T-second runs ask the engine for 32/T experiments per
// second, and each costs about half a CPU-second on this machine (orchestrator with its git and
// python subprocesses, GPU worker, Temporal server; the bench prints the split). At T = 3 s that
// is ~5 cores of demand on a 2-core machine shared with other work: the figure would measure the
// machine, not the engine. At T = 30 s it is ~0.5 core; real runs (T = 300 s) ask 10x less again.
// Noise policy: one baseline run, and a win measured on a best that moved meanwhile is confirmed
// by one fresh run (confirmRuns 1, bestRuns 1) instead of the defaults' 4 confirmations and 10
// re-runs of the best, so every campaign does about the same work and the steady window is long.
//
// The orchestrator worker and the GPU worker run in processes of their own (bench/worker-proc.ts),
// so their memory is theirs alone. Figures:
//   utilisation     the fraction of slot-time a trainer was running, over the steady window: from
//                   the moment the last campaign started its first experiment (every campaign past
//                   its baseline) to the moment the first campaign started its last run (every
//                   campaign still had work to launch). Demand equals supply there (campaigns x
//                   parallelism = slots), so every moment a slot is idle is the engine's: the
//                   workflow hearing that a run ended, scheduling the next, the worker picking it
//                   up, fetching and checking out the commit, and starting the trainer. Each run's
//                   start and end come from the trainer's own clock (bench_t0/bench_t1 in its log).
//   sched latency   a run's ActivityTaskScheduled -> ActivityTaskStarted, from the
//                   histories (p50/p99 over every run).
//   memory          peak RSS (VmHWM) of each worker process.
//   history         events per experiment (each campaign's events / its experiments).
//   fairness        each campaign's slot-time in the steady window against an equal share, and
//                   Jain's index; BENCH_P=4 asks for twice the slots there are, to see how the
//                   task queue shares an oversubscribed fleet.
// The shell-loop and autoresearch lines give the same fleet run by one sequential loop per slot
// (nothing to compare of the engine's latency or memory: they have none).
import { RUN_ACTIVITY_NAMES } from '../common/shared';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { shellLoop } from './shell-loop';
import { figure } from './harness';
import { serverForTools } from '../ops/server';
import { DEFAULT_MAX_ACTIVITIES } from '../workers/orchestrator';
import {
  benchConfig,
  benchConnections,
  covered,
  envNumber,
  f0,
  f1,
  f2,
  historyFacts,
  machineLine,
  makeBenchRepo,
  percentile,
  removeTempDirs,
  runSpans,
  startBench,
  sum,
  tempDir,
  uniqueId,
  type RunSpan,
  type StartedCampaign,
} from './lib';

const CAMPAIGNS = envNumber('BENCH_CAMPAIGNS', 16);
const P = envNumber('BENCH_P', 2);
const SLOTS = envNumber('BENCH_SLOTS', 32);
const N = envNumber('BENCH_N', 10);
const T = envNumber('BENCH_T', 30);
const ORCH_ACTIVITIES = envNumber('BENCH_ORCH_ACTIVITIES', 0);
const TARGET = 95;
const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Proc {
  child: ChildProcess;
  peakKb: number;
  lastKb: number;
}

async function spawnWorker(spec: Record<string, unknown>): Promise<Proc> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'bench', 'worker-proc.ts'), JSON.stringify(spec)],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`worker ${spec.role} exited (${code}) before it was ready`)));
  });
  return { child, peakKb: 0, lastKb: 0 };
}

function sampleRss(p: Proc): void {
  try {
    const status = readFileSync(`/proc/${p.child.pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
    p.lastKb = rss;
    p.peakKb = Math.max(p.peakKb, hwm, rss);
  } catch {
    // exited
  }
}

/** CPU seconds a process has used, with its reaped children (the git and trainer subprocesses). */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields 14-17 of stat (utime, stime, cutime, cstime), counted from after the command name
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
  } catch {
    return NaN;
  }
}

/** The Temporal dev server serving `address`, if it runs on this machine. */
function serverPid(address: string): number | undefined {
  const port = address.split(':').at(-1);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args.includes('start-dev') && args[args.indexOf('--port') + 1] === port) return Number(entry);
    } catch {
      // gone
    }
  }
  return undefined;
}

async function stopWorker(p: Proc): Promise<void> {
  if (p.child.exitCode !== null) return;
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(t);
}

async function main(): Promise<void> {
  const server = await serverForTools({ port: 19233, log: console.error });
  const conn = await benchConnections(server.address);
  const home = tempDir('nightlab-bench-scale-');
  const id = uniqueId('s');
  const taskQueue = `bench-orch-${id}`;
  const gpuTaskQueue = `bench-gpu-${id}`;
  const procs: Proc[] = [];
  let sampler: NodeJS.Timeout | undefined;
  try {
    console.log(
      `bench:scale — ${CAMPAIGNS} campaigns x parallelism ${P} over ${SLOTS} simulated GPU slots (one GPU worker process), ${N} experiments each, T = ${T} s, instant proposer`,
    );
    console.log(machineLine());
    const orchestrator = await spawnWorker({
      role: 'orchestrator',
      address: server.address,
      taskQueue,
      home,
      ...(ORCH_ACTIVITIES ? { activities: ORCH_ACTIVITIES } : {}),
    });
    const gpu = await spawnWorker({
      role: 'gpu',
      address: server.address,
      taskQueue: gpuTaskQueue,
      home,
      slots: SLOTS,
    });
    procs.push(orchestrator, gpu);
    sampler = setInterval(() => procs.forEach(sampleRss), 500);

    const repos = await Promise.all(Array.from({ length: CAMPAIGNS }, () => makeBenchRepo()));
    const serverProcess = serverPid(server.address);
    const cpu0 = [orchestrator.child.pid, gpu.child.pid, serverProcess].map(cpuSeconds);
    const t0 = Date.now();
    const campaigns: StartedCampaign[] = [];
    for (const repo of repos) {
      campaigns.push(
        await startBench(conn.client, {
          repo,
          config: benchConfig({
            sleepSec: T,
            parallelism: P,
            budget: { maxExperiments: N },
            noise: { baselineRuns: 1, confirmRuns: 1, bestRuns: 1 },
          }),
          home,
          taskQueue,
          gpuTaskQueue,
        }),
      );
    }
    const statuses = await Promise.all(campaigns.map((c) => c.result()));
    const wallS = (Date.now() - t0) / 1000;
    const cpu = [orchestrator.child.pid, gpu.child.pid, serverProcess].map(cpuSeconds).map((c, i) => c - cpu0[i]);
    procs.forEach(sampleRss);
    clearInterval(sampler);

    // Utilisation over the steady window.
    const spans = campaigns.map((c) => runSpans(c.campaignDir));
    const all = spans.flat();
    const from = Math.max(...spans.map((s) => Math.min(...s.filter((r) => r.experiment > 0).map((r) => r.t0))));
    const to = Math.min(...spans.map((s) => Math.max(...s.map((r) => r.t0))));
    const steady = (100 * covered(all, from, to)) / (SLOTS * (to - from));
    const first = Math.min(...all.map((r) => r.t0));
    const last = Math.max(...all.map((r) => r.t1));
    const whole = (100 * covered(all)) / (SLOTS * (last - first));
    const slotsSeen = new Set(all.map((r) => r.slot)).size;

    // Scheduling latency and history size, from the histories.
    const facts = await Promise.all(campaigns.map((c) => historyFacts(conn.client, c.workflowId)));
    const runs = facts.flatMap((f) =>
      f.activities.filter((a) => RUN_ACTIVITY_NAMES.includes(a.type) && a.started !== null),
    );
    const latency = runs.map((a) => a.started! - a.scheduled);
    const experimentsDone = sum(statuses.map((s) => s.experiments));
    const eventsPerExperiment = sum(facts.map((f) => f.events)) / experimentsDone;
    const cpuActs = facts.flatMap((f) =>
      f.activities.filter((a) => !RUN_ACTIVITY_NAMES.includes(a.type) && a.started !== null && a.closed !== null),
    );
    const waits = (type: string) => cpuActs.filter((a) => a.type === type).map((a) => a.started! - a.scheduled);
    const takes = (type: string) => cpuActs.filter((a) => a.type === type).map((a) => a.closed! - a.started!);
    const proposeLatency = waits('propose');

    // The same fleet as sequential loops, one per slot: with an instant proposer the loop adds only
    // its git work between runs, so its utilisation is T / (T + that).
    const shellGap = await shellLoopGapMs();
    const shell = (100 * T * 1000) / (T * 1000 + shellGap);

    console.log('');
    figure('shell-loop', {
      utilisation: `${f1(shell)} % (one bash loop per slot, instant proposer: T / (T + its measured ${f0(shellGap)} ms between runs))`,
    });
    figure('autoresearch', {
      utilisation: `${f1((100 * T) / (T + T / 2))} % with the agent thinking L = T/2 per run, ${f1(50)} % with L = T (T/(L+T)); one sequential agent per GPU`,
    });
    figure('nightlab', {
      utilisation: `${f1(steady)} % steady (${f1((to - from) / 1000)} s window), ${f1(whole)} % from first run to last`,
      'sched latency': `p50 ${f0(percentile(latency, 50))} ms, p99 ${f0(percentile(latency, 99))} ms (run, ${latency.length} runs)`,
      'worker memory': `orchestrator ${f0(orchestrator.peakKb / 1024)} MB, gpu ${f0(gpu.peakKb / 1024)} MB (peak RSS)`,
      history: `${f1(eventsPerExperiment)} events/experiment`,
      target: `${steady >= TARGET ? 'met' : 'NOT met'} (>= ${TARGET} %)`,
    });
    console.log(
      `  ${experimentsDone} experiments + ${CAMPAIGNS} baselines, ${all.length} runs in ${f1(wallS)} s on ${slotsSeen} slots (${f2(all.length / wallS)} runs/s; the slots could take ${f2(SLOTS / T)}/s); kept ${sum(statuses.map((s) => s.kept))}`,
    );
    const p50 = (xs: number[]) => f0(percentile(xs, 50));
    console.log(
      `  orchestrator activities (${ORCH_ACTIVITIES || DEFAULT_MAX_ACTIVITIES} at a time), p50 wait / p50 run: ${['propose', 'recordExperiment', 'rebaseCandidate', 'advanceBranch'].map((t) => `${t} ${p50(waits(t))} / ${p50(takes(t))} ms (${waits(t).length})`).join(', ')}; propose wait p99 ${f0(percentile(proposeLatency, 99))} ms`,
    );
    const perRun = (c: number) => `${f0((1000 * c) / all.length)} ms`;
    console.log(
      `  CPU per run (with subprocesses): orchestrator ${perRun(cpu[0])}, gpu worker ${perRun(cpu[1])}, Temporal server ${Number.isFinite(cpu[2]) ? perRun(cpu[2]) : '(not on this machine)'}; together ${f1((cpu[0] + cpu[1] + (Number.isFinite(cpu[2]) ? cpu[2] : 0)) / wallS)} of this machine's ${os.cpus().length} cores on average`,
    );
    // Fairness: each campaign's slot-time in the steady window, against an equal share of the fleet.
    const share = spans.map((sp) => covered(sp, from, to) / ((SLOTS / CAMPAIGNS) * (to - from)));
    const jain = sum(share) ** 2 / (share.length * sum(share.map((x) => x * x)));
    console.log(
      `  fairness: each campaign's slot-time in the steady window is ${f0(100 * Math.min(...share))}-${f0(100 * Math.max(...share))} % of an equal share (${f2(SLOTS / CAMPAIGNS)} slots); Jain's index ${jain.toFixed(3)} (1 = equal)`,
    );
    const gaps = slotGaps(all, from, to);
    console.log(
      `  idle gap on a slot between two runs (steady window): p50 ${f0(percentile(gaps, 50))} ms, p99 ${f0(percentile(gaps, 99))} ms, mean ${f0(sum(gaps) / gaps.length)} ms; at T = 300 s that mean gap would leave utilisation at ${f1((100 * 300_000) / (300_000 + sum(gaps) / gaps.length))} %`,
    );
  } finally {
    if (sampler) clearInterval(sampler);
    for (const p of procs) await stopWorker(p);
    await conn.close();
    await server.stop();
    removeTempDirs();
  }
}

/** Gaps between consecutive runs on the same slot, inside the window. */
function slotGaps(spans: RunSpan[], from: number, to: number): number[] {
  const bySlot = new Map<string, RunSpan[]>();
  for (const s of spans) bySlot.set(s.slot, [...(bySlot.get(s.slot) ?? []), s]);
  const gaps: number[] = [];
  for (const xs of bySlot.values()) {
    const sorted = xs.sort((a, b) => a.t0 - b.t0);
    for (let i = 1; i < sorted.length; i++)
      if (sorted[i - 1].t1 >= from && sorted[i].t0 <= to) gaps.push(sorted[i].t0 - sorted[i - 1].t1);
  }
  return gaps;
}

/** The bash loop's idle time between two runs (ms, mean of 20 experiments with an instant trainer). */
async function shellLoopGapMs(): Promise<number> {
  const r = await shellLoop(await makeBenchRepo(), 20, { sleepSec: 0 });
  const gaps = r.spans.slice(1).map((s, i) => s.t0 - r.spans[i].t1);
  return sum(gaps) / gaps.length;
}

await main();
