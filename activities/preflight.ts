// Preflight: a proposal is rejected here, before it costs any GPU time, when it edits files it
// may not (locked files, held-out data, anything outside the editable files), changes nothing, or
// leaves Python that does not compile. A locked or held-out entry that is a directory covers
// everything under it. (The GPU worker checks the candidate against the campaign's base again,
// and the locked files by hash around each run.)
import type { CampaignConfig } from '../common/config';
import { pythonExecutable, runCommand, baseEnv } from '../lib/spawn';
import { covers } from '../lib/tree';
import { bounded } from '../lib/supervise';

/** A rejection reason's length at most (a reason is recorded and shown to the next proposal). */
export const MAX_REJECTION_CHARS = 1_000;

/**
 * The reason the proposed files cannot be tried, or null when they can. `before`: the files at the
 * commit the proposer edited; `atParent`: at the best (they differ for a fix of a crash).
 */
export async function preflight(
  files: Record<string, string>,
  before: Record<string, string | null>,
  atParent: Record<string, string | null>,
  config: Pick<CampaignConfig, 'editable' | 'locked'> & { evaluate?: { heldOutPaths?: string[] } },
): Promise<string | null> {
  const names = Object.keys(files);
  const check = (prefix: string, list: string[]) =>
    list.length ? bounded(prefix + list.join(', '), MAX_REJECTION_CHARS) : null;
  const reason =
    check(
      'edit to a path outside the repository: ',
      names.filter((f) => f.startsWith('/') || f.split(/[\\/]/).includes('..')),
    ) ??
    check(
      'changes locked file(s): ',
      names.filter((f) => covers(config.locked, f)),
    ) ??
    check(
      'changes held-out data: ',
      names.filter((f) => covers(config.evaluate?.heldOutPaths ?? [], f)),
    ) ??
    check(
      `edits outside the editable files (${config.editable.join(', ')}): `,
      names.filter((f) => !config.editable.includes(f)),
    );
  if (reason) return reason;
  if (names.every((f) => files[f] === before[f])) return 'no-op edit: the proposal changed nothing';
  const changed = config.editable.filter((f) => (f in files ? files[f] : before[f]) !== atParent[f]);
  if (!changed.length) return 'no-op edit: the result is identical to the best commit';
  for (const f of changed.filter((c) => c.endsWith('.py') && c in files)) {
    const error = await pythonSyntaxError(f, files[f]);
    if (error) return bounded(`${f} does not compile: ${error}`, MAX_REJECTION_CHARS);
  }
  return null;
}

/** Compiles the text, from stdin: nothing is written anywhere (-I -S: no site imports, ~10 ms). */
async function pythonSyntaxError(name: string, content: string): Promise<string | null> {
  const r = await runCommand(
    [
      await pythonExecutable(),
      '-I',
      '-S',
      '-c',
      'import sys; compile(sys.stdin.buffer.read(), sys.argv[1], "exec")',
      name,
    ],
    { cwd: '/', env: baseEnv(), input: content },
  );
  if (r.code === 0) return null;
  return r.stderr.toString('utf8').trim().split('\n').slice(-3).join(' | ');
}
