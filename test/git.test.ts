// Git effects against real repositories in temp directories, and the command runner under them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  applyChange,
  checkoutWorktree,
  commitWorktree,
  compareAndSwapRef,
  git,
  mergeChange,
  readRef,
  removeWorktree,
  setRef,
  showFile,
} from '../lib/git';
import { baseEnv, helperPid, runCommand } from '../lib/spawn';
import { makeRepo, QUADRATIC, setLine, tempDir } from './helpers';

test('compareAndSwapRef: create-only, compare-and-swap, idempotent retries, no rewind', async () => {
  const repo = await makeRepo(QUADRATIC, (d) => setLine(path.join(d, 'train.py'), 'WIDTH', '12'));
  try {
    const b = await readRef(repo, 'HEAD');
    const a = await readRef(repo, 'HEAD~1');
    assert.ok(a && b && a !== b);
    const ref = 'refs/nightlab/unit/1';

    assert.equal(await compareAndSwapRef(repo, ref, a, null), true);
    assert.equal(await readRef(repo, ref), a);
    assert.equal(await compareAndSwapRef(repo, ref, a, null), true, 'a retried create finds its effect');
    assert.equal(
      await compareAndSwapRef(repo, ref, b, null),
      false,
      'create-only fails when the ref exists with another value',
    );
    assert.equal(await readRef(repo, ref), a);

    assert.equal(await compareAndSwapRef(repo, ref, b, a), true);
    assert.equal(await readRef(repo, ref), b);
    assert.equal(await compareAndSwapRef(repo, ref, b, a), true, 'a retried move finds its effect');
    assert.equal(await compareAndSwapRef(repo, ref, a, b), true);
    assert.equal(await compareAndSwapRef(repo, ref, b, a), true);
    // A stale writer that expects the old value cannot rewind the ref.
    assert.equal(await compareAndSwapRef(repo, ref, a, a), false);
    assert.equal(await compareAndSwapRef(repo, ref, a, 'c'.repeat(40)), false);
    assert.equal(await readRef(repo, ref), b);
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
  }
});

