// The training run, on one GPU slot: move the slot's worktree to the candidate commit, run the
// command in its own process group, stream the log to disk, heartbeat, enforce the hard timeout,
// and classify how it ended. Every run leaves a record, even when it dies.
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { Context, CancelledFailure } from '@temporalio/activity';
import { execa } from 'execa';
import type { RunRequest, RunResult, RunOutcome } from '../common/shared';
import { looksOutOfMemory, readFigure, readMetric } from '../common/metrics';
import { checkoutWorktree, fetchCommit } from '../activities/git';
import { trainingEnv } from './env';

const HEARTBEAT_MS = 5_000;
/** After SIGTERM, the run's process group gets this long before SIGKILL. */
const KILL_GRACE_MS = 5_000;
const TAIL_LINES = 50;
const ATTEMPT_HEADER = '=== nightlab ';
const TAIL_CHARS = 4_000;
/** The summary block is at the end; read only this much of a long log to find it. */
const SUMMARY_BYTES = 64 * 1024;

export interface Slot {
  /** "gpu0", "gpu1", ... or "cpu". */
  name: string;
  /** CUDA_VISIBLE_DEVICES for this slot, or null for a CPU slot. */
  devices: string | null;
}

export interface GpuDeps {
  home: string;
  slots: Slot[];
  host?: string;
}

/**
 * The host's slots: each run takes a free one for its whole life. The worker runs at most as many
 * activities as there are slots, so a free slot always exists when a run starts.
 */
export class SlotPool {
  private free: Slot[];
  constructor(slots: Slot[]) {
    this.free = [...slots];
  }
  take(): Slot {
    const slot = this.free.shift();
    if (!slot) throw new Error('no free GPU slot: the worker runs more activities than it has slots');
    return slot;
  }
  give(slot: Slot): void {
    this.free.push(slot);
  }
}

export function createGpuActivities(deps: GpuDeps) {
  const host = deps.host ?? os.hostname();
  const pool = new SlotPool(deps.slots);
  // A worker that died mid-run left its process groups behind: reap them before any slot is reused.
  for (const slot of deps.slots) reapOrphan(path.join(deps.home, 'slots', slot.name, 'run.pid'));

  return {
    async runExperiment(req: RunRequest): Promise<RunResult> {
      const slot = pool.take();
      try {
        return await runOnSlot(req, slot);
      } finally {
        pool.give(slot);
      }
    },
  };

  async function runOnSlot(req: RunRequest, slot: Slot): Promise<RunResult> {
      const ctx = Context.current();
      const slotDir = path.join(deps.home, 'slots', slot.name);
      const pidFile = path.join(slotDir, 'run.pid');
      reapOrphan(pidFile);
      mkdirSync(slotDir, { recursive: true });
      // A per-remote cache: a host fetches each candidate once, whatever slot runs it.
      const repoKey = createHash('sha256').update(req.remote).digest('hex').slice(0, 16);
      const cache = path.join(deps.home, 'repos', repoKey);
      // One worktree per slot and campaign repository: campaigns sharing the fleet never mix.
      const worktree = path.join(slotDir, repoKey);
      // Slots share the cache repo: its fetches and worktree bookkeeping go one at a time.
      await locked(cache, async () => {
        await fetchCommit(cache, req.remote, req.ref, req.sha);
        await checkoutWorktree(cache, worktree, req.sha);
      });

      const logPath = path.join(deps.home, 'logs', req.tag, `${req.experiment}-${req.run}.log`);
      mkdirSync(path.dirname(logPath), { recursive: true });
      const log = createWriteStream(logPath, { flags: 'a' });
      log.write(`${ATTEMPT_HEADER}${req.tag} experiment ${req.experiment} run ${req.run} attempt ${ctx.info.attempt} on ${host}/${slot.name} at ${req.sha.slice(0, 7)}: ${req.command}\n`);

      const started = Date.now();
      const child = execa(req.command, {
        shell: true,
        cwd: worktree,
        env: trainingEnv(req.env, slot.devices),
        extendEnv: false,
        detached: true, // its own process group, so the whole tree can be killed
        reject: false,
        buffer: false,
        stdin: 'ignore',
      });
      writeFileSync(pidFile, String(child.pid));
      let lastLine = '';
      const onData = (chunk: Buffer) => {
        log.write(chunk);
        const lines = chunk.toString().split(/[\r\n]+/).filter((l) => l.trim());
        if (lines.length) lastLine = lines.at(-1)!.slice(0, 200);
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);

      let killedFor: 'timeout' | 'cancelled' | null = null;
      const killGroup = (why: 'timeout' | 'cancelled') => {
        if (killedFor) return;
        killedFor = why;
        signalGroup(child.pid!, 'SIGTERM');
        setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), KILL_GRACE_MS).unref();
      };
      const timer = setTimeout(() => killGroup('timeout'), req.timeoutSec * 1000);
      const onCancel = () => killGroup('cancelled');
      ctx.cancellationSignal.addEventListener('abort', onCancel);
      let peakMb: number | null = null;
      const beat = setInterval(async () => {
        const elapsed = (Date.now() - started) / 1000;
        ctx.heartbeat({ elapsedSec: Math.round(elapsed), timeoutSec: req.timeoutSec, lastLine, slot: slot.name, host });
        const used = await gpuMemoryMb(slot.devices);
        if (used !== null) peakMb = Math.max(peakMb ?? 0, used);
      }, HEARTBEAT_MS);
      ctx.heartbeat({ elapsedSec: 0, timeoutSec: req.timeoutSec, lastLine: 'started', slot: slot.name, host });

      const done = await child;
      clearTimeout(timer);
      clearInterval(beat);
      ctx.cancellationSignal.removeEventListener('abort', onCancel);
      // Wait for the grace kill of stragglers (children that outlived the shell) before we go.
      signalGroup(child.pid!, 'SIGKILL');
      await new Promise<void>((resolve) => log.end(resolve));
      rmSync(pidFile, { force: true });
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      if (killedFor === 'cancelled') throw new CancelledFailure('run cancelled; process group killed');

      // Only this attempt's output counts: an earlier attempt's summary must not pose as this one's.
      const end = readEnd(logPath, SUMMARY_BYTES);
      const summary = end.slice(Math.max(0, end.lastIndexOf(ATTEMPT_HEADER)));
      const tail = summary.split('\n').slice(-TAIL_LINES - 1).join('\n').slice(-TAIL_CHARS);
      const metric = readMetric(summary, req.metric);
      const memoryFigure = req.memoryKey ? readFigure(summary, req.memoryKey) : null;
      const { outcome, reason } = classify({ exitCode: done.exitCode ?? null, signal: done.signal ?? null, killedFor, metric, tail, timeoutSec: req.timeoutSec, command: req.command, metricName: req.metric.name });
      return {
        outcome,
        exitCode: done.exitCode ?? null,
        metric: outcome === 'ok' ? metric : null,
        memoryMb: memoryFigure ?? peakMb,
        seconds,
        logPath,
        host,
        slot: slot.name,
        logTail: tail,
        reason,
      };
  }
}

