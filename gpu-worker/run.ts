// The training run, on one GPU slot: move the slot's worktree to the candidate commit, run the
// command in its own process group (in a sandbox where the host allows: see sandbox.ts), stream
// the log to disk, heartbeat, enforce the hard timeout, verify the locked files were not touched,
// run the locked evaluation when the config has one, and classify how it ended. Every run leaves
// a record, even when it dies.
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, openSync, readSync, closeSync, statSync, lstatSync, readlinkSync, type WriteStream } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { Context, CancelledFailure } from '@temporalio/activity';
import { execa } from 'execa';
import type { RunRequest, RunResult, RunOutcome } from '../common/shared';
import { checkMetric, looksOutOfMemory, readFigure } from '../common/metrics';
import { checkoutWorktree, fetchCommit, git, isGitUrl, oneAtATime } from '../activities/git';
import { trainingEnv } from './env';
import { bwrapArgs, decideSandbox } from './sandbox';

const HEARTBEAT_MS = 5_000;
/** After SIGTERM, the run's process group gets this long before SIGKILL. */
const KILL_GRACE_MS = 5_000;
const TAIL_LINES = 50;
const ATTEMPT_HEADER = '=== nightlab ';
const TAIL_CHARS = 4_000;
/** The summary block is at the end; read only this much of a long log to find it. */
const SUMMARY_BYTES = 64 * 1024;
/** After a run's process exits, its output pipes get this long to drain. */
const STREAM_GRACE_MS = 2_000;
/** The evaluation's hard timeout when the config gives none. */
const DEFAULT_EVAL_TIMEOUT_SEC = 120;

