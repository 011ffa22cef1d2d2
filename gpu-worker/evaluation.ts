// The locked evaluation, after a training run that exited 0. Its figures come from the scorer's own
// output, which no proposer code writes into, and nothing of that output reaches the proposer
// beyond the deciding figure: a failure is reported as an exit status, never as text.
//
// With `evaluate.model` (the guarantee), two processes, each in a sandbox of its own:
//   - the scorer (`evaluate.command`) runs in a fresh copy of the campaign's BASE commit without the
//     editable files, held-out data included: only locked code, nothing a run left, nothing a
//     proposer wrote can be imported there;
//   - the model (`evaluate.model`) runs in a fresh copy of the candidate, read-only, held-out data
//     left out, with the run's output read-only, no network, no cache, and a scratch TMPDIR that
//     is thrown away;
//   - they talk over fd 3 only (a socket each, joined by the worker): the scorer sends inputs, the
//     model answers with predictions, and the scorer computes the figure from them.
// Without `model`, the command runs in a fresh copy of the candidate with the held-out data, the
// way autoresearch-style targets do: proposer code it imports runs in the scorer's process, so
// the figure is only as sound as that code is honest (see docs/harness.md).
import path from 'node:path';
import { CancelledFailure, type Context } from '@temporalio/activity';
import type { EvaluateSpec, RunRequest } from '../common/shared';
import { checkMetric } from '../lib/metrics';
import { confined, type Mount, type SandboxDecision } from '../lib/sandbox';
import { CappedLog, privateDir, signalGroup, supervise, type ProcessRun } from '../lib/supervise';
import { guardChanges } from '../lib/tree';
import { freshTree, type SlotPlaces } from './workspace';
import { ATTEMPT_HEADER, lastAttemptOf } from './outcome';

export interface EvaluationArgs {
  req: RunRequest;
  ev: EvaluateSpec;
  places: SlotPlaces;
  sandbox: Exclude<SandboxDecision, { kind: 'refuse' }>;
  /** The training log: the evaluation's logs sit beside it (`.eval.log`, `.model.log`). */
  logPath: string;
  outDir: string;
  /** The run's environment less its scratch variables (allowlist, config env, devices). */
  env: Record<string, string>;
  guard: Record<string, string>;
  protect: string[];
  readOnly: string[];
  /** Read-only mounts of Nightlab's own (the persisted virtualenvs' Pythons). */
  tools: string[];
  gpus: boolean | string[];
  ctx: Context;
  pidFile: string;
  /** Called while an evaluation process runs, as for training (the run's heartbeat). */
  onBeat: (elapsedSec: number) => void;
}

export interface Evaluation {
  seconds: number;
  /** Why no figure counts (for the ledger and the proposer: no word of the evaluation's output). */
  failure: string | null;
  /** The scorer's last attempt's output: figures are read from it. */
  output: string;
}

