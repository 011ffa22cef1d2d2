// The steps of one Nightlab experiment outside Temporal, timed one by one (for bench:overhead's
// profile): the git subprocesses of propose, train and record, the preflight's Python compile, and
// the ledger appends on an empty ledger and on a long campaign's.
//
//   npx tsx bench/steps.ts     (on its own: prints the medians)
import { writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { execa } from 'execa';
import { parseConfig } from '../common/config';
import { experimentRef, type ExperimentRecord, type RunRecord } from '../common/shared';
import { commitFiles, fetchCommit, readRef, setRef, showFiles, compareAndSwapRef } from '../lib/git';
import { freshTree } from '../gpu-worker/workspace';
import { buildContext } from '../proposers/context';
import { mutateProposer } from '../proposers/mutate';
import { preflight } from '../activities/preflight';
import { appendExperiment, appendRun } from '../lib/ledger';
import { noteExperiment } from '../activities';
import { benchConfig, f1, makeBenchRepo, percentile, removeTempDirs, tempDir, TRAINER } from './lib';

const execFileP = promisify(execFile);
const COMPILE = 'import sys; compile(open(sys.argv[1], encoding="utf-8").read(), sys.argv[1], "exec")';

/**
 * The steps of one experiment outside Temporal, one by one, on a campaign that already has
 * `ledgerRows` experiments recorded: which of them cost what (median of `reps`).
 */
export async function stepProfile(reps: number, ledgerRows: number): Promise<Record<string, number>> {
  const repo = await makeBenchRepo();
  const config = parseConfig(benchConfig(), 'bench');
  const campaignDir = tempDir('nightlab-bench-steps-');
  const tag = 'steps';
  const base = (await readRef(repo, 'HEAD'))!;
  // A ledger as a long campaign leaves it: one experiment row and one run row per experiment.
  const row = (n: number): ExperimentRecord => ({
    tag,
    experiment: n,
    commit: base,
    parent: base,
    status: 'discard',
    outcome: 'ok',
    metric: 1.5,
    bestBefore: 1.4,
    delta: 0.1,
    memoryGb: 0,
    description: `WIDTH 8 -> ${n}`,
    reason: 'x',
    evidence: '1.5 vs best 1.4 (1 run): not better',
    runs: 1,
    seconds: 300,
    logPath: '/tmp/x.log',
    host: 'h',
    slot: 's',
    costUsd: 0,
    fixOf: null,
    finishedAt: new Date().toISOString(),
  });
  const runRow = (n: number): RunRecord => ({
    tag,
    experiment: n,
    run: 0,
    commit: base,
    outcome: 'ok',
    metric: 1.5,
    memoryMb: 1,
    seconds: 300,
    logPath: '/tmp/x.log',
    host: 'h',
    slot: 's',
    reason: '',
  });
  const ledgerLines: string[] = [];
  for (let n = 0; n < ledgerRows; n++) {
    ledgerLines.push(
      JSON.stringify({ kind: 'run', ...runRow(n) }),
      JSON.stringify({
        kind: 'experiment',
        ...row(n),
        logTail: 'step 00100 | loss 3.0000 | lr 0.001 | 1234 tok/s\n'.repeat(80).slice(0, 4000),
      }),
    );
  }
  writeFileSync(path.join(campaignDir, 'ledger.jsonl'), ledgerLines.join('\n') + (ledgerLines.length ? '\n' : ''));
  const gpuHome = tempDir('nightlab-bench-steps-gpu-');
  const times: Record<string, number[]> = {};
  const time = async <T>(name: string, fn: () => Promise<T> | T): Promise<T> => {
    const t = performance.now();
    const v = await fn();
    (times[name] ??= []).push(performance.now() - t);
    return v;
  };
  for (let i = 0; i < reps; i++) {
    const n = ledgerRows + i + 1;
    // propose
    const ctx = await time('propose: buildContext (git cat-file, refs, ledger read)', () =>
      buildContext({
        tag,
        experiment: n,
        attempt: 0,
        repo,
        campaignDir,
        config,
        parentSha: base,
        fix: null,
        notes: [],
        instructionsOverride: null,
      }),
    );
    const reply = await mutateProposer(ctx, new AbortController().signal);
    const files = reply.files ?? {};
    const before = await time('propose: files before the edit (git cat-file)', async () =>
      Object.fromEntries((await showFiles(repo, base, config.editable)).map((c, i) => [config.editable[i], c])),
    );
    const rejected = await time('propose: preflight (python3 compile)', () => preflight(files, before, before, config));
    if (rejected) throw new Error(`bench proposal rejected: ${rejected}`);
    const sha = await time('propose: commit in the object store + update-ref', async () => {
      const s = await commitFiles(repo, { code: base, parent: base, files, message: `bench ${n}` });
      await setRef(repo, experimentRef(tag, n), s);
      return s;
    });
    // train (GPU side, without the run)
    const cache = path.join(gpuHome, 'repos', 'r');
    await time('train: fetch candidate into cache', () => fetchCommit(cache, repo, experimentRef(tag, n), sha));
    await time('train: fresh workspace written from the cache', () =>
      freshTree(cache, path.join(gpuHome, 'slots', 's0', 'r'), sha),
    );
    await time('train: spawn trainer (sh run.sh)', () =>
      execa('sh', ['-c', TRAINER], { cwd: repo, env: { BENCH_SLEEP: '0' } }),
    );
    // record
    await time(`record: ledger appends (${ledgerRows} rows before)`, () => {
      appendRun(campaignDir, runRow(n));
      appendExperiment(campaignDir, { ...row(n), commit: sha }, 'val_bpb', 'tail');
    });
    await time('record: git notes add', () => noteExperiment(repo, { ...row(n), commit: sha }, 'val_bpb'));
    await time('advanceBranch: update-ref (compare-and-swap)', () =>
      compareAndSwapRef(repo, `refs/heads/bench-${n}`, sha, null),
    );
  }
  // Two diagnostics: a git command that prints nothing, through activities/git.ts and directly;
  // and the Python start-up preflight pays, through PATH and through the interpreter itself.
  const python = (await execa('python3', ['-c', 'import sys; print(sys.executable)'])).stdout.trim();
  for (let i = 0; i < reps; i++) {
    await time('diagnostic: silent git command (update-ref) via activities/git.ts', () =>
      setRef(repo, 'refs/bench/silent', base),
    );
    await time('diagnostic: silent git command (update-ref) via child_process', () =>
      execFileP('git', ['update-ref', 'refs/bench/silent', base], { cwd: repo }),
    );
    await time('diagnostic: python3 -c compile, python3 from PATH', () =>
      execa('python3', ['-c', COMPILE, path.join(repo, 'train.py')]),
    );
    await time(`diagnostic: python3 -c compile, ${python} -I -S`, () =>
      execa(python, ['-I', '-S', '-c', COMPILE, path.join(repo, 'train.py')]),
    );
  }
  rmSync(campaignDir, { recursive: true, force: true });
  rmSync(gpuHome, { recursive: true, force: true });
  return Object.fromEntries(Object.entries(times).map(([k, v]) => [k, percentile(v, 50)]));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const rows = Number(process.env.BENCH_LEDGER_ROWS ?? 0);
  for (const [k, v] of Object.entries(await stepProfile(Number(process.env.BENCH_REPS ?? 7), rows)))
    console.log(`${k.padEnd(78)} ${f1(v).padStart(7)} ms`);
  removeTempDirs();
}