/** Slots share a cache repo per remote: its fetches and checkouts go one at a time. */
const cacheQueue = oneAtATime();

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
    await cacheQueue(cache, async () => {
      await fetchCommit(cache, req.remote, req.ref, req.sha);
      await checkoutWorktree(cache, worktree, req.sha);
    });

    // The run's scratch, fresh each run: its output (NIGHTLAB_OUTPUT_DIR, e.g. a checkpoint for the
    // evaluation) and TMPDIR. Nothing from an earlier run can pose as this run's output.
    const scratch = path.join(slotDir, 'scratch');
    rmSync(scratch, { recursive: true, force: true });
    const outDir = path.join(scratch, 'out');
    const tmpDir = path.join(scratch, 'tmp');
    const evalTmp = path.join(scratch, 'eval-tmp');
    for (const d of [outDir, tmpDir, evalTmp]) mkdirSync(d, { recursive: true });

    const logPath = path.join(deps.home, 'logs', req.tag, `${req.experiment}-${req.run}.log`);
    mkdirSync(path.dirname(logPath), { recursive: true });
    const log = createWriteStream(logPath, { flags: 'a' });
    log.write(`${ATTEMPT_HEADER}${req.tag} experiment ${req.experiment} run ${req.run} attempt ${ctx.info.attempt} on ${host}/${slot.name} at ${req.sha.slice(0, 7)}: ${req.command}\n`);
    const early = async (reason: string): Promise<RunResult> => {
      log.write(`=== ${reason}\n`);
      await new Promise<void>((resolve) => log.end(resolve));
      return { outcome: 'crash', exitCode: null, metric: null, memoryMb: null, seconds: 0, logPath, host, slot: slot.name, logTail: '', reason };
    };

    // Locked files (and held-out data) as committed, before the run: their hashes are checked again after it.
    const guarded = [...new Set([...(req.locked ?? []), ...(req.evaluate?.heldOutPaths ?? [])])];
    const baseline = await lockedBaseline(cache, worktree, req.sha, guarded);
    if (baseline.mismatch.length) return early(`locked file ${baseline.mismatch.join(', ')} in the worktree differs from the candidate commit before the run`);

    const sandbox = await decideSandbox(req.sandbox);
    if (sandbox.kind === 'refuse') return early(sandbox.reason);
    log.write(`=== ${sandbox.header}\n`);
    const localRemote = localDir(req.remote);
    const hide = [deps.home, ...(localRemote ? [localRemote] : [])];

    // In the sandbox, compile caches (Triton, TorchInductor) persist per slot, as they would in $HOME.
    const compileCache = path.join(slotDir, 'cache');
    const caches = sandbox.kind === 'bwrap' ? sandboxCaches(compileCache, req.env) : {};
    const trainEnv = { ...trainingEnv(req.env, slot.devices), ...caches, NIGHTLAB_OUTPUT_DIR: outDir, TMPDIR: tmpDir };
    const trained = await runProcess({
      command: req.command, cwd: worktree, env: trainEnv, timeoutSec: req.timeoutSec, pidFile, ctx, slot, host, sink: log,
      bwrap: sandbox.kind === 'bwrap' ? { path: sandbox.bwrap, args: bwrapArgs({ worktree, writable: [outDir, tmpDir], caches: [compileCache], hide, hideInWorktree: req.evaluate?.heldOutPaths ?? [], env: trainEnv }) } : null,
    });
    await new Promise<void>((resolve) => log.end(resolve));
    if (trained.killedFor === 'cancelled') throw new CancelledFailure('run cancelled; process group killed');

    // Only this attempt's output counts: an earlier attempt's summary must not pose as this one's.
    const summary = lastAttempt(readEnd(logPath, SUMMARY_BYTES));
    const tail = summary.split('\n').slice(-TAIL_LINES - 1).join('\n').slice(-TAIL_CHARS);
    const memoryFigure = req.memoryKey ? readFigure(summary, req.memoryKey) : null;
    let seconds = trained.seconds;
    const result = (r: { outcome: RunOutcome; reason: string }, metric: number | null, heldOut: number | null = null): RunResult => ({
      outcome: r.outcome,
      exitCode: trained.exitCode,
      metric: r.outcome === 'ok' ? metric : null,
      memoryMb: memoryFigure ?? trained.peakMb,
      seconds: Math.round(seconds * 10) / 10,
      logPath,
      host,
      slot: slot.name,
      logTail: tail,
      reason: r.reason,
      ...(req.evaluate?.heldOut ? { heldOut: r.outcome === 'ok' ? heldOut : null } : {}),
    });
    const facts = { exitCode: trained.exitCode, signal: trained.signal, killedFor: trained.killedFor, tail, timeoutSec: req.timeoutSec, command: req.command, metricName: req.metric.name };

    // A run that changed a locked file (or the held-out data) is a crash, however it ended.
    const modified = await lockedChanges(worktree, baseline);
    if (modified.length) return result({ outcome: 'crash', reason: `modified locked file ${modified.join(', ')}` }, null);
    const finished = trained.exitCode === 0 && !trained.killedFor;
    const ev = req.evaluate;
    if (!finished || !ev) {
      const reading = finished ? checkMetric(summary, req.metric) : { value: null, problem: null };
      return result(classify({ ...facts, metric: reading.value, metricProblem: reading.problem }), reading.value);
    }
    // Without an evaluator metric the trainer's own figure decides: no need to evaluate a run that has none.
    const own = checkMetric(summary, req.metric);
    if (!ev.metric && (own.value === null || own.problem)) return result(classify({ ...facts, metric: own.value, metricProblem: own.problem }), own.value);

    // The locked evaluation: its figures come from its own output, which the trainer never touches.
    const evalLog = logPath.replace(/\.log$/, '.eval.log');
    const evalSink = createWriteStream(evalLog, { flags: 'a' });
    evalSink.write(`${ATTEMPT_HEADER}${req.tag} experiment ${req.experiment} run ${req.run} attempt ${ctx.info.attempt}: evaluation: ${ev.command}\n=== ${sandbox.header}\n`);
    const evalEnv = { ...trainingEnv(req.env, slot.devices), ...caches, NIGHTLAB_OUTPUT_DIR: outDir, TMPDIR: evalTmp };
    const evalTimeout = ev.timeoutSec ?? DEFAULT_EVAL_TIMEOUT_SEC;
    const evaluated = await runProcess({
      command: ev.command, cwd: worktree, env: evalEnv, timeoutSec: evalTimeout, pidFile, ctx, slot, host, sink: evalSink,
      bwrap: sandbox.kind === 'bwrap' ? { path: sandbox.bwrap, args: bwrapArgs({ worktree, worktreeReadOnly: true, readOnly: [outDir], writable: [evalTmp], caches: [compileCache], hide, hideInWorktree: [], env: evalEnv }) } : null,
    });
    await new Promise<void>((resolve) => evalSink.end(resolve));
    seconds += evaluated.seconds;
    if (evaluated.killedFor === 'cancelled') throw new CancelledFailure('run cancelled during its evaluation; process group killed');
    const evalOut = lastAttempt(readEnd(evalLog, SUMMARY_BYTES));
    if (evaluated.killedFor === 'timeout') return result({ outcome: 'crash', reason: `evaluation killed after its hard timeout of ${evalTimeout} s` }, null);
    if (evaluated.exitCode !== 0) {
      // The evaluator's last words, minus any line that names the held-out figure (the reason reaches the proposer).
      const quiet = ev.heldOut ? evalOut.split('\n').filter((l) => !l.includes(ev.heldOut!)).join('\n') : evalOut;
      const why = evaluated.exitCode === 127 ? `command not found (exit 127): ${ev.command}` : `exit ${evaluated.exitCode ?? evaluated.signal}: ${lastMeaningfulLine(quiet)}`;
      return result({ outcome: 'crash', reason: `evaluation failed (${why})` }, null);
    }
    const heldOut = ev.heldOut ? checkMetric(evalOut, { name: ev.heldOut }).value : null;
    if (!ev.metric) return result(classify({ ...facts, metric: own.value, metricProblem: own.problem }), own.value, heldOut);
    const judged = checkMetric(evalOut, { name: ev.metric });
    return result(classify({ ...facts, metric: judged.value, metricProblem: judged.problem, metricName: ev.metric, metricSource: 'evaluation' }), judged.value, heldOut);
  }
}

