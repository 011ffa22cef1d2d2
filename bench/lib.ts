// What the throughput benchmarks (overhead, duty, scale) share: a tiny target repository whose
// trainer is a shell script (sleep T, then score train.py's settings with awk), workers on task
// queues of their own, campaigns started the way the CLI starts them, and readers for the
// records and histories the figures are computed from. Nothing here depends on test/.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DefaultLogger, Runtime, type NativeConnection, type Worker } from '@temporalio/worker';
import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';
import { parseConfig, type CampaignConfigInput } from '../common/config';
import { campaignWorkflowId, type CampaignSnapshot, type RunRecord } from '../common/shared';
import { git } from '../lib/git';
import { readLedger, experiments } from '../lib/ledger';
import { mutateProposer } from '../proposers/mutate';
import type { ActivityDeps } from '../activities';
import { createOrchestratorWorker } from '../workers/orchestrator';
import { createGpuWorkers } from '../gpu-worker/worker';
import type { Slot } from '../gpu-worker/run';
import { prepareStart, startCampaign } from '../client/campaigns';
import { connectClient, connectWorker } from '../ops/connection';

const { temporal } = proto;
const EventType = temporal.api.enums.v1.EventType;

let runtimeInstalled = false;
/** Worker chatter would drown the figures (the GPU worker warns that it has no workflows); errors still show. */
export function quietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
  } catch {
    // a worker connection already made the default runtime
  }
}

/** The client and the workers' connection to the bench server, with the quiet runtime. */
export async function benchConnections(
  address: string,
): Promise<{ client: Client; connection: NativeConnection; close(): Promise<void> }> {
  quietRuntime();
  const client = await connectClient(address);
  const connection = await connectWorker(address);
  return {
    client,
    connection,
    close: async () => {
      await connection.close();
      await client.connection.close();
    },
  };
}

const made: string[] = [];
/** A fresh directory under the system's temp dir, removed by removeTempDirs(). */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Removes every directory tempDir() made (repositories, homes, scratch clones). */
export function removeTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export function uniqueId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

// The target: four numeric settings the `mutate` proposer perturbs, spaced apart so git can merge
// edits of different settings (rebases after a keep), scored by a shell "trainer" that costs a
// few milliseconds plus BENCH_SLEEP seconds of sleep (a GPU slot busy training).
// The baseline sits near the optimum (0.12, 20, 6, 0.1), so about a quarter of the first proposals
// are kept and fewer later: about the keep rate of a real campaign, with its rebases.
const TRAIN_PY = `# Bench model: run.sh scores these settings (lower is better).
LEARNING_RATE = 0.2



WIDTH = 16



DEPTH = 5



WARMUP = 0.15
`;

/** Prints bench_t0/bench_t1 (epoch ms) around the "training", then the summary block. */
const RUN_SH = `#!/bin/sh
# Bench trainer: sleeps BENCH_SLEEP seconds (the GPU at work), then scores train.py.
t0=$(date +%s%3N)
case "\${BENCH_SLEEP:-0}" in 0|0.0|"") ;; *) sleep "$BENCH_SLEEP" ;; esac
t1=$(date +%s%3N)
awk -F' *= *' '/^LEARNING_RATE *=/{lr=$2+0} /^WIDTH *=/{w=$2+0} /^DEPTH *=/{d=$2+0} /^WARMUP *=/{u=$2+0}
END{print "---"; printf "val_bpb: %.6f\\n", (lr-0.12)^2 + (w-20)^2/400 + (d-6)^2/100 + (u-0.1)^2 + 1}' train.py
echo "peak_vram_mb: 1.0"
echo "bench_t0: $t0"
echo "bench_t1: $t1"
`;

export const TRAINER = 'sh run.sh';

/** A fresh git repository holding the bench target, committed: its HEAD is the baseline. */
export async function makeBenchRepo(parent = tempDir('nightlab-bench-repo-')): Promise<string> {
  const dir = path.join(parent, 'target');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'train.py'), TRAIN_PY);
  writeFileSync(path.join(dir, 'run.sh'), RUN_SH);
  writeFileSync(path.join(dir, 'program.md'), 'Lower val_bpb by changing the settings in train.py.\n');
  const g = git(dir);
  await g.raw(['init', '--quiet', '-b', 'main']);
  await g.raw(['add', '-A']);
  await g.raw(['commit', '--quiet', '-m', 'bench baseline']);
  return dir;
}

/** A campaign config on the bench target; one baseline run unless a bench asks otherwise. */
export function benchConfig(over: Partial<CampaignConfigInput> & { sleepSec?: number } = {}): CampaignConfigInput {
  const { sleepSec = 0, ...rest } = over;
  return {
    target: '.',
    editable: ['train.py'],
    locked: ['run.sh'],
    instructions: 'program.md',
    run: { command: TRAINER, env: { BENCH_SLEEP: String(sleepSec) }, timeoutSec: 120 },
    metric: { name: 'val_bpb', direction: 'lower' },
    memory: { key: 'peak_vram_mb' },
    proposer: { kind: 'mutate', seed: 7 },
    // Autoresearch's rule (one baseline run, no confirmations): the figures measure the engine,
    // not the noise policy, whose repeated baseline runs would add runs that no proposal made.
    noise: { baselineRuns: 1 },
    budget: { maxExperiments: 20 },
    ...rest,
  };
}