export async function evaluate(a: EvaluationArgs): Promise<Evaluation> {
  const { req, ev, places } = a;
  const heldOut = (ev.heldOutPaths ?? []).map((p) => p.replace(/\/+$/, ''));
  const persist = req.persist ?? [];
  const timeoutSec = ev.timeoutSec ?? 120;
  const evalLog = new CappedLog(a.logPath.replace(/\.log$/, '.eval.log'), req.maxLogBytes);
  const header = `${ATTEMPT_HEADER}${req.tag} experiment ${req.experiment} run ${req.run} attempt ${a.ctx.info.attempt}: evaluation: ${ev.command}\n=== ${a.sandbox.header}\n`;
  evalLog.write(header);
  const scratch = (name: string) => privateDir(path.join(places.scratch, name));
  // Each process gets its own throwaway TMPDIR and compile caches there: no cache is shared with training.
  const envFor = (tmp: string) => ({
    ...a.env,
    NIGHTLAB_OUTPUT_DIR: a.outDir,
    TMPDIR: tmp,
    PYTHONPYCACHEPREFIX: path.join(tmp, 'pycache'),
    TRITON_CACHE_DIR: path.join(tmp, 'triton'),
    TORCHINDUCTOR_CACHE_DIR: path.join(tmp, 'inductor'),
    UV_CACHE_DIR: path.join(tmp, 'uv'),
  });
  /** The candidate's workspace and its persisted folders (a virtualenv), read-only. */
  const candidate = (): Mount[] =>
    [places.workspace, ...persist.map((p) => path.join(places.workspace, p)), ...a.tools].map((p) => ({
      path: p,
      mode: 'ro' as const,
    }));
  /**
   * One process of the evaluation, confined and started: it reads `reads` and Nightlab's output
   * folder, writes only its throwaway `tmp`; `fds` is where its extra pipes begin (3 when it talks
   * to the other process over fd 3, whose seccomp filter then goes above it).
   */
  const start = async (o: {
    dir: string;
    reads: Mount[];
    tmp: string;
    command: string;
    gpus: boolean | string[];
    log: CappedLog;
    noLocks?: boolean;
    pair?: boolean;
    pidFile?: string;
  }) => {
    const spec = {
      cwd: o.dir,
      mounts: [...o.reads, { path: a.outDir, mode: 'ro' as const }, { path: o.tmp, mode: 'rw' as const }],
      env: envFor(o.tmp),
      protect: a.protect,
      readOnly: a.readOnly,
      gpus: o.gpus,
      ...(o.noLocks ? { noLocks: true } : {}),
    };
    const p = await confined(a.sandbox, spec, o.command, o.pair ? 4 : 3);
    return supervise({
      argv: p.argv,
      cwd: o.dir,
      env: p.env,
      timeoutSec,
      signal: a.ctx.cancellationSignal,
      log: o.log,
      ...(o.pair ? { extraPipes: 1 } : {}),
      ...(o.pidFile ? { pidFile: o.pidFile } : {}),
      feed: p.feed,
      onBeat: a.onBeat,
    });
  };
  const started = Date.now();
  const done = (failure: string | null, how = ''): Evaluation => {
    if (failure && how) evalLog.write(`=== nightlab: ${how}\n`);
    evalLog.close();
    return { seconds: (Date.now() - started) / 1000, failure, output: failure ? '' : lastAttemptOf(evalLog.file) };
  };

  if (!ev.model) {
    // The candidate, fresh (nothing training left), with the held-out data, read-only.
    await freshTree(places.cache, places.workspace, req.sha, { keep: persist });
    const run = await (
      await start({
        dir: places.workspace,
        reads: candidate(),
        tmp: scratch('eval-tmp'),
        command: ev.command,
        gpus: a.gpus,
        log: evalLog,
        pidFile: a.pidFile,
      })
    ).done;
    const changed = guardChanges(places.workspace, a.guard);
    return done(
      failureOf(run, null) ??
        (changed.length ? `the evaluation changed locked file or held-out data ${changed.join(', ')}` : null),
      `scorer ${ended(run)}`,
    );
  }

  // The scorer: the base commit's files but the editable ones, held-out data included.
  const scorerDir = path.join(places.scratch, 'scorer');
  await freshTree(places.cache, scorerDir, req.base ?? req.sha, { omit: req.editable ?? [] });
  const heldOutGuard = Object.fromEntries(Object.entries(a.guard).filter(([p]) => heldOut.includes(p)));
  const before = guardChanges(scorerDir, heldOutGuard);
  if (before.length) return done(`held-out data ${before.join(', ')} is not the campaign's base`);
  // The model: the candidate, fresh, without the held-out data.
  await freshTree(places.cache, places.workspace, req.sha, { omit: heldOut, keep: persist });
  const modelLog = new CappedLog(a.logPath.replace(/\.log$/, '.model.log'), req.maxLogBytes);
  modelLog.write(
    `${ATTEMPT_HEADER}${req.tag} experiment ${req.experiment} run ${req.run} attempt ${a.ctx.info.attempt}: model for the evaluation: ${ev.model}\n=== ${a.sandbox.header}\n`,
  );
  const m = await start({
    dir: places.workspace,
    reads: candidate(),
    tmp: scratch('model-tmp'),
    command: ev.model,
    gpus: a.gpus,
    log: modelLog,
    noLocks: true,
    pair: true,
  });
  const s = await start({
    dir: scorerDir,
    reads: [{ path: scorerDir, mode: 'ro' }],
    tmp: scratch('eval-tmp'),
    command: ev.command,
    gpus: false,
    log: evalLog,
    pair: true,
    pidFile: a.pidFile,
  });
  // fd 3 of one is fd 3 of the other: the only channel between them.
  const [toModel, toScorer] = [s.child.stdio[3], m.child.stdio[3]] as unknown as NodeJS.ReadWriteStream[];
  for (const end of [toModel, toScorer]) end.on('error', () => {}); // a side that exits closes its end
  toModel.pipe(toScorer);
  toScorer.pipe(toModel);
  const scored = await s.done;
  signalGroup(m.child.pid!, 'SIGKILL');
  const served = await m.done;
  modelLog.close();
  const changed = guardChanges(scorerDir, heldOutGuard);
  return done(
    failureOf(scored, served) ?? (changed.length ? `the evaluation changed held-out data ${changed.join(', ')}` : null),
    `scorer ${ended(scored)}; model ${ended(served)}`,
  );
}

/**
 * Why the evaluation gave no figure, or null when the scorer exited 0. One sentence for every way
 * it can fail (crash of either process, exit status, timeout): the model process is shown the
 * held-out inputs, and anything it can choose (an exit status, when to stop) could carry them to
 * the proposer, who reads this reason. People find the difference in the two logs.
 */
function failureOf(scorer: ProcessRun, model: ProcessRun | null): string | null {
  if (scorer.killedFor === 'cancelled' || model?.killedFor === 'cancelled')
    throw new CancelledFailure('run cancelled during its evaluation; process group killed');
  if (scorer.exitCode === 0 && !scorer.killedFor) return null;
  return EVALUATION_FAILED;
}

function ended(p: ProcessRun): string {
  return p.killedFor ? `killed (${p.killedFor})` : `exit ${p.exitCode ?? p.signal}`;
}

export const EVALUATION_FAILED =
  'evaluation failed: no figure (why is in the .eval.log and .model.log, for people only)';

/** The deciding and held-out figures in the scorer's output. */
export function evaluationFigures(
  output: string,
  ev: EvaluateSpec,
): { metric: ReturnType<typeof checkMetric> | null; heldOut: number | null } {
  return {
    metric: ev.metric ? checkMetric(output, { name: ev.metric }) : null,
    heldOut: ev.heldOut ? checkMetric(output, { name: ev.heldOut }).value : null,
  };
}
