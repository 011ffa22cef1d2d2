// The harness's parts, one by one: trees written out of git and hashed back, the locked-file guard,
// capped logs, the egress allowlist, the sandbox's allowlist, suspect gains and the alarms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { bareGit, commitFiles, git, readRef, showFile } from '../lib/git';
import { diskId, guardChanges, guardOf, wipeDir, writeTree } from '../lib/tree';
import { CappedLog, LOG_TAIL_BYTES, bounded, supervise } from '../lib/supervise';
import { allows, startEgress } from '../lib/egress';
import { confined, sandboxArgs, sandboxSupport } from '../lib/sandbox';
import { slotNodes } from '../gpu-worker/worker';
import { groupOf, suspectGain } from '../workflows/decisions';
import { alarms } from '../client/alarms';
import type { LedgerRow } from '../lib/ledger';
import { experiments } from '../lib/ledger';
import { lab, makeRepo, tempDir } from './helpers';
import { execa } from 'execa';

test("writeTree writes a commit's files as git has them; diskId gives git's own ids for files and folders", async () => {
  const repo = await makeRepo(undefined, (dir) => {
    mkdirSync(path.join(dir, 'data', 'heldout'), { recursive: true });
    writeFileSync(path.join(dir, 'data', 'heldout', 'test.txt'), 'secret\n');
    writeFileSync(path.join(dir, 'data', 'a b.txt'), 'spaces\n');
    writeFileSync(path.join(dir, 'run.sh'), '#!/bin/sh\necho hi\n');
    chmodSync(path.join(dir, 'run.sh'), 0o755);
    symlinkSync('run.sh', path.join(dir, 'link'));
  });
  const dir = tempDir();
  try {
    const head = (await readRef(repo, 'HEAD'))!;
    const g = git(repo);
    await writeTree(g, head, dir, ['data/heldout']);
    assert.equal(existsSync(path.join(dir, 'data', 'heldout')), false, 'held-out data left out');
    assert.equal(readFileSync(path.join(dir, 'data', 'a b.txt'), 'utf8'), 'spaces\n');
    assert.ok(statSync(path.join(dir, 'run.sh')).mode & 0o100, 'executable stays executable');
    const guard = await guardOf(g, head, ['train.py', 'data', 'link', 'run.sh']);
    assert.equal(guard.data, await g.raw(['rev-parse', `${head}:data`]), 'a folder is guarded by its tree id');
    await writeTree(g, head, path.join(dir, 'full'));
    assert.deepEqual(guardChanges(path.join(dir, 'full'), guard), [], "what was written hashes to git's ids");
    // Any change shows: content, a new file in a guarded folder, a deleted file, a symlinked parent.
    writeFileSync(path.join(dir, 'full', 'data', 'new.txt'), 'x');
    rmSync(path.join(dir, 'full', 'run.sh'));
    assert.deepEqual(guardChanges(path.join(dir, 'full'), guard).sort(), ['data', 'run.sh (deleted)']);
    assert.equal(diskId(path.join(dir, 'nothing'), 'sha1'), null);
    // wipeDir keeps only what it is told to (and its parents).
    mkdirSync(path.join(dir, 'full', '.venv', 'bin'), { recursive: true });
    mkdirSync(path.join(dir, 'full', 'ro'));
    writeFileSync(path.join(dir, 'full', 'ro', 'f'), 'x');
    chmodSync(path.join(dir, 'full', 'ro'), 0o500);
    wipeDir(path.join(dir, 'full'), ['.venv']);
    assert.deepEqual(readdir(path.join(dir, 'full')), ['.venv']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(path.dirname(repo), { recursive: true, force: true });
  }
});

/** Runs a sandboxed command line (confined()'s), feeding bubblewrap its seccomp filter. */
async function runConfined(
  c: { argv: string[]; env: Record<string, string>; feed: { fd: number; data: Buffer }[] },
  cwd = '/',
) {
  const child = execa(c.argv[0], c.argv.slice(1), {
    env: c.env,
    extendEnv: false,
    reject: false,
    cwd,
    stdio: ['ignore', 'pipe', 'pipe', ...c.feed.map(() => 'pipe' as const)],
  });
  for (const f of c.feed) (child.stdio[f.fd] as unknown as NodeJS.WritableStream).end(f.data);
  return child;
}

function readdir(d: string): string[] {
  return readdirSync(d).sort();
}

test("commitFiles makes the candidate in the object store: the code's tree with the files over it, the mode kept", async () => {
  const repo = await makeRepo();
  try {
    const head = (await readRef(repo, 'HEAD'))!;
    chmodSync(path.join(repo, 'prepare.py'), 0o755);
    await git(repo).raw(['commit', '-qam', 'an executable']);
    const code = (await readRef(repo, 'HEAD'))!;
    const sha = await commitFiles(repo, {
      code,
      parent: head,
      files: { 'train.py': 'WIDTH = 9\n', 'prepare.py': 'EVAL = 2\n', 'deep/new/file.txt': 'x\n' },
      message: 'width 9',
    });
    assert.equal(await showFile(repo, sha, 'train.py'), 'WIDTH = 9\n');
    assert.equal(await showFile(repo, sha, 'deep/new/file.txt'), 'x\n');
    assert.equal(await showFile(repo, sha, 'program.md'), await showFile(repo, head, 'program.md'));
    assert.match(await git(repo).raw(['ls-tree', sha, 'prepare.py']), /^100755 /, 'the mode is kept');
    assert.match(await git(repo).raw(['ls-tree', sha, 'train.py']), /^100644 /);
    assert.equal(await git(repo).raw(['rev-parse', `${sha}^`]), head);
    // The same tree as git's own index would make.
    const wt = tempDir();
    await git(repo).raw(['worktree', 'add', '-q', '--detach', wt, code]);
    writeFileSync(path.join(wt, 'train.py'), 'WIDTH = 9\n');
    writeFileSync(path.join(wt, 'prepare.py'), 'EVAL = 2\n');
    mkdirSync(path.join(wt, 'deep', 'new'), { recursive: true });
    writeFileSync(path.join(wt, 'deep', 'new', 'file.txt'), 'x\n');
    await git(wt).raw(['add', '-A']);
    assert.equal(await git(wt).raw(['write-tree']), await git(repo).raw(['rev-parse', `${sha}^{tree}`]));
    assert.equal(await git(repo).raw(['status', '--porcelain']), '', "the user's checkout is untouched");
    const bare = await bareGit(path.join(repo, '.git')).raw(['cat-file', '-t', sha]);
    assert.equal(bare, 'commit');
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
  }
});

test('a capped log keeps its head and its last 64 KiB, with a marker between', () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, 'logs', 'x.log');
    const log = new CappedLog(file, 256 * 1024);
    for (let i = 0; i < 4000; i++) log.write(`line ${i} ${'x'.repeat(200)}\n`);
    log.write('---\nval_bpb: 1.0\n');
    log.close();
    const text = readFileSync(file, 'utf8');
    assert.ok(statSync(file).size <= 256 * 1024 + 200, `capped (${statSync(file).size})`);
    assert.match(text, /^line 0 /);
    assert.match(text, /=== nightlab: log capped at 262144 bytes: \d+ bytes left out here; the last 65536 follow ===/);
    assert.ok(text.endsWith('---\nval_bpb: 1.0\n'), 'the summary block survives');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700);
    assert.ok(LOG_TAIL_BYTES === 65536);
    assert.equal(bounded('abcdef', 10), 'abcdef');
    assert.match(bounded('x'.repeat(5000), 100), /^x+ … \[cut: \d+ more characters\]$/);
    assert.equal(bounded('x'.repeat(5000), 100).length, 100);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the egress proxy lets through the named hosts only', async () => {
  assert.ok(allows(['api.anthropic.com'], 'API.anthropic.com', 443));
  assert.ok(!allows(['api.anthropic.com'], 'api.anthropic.com', 80));
  assert.ok(allows(['127.0.0.1:8080'], '127.0.0.1', 8080));
  assert.ok(!allows(['127.0.0.1:8080'], '127.0.0.1', 7233));
  assert.ok(!allows(['example.com'], 'evil.example.com', 443));
  const web = http.createServer((_, res) => res.end('hello\n'));
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  const port = (web.address() as net.AddressInfo).port;
  const egress = await startEgress(0, [`127.0.0.1:${port}`]);
  try {
    const connect = (target: string) =>
      new Promise<string>((resolve) => {
        const s = net.connect(egress.port!, '127.0.0.1', () =>
          s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`),
        );
        let got = '';
        s.on('data', (d) => {
          got += d;
          if (got.includes('\r\n\r\n') && got.startsWith('HTTP/1.1 200')) {
            s.write('GET / HTTP/1.0\r\n\r\n');
            s.once('data', (b) => {
              got += b;
            });
          }
        });
        s.on('close', () => resolve(got));
        setTimeout(() => s.destroy(), 1500);
      });
    assert.match(await connect(`127.0.0.1:${port}`), /^HTTP\/1\.1 200 Connection Established[\s\S]*hello/);
    assert.match(await connect('127.0.0.1:1'), /^HTTP\/1\.1 403 Forbidden/);
    assert.deepEqual(egress.refused, ['127.0.0.1:1']);
    // Plain-HTTP proxying would let one connection carry requests for several hosts: refused.
    const plain = await new Promise<string>((resolve) => {
      const s = net.connect(egress.port!, '127.0.0.1', () =>
        s.write(`GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`),
      );
      let got = '';
      s.on('data', (d) => {
        got += d;
      });
      s.on('close', () => resolve(got));
    });
    assert.match(plain, /^HTTP\/1\.1 405 /);
  } finally {
    await egress.close();
    web.close();
  }
});

test('the sandbox is an allowlist: the system read-only, an empty home, nothing of /run, protected places never exposed', async (t) => {
  const support = await sandboxSupport();
  if (!support.ok) {
    t.skip(`no sandbox here: ${support.why}`);
    return;
  }
  const work = tempDir('nightlab-sbx-');
  const nightlabHome = path.join(os.homedir(), `.nightlab-sbx-test-${process.pid}`);
  mkdirSync(nightlabHome, { recursive: true });
  writeFileSync(path.join(nightlabHome, 'ledger.jsonl'), 'records\n');
  try {
    const env = { PATH: `${nightlabHome}:/`.concat(':', process.env.PATH ?? ''), HOME: os.homedir() };
    const {
      args,
      env: inside,
      feed,
    } = await sandboxArgs({
      cwd: work,
      mounts: [{ path: work, mode: 'rw' }],
      env,
      protect: [nightlabHome],
      readOnly: ['~'],
    });
    const run = (script: string) =>
      runConfined({ argv: [support.bwrap, ...args, '--', 'python3', '-c', script], env: inside, feed });
    const r = await run(`import os
print(sorted(os.listdir(${JSON.stringify(os.homedir())})))
for p in ("/run", "/var/run", "/root/.ssh", "/etc/shadow", ${JSON.stringify(nightlabHome)}):
    try:
        print(p, os.path.exists(p) and (os.listdir(p) if os.path.isdir(p) else open(p).read()))
    except OSError as e:
        print(p, "denied", e.errno)
open("out.txt", "w").write("ok")
`);
    assert.equal(r.exitCode, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.ok(!r.stdout.includes('records'), 'NIGHTLAB_HOME is never exposed, even by a PATH entry or a declared ~');
    assert.match(
      lines.find((l) => l.startsWith('/run '))!,
      /^\/run False$/,
    );
    assert.match(
      lines.find((l) => l.startsWith('/etc/shadow'))!,
      /^\/etc\/shadow (False|denied 13|)$/,
      "the system's secrets are masked",
    );
    assert.match(
      lines.find((l) => l.startsWith('/root/.ssh'))!,
      /^\/root\/.ssh False$/,
    );
    assert.equal(readFileSync(path.join(work, 'out.txt'), 'utf8'), 'ok', 'the working directory is writable');
  } finally {
    rmSync(work, { recursive: true, force: true });
    rmSync(nightlabHome, { recursive: true, force: true });
  }
});

test('suspect gains: far beyond the noise and beyond anything kept; not judged without a noise estimate', () => {
  const best = groupOf([1.5, 1.51, 1.49]);
  const p = { direction: 'lower' as const };
  assert.match(
    suspectGain(1.0, best, 0.01, null, p)!,
    /^suspect gain: 0\.5 is \d+(\.\d+)? noise sigmas in one step, before any keep/,
  );
  assert.equal(suspectGain(1.45, best, 0.01, null, p), null, '5 sigma is an ordinary gain');
  assert.equal(suspectGain(1.0, best, 0.01, 0.3, p), null, 'a gain under 3 x the largest kept so far');
  assert.match(suspectGain(1.0, best, 0.01, 0.1, p)!, /5 x the largest gain kept so far \(0\.1\)/);
  assert.equal(suspectGain(1.0, best, null, null, p), null);
  assert.equal(suspectGain(1.0, best, 0, null, p), null);
  assert.equal(suspectGain(2.0, best, 0.01, null, p), null, 'worse is never suspect');
});

test('alarms: a keep whose held-out figure got worse beyond its noise, and a suspect gain, are raised for people', () => {
  const run = (experiment: number, heldOut: number, n = 0): LedgerRow => ({
    kind: 'run',
    tag: 't',
    experiment,
    run: n,
    commit: 'c',
    outcome: 'ok',
    metric: 1,
    memoryMb: 0,
    seconds: 1,
    logPath: '',
    host: '',
    slot: '',
    reason: '',
    heldOut,
  });
  const exp = (experiment: number, metric: number, heldOut: number, extra: Record<string, unknown> = {}): LedgerRow =>
    ({
      kind: 'experiment',
      tag: 't',
      experiment,
      commit: 'c',
      parent: 'p',
      status: 'keep',
      outcome: 'ok',
      metric,
      bestBefore: null,
      delta: null,
      memoryGb: 0,
      description: '',
      reason: '',
      evidence: 'e',
      runs: 1,
      seconds: 1,
      logPath: '',
      host: '',
      slot: '',
      costUsd: 0,
      fixOf: null,
      finishedAt: '',
      heldOut,
      logTail: '',
      ...extra,
    }) as LedgerRow;
  const ledger: LedgerRow[] = [
    run(0, 2.0, 0),
    run(0, 2.01, 1),
    run(0, 1.99, 2),
    exp(0, 1.5, 2.0),
    run(1, 2.005),
    exp(1, 1.4, 2.005), // held-out within the noise: no alarm
    run(2, 2.3),
    exp(2, 1.3, 2.3, { suspect: 'suspect gain: 0.1 is 40 noise sigmas in one step, before any keep' }),
  ];
  const raised = alarms(ledger, 'lower');
  assert.deepEqual(
    raised.map((a) => [a.experiment, a.kind]),
    [
      [2, 'held-out worse'],
      [2, 'suspect gain'],
    ],
  );
  assert.match(raised[0].text, /held-out 2\.300000 is worse than 2\.005000 \(experiment 1\)/);
});

test('run.setup makes the persisted .venv once per slot, on the base commit; runs use it read-only', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo(undefined, (dir) => {
      writeFileSync(path.join(dir, '.gitignore'), '.venv/\n');
      const train = path.join(dir, 'train.py');
      // The run tries to change the environment every later run would use.
      writeFileSync(
        train,
        readFileSync(train, 'utf8').replace(
          'import time\n',
          `import time
try:
    open(".venv/planted.py", "w").write("x")
    print("venv: written", flush=True)
except OSError as e:
    print("venv: refused", e.errno, flush=True)
`,
        ),
      );
    });
    const c = await l.start(repo, {
      budget: { maxExperiments: 2 },
      noise: { baselineRuns: 2 },
      run: {
        command: '.venv/bin/python train.py',
        setup: 'python3 -m venv --system-site-packages .venv',
        persist: ['.venv'],
        timeoutSec: 60,
      },
    });
    const s = await c.result();
    assert.equal(s.state, 'completed', s.message);
    const rows = experiments(c.campaignDir);
    assert.ok(
      rows.every((r) => r.outcome === 'ok'),
      rows.map((r) => r.reason).join('; '),
    );
    const logs = readdirSync(path.dirname(rows[0].logPath))
      .filter((f) => /^\d+-\d+\.log$/.test(f))
      .map((f) => readFileSync(path.join(path.dirname(rows[0].logPath), f), 'utf8'));
    assert.equal(
      logs.filter((t) => t.includes('=== setup of .venv on the base commit')).length,
      1,
      'setup ran once for the slot',
    );
    const sandboxed = (await sandboxSupport()).ok;
    if (sandboxed)
      assert.ok(
        logs.every((t) => /venv: refused 30/.test(t)),
        'the persisted .venv is read-only to every run',
      );
  } finally {
    await l.close();
  }
});

test('uv: `uv run train.py` in the sandbox, with the .venv that `uv sync --frozen` made by run.setup', async (t) => {
  const uv = (await execa('uv', ['--version'], { reject: false }).catch(() => null))?.exitCode === 0;
  if (!uv) {
    t.skip('uv is not installed here');
    return;
  }
  const l = await lab();
  try {
    const repo = await makeRepo(undefined, (dir) => {
      writeFileSync(
        path.join(dir, 'pyproject.toml'),
        '[project]\nname = "target"\nversion = "0.1.0"\nrequires-python = ">=3.8"\ndependencies = []\n\n[tool.uv]\npackage = false\n',
      );
      writeFileSync(path.join(dir, '.gitignore'), '.venv/\n');
    });
    await execa('uv', ['lock'], { cwd: repo });
    await git(repo).raw(['add', '-A']);
    await git(repo).raw(['commit', '-qm', 'uv.lock']);
    const c = await l.start(repo, {
      budget: { maxExperiments: 1 },
      noise: { baselineRuns: 1 },
      locked: ['prepare.py', 'pyproject.toml', 'uv.lock'],
      run: { command: 'uv run train.py', setup: 'uv sync --frozen', persist: ['.venv'], timeoutSec: 120 },
    });
    const s = await c.result();
    assert.equal(s.state, 'completed', s.message);
    const rows = experiments(c.campaignDir);
    assert.ok(
      rows.every((r) => r.outcome === 'ok'),
      rows.map((r) => `${r.reason}\n${r.logTail}`).join('; '),
    );
  } finally {
    await l.close();
  }
});

test('covert channels between sandboxes: the model process takes no file lock another sandbox could see, and no sandboxed process watches files', async (t) => {
  const support = await sandboxSupport();
  if (!support.ok) {
    t.skip(`no sandbox here: ${support.why}`);
    return;
  }
  const decision = { kind: 'bwrap' as const, bwrap: support.bwrap, header: '' };
  const start = async (script: string, noLocks: boolean) => {
    const c = await confined(
      decision,
      { cwd: '/', mounts: [], env: { PATH: process.env.PATH ?? '', HOME: os.homedir() }, protect: [], noLocks },
      `python3 -c '${script}'`,
    );
    const log = new CappedLog(path.join(tempDir(), 'x.log'));
    const run = supervise({ argv: c.argv, cwd: '/', env: c.env, timeoutSec: 20, log, feed: c.feed });
    return {
      done: run.done.then((r) => {
        log.close();
        return { ...r, text: readFileSync(log.file, 'utf8') };
      }),
    };
  };
  // The "model" holds a lock on a system file for 3 s; the "proposer" looks for it meanwhile.
  const hold =
    'import fcntl, time; f = open("/etc/hostname"); fcntl.flock(f, fcntl.LOCK_EX); print("locked", flush=True); time.sleep(3)';
  const look =
    'import fcntl, time\ntime.sleep(1)\nf = open("/etc/hostname")\ntry:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print("free")\nexcept OSError: print("held")\nimport ctypes; print("inotify", ctypes.CDLL(None, use_errno=True).inotify_init1(0))';
  for (const [noLocks, seen] of [
    [true, 'free'],
    [false, 'held'],
  ] as const) {
    const model = await start(hold, noLocks);
    const proposer = await start(look, false);
    const [m, p] = await Promise.all([model.done, proposer.done]);
    assert.match(m.text, /locked/);
    assert.match(
      p.text,
      new RegExp(`^${seen}$`, 'm'),
      noLocks ? "the model's lock is not there to be seen" : 'the check itself sees a real lock',
    );
    assert.match(p.text, /^inotify -1$/m, 'inotify is refused');
  }
});

test('protected places are hidden even under a system folder; an absent or root HOME gets an empty one', async (t) => {
  const support = await sandboxSupport();
  if (!support.ok || process.getuid?.() !== 0) {
    t.skip('needs the sandbox and root (to make a folder under /opt)');
    return;
  }
  const protectedDir = `/opt/nightlab-test-${process.pid}`;
  mkdirSync(path.join(protectedDir, 'campaigns'), { recursive: true });
  writeFileSync(path.join(protectedDir, 'campaigns', 'ledger.jsonl'), 'records\n');
  const work = path.join(protectedDir, 'slots', 'w');
  mkdirSync(work, { recursive: true });
  try {
    const decision = { kind: 'bwrap' as const, bwrap: support.bwrap, header: '' };
    for (const home of [undefined, '/']) {
      const env: Record<string, string> = { PATH: process.env.PATH ?? '', ...(home ? { HOME: home } : {}) };
      const c = await confined(
        decision,
        { cwd: work, mounts: [{ path: work, mode: 'rw' }], env, protect: [protectedDir] },
        'ls -a "$HOME"; cat /opt/nightlab-test-*/campaigns/ledger.jsonl; echo home=$HOME; touch ok',
      );
      const r = await runConfined(c, work);
      assert.ok(!r.stdout.includes('records'), `the protected folder is hidden (${r.stdout})`);
      assert.match(r.stdout, /home=\/home\/nightlab/);
      assert.ok(existsSync(path.join(work, 'ok')), 'the workspace inside it is still mounted');
    }
  } finally {
    rmSync(protectedDir, { recursive: true, force: true });
  }
});

test("a slot's sandbox gets its own GPU's device node, named by UUID", () => {
  const table = [
    { index: '0', uuid: 'GPU-aaa', minor: 2 },
    { index: '1', uuid: 'GPU-bbb', minor: 0 },
    { index: '2', uuid: 'GPU-ccc', minor: null },
  ];
  assert.deepEqual(slotNodes('1', table), {
    devices: 'GPU-bbb',
    nodes: [
      '/dev/nvidia0',
      '/dev/nvidiactl',
      '/dev/nvidia-uvm',
      '/dev/nvidia-uvm-tools',
      '/dev/nvidia-modeset',
      '/dev/nvidia-caps',
    ],
  });
  assert.equal(slotNodes('GPU-aaa', table).nodes![0], '/dev/nvidia2');
  assert.deepEqual(slotNodes('2', table), {}, 'minor unknown: every GPU, as before');
  assert.deepEqual(slotNodes('7', []), {});
});
