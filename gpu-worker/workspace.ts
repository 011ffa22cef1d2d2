// A run's workspace: a plain folder (no `.git`, not a git worktree) that holds exactly one commit's
// files, written out of the slot's cache repository by Nightlab itself, fresh before every run and
// before every evaluation. Whatever an earlier run left (untracked or ignored files, bytecode, a
// renamed folder, a `.git` it made up) is gone; only the config's `run.persist` paths (a `.venv`)
// stay, and those are read-only inside the sandbox. Git runs only on the cache, by --git-dir: no
// file a run can write takes part in any git command.
import { existsSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { bareGit, fetchCommit, oneAtATime } from '../lib/git';
import { removeAll, wipeDir, writeTree } from '../lib/tree';
import { privateDir, writePrivate } from '../lib/supervise';

/** Slots share a cache repo per remote: its fetches go one at a time. */
const cacheQueue = oneAtATime();

export interface SlotPlaces {
  /** The cache repository (bare) of the campaign's remote on this host. */
  cache: string;
  /** This slot's workspace for that remote: what runs see as their working directory. */
  workspace: string;
  /** This run's scratch: output, TMPDIR, bytecode, the evaluation's folders. Fresh each run. */
  scratch: string;
  /** Compile caches of the campaign on this host (Triton, TorchInductor); never seen by an evaluation. */
  caches: string;
  /** What run.setup downloads and installs (uv's cache, Pythons): written by setup only, read-only to runs. */
  setup: string;
}

/** Where a run of `remote` on `slotDir` lives; the scratch is emptied. */
export function slotPlaces(home: string, slotDir: string, remote: string, tag: string): SlotPlaces {
  const key = createHash('sha256').update(remote).digest('hex').slice(0, 16);
  const scratch = path.join(slotDir, 'scratch');
  removeAll(scratch);
  privateDir(scratch);
  return {
    cache: path.join(home, 'repos', key),
    // One workspace per slot and campaign repository: campaigns sharing the fleet never mix.
    workspace: path.join(slotDir, key),
    scratch,
    caches: path.join(home, 'caches', tag),
    setup: path.join(home, 'setup', tag),
  };
}

/** Commits known to be in a cache (objects never leave one): the base is looked up once, not per run. */
const present = new Set<string>();

/** Fetches the candidate (and the campaign's base, for the guard) into the cache, unless there. */
export async function fetchCandidate(
  cache: string,
  remote: string,
  want: { ref: string; sha: string }[],
): Promise<void> {
  const missing = want.filter((w) => !present.has(`${cache}\0${w.sha}`));
  if (!missing.length) return;
  await cacheQueue(cache, async () => {
    for (const w of missing) {
      await fetchCommit(cache, remote, w.ref, w.sha);
      if (present.size > 10_000) present.clear();
      present.add(`${cache}\0${w.sha}`);
    }
  });
}

/**
 * Makes `dir` hold `sha`'s files and nothing else (but the `keep` paths), leaving out `omit`
 * (held-out data, for anything but the scorer).
 */
export async function freshTree(
  cache: string,
  dir: string,
  sha: string,
  opts: { omit?: string[]; keep?: string[] } = {},
): Promise<void> {
  wipeDir(dir, opts.keep ?? []);
  await writeTree(bareGit(cache), sha, dir, opts.omit ?? []);
}

/**
 * The persisted paths (run.persist) of this workspace, made by `run.setup` on the campaign's base
 * commit when one is missing or was made for other locked files. Returns true when setup must run.
 */
export function needsSetup(workspace: string, persist: string[], stamp: string, key: string): boolean {
  if (!persist.length) return false;
  if (persist.some((p) => !existsSync(path.join(workspace, p)))) return true;
  return !existsSync(stamp) || readFileSync(stamp, 'utf8') !== key;
}

export function markSetup(stamp: string, key: string): void {
  writePrivate(stamp, key);
}