export type GpuActivities = ReturnType<typeof createGpuActivities>;

/**
 * How a run ended, in one word and one line. `metricProblem` (from checkMetric: the metric printed
 * twice, or a malformed metric line) makes a run that exited 0 a crash; `metricSource` says whose
 * output the metric was read from when it is not the trainer's.
 */
export function classify(r: { exitCode: number | null; signal: string | null; killedFor: 'timeout' | 'cancelled' | null; metric: number | null; tail: string; timeoutSec: number; command: string; metricName: string; metricProblem?: string | null; metricSource?: 'evaluation' }): { outcome: RunOutcome; reason: string } {
  if (r.killedFor === 'timeout') return { outcome: 'timeout', reason: `killed after the hard timeout of ${r.timeoutSec} s` };
  if (r.exitCode === 127) return { outcome: 'crash', reason: `command not found (exit 127): ${r.command}` };
  if (r.exitCode !== 0 && (looksOutOfMemory(r.tail) || r.exitCode === 137 || (r.signal === 'SIGKILL' && r.exitCode === null))) {
    return { outcome: 'oom', reason: `out of memory${r.signal ? ` (${r.signal})` : ''}: ${lastMeaningfulLine(r.tail)}` };
  }
  if (r.exitCode !== 0) return { outcome: 'crash', reason: `exit ${r.exitCode ?? r.signal}: ${lastMeaningfulLine(r.tail)}` };
  if (r.metricProblem) return { outcome: 'crash', reason: r.metricSource ? `${r.metricProblem} (in the evaluation's output)` : r.metricProblem };
  if (r.metric === null) {
    return { outcome: 'no-metric', reason: r.metricSource ? `the evaluation exited 0 but printed no ${r.metricName} in its final summary block` : `exited 0 but printed no ${r.metricName} in its final summary block` };
  }
  return { outcome: 'ok', reason: '' };
}

interface ProcessRun {
  exitCode: number | null;
  signal: string | null;
  killedFor: 'timeout' | 'cancelled' | null;
  seconds: number;
  peakMb: number | null;
}

/**
 * One command in its own process group (inside bubblewrap when `bwrap` is given), its output
 * streamed to `sink`, heartbeats every few seconds, the whole group killed at the timeout or on
 * cancel: SIGTERM, then SIGKILL after a grace period.
 */