export type GpuActivities = ReturnType<typeof createGpuActivities>;

/** How a run ended, in one word and one line. */
export function classify(r: { exitCode: number | null; signal: string | null; killedFor: 'timeout' | 'cancelled' | null; metric: number | null; tail: string; timeoutSec: number; command: string; metricName: string }): { outcome: RunOutcome; reason: string } {
  if (r.killedFor === 'timeout') return { outcome: 'timeout', reason: `killed after the hard timeout of ${r.timeoutSec} s` };
  if (r.exitCode === 127) return { outcome: 'crash', reason: `command not found (exit 127): ${r.command}` };
  if (r.exitCode !== 0 && (looksOutOfMemory(r.tail) || r.exitCode === 137 || (r.signal === 'SIGKILL' && r.exitCode === null))) {
    return { outcome: 'oom', reason: `out of memory${r.signal ? ` (${r.signal})` : ''}: ${lastMeaningfulLine(r.tail)}` };
  }
  if (r.exitCode !== 0) return { outcome: 'crash', reason: `exit ${r.exitCode ?? r.signal}: ${lastMeaningfulLine(r.tail)}` };
  if (r.metric === null) return { outcome: 'no-metric', reason: `exited 0 but printed no ${r.metricName} in its final summary block` };
  return { outcome: 'ok', reason: '' };
}

function lastMeaningfulLine(tail: string): string {
  return tail.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('===')).at(-1)?.slice(0, 200) ?? '(no output)';
}

const locks = new Map<string, Promise<unknown>>();
/** Runs `fn` after every earlier `fn` for the same key has finished (in this process). */
function locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const run = (locks.get(key) ?? Promise.resolve()).catch(() => {}).then(fn);
  locks.set(key, run);
  return run;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** A run left behind by a worker that died: kill its process group before this slot is reused. */
export function reapOrphan(pidFile: string): number | null {
  if (!existsSync(pidFile)) return null;
  const pid = Number(readFileSync(pidFile, 'utf8'));
  rmSync(pidFile, { force: true });
  if (!Number.isInteger(pid) || pid <= 1) return null;
  try {
    process.kill(-pid, 0);
  } catch {
    return null;
  }
  signalGroup(pid, 'SIGKILL');
  return pid;
}

function readEnd(file: string, bytes: number): string {
  const size = statSync(file).size;
  const fd = openSync(file, 'r');
  try {
    const length = Math.min(size, bytes);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

async function gpuMemoryMb(devices: string | null): Promise<number | null> {
  if (devices === null) return null;
  try {
    const r = await execa('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-i', devices], { timeout: 3000 });
    return r.stdout.split('\n').map(Number).filter(Number.isFinite).reduce((a, b) => a + b, 0);
  } catch {
    return null;
  }
}