test("commitWorktree + setRef: a child of the given parent under its own ref; the user's HEAD stays", async () => {
  const repo = await makeRepo();
  const home = tempDir();
  try {
    const base = (await readRef(repo, 'HEAD'))!;
    const wt = path.join(home, 'wt');
    await checkoutWorktree(repo, wt, base);
    setLine(path.join(wt, 'train.py'), 'WIDTH', '16');
    const ref = 'refs/nightlab/unit/7';
    const sha = await commitWorktree(wt, base, 'WIDTH 8 -> 16');
    await setRef(repo, ref, sha);
    assert.equal(await readRef(repo, ref), sha);
    assert.equal(await git(repo).raw(['rev-parse', `${sha}^`]), base, 'parent is the given commit');
    assert.equal(await git(repo).raw(['log', '-1', '--format=%B', sha]), 'WIDTH 8 -> 16');
    assert.equal(await git(repo).raw(['log', '-1', '--format=%an <%ae>', sha]), 'Nightlab <nightlab@localhost>');
    assert.match(await git(repo).raw(['show', `${sha}:train.py`]), /^WIDTH = 16$/m);
    assert.equal(await git(repo).raw(['diff', '--name-only', base, sha]), 'train.py');
    assert.equal(await readRef(repo, 'HEAD'), base, "the user's HEAD did not move");
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
});

test("git: a non-zero exit rejects with git's own words; file contents come back byte for byte", async () => {
  const repo = await makeRepo();
  try {
    await assert.rejects(
      git(repo).raw(['rev-parse', '--verify', 'no-such-ref']),
      /git rev-parse --verify no-such-ref failed in .*: fatal: Needed a single revision/,
    );
    // A silent failure (no stderr) rejects too.
    await assert.rejects(git(repo).raw(['rev-parse', '--verify', '--quiet', 'no-such-ref']));
    const base = (await readRef(repo, 'HEAD'))!;
    const text = readFileSync(path.join(repo, 'train.py'), 'utf8');
    assert.equal(await showFile(repo, base, 'train.py'), text, 'trailing newline kept');
    assert.equal(await showFile(repo, base, 'missing.py'), null);
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
  }
});

test('runCommand: exit status, bytes out, stdin in, only the given environment; a missing command rejects', async () => {
  const dir = tempDir();
  try {
    const r = await runCommand(['sh', '-c', 'cat; printf "%s|%s" "$FOO" "${SECRET:-unset}" >&2; exit 3'], {
      cwd: dir,
      env: { ...baseEnv(), FOO: 'bar' },
      input: 'héllo\n',
    });
    assert.equal(r.code, 3);
    assert.equal(r.stdout.toString('utf8'), 'héllo\n');
    assert.equal(r.stderr.toString('utf8'), 'bar|unset');
    assert.ok(helperPid(), 'went through the helper');
    await assert.rejects(
      runCommand(['no-such-command-xyz'], { cwd: dir, env: baseEnv() }),
      (e: Error & { code?: string }) => e.code === 'ENOENT',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runCommand: commands run side by side; a helper that dies fails its commands in flight and the next one starts a new helper', async () => {
  const dir = tempDir();
  try {
    // The first waits for a file the second makes: run one after another, this would never end.
    const waiter = runCommand(['sh', '-c', 'while [ ! -f go ]; do sleep 0.05; done; echo waited'], {
      cwd: dir,
      env: baseEnv(),
    });
    await runCommand(['touch', 'go'], { cwd: dir, env: baseEnv() });
    assert.equal((await waiter).stdout.toString().trim(), 'waited');

    const first = helperPid()!;
    const inFlight = runCommand(['sleep', '30'], { cwd: dir, env: baseEnv() });
    process.kill(first, 'SIGKILL');
    await assert.rejects(inFlight, /the command helper exited/);
    const again = await runCommand(['echo', 'ok'], { cwd: dir, env: baseEnv() });
    assert.equal(again.stdout.toString().trim(), 'ok');
    assert.notEqual(helperPid(), first, 'a new helper');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("applyChange / mergeChange: a candidate's change moves onto a newer best; a conflicting one is refused and the worktree reset", async () => {
  const repo = await makeRepo();
  const home = tempDir();
  try {
    const base = (await readRef(repo, 'HEAD'))!;
    const wt = path.join(home, 'wt');
    const commit = async (from: string, edit: (text: string) => string) => {
      await checkoutWorktree(repo, wt, from);
      const file = path.join(wt, 'train.py');
      writeFileSync(file, edit(readFileSync(file, 'utf8')));
      return commitWorktree(wt, from, 'edit');
    };
    const kept = await commit(base, (t) => t.replace(/^WIDTH = .*$/m, 'WIDTH = 16'));
    // Far enough from WIDTH that git merges the two changes without a conflict.
    const candidate = await commit(base, (t) =>
      t.replace('print("step 00001 | loss 3.0", flush=True)', 'print("step 00001 | loss 2.0", flush=True)'),
    );
    const clash = await commit(base, (t) => t.replace(/^WIDTH = .*$/m, 'WIDTH = 4'));
    await checkoutWorktree(repo, wt, kept);
    assert.equal(await applyChange(wt, candidate), true);
    const both = readFileSync(path.join(wt, 'train.py'), 'utf8');
    assert.match(both, /^WIDTH = 16$/m);
    assert.match(both, /loss 2\.0/);
    await checkoutWorktree(repo, wt, kept);
    assert.equal(await applyChange(wt, clash), false);
    assert.equal(await git(wt).raw(['status', '--porcelain']), '', 'nothing half-applied is left');
    assert.match(readFileSync(path.join(wt, 'train.py'), 'utf8'), /^WIDTH = 16$/m);

    // The same rebase without a worktree (git 2.38+; CI's git is 2.39): the tree a cherry-pick makes.
    await checkoutWorktree(repo, wt, kept);
    await applyChange(wt, candidate);
    await git(wt).raw(['add', '-A']);
    const picked = await git(wt).raw(['write-tree']);
    const [major, minor] = (await git(repo).raw(['--version']))
      .match(/(\d+)\.(\d+)/)!
      .slice(1)
      .map(Number);
    if (major > 2 || minor >= 38) {
      assert.equal(await mergeChange(repo, candidate, base, kept), picked, 'merged in the object store, same tree');
      assert.equal(await mergeChange(repo, clash, base, kept), null, 'a conflict');
      assert.equal(
        await mergeChange(repo, candidate, kept, base),
        undefined,
        'a parent that is not the merge base: left to the worktree path',
      );
    } else {
      assert.equal(await mergeChange(repo, candidate, base, kept), undefined, 'too old a git: the worktree path');
    }
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
});

test("checkoutWorktree: moves a detached worktree, cleans it, and leaves the user's checkout alone", async () => {
  const repo = await makeRepo(QUADRATIC, (d) => setLine(path.join(d, 'train.py'), 'WIDTH', '12'));
  const home = tempDir();
  try {
    const b = (await readRef(repo, 'HEAD'))!;
    const a = (await readRef(repo, 'HEAD~1'))!;
    // The user has work in progress.
    writeFileSync(path.join(repo, 'program.md'), 'my unsaved notes\n');
    writeFileSync(path.join(repo, 'scratch.txt'), 'untracked\n');
    const statusBefore = await git(repo).raw(['status', '--porcelain']);

    const wt = path.join(home, 'slots', 'cpu', 'worktree');
    await checkoutWorktree(repo, wt, a);
    assert.equal(await readRef(wt, 'HEAD'), a);
    assert.match(readFileSync(path.join(wt, 'train.py'), 'utf8'), /^WIDTH = 8$/m);
    assert.equal(
      readFileSync(path.join(wt, 'program.md'), 'utf8'),
      readFileSync(path.join(QUADRATIC, 'program.md'), 'utf8'),
      "committed content, not the user's edit",
    );

    // Leftovers of the last run go; the worktree moves to the next commit.
    writeFileSync(path.join(wt, 'train.py'), 'broken(\n');
    writeFileSync(path.join(wt, 'leftover.txt'), 'x');
    await checkoutWorktree(repo, wt, b);
    assert.equal(await readRef(wt, 'HEAD'), b);
    assert.match(readFileSync(path.join(wt, 'train.py'), 'utf8'), /^WIDTH = 12$/m);
    assert.equal(existsSync(path.join(wt, 'leftover.txt')), false);
    assert.equal(await git(wt).raw(['status', '--porcelain']), '');
    assert.equal(await git(wt).raw(['rev-parse', '--abbrev-ref', 'HEAD']), 'HEAD', 'detached, on no branch');

    // A worktree directory deleted by hand is recreated.
    rmSync(wt, { recursive: true, force: true });
    await checkoutWorktree(repo, wt, a);
    assert.equal(await readRef(wt, 'HEAD'), a);

    assert.equal(await readRef(repo, 'HEAD'), b, "the user's HEAD did not move");
    assert.equal(await git(repo).raw(['symbolic-ref', 'HEAD']), 'refs/heads/main', 'still on their branch');
    assert.equal(
      await git(repo).raw(['status', '--porcelain']),
      statusBefore,
      'their edits and untracked files are intact',
    );
    assert.equal(readFileSync(path.join(repo, 'program.md'), 'utf8'), 'my unsaved notes\n');
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
});

test('checkoutWorktree / removeWorktree side by side in one repository; a registration half-written by another process is waited out', async () => {
  const repo = await makeRepo(QUADRATIC);
  const home = tempDir();
  try {
    const head = (await readRef(repo, 'HEAD'))!;
    const dirs = Array.from({ length: 12 }, (_, i) => path.join(home, 'worktrees', `e${i}`));
    await Promise.all(dirs.map((d) => checkoutWorktree(repo, d, head)));
    for (const d of dirs) assert.equal(await readRef(d, 'HEAD'), head);
    // Removing half while adding the rest anew, as proposals and rebases do.
    const more = dirs.map((d) => `${d}-again`);
    await Promise.all([
      ...dirs.slice(0, 6).map((d) => removeWorktree(repo, d)),
      ...more.map((d) => checkoutWorktree(repo, d, head)),
    ]);
    const listed = (await git(repo).raw(['worktree', 'list', '--porcelain']))
      .split('\n')
      .filter((l) => l.startsWith('worktree ')).length;
    assert.equal(listed, 1 + 6 + 12, 'the main checkout, 6 left, 12 new');

    // Another process is half-way through registering "zz": git refuses to add any worktree until
    // its commondir is written. The add is retried and succeeds once it is.
    const admin = path.join(repo, '.git', 'worktrees', 'zz');
    mkdirSync(admin, { recursive: true });
    writeFileSync(path.join(admin, 'commondir'), '');
    writeFileSync(path.join(admin, 'gitdir'), `${path.join(home, 'zz', '.git')}\n`);
    await assert.rejects(
      git(repo).raw(['worktree', 'add', '--detach', path.join(home, 'plain'), head]),
      /failed to read .*commondir/,
    );
    setTimeout(() => writeFileSync(path.join(admin, 'commondir'), '../..\n'), 60);
    const late = path.join(home, 'late');
    await checkoutWorktree(repo, late, head);
    assert.equal(await readRef(late, 'HEAD'), head);
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
});