async function runProcess(o: {
  command: string; cwd: string; env: Record<string, string>; timeoutSec: number; pidFile: string; ctx: Context; slot: Slot; host: string;
  sink: WriteStream; bwrap: { path: string; args: string[] } | null;
}): Promise<ProcessRun> {
  const { ctx, slot, host } = o;
  const started = Date.now();
  const options = {
    cwd: o.cwd,
    env: o.env,
    extendEnv: false,
    detached: true, // its own process group, so the whole tree can be killed
    reject: false,
    buffer: false,
    stdin: 'ignore',
  } as const;
  const child = o.bwrap
    ? execa(o.bwrap.path, [...o.bwrap.args, '--', '/bin/sh', '-c', o.command], options)
    : execa(o.command, { ...options, shell: true });
  writeFileSync(o.pidFile, pidRecord(child.pid!));
  let lastLine = '';
  const onData = (chunk: Buffer) => {
    o.sink.write(chunk);
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
  const timer = setTimeout(() => killGroup('timeout'), o.timeoutSec * 1000);
  const onCancel = () => killGroup('cancelled');
  ctx.cancellationSignal.addEventListener('abort', onCancel);
  let peakMb: number | null = null;
  const beat = setInterval(async () => {
    const elapsed = (Date.now() - started) / 1000;
    ctx.heartbeat({ elapsedSec: Math.round(elapsed), timeoutSec: o.timeoutSec, lastLine, slot: slot.name, host });
    const used = await gpuMemoryMb(slot.devices);
    if (used !== null) peakMb = Math.max(peakMb ?? 0, used);
  }, HEARTBEAT_MS);
  ctx.heartbeat({ elapsedSec: 0, timeoutSec: o.timeoutSec, lastLine: 'started', slot: slot.name, host });

  // The run is over when its process exits, not when its output pipes close: a child that escaped
  // the process group (setsid) could hold them open for ever.
  const streamsClosed = child.then(() => undefined, () => undefined);
  const done = await new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: null, signal: null }));
  });
  clearTimeout(timer);
  clearInterval(beat);
  ctx.cancellationSignal.removeEventListener('abort', onCancel);
  // Stragglers (children that outlived the shell) go with the group.
  signalGroup(child.pid!, 'SIGKILL');
  // Output still in the pipes is read for a moment; then they are closed on our side.
  await Promise.race([streamsClosed, new Promise((r) => setTimeout(r, STREAM_GRACE_MS))]);
  child.stdout?.destroy();
  child.stderr?.destroy();
  rmSync(o.pidFile, { force: true });
  return { exitCode: done.code, signal: done.signal, killedFor, seconds: (Date.now() - started) / 1000, peakMb };
}

/** Compile-cache variables for a sandboxed run (the config's own env wins), the directories made. */
function sandboxCaches(dir: string, configEnv: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, sub] of [['TRITON_CACHE_DIR', 'triton'], ['TORCHINDUCTOR_CACHE_DIR', 'inductor']]) {
    if (configEnv[name]) continue;
    env[name] = path.join(dir, sub);
    mkdirSync(env[name], { recursive: true });
  }
  return env;
}

/** The output of the last attempt in a log (from its header line on). */
function lastAttempt(text: string): string {
  return text.slice(Math.max(0, text.lastIndexOf(ATTEMPT_HEADER)));
}

/** The remote as a local directory (hidden from sandboxed runs), or null for a network URL. */
function localDir(remote: string): string | null {
  let p = remote;
  if (remote.startsWith('file://')) p = decodeURIComponent(new URL(remote).pathname);
  else if (isGitUrl(remote)) return null;
  try {
    p = path.resolve(p);
    return statSync(p).isDirectory() ? p : null;
  } catch {
    return null;
  }
}

interface LockedBaseline {
  /** Content hash (git blob id) of each guarded file before the run; null: absent from the commit. */
  hashes: Map<string, string>;
  /** Guarded directories: files appearing in them are changes too. */
  dirs: string[];
  algorithm: 'sha1' | 'sha256';
  /** Guarded files whose worktree content is not the commit's. */
  mismatch: string[];
}

/**
 * The blobs of the guarded paths (locked files, held-out data) at the candidate commit, checked
 * against the worktree before the run. A file that differs only through git's filters (line
 * endings, LFS) counts as the commit's when git itself sees no change.
 */
