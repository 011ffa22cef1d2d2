// Preflight: a proposal is rejected here, before it costs any GPU time, when it edits files it
// may not (locked files, held-out data, anything outside the editable files), changes nothing, or
// leaves Python that does not compile. A locked or held-out entry that is a directory covers
// everything under it. (The GPU worker checks the same files again, by hash, around each run.)
import path from 'node:path';
import { baseEnv, pythonExecutable, runCommand } from './spawn';
import type { CampaignConfig } from '../common/config';
import { changedFiles } from './git';

/** The reason the worktree's edits cannot be tried, or null when they can. */
export async function preflight(worktree: string, codeSha: string, parentSha: string, config: Pick<CampaignConfig, 'editable' | 'locked'> & { evaluate?: { heldOutPaths?: string[] } }): Promise<string | null> {
  const edited = await changedFiles(worktree, codeSha);
  if (edited.length === 0) return 'no-op edit: the proposal changed nothing';
  // A fix starts from the crashed commit; every other proposal from the best itself.
  const changed = codeSha === parentSha ? edited : await changedFiles(worktree, parentSha);
  if (changed.length === 0) return 'no-op edit: the result is identical to the best commit';
  const locked = changed.filter((f) => covers(config.locked, f));
  if (locked.length) return `changes locked file(s): ${locked.join(', ')}`;
  const heldOut = changed.filter((f) => covers(config.evaluate?.heldOutPaths ?? [], f));
  if (heldOut.length) return `changes held-out data: ${heldOut.join(', ')}`;
  const outside = changed.filter((f) => !config.editable.includes(f));
  if (outside.length) return `edits outside the editable files (${config.editable.join(', ')}): ${outside.join(', ')}`;
  for (const f of changed.filter((c) => c.endsWith('.py'))) {
    const error = await pythonSyntaxError(path.join(worktree, f));
    if (error) return `${f} does not compile: ${error}`;
  }
  return null;
}

/** True when `file` is one of `paths` or lies under one of them. */
function covers(paths: string[], file: string): boolean {
  return paths.some((p) => {
    const dir = p.replace(/\/+$/, '');
    return file === dir || file.startsWith(`${dir}/`);
  });
}

/** Compiles without writing __pycache__ into the worktree (-I -S: no site imports, ~10 ms). */
async function pythonSyntaxError(file: string): Promise<string | null> {
  const r = await runCommand([await pythonExecutable(), '-I', '-S', '-c', 'import sys; compile(open(sys.argv[1], encoding="utf-8").read(), sys.argv[1], "exec")', file], { cwd: path.dirname(file), env: baseEnv() });
  if (r.code === 0) return null;
  return r.stderr.toString('utf8').trim().split('\n').slice(-3).join(' | ');
}
