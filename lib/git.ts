// Git as the campaign's memory. Every write is idempotent or compare-and-swap, so an activity
// retried after a crash finds its effect already there instead of doing it twice.
// The user's own checkout is never touched: work happens in worktrees and under refs.
import { existsSync, mkdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { baseEnv, runCommand } from './spawn';

const ZERO_SHA = '0000000000000000000000000000000000000000';

/**
 * Every git call: commits carry Nightlab's own identity, whatever the machine's config says, and
 * no hook or fsmonitor ever runs (git on a worker never executes a program a repository names).
 */
const CONFIG = [
  'user.name=Nightlab',
  'user.email=nightlab@localhost',
  'core.hooksPath=/dev/null',
  'core.fsmonitor=false',
];

export interface Git {
  /** Runs `git <args>` in the directory: its stdout, trimmed. Rejects on a non-zero exit, with git's stderr. */
  raw(args: string[], input?: string): Promise<string>;
  revparse(args: string[]): Promise<string>;
  /** Like raw, untrimmed (file contents). */
  text(args: string[]): Promise<string>;
  /** Like raw, with `input` on stdin and stdout as bytes (`cat-file --batch`). */
  bytes(args: string[], input: string): Promise<Buffer>;
}

/**
 * git in `dir`, started through spawn.ts (cheap starts). Every non-zero exit rejects, with git's
 * own words. (simple-git is not used: it waits 50 ms after every command that prints nothing,
 * such as update-ref, add or clean, about a dozen per experiment.)
 */
export function git(dir: string, opts: { gitDir?: boolean; env?: Record<string, string> } = {}): Git {
  // Only the variables git needs: keys in the worker's environment stay out of hooks and filters.
  const env = { ...baseEnv(), ...opts.env };
  for (const k of ['TMPDIR', 'SSH_AUTH_SOCK']) if (process.env[k]) env[k] = process.env[k]!;
  // A worker has no terminal: a remote asking for a password fails at once instead of hanging.
  env.GIT_TERMINAL_PROMPT = '0';
  // A checkout never fetches large files (a git-lfs smudge would reach the network from a worker).
  env.GIT_LFS_SKIP_SMUDGE = '1';
  const run = async (args: string[], input?: string): Promise<Buffer> => {
    const argv = ['git', ...CONFIG.flatMap((c) => ['-c', c]), ...(opts.gitDir ? [`--git-dir=${dir}`] : []), ...args];
    const r = await runCommand(argv, { cwd: dir, env, input });
    if (r.code === 0) return r.stdout;
    const stderr = r.stderr.toString('utf8');
    throw Object.assign(
      new Error(`git ${args.join(' ')} failed in ${dir}: ${stderr.trim() || `exit ${r.code ?? 'by signal'}`}`),
      { exitCode: r.code, stderr },
    );
  };
  return {
    raw: async (args, input) => (await run(args, input)).toString('utf8').trim(),
    revparse: async (args) => (await run(['rev-parse', ...args])).toString('utf8').trim(),
    text: async (args) => (await run(args)).toString('utf8'),
    bytes: run,
  };
}

/**
 * git on a bare repository named explicitly (`--git-dir`): the GPU worker's caches. Nothing in a
 * directory a run can write (a `.git` file, a config, hooks) takes part.
 */
export function bareGit(gitDir: string): Git {
  return git(gitDir, { gitDir: true });
}

/** `dir` is the top of a git repository (not merely inside one, like a home directory under version control). */
export async function isGitRepo(dir: string): Promise<boolean> {
  if (!existsSync(dir)) return false;
  try {
    if ((await git(dir).revparse(['--is-bare-repository'])) === 'true') return true;
    return realpathSync(await git(dir).revparse(['--show-toplevel'])) === realpathSync(dir);
  } catch {
    return false;
  }
}

/** The trees of commits, in one `git rev-parse`. */
export async function treesOf(repo: string, commits: string[]): Promise<string[]> {
  return (await git(repo).raw(['rev-parse', ...commits.map((c) => `${c}^{tree}`)])).split('\n');
}

export async function readRef(repo: string, ref: string): Promise<string | null> {
  try {
    return (await git(repo).raw(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`])) || null;
  } catch {
    return null;
  }
}

/**
 * Moves `ref` from `expected` to `next` only if it still points at `expected` (null: must not exist).
 * Returns true when the ref ends at `next` (including a retry that already moved it).
 */
export async function compareAndSwapRef(
  repo: string,
  ref: string,
  next: string,
  expected: string | null,
): Promise<boolean> {
  try {
    await git(repo).raw(['update-ref', ref, next, expected ?? ZERO_SHA]);
    return true;
  } catch {
    return (await readRef(repo, ref)) === next;
  }
}

/**
 * A slot's or proposer's worktree, moved to `sha` and cleaned (ignored files such as a virtualenv
 * stay, so each experiment does not reinstall its environment).
 */
export async function checkoutWorktree(repo: string, dir: string, sha: string): Promise<void> {
  if (!existsSync(path.join(dir, '.git'))) {
    mkdirSync(path.dirname(dir), { recursive: true });
    // --force also takes over a registration whose directory is gone (a crash between rm and prune).
    await worktreeAdmin(repo, ['worktree', 'add', '--force', '--detach', dir, sha]);
    return;
  }
  const wt = git(dir);
  await wt.raw(['checkout', '--detach', '--force', sha]);
  await wt.raw(['clean', '-fd']);
}

/** Files whose content differs between a commit and the worktree (including new and deleted files). */
export async function changedFiles(dir: string, sha: string): Promise<string[]> {
  const wt = git(dir);
  await wt.raw(['add', '-A']);
  const out = await wt.raw(['diff', '--cached', '--name-only', '--no-renames', sha]);
  return out ? out.split('\n').filter(Boolean) : [];
}

/**
 * Commits the worktree's content as a child of `parent` (no branch moves) and returns the sha.
 * `staged`: the index already holds it (changedFiles just ran), so `git add` is skipped.
 */
export async function commitWorktree(dir: string, parent: string, message: string, staged = false): Promise<string> {
  const wt = git(dir);
  if (!staged) await wt.raw(['add', '-A']);
  return commitTree(dir, await wt.raw(['write-tree']), parent, message);
}

/** Points `ref` at `sha`, whatever it held: for refs only this campaign writes. */
export async function setRef(repo: string, ref: string, sha: string): Promise<void> {
  await git(repo).raw(['update-ref', ref, sha]);
}

export async function removeWorktree(repo: string, dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  const removed = await worktreeAdmin(repo, ['worktree', 'remove', '--force', dir]).then(
    () => true,
    () => false,
  );
  rmSync(dir, { recursive: true, force: true });
  if (!removed) await worktreeAdmin(repo, ['worktree', 'prune']);
}

/**
 * A queue per key, in this process: the returned function runs `fn` after every earlier `fn` for
 * the same key has settled, whatever their outcome. Each caller makes its own, so queues nest
 * without waiting on themselves.
 */
export function oneAtATime(): <T>(key: string, fn: () => Promise<T>) => Promise<T> {
  const tails = new Map<string, Promise<unknown>>();
  return (key, fn) => {
    const result = (tails.get(key) ?? Promise.resolve()).then(fn, fn);
    const tail = result.catch(() => {});
    tails.set(key, tail);
    // An idle key is forgotten: the map holds only keys with work queued.
    void tail.then(() => {
      if (tails.get(key) === tail) tails.delete(key);
    });
    return result;
  };
}

const worktreeQueue = oneAtATime();
/** git's words when it lists the worktrees while another process is half-way through registering one. */
const HALF_REGISTERED = /failed to read .*worktrees\/[^/]+\/(commondir|gitdir)|worktrees\/[^/]+\/locked/;

/**
 * `git worktree add|remove|prune` in `repo`, one at a time. git lists every registered worktree
 * while adding one, and a registration half-written by a concurrent add fails it ("failed to read
 * .git/worktrees/e1/commondir"): proposals and slots add worktrees side by side. In one process the
 * queue rules that out; across processes (two GPU workers sharing a cache) a short retry covers it.
 */
export function worktreeAdmin(repo: string, args: string[]): Promise<string> {
  return worktreeQueue(path.resolve(repo), async () => {
    for (let tries = 1; ; tries++) {
      try {
        return await git(repo).raw(args);
      } catch (e) {
        if (tries >= 5 || !HALF_REGISTERED.test(String((e as { stderr?: string }).stderr ?? ''))) throw e;
        await new Promise((r) => setTimeout(r, 20 * tries));
      }
    }
  });
}

/** Applies `sha`'s change (against its parent) to the worktree; false on a conflict (the worktree is reset). */
export async function applyChange(
  dir: string,
  sha: string,
  how: 'cherry-pick' | 'revert' = 'cherry-pick',
): Promise<boolean> {
  const wt = git(dir);
  try {
    await wt.raw([how, '--no-commit', '--strategy=ort', sha]);
    return true;
  } catch {
    await wt.raw([how, '--abort']).catch(() => {});
    await wt.raw(['reset', '--hard', '--quiet']);
    return false;
  }
}

let mergeTreeSupport: Promise<boolean> | undefined;
/** `git merge-tree --write-tree` came with git 2.38. */
function canMergeTree(): Promise<boolean> {
  mergeTreeSupport ??= git(process.cwd())
    .raw(['--version'])
    .then(
      (v) => {
        const [major, minor] = (/(\d+)\.(\d+)/.exec(v) ?? []).slice(1).map(Number);
        return major > 2 || (major === 2 && minor >= 38);
      },
      () => false,
    );
  return mergeTreeSupport;
}

/**
 * The tree of `sha`'s change (against `parent`) applied on top of `onto`, merged in the object
 * store without a worktree: null when the change conflicts; undefined when this git is too old
 * (then use `applyChange` in a worktree). merge-tree takes the merge base itself, which is
 * `parent` whenever `parent` is an ancestor of `onto`, as an old best is of the new best; the
 * three-way merge on that base is exactly a cherry-pick.
 */
export async function mergeChange(
  repo: string,
  sha: string,
  parent: string,
  onto: string,
): Promise<string | null | undefined> {
  if (!(await canMergeTree())) return undefined;
  const base = await git(repo)
    .raw(['merge-base', onto, sha])
    .catch(() => '');
  if (base !== parent) return undefined;
  try {
    return (await git(repo).raw(['merge-tree', '--write-tree', '--no-messages', onto, sha])).split('\n')[0];
  } catch (err) {
    if ((err as { exitCode?: unknown }).exitCode === 1) return null; // conflicts (2 and up: an error)
    throw err;
  }
}

/**
 * A commit, child of `parent`, of `code`'s tree with `files` written over it: made in the object
 * store (blobs, then the trees on the way to them, then the commit), without a worktree or an
 * index, and without any file a proposer wrote on disk. A file keeps its mode (an executable
 * stays one); a new one is 100644.
 */
export async function commitFiles(
  repo: string,
  o: { code: string; parent: string; files: Record<string, string>; message: string },
): Promise<string> {
  const g = git(repo);
  const blobs = new Map<string, string>();
  for (const [file, content] of Object.entries(o.files))
    blobs.set(file, await g.raw(['hash-object', '-w', '--stdin'], content));
  return commitTree(repo, await treeWith(g, `${o.code}^{tree}`, blobs), o.parent, o.message);
}

/** `tree` with the blobs at the given paths (relative to it) put in, as a new tree's id. */
async function treeWith(g: Git, tree: string | null, blobs: Map<string, string>): Promise<string> {
  const entries = new Map<string, { mode: string; type: string; oid: string }>();
  if (tree) {
    for (const line of (await g.text(['ls-tree', '-z', tree])).split('\0').filter(Boolean)) {
      const tab = line.indexOf('\t');
      const [mode, type, oid] = line.slice(0, tab).split(' ');
      entries.set(line.slice(tab + 1), { mode, type, oid });
    }
  }
  const below = new Map<string, Map<string, string>>();
  for (const [file, oid] of blobs) {
    const slash = file.indexOf('/');
    if (slash < 0) {
      entries.set(file, { mode: entries.get(file)?.mode === '100755' ? '100755' : '100644', type: 'blob', oid });
      continue;
    }
    const dir = file.slice(0, slash);
    if (!below.has(dir)) below.set(dir, new Map());
    below.get(dir)!.set(file.slice(slash + 1), oid);
  }
  for (const [dir, inner] of below) {
    const current = entries.get(dir);
    entries.set(dir, {
      mode: '040000',
      type: 'tree',
      oid: await treeWith(g, current?.type === 'tree' ? current.oid : null, inner),
    });
  }
  const input = [...entries].map(([name, e]) => `${e.mode} ${e.type} ${e.oid}\t${name}\0`).join('');
  return g.raw(['mktree', '-z'], input);
}

/** A commit of `tree` with `parent`, by Nightlab. */
export async function commitTree(repo: string, tree: string, parent: string, message: string): Promise<string> {
  return git(repo).raw(['commit-tree', tree, '-p', parent, '-m', message]);
}

export async function diffOf(repo: string, from: string, to: string, maxChars = 20_000): Promise<string> {
  const d = await git(repo).raw(['diff', from, to]);
  return d.length > maxChars ? `${d.slice(0, maxChars)}\n... (diff truncated)` : d;
}

export async function showFile(repo: string, sha: string, file: string): Promise<string | null> {
  return (await showFiles(repo, sha, [file]))[0];
}

/** Several files of one commit in one git process; null for a file the commit lacks (or a directory). */
export async function showFiles(repo: string, sha: string, files: string[]): Promise<(string | null)[]> {
  if (!files.length) return [];
  // Paths with a newline cannot be asked for on a line; nobody names a training file like that.
  const out = await git(repo).bytes(
    ['cat-file', '--batch'],
    files.map((f) => `${sha}:${f.replace(/\n/g, '')}\n`).join(''),
  );
  const contents: (string | null)[] = [];
  let at = 0;
  for (let i = 0; i < files.length; i++) {
    const eol = out.indexOf(0x0a, at);
    const header = out.subarray(at, eol).toString('utf8').split(' ');
    at = eol + 1;
    if (header.length !== 3 || header[2] === 'missing' || header[1] === 'ambiguous') {
      contents.push(null);
      continue;
    }
    const size = Number(header[2]);
    contents.push(header[1] === 'blob' ? out.subarray(at, at + size).toString('utf8') : null);
    at += size + 1; // the content, then a newline
  }
  return contents;
}

/** The refs under `prefix` with their commits' subject lines, one git command. */
export async function refSubjects(
  repo: string,
  prefix: string,
): Promise<{ ref: string; subject: string; tree: string }[]> {
  const out = await git(repo).raw(['for-each-ref', '--format=%(refname)%00%(tree)%00%(contents:subject)', prefix]);
  return out
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [ref, tree = '', subject = ''] = line.split('\0');
      return { ref, subject, tree };
    });
}

export async function commitMessage(repo: string, sha: string): Promise<string> {
  return git(repo).raw(['log', '-1', '--format=%B', sha]);
}

/** `remote` is a git URL (scheme://... or scp-like user@host:path), not a path. */
export function isGitUrl(remote: string): boolean {
  return /^[\w+.-]+:\/\//.test(remote) || /^[\w.-]+@[\w.-]+:/.test(remote);
}

/** Fetches `ref` from `remote` into the bare `cache` unless the commit is already there. */
export async function fetchCommit(cache: string, remote: string, ref: string, sha: string): Promise<void> {
  const g = bareGit(cache);
  if (!existsSync(cache)) {
    mkdirSync(cache, { recursive: true, mode: 0o700 });
    await g.raw(['init', '--bare', '--quiet']);
    // A campaign repository on this host's disk (or a shared one) lends its objects: its
    // candidates need no fetch at all. A URL remote is fetched as before.
    if (path.isAbsolute(remote) && existsSync(remote)) {
      const objects = path.resolve(remote, await git(remote).raw(['rev-parse', '--git-path', 'objects']));
      writeFileSync(path.join(cache, 'objects', 'info', 'alternates'), `${objects}\n`);
    }
  }
  if (await readRef(cache, sha)) return;
  await g.raw(['fetch', '--quiet', '--no-write-fetch-head', remote, `+${ref}:${ref}`]);
  if (!(await readRef(cache, sha))) throw new Error(`${remote} ${ref} does not hold ${sha}`);
}