async function lockedBaseline(cache: string, worktree: string, sha: string, paths: string[]): Promise<LockedBaseline> {
  const base: LockedBaseline = { hashes: new Map(), dirs: [], algorithm: 'sha1', mismatch: [] };
  if (!paths.length) return base;
  const tree = await git(cache).text(['ls-tree', '-r', '-z', sha, '--', ...paths]);
  for (const entry of tree.split('\0').filter(Boolean)) {
    const [meta, file] = [entry.slice(0, entry.indexOf('\t')), entry.slice(entry.indexOf('\t') + 1)];
    const [mode, type, oid] = meta.split(' ');
    if (type !== 'blob') continue;
    base.algorithm = oid.length === 64 ? 'sha256' : 'sha1';
    const actual = blobId(path.join(worktree, file), base.algorithm, mode === '120000');
    if (actual === oid) {
      base.hashes.set(file, oid);
      continue;
    }
    const clean = await git(worktree).raw(['diff', '--quiet', 'HEAD', '--', file]).then(() => true, () => false);
    if (clean && actual !== null) base.hashes.set(file, actual);
    else base.mismatch.push(file);
  }
  base.dirs = paths.filter((p) => isDirectory(path.join(worktree, p)));
  return base;
}

/** Guarded files the run changed, deleted or added (untracked and not ignored, in a guarded directory). */
async function lockedChanges(worktree: string, base: LockedBaseline): Promise<string[]> {
  const changed: string[] = [];
  for (const [file, hash] of base.hashes) {
    const now = blobId(path.join(worktree, file), base.algorithm, isSymlink(path.join(worktree, file)));
    if (now === null) changed.push(`${file} (deleted)`);
    else if (now !== hash) changed.push(file);
  }
  if (base.dirs.length) {
    const others = await git(worktree).text(['ls-files', '-z', '--others', '--exclude-standard', '--', ...base.dirs]).catch(() => '');
    for (const file of others.split('\0').filter(Boolean)) changed.push(`${file} (created)`);
  }
  return changed;
}

/** git's id of a file's content (`git hash-object`), or null when it is missing. */
function blobId(file: string, algorithm: 'sha1' | 'sha256', symlink = false): string | null {
  let content: Buffer;
  try {
    content = symlink ? Buffer.from(readlinkSync(file)) : readFileSync(file);
  } catch {
    return null;
  }
  return createHash(algorithm).update(`blob ${content.length}\0`).update(content).digest('hex');
}

function isDirectory(p: string): boolean {
  try {
    return lstatSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isSymlink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

function lastMeaningfulLine(tail: string): string {
  return tail.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('===')).at(-1)?.slice(0, 200) ?? '(no output)';
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/**
 * What run.pid holds: the run's process group, and what tells that process apart from a later one
 * given the same number (after a reboot, or once pids wrap): this boot's id and the leader's start
 * time, both from /proc (null where there is none, as on macOS).
 */
interface PidRecord { pid: number; boot: string | null; start: string | null }

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/** The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat); null when it is gone or there is no /proc. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

export function pidRecord(pid: number): string {
  return JSON.stringify({ pid, boot: bootId(), start: startTime(pid) } satisfies PidRecord);
}

/**
 * A run left behind by a worker that died: kill its process group before this slot is reused.
 * Only when it is that run's group: a pid file that outlived a reboot, or whose number now belongs
 * to another process, is dropped without a signal (a blind SIGKILL there could hit anything).
 */
export function reapOrphan(pidFile: string): number | null {
  if (!existsSync(pidFile)) return null;
  const text = readFileSync(pidFile, 'utf8').trim();
  rmSync(pidFile, { force: true });
  // A bare number: written by a version before the record (no way to check; the old behaviour).
  const rec: PidRecord = /^\d+$/.test(text) ? { pid: Number(text), boot: null, start: null } : parseRecord(text);
  if (!Number.isInteger(rec.pid) || rec.pid <= 1) return null;
  if (rec.boot !== null && rec.boot !== bootId()) return null;
  // The leader may be gone while the rest of its group lives on; the kernel does not hand out a
  // pid still in use as a group id, so a leader that exists must be the one recorded.
  const start = startTime(rec.pid);
  if (rec.start !== null && start !== null && start !== rec.start) return null;
  try {
    process.kill(-rec.pid, 0);
  } catch {
    return null;
  }
  signalGroup(rec.pid, 'SIGKILL');
  return rec.pid;
}

function parseRecord(text: string): PidRecord {
  try {
    const r = JSON.parse(text) as Partial<PidRecord>;
    return { pid: Number(r.pid), boot: r.boot ?? null, start: r.start ?? null };
  } catch {
    return { pid: NaN, boot: null, start: null };
  }
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
