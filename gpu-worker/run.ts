// One run on one GPU slot, step by step:
//   1. the workspace: fetch the candidate, check it against the campaign's base (guard.ts), write
//      its files into a fresh folder (workspace.ts), persisted paths made by run.setup if missing;
//   2. train: the command in the sandbox (lib/sandbox.ts), supervised (lib/supervise.ts): its own
//      process group, a capped log streamed to disk, heartbeats, the hard timeout;
//   3. the guard again: a run that changed a locked file is a crash, however it ended;
//   4. the locked evaluation, when the config has one (evaluation.ts);
//   5. the outcome, in one word and one line (outcome.ts).
// Every run leaves a record, even when it dies.
import os from 'node:os';
import path from 'node:path';
import { statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { Context, CancelledFailure } from '@temporalio/activity';
import { execa } from 'execa';
import { experimentRef, type RunHeartbeat, type RunRequest, type RunResult, type RunOutcome } from '../common/shared';
import { checkMetric, readFigure } from '../lib/metrics';
import { bareGit, isGitUrl } from '../lib/git';
import { confined, decideSandbox, isInside, venvHome, type Mount, type SandboxDecision } from '../lib/sandbox';
import { CappedLog, privateDir, reapOrphan, supervise, type ProcessRun } from '../lib/supervise';
import { guardChanges, guardOf } from '../lib/tree';
import { trainingEnv } from './env';
import { candidateProblem } from './guard';
import { evaluate, evaluationFigures } from './evaluation';
import { ATTEMPT_HEADER, classify, lastAttemptOf, tailOf } from './outcome';
import { RunProgress } from './progress';
import { fetchCandidate, freshTree, markSetup, needsSetup, slotPlaces, type SlotPlaces } from './workspace';

/** run.setup gets this long to make the persisted paths. */
const SETUP_TIMEOUT_SEC = 1800;
/**
 * `uv run` in a run: the environment run.setup made is used as it is (read-only), with neither a
 * sync nor a download (there is no network), and fails at once instead of retrying DNS.
 */
const UV_RUN = { UV_NO_SYNC: '1', UV_OFFLINE: '1', UV_PYTHON_DOWNLOADS: 'never' };

export interface Slot {
  /** "gpu0", "gpu1", ... or "cpu". */
  name: string;
  /** CUDA_VISIBLE_DEVICES for this slot (an index, or its GPU's UUID), or null for a CPU slot. */
  devices: string | null;
  /** The device nodes its sandbox gets (its GPU and the driver's control nodes); absent: every /dev/nvidia*. */
  nodes?: string[];
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
    async run(req: RunRequest): Promise<RunResult> {
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
    const slotDir = privateDir(path.join(deps.home, 'slots', slot.name));
    const pidFile = path.join(slotDir, 'run.pid');
    reapOrphan(pidFile);
    const places = slotPlaces(deps.home, slotDir, req.remote, req.tag);
    const base = req.base ?? null;
    await fetchCandidate(places.cache, req.remote, [
      { ref: req.ref, sha: req.sha },
      ...(base ? [{ ref: experimentRef(req.tag, 0), sha: base }] : []),
    ]);

    const name = `${req.experiment}-${req.fidelity ? `${req.fidelity}-` : ''}${req.run}`;
    const logPath = path.join(deps.home, 'logs', req.tag, `${name}.log`);
    const log = new CappedLog(logPath, req.maxLogBytes);
    log.write(
      `${ATTEMPT_HEADER}${req.tag} experiment ${req.experiment} run ${req.run} attempt ${ctx.info.attempt} on ${host}/${slot.name} at ${req.sha.slice(0, 7)}: ${req.command}\n`,
    );
    const crash = (reason: string, seconds = 0): RunResult => {
      log.write(`=== ${reason}\n`);
      log.close();
      return {
        outcome: 'crash',
        exitCode: null,
        metric: null,
        memoryMb: null,
        seconds,
        logPath,
        host,
        slot: slot.name,
        logTail: '',
        reason,
      };
    };

    // 1. The candidate against the campaign's base: only editable files may differ.
    const heldOut = (req.evaluate?.heldOutPaths ?? []).map((p) => p.replace(/\/+$/, ''));
    const guard =
      req.guard ?? (await guardOf(bareGit(places.cache), base ?? req.sha, [...(req.locked ?? []), ...heldOut]));
    const problem = base ? await candidateProblem(places.cache, base, req.sha, req.editable ?? null, guard) : null;
    if (problem) return crash(problem);
    const sandbox = await decideSandbox(req.sandbox);
    if (sandbox.kind === 'refuse') return crash(sandbox.reason);
    log.write(`=== ${sandbox.header}\n`);
    const persist = req.persist ?? [];
    const lockedGuard = Object.fromEntries(Object.entries(guard).filter(([p]) => !heldOut.includes(p)));
    const isolation: Isolation = {
      sandbox,
      protect: [deps.home, ...localDirs(req.remote)],
      readOnly: req.readOnly ?? [],
      tools: [],
      gpus: slot.devices === null ? false : (slot.nodes ?? true),
    };

    // The persisted paths (a .venv), made on the base commit by run.setup when missing.
    const setupKey = createHash('sha256')
      .update(JSON.stringify([req.setup, guard]))
      .digest('hex');
    const stamp = path.join(places.workspace + '.setup');
    if (req.setup && needsSetup(places.workspace, persist, stamp, setupKey)) {
      const setup = await runSetup(req, places, isolation, log, ctx);
      if (setup) return crash(setup);
      markSetup(stamp, setupKey);
    }
    // The Python installations the persisted virtualenvs point into: one run.setup installed is
    // Nightlab's own mount; any other is read like a declared path (never a home or NIGHTLAB_HOME).
    const pythons = (req.persist ?? [])
      .map((p) => venvHome(path.join(places.workspace, p)))
      .filter((p): p is string => !!p);
    isolation.tools = pythons.filter((p) => isInside(p, places.setup));
    isolation.readOnly = [...isolation.readOnly, ...pythons.filter((p) => !isInside(p, places.setup))];
    await freshTree(places.cache, places.workspace, req.sha, { omit: heldOut, keep: persist });

    // 2. Train.
    const outDir = privateDir(path.join(places.scratch, 'out'));
    const tmp = privateDir(path.join(places.scratch, 'tmp'));
    const caches = privateDir(req.fresh ? path.join(places.scratch, 'caches') : places.caches);
    const baseEnv = trainingEnv(req.env, slot.devices);
    const env = {
      ...baseEnv,
      ...compileCaches(caches, req.env),
      NIGHTLAB_OUTPUT_DIR: outDir,
      TMPDIR: tmp,
      // Bytecode goes to this run's scratch: nothing compiled by one run is ever loaded by another.
      PYTHONPYCACHEPREFIX: path.join(tmp, 'pycache'),
      // uv runs the persisted .venv as it is: no sync, no download, a cache of this run's own.
      ...UV_RUN,
      UV_CACHE_DIR: path.join(tmp, 'uv-cache'),
      ...pick(req.env, Object.keys(UV_RUN)),
    };
    const mounts: Mount[] = [
      { path: places.workspace, mode: 'rw' },
      ...persist.map((p) => ({ path: path.join(places.workspace, p), mode: 'ro' as const })),
      { path: outDir, mode: 'rw' },
      { path: tmp, mode: 'rw' },
      { path: caches, mode: 'rw' },
      ...isolation.tools.map((p) => ({ path: p, mode: 'ro' as const })),
    ];
    const train = await confined(sandbox, { cwd: places.workspace, mounts, env, ...isolation }, req.command);
    let peakMb: number | null = null;
    // Bound below, once the process exists: its output only arrives after that.
    let stopRun = () => {};
    const progress = new RunProgress(req, () => stopRun());
    /** A heartbeat naming this experiment and run, so live views pair runs with experiments at any parallelism. */
    const onBeat = (elapsedSec: number, lastLine: string) => {
      const beat: RunHeartbeat = {
        experiment: req.experiment,
        run: req.run,
        elapsedSec,
        timeoutSec: req.timeoutSec,
        lastLine,
        slot: slot.name,
        host,
      };
      ctx.heartbeat(beat);
      void gpuMemoryMb(slot.devices).then((used) => {
        if (used !== null) peakMb = Math.max(peakMb ?? 0, used);
      });
    };
    const training = supervise({
      argv: train.argv,
      cwd: places.workspace,
      env: train.env,
      timeoutSec: req.timeoutSec,
      signal: ctx.cancellationSignal,
      log,
      pidFile,
      feed: train.feed,
      onOutput: (chunk) => progress.feed(chunk),
      onBeat,
    });
    stopRun = training.stop;
    const trained = await training.done;
    progress.close();
    if (progress.stoppedFor) log.write(`=== ${progress.stoppedFor}\n`);
    log.close();
    if (trained.killedFor === 'cancelled') throw new CancelledFailure('run cancelled; process group killed');

    const summary = lastAttemptOf(logPath);
    const tail = tailOf(summary);
    const memoryFigure = req.memoryKey ? readFigure(summary, req.memoryKey) : null;
    let seconds = trained.seconds;
    const curve = progress.curve();
    const result = (
      r: { outcome: RunOutcome; reason: string },
      metric: number | null,
      heldOutFigure: number | null = null,
    ): RunResult => ({
      outcome: r.outcome,
      exitCode: trained.exitCode,
      metric: r.outcome === 'ok' ? metric : null,
      memoryMb: memoryFigure ?? peakMb,
      seconds: Math.round(seconds * 10) / 10,
      logPath,
      host,
      slot: slot.name,
      logTail: tail,
      reason: r.reason,
      ...(req.evaluate?.heldOut ? { heldOut: r.outcome === 'ok' ? heldOutFigure : null } : {}),
      isolation: sandbox.kind === 'bwrap' ? 'sandbox' : req.sandbox === 'off' ? 'off' : 'none',
      ...(curve ? { curve } : {}),
    });
    const facts = { ...outcomeFacts(trained, tail, req), stoppedFor: progress.stoppedFor };

    // 3. A run that changed a locked file is a crash, however it ended.
    const modified = guardChanges(places.workspace, lockedGuard);
    if (modified.length)
      return result({ outcome: 'crash', reason: `modified locked file ${modified.join(', ')}` }, null);
    const finished = trained.exitCode === 0 && !trained.killedFor;
    const ev = req.evaluate;
    const own = finished ? checkMetric(summary, req.metric) : { value: null, problem: null };
    // Without an evaluator metric the trainer's own figure decides: no need to evaluate a run that has none.
    if (!finished || !ev || (!ev.metric && (own.value === null || own.problem))) {
      return result(classify({ ...facts, metric: own.value, metricProblem: own.problem }), own.value);
    }

    // 4. The locked evaluation.
    const evaluation = await evaluate({
      req,
      ev,
      places,
      logPath,
      outDir,
      env: baseEnv,
      guard,
      ...isolation,
      ctx,
      pidFile,
      // The evaluation beats too (it may take longer than the heartbeat timeout); its output is never shown.
      onBeat: (elapsedSec) => onBeat(elapsedSec, '(evaluation)'),
    });
    seconds += evaluation.seconds;
    if (evaluation.failure) return result({ outcome: 'crash', reason: evaluation.failure }, null);
    const figures = evaluationFigures(evaluation.output, ev);
    // 5. The outcome: the evaluator's figure decides when it has one, else the trainer's own.
    if (!figures.metric)
      return result(classify({ ...facts, metric: own.value, metricProblem: own.problem }), own.value, figures.heldOut);
    return result(
      classify({
        ...facts,
        metric: figures.metric.value,
        metricProblem: figures.metric.problem,
        metricName: ev.metric!,
        metricSource: 'evaluation',
      }),
      figures.metric.value,
      figures.heldOut,
    );
  }
}

export type GpuActivities = ReturnType<typeof createGpuActivities>;

interface Isolation {
  sandbox: Exclude<SandboxDecision, { kind: 'refuse' }>;
  /** Never exposed by a tool or declared path: NIGHTLAB_HOME, a local campaign repository. */
  protect: string[];
  /** Declared host paths (run.readOnly). */
  readOnly: string[];
  /** Read-only mounts Nightlab adds itself: the Pythons of persisted virtualenvs. */
  tools: string[];
  /** The slot's GPU device nodes, or every one (true), or none. */
  gpus: boolean | string[];
}

/**
 * run.setup on the campaign's base commit (the user's own code: no proposer's), with the network
 * (it installs packages) and the persisted paths writable; they are read-only to every run after.
 */
async function runSetup(
  req: RunRequest,
  places: SlotPlaces,
  iso: Isolation,
  log: CappedLog,
  ctx: Context,
): Promise<string | null> {
  const persist = req.persist ?? [];
  await freshTree(places.cache, places.workspace, req.base ?? req.sha, { omit: req.evaluate?.heldOutPaths ?? [] });
  const tmp = privateDir(path.join(places.scratch, 'setup-tmp'));
  // uv's downloads and the Pythons it installs live beside the campaign's caches, never writable by a run.
  const env = {
    ...trainingEnv(req.env, null),
    TMPDIR: tmp,
    PYTHONPYCACHEPREFIX: path.join(tmp, 'pycache'),
    UV_CACHE_DIR: privateDir(path.join(places.setup, 'uv')),
    UV_PYTHON_INSTALL_DIR: privateDir(path.join(places.setup, 'python')),
    // Copies, not hard links into the cache (another mount); bytecode compiled now, as the venv is read-only later.
    UV_LINK_MODE: 'copy',
    UV_COMPILE_BYTECODE: '1',
  };
  log.write(`=== setup of ${persist.join(', ')} on the base commit: ${req.setup}\n`);
  const mounts: Mount[] = [
    { path: places.workspace, mode: 'rw' },
    { path: tmp, mode: 'rw' },
    { path: places.setup, mode: 'rw' },
  ];
  const cmd = await confined(
    iso.sandbox,
    { cwd: places.workspace, mounts, env, protect: iso.protect, readOnly: iso.readOnly, network: true },
    req.setup!,
  );
  const r = await supervise({
    argv: cmd.argv,
    cwd: places.workspace,
    env: cmd.env,
    timeoutSec: SETUP_TIMEOUT_SEC,
    signal: ctx.cancellationSignal,
    log,
    feed: cmd.feed,
  }).done;
  if (r.killedFor === 'cancelled') throw new CancelledFailure('run cancelled during setup');
  if (r.exitCode !== 0) return `run.setup failed (exit ${r.exitCode ?? r.signal}): ${req.setup}; see the log`;
  const missing = persist.filter((p) => !statOk(path.join(places.workspace, p)));
  return missing.length ? `run.setup exited 0 but did not make ${missing.join(', ')} (run.persist)` : null;
}

function pick(env: Record<string, string>, names: string[]): Record<string, string> {
  return Object.fromEntries(names.filter((n) => env[n] !== undefined).map((n) => [n, env[n]]));
}

function outcomeFacts(p: ProcessRun, tail: string, req: RunRequest) {
  return {
    exitCode: p.exitCode,
    signal: p.signal,
    killedFor: p.killedFor,
    tail,
    timeoutSec: req.timeoutSec,
    command: req.command,
    metricName: req.metric.name,
  };
}

/** Compile-cache variables (the config's own env wins), in the campaign's cache folder. */
function compileCaches(dir: string, configEnv: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, sub] of [
    ['TRITON_CACHE_DIR', 'triton'],
    ['TORCHINDUCTOR_CACHE_DIR', 'inductor'],
  ]) {
    if (!configEnv[name]) env[name] = privateDir(path.join(dir, sub));
  }
  return env;
}

/** The remote as a local directory (never exposed to a sandboxed process), or nothing for a network URL. */
function localDirs(remote: string): string[] {
  let p = remote;
  if (remote.startsWith('file://')) p = decodeURIComponent(new URL(remote).pathname);
  else if (isGitUrl(remote)) return [];
  return statOk(p) ? [path.resolve(p)] : [];
}

function statOk(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

async function gpuMemoryMb(devices: string | null): Promise<number | null> {
  if (devices === null) return null;
  try {
    const r = await execa('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits', '-i', devices], {
      timeout: 3000,
    });
    return r.stdout
      .split('\n')
      .map(Number)
      .filter(Number.isFinite)
      .reduce((a, b) => a + b, 0);
  } catch {
    return null;
  }
}
