// The locked-file guard, on the GPU host. What decides is the campaign's base commit, whose locked
// files and held-out data were hashed at `start` and travel with every run (RunRequest.guard): a
// candidate may differ from the base only in its editable files, and its locked entries must be
// the base's, whatever a proposer wrote into its commit. After the run, the files on disk are
// hashed again (lib/tree.ts guardChanges).
import { bareGit } from '../lib/git';
import { guardOf } from '../lib/tree';

/** Why the candidate may not run, or null. */
export async function candidateProblem(
  cache: string,
  base: string,
  sha: string,
  editable: string[] | null,
  guard: Record<string, string>,
): Promise<string | null> {
  const g = bareGit(cache);
  if (editable) {
    const changed = (await g.text(['diff-tree', '-r', '-z', '--no-renames', '--name-only', base, sha]))
      .split('\0')
      .filter(Boolean);
    const outside = changed.filter((f) => !editable.includes(f));
    if (outside.length)
      return `the candidate changes ${listed(outside)} outside the editable files (${editable.join(', ')}) against the campaign's base ${base.slice(0, 7)}`;
    // Nothing but editable files differs from the base, whose locked entries the guard was taken from.
    return null;
  }
  const actual = await guardOf(g, sha, Object.keys(guard));
  const differ = Object.keys(guard).filter((p) => actual[p] !== guard[p]);
  if (differ.length)
    return `locked file ${listed(differ)} of the candidate is not the campaign's base ${base.slice(0, 7)}`;
  return null;
}

function listed(files: string[]): string {
  return files.length > 5 ? `${files.slice(0, 5).join(', ')} and ${files.length - 5} more` : files.join(', ');
}