/**
 * The `mutate` proposer after `latencyMs` of simulated thinking (an LLM's latency, without the LLM).
 * Its random draws ignore the campaign's tag (unique per run), so every bench campaign proposes the
 * same sequence of edits and runs of a bench compare like with like.
 */
export function slowMutate(latencyMs: number): NonNullable<ActivityDeps['proposers']> {
  return {
    mutate: async (ctx, signal) => {
      if (latencyMs > 0) await sleep(latencyMs, undefined, { signal });
      return mutateProposer({ ...ctx, tag: 'bench' }, signal);
    },
  };
}

export interface BenchLab {
  client: Client;
  home: string;
  taskQueue: string;
  gpuTaskQueue: string;
  workers: Worker[];
  start(repo: string, config: CampaignConfigInput, tag?: string): Promise<StartedCampaign>;
  close(): Promise<void>;
}

export interface StartedCampaign {
  tag: string;
  workflowId: string;
  campaignDir: string;
  startedAtMs: number;
  result(): Promise<CampaignSnapshot>;
}

/**
 * An orchestrator worker and (unless `gpu: false`) one GPU worker with `slots` slots, in this
 * process, on task queues of their own.
 */
export async function benchLab(opts: {
  client: Client;
  connection: NativeConnection;
  slots?: number;
  proposerLatencyMs?: number;
  gpu?: boolean;
  home?: string;
  taskQueue?: string;
  gpuTaskQueue?: string;
}): Promise<BenchLab> {
  quietRuntime();
  const home = opts.home ?? tempDir('nightlab-bench-home-');
  const id = uniqueId('b');
  const taskQueue = opts.taskQueue ?? `bench-orch-${id}`;
  const gpuTaskQueue = opts.gpuTaskQueue ?? `bench-gpu-${id}`;
  const workers: Worker[] = [];
  workers.push(
    await createOrchestratorWorker({
      connection: opts.connection,
      taskQueue,
      deps: { proposers: slowMutate(opts.proposerLatencyMs ?? 0) },
    }),
  );
  if (opts.gpu !== false) {
    workers.push(
      ...(await createGpuWorkers({
        connection: opts.connection,
        home,
        slots: slotNames(opts.slots ?? 1),
        taskQueue: gpuTaskQueue,
      })),
    );
  }
  const running = workers.map((w) => w.run());
  return {
    client: opts.client,
    home,
    taskQueue,
    gpuTaskQueue,
    workers,
    start: (repo, config, tag) => startBench(opts.client, { repo, config, tag, home, taskQueue, gpuTaskQueue }),
    async close() {
      for (const w of workers) w.shutdown();
      await Promise.allSettled(running);
    },
  };
}

export function slotNames(n: number): Slot[] {
  return Array.from({ length: n }, (_, i) => ({ name: `sim${i}`, devices: null }));
}

/** Starts a campaign as `nightlab start` does (validated config, prepared input). */
export async function startBench(
  client: Client,
  a: { repo: string; config: CampaignConfigInput; tag?: string; home: string; taskQueue: string; gpuTaskQueue: string },
): Promise<StartedCampaign> {
  const tag = a.tag ?? uniqueId('bench');
  const config = parseConfig(a.config, 'bench');
  const input = await prepareStart({ config, baseDir: a.repo, tag, home: a.home });
  const startedAtMs = Date.now();
  const handle = await startCampaign(client, { ...input, gpuTaskQueue: a.gpuTaskQueue }, { taskQueue: a.taskQueue });
  return {
    tag,
    workflowId: campaignWorkflowId(tag),
    campaignDir: input.campaignDir,
    startedAtMs,
    result: () => handle.result() as Promise<CampaignSnapshot>,
  };
}

/** A run as it happened on its slot: the trainer's own clock (bench_t0/bench_t1) plus the record. */
export interface RunSpan {
  experiment: number;
  run: number;
  slot: string;
  seconds: number;
  t0: number;
  t1: number;
}

/** Every run of a campaign, with the trainer's start and end read from its log. */
export function runSpans(campaignDir: string): RunSpan[] {
  const spans: RunSpan[] = [];
  for (const r of readLedger(campaignDir)) {
    if (r.kind !== 'run') continue;
    const run = r as RunRecord & { kind: 'run' };
    if (!run.logPath || !existsSync(run.logPath)) continue;
    const log = readFileSync(run.logPath, 'utf8');
    // The last attempt's figures (a retried run appends to the same log).
    const t0 = [...log.matchAll(/^bench_t0: (\d+)$/gm)].at(-1);
    const t1 = [...log.matchAll(/^bench_t1: (\d+)$/gm)].at(-1);
    if (!t0 || !t1) continue;
    spans.push({
      experiment: run.experiment,
      run: run.run,
      slot: run.slot,
      seconds: run.seconds,
      t0: Number(t0[1]),
      t1: Number(t1[1]),
    });
  }
  return spans.sort((a, b) => a.t0 - b.t0);
}

export function experimentRows(campaignDir: string) {
  return experiments(campaignDir).sort((a, b) => a.experiment - b.experiment);
}

// ---- Workflow histories -------------------------------------------------------------------

export interface ActivitySpan {
  type: string;
  summary: string;
  scheduled: number;
  started: number | null;
  closed: number | null;
  attempt: number;
}

export interface HistoryFacts {
  events: number;
  workflowTasks: number;
  /** Workflow task scheduled → completed, each (ms). */
  workflowTaskMs: number[];
  activities: ActivitySpan[];
}

function payloadText(data: Uint8Array | null | undefined): string {
  if (!data) return '';
  const text = Buffer.from(data).toString('utf8');
  try {
    return String(JSON.parse(text));
  } catch {
    return text;
  }
}

function ms(t: { seconds?: unknown; nanos?: number | null } | null | undefined): number {
  if (!t) return NaN;
  return Number(t.seconds ?? 0) * 1000 + (t.nanos ?? 0) / 1e6;
}

/** Event counts and activity timings of a campaign's history (every run of the chain after continue-as-new is not followed: benches stay below the limit). */
export async function historyFacts(client: Client, workflowId: string): Promise<HistoryFacts> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const events = history.events ?? [];
  const byId = new Map<number, ActivitySpan>();
  const wftScheduled = new Map<number, number>();
  const workflowTaskMs: number[] = [];
  let workflowTasks = 0;
  for (const e of events) {
    const id = Number(e.eventId);
    const at = ms(e.eventTime as never);
    switch (e.eventType) {
      case EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: {
        const a = e.activityTaskScheduledEventAttributes!;
        const summary = payloadText(e.userMetadata?.summary?.data);
        byId.set(id, {
          type: a.activityType?.name ?? '?',
          summary,
          scheduled: at,
          started: null,
          closed: null,
          attempt: 1,
        });
        break;
      }
      case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED: {
        const a = e.activityTaskStartedEventAttributes!;
        const span = byId.get(Number(a.scheduledEventId));
        if (span) {
          span.started = at;
          span.attempt = a.attempt ?? 1;
        }
        break;
      }
      case EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
      case EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
      case EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
      case EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: {
        const a = (e.activityTaskCompletedEventAttributes ??
          e.activityTaskFailedEventAttributes ??
          e.activityTaskTimedOutEventAttributes ??
          e.activityTaskCanceledEventAttributes) as { scheduledEventId?: unknown } | null;
        const span = a ? byId.get(Number(a.scheduledEventId)) : undefined;
        if (span) span.closed = at;
        break;
      }
      case EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
        wftScheduled.set(id, at);
        break;
      case EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: {
        workflowTasks += 1;
        const s = wftScheduled.get(Number(e.workflowTaskCompletedEventAttributes?.scheduledEventId));
        if (s !== undefined) workflowTaskMs.push(at - s);
        break;
      }
    }
  }
  return { events: events.length, workflowTasks, workflowTaskMs, activities: [...byId.values()] };
}

// ---- Statistics and printing --------------------------------------------------------------

export function percentile(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i];
}

export function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

export function avg(xs: number[]): number {
  return xs.length ? sum(xs) / xs.length : NaN;
}

export const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : '-');
export const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
export const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');

/** Total time covered by a set of intervals, each clipped to [from, to]. */
export function covered(spans: { t0: number; t1: number }[], from = -Infinity, to = Infinity): number {
  return sum(spans.map((s) => Math.max(0, Math.min(s.t1, to) - Math.max(s.t0, from))));
}

export function envNumber(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name}=${v} is not a number`);
  return n;
}

/** Where the machine stands, for reading noisy figures: cores, the load, the code measured. */
export function machineLine(): string {
  const [l1] = os.loadavg();
  let code = '?';
  try {
    const root = path.dirname(path.dirname(new URL(import.meta.url).pathname));
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    const dirty = execFileSync(
      'git',
      ['status', '--porcelain', '--', 'activities', 'workflows', 'gpu-worker', 'workers', 'common'],
      { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    ).trim();
    code = `${head}${dirty ? ' + uncommitted core changes' : ''}`;
  } catch {
    // not a checkout
  }
  return `machine: ${os.cpus().length} cores (${os.cpus()[0]?.model.trim() ?? '?'}), load average ${l1.toFixed(2)}, node ${process.version}; nightlab ${code}`;
}
