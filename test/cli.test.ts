// The `nightlab` command line as a user meets it: a real subprocess (`node bin/nightlab.mjs`),
// real git repositories in temp directories, the suite's real Temporal server. Bad input must
// exit non-zero with a message naming the problem and its fix, and must start nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { WorkflowNotFoundError } from '@temporalio/client';
import { parseConfig, PRESETS } from '../common/config';
import { campaignWorkflowId, type CampaignSnapshot } from '../common/shared';
import type { ResultRow } from '../client/results';
import { campaignInput } from '../client/live';
import proto from '@temporalio/proto';
import { connectClient } from '../ops/connection';
import { git } from '../lib/git';
import { ADDRESS, lab, makeRepo, QUADRATIC, QUADRATIC_CONFIG, ROOT, tempDir, uniqueTag, waitFor } from './helpers';

/** What pause and stop do, in the words of docs/concepts.md. */
const PAUSE_WORDS = 'start no new run; runs already going finish and are recorded; the rest waits for resume';
const STOP_WORDS =
  'start no new run; runs already going finish and are recorded; experiments not yet running are dropped; then the campaign ends (stopped)';

const BIN = path.join(ROOT, 'bin', 'nightlab.mjs');

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  home?: string;
}

/** The CLI as a child process; NIGHTLAB_HOME is a temp dir and no API key leaks in. */
function spawnNightlab(args: string[], opts: RunOptions = {}) {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    TEMPORAL_ADDRESS: ADDRESS,
    NIGHTLAB_HOME: opts.home ?? HOME,
    ...opts.env,
  };
  delete env.ANTHROPIC_API_KEY;
  delete env.NODE_TEST_CONTEXT; // the child is a CLI, not a test file
  return spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs the CLI to completion. */
function nightlab(args: string[], opts: RunOptions = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawnNightlab(args, opts);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function show(r: Ran): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

const HOME = tempDir('nightlab-cli-home-');
process.on('exit', () => rmSync(HOME, { recursive: true, force: true }));

test('--help lists every command', async () => {
  const r = await nightlab(['--help']);
  assert.equal(r.code, 0, show(r));
  const commands = r.stdout.slice(r.stdout.indexOf('Commands:'));
  const all = [
    'server',
    'doctor',
    'init',
    'demo',
    'start',
    'status',
    'results',
    'report',
    'list',
    'dashboard',
    'pause',
    'resume',
    'stop',
    'steer',
    'worker',
    'gpu-worker',
    'setup',
  ];
  for (const c of all) assert.match(commands, new RegExp(`^  ${c}\\b`, 'm'), `${c} is listed`);
  assert.match(r.stdout, /TEMPORAL_ADDRESS/);
  assert.match(
    r.stdout,
    /^Exit status: 0 done; 1 failed while running; 2 bad input/m,
    'the help states the exit statuses',
  );
  // Pause and stop say what they do in the vocabulary's words.
  const words = commands.replace(/\s+/g, ' ');
  assert.ok(words.includes(`pause <tag> ${PAUSE_WORDS}`), commands);
  assert.ok(words.includes(`stop <tag> ${STOP_WORDS}`), commands);
  const status = await nightlab(['status', '--help']);
  assert.equal(status.code, 0, show(status));
  assert.match(status.stdout, /^Usage: nightlab status \[options\] <tag>/);
  assert.match(status.stdout, /--json/);
});

test('--version and -V print the version of package.json', async () => {
  const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  for (const flag of ['--version', '-V']) {
    const r = await nightlab([flag]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, `${version}\n`);
  }
});

test('a usage error exits 2 and says it is one; a failure while running exits 1', async () => {
  const usage: [string[], RegExp][] = [
    [['frobnicate'], /^nightlab: usage error: unknown command 'frobnicate'/],
    [['status'], /^nightlab: usage error: missing required argument 'tag'/],
    [['status', 'x', '--frob'], /^nightlab: usage error: unknown option '--frob'/],
    [['start', '--config', 'x.yaml'], /^nightlab: usage error: required option '--tag <tag>' not specified/],
    [
      ['demo', '--iterations', 'twelve'],
      /^nightlab: usage error: option '--iterations <n>' argument 'twelve' is invalid\. must be a whole number >= 1/,
    ],
    [
      ['dashboard', '--port', '70000'],
      /^nightlab: usage error: option '--port <port>' argument '70000' is invalid\. must be a whole number >= 0/,
    ],
    [['steer', 'x'], /^nightlab: usage error: give --note "\.\.\." or --instructions <file>/],
    [
      ['steer', 'x', '--instructions', '/no/such/program.md'],
      /^nightlab: usage error: --instructions: \/no\/such\/program\.md does not exist/,
    ],
    [['gpu-worker', '--gpus', 'zero'], /^nightlab: usage error: --gpus: "zero" is not a GPU index/],
    [[], /^Usage: nightlab/],
  ];
  // An unreachable server: a usage error must be found before anything connects.
  const env = { TEMPORAL_ADDRESS: '127.0.0.1:1' };
  const runs = await Promise.all(usage.map(([args]) => nightlab(args, { env })));
  runs.forEach((r, i) => {
    assert.equal(r.code, 2, `${usage[i][0].join(' ')}: ${show(r)}`);
    assert.match(r.stderr, usage[i][1], show(r));
    assert.doesNotMatch(
      r.stderr,
      /Invalid campaign config|Cannot reach/,
      'a usage error, not a config error, found before connecting',
    );
    assert.equal(r.stdout, '');
  });
  const down = await nightlab(['list'], { env });
  assert.equal(down.code, 1, show(down));
  assert.match(down.stderr, /^nightlab: Cannot reach the Temporal server at 127\.0\.0\.1:1/);
});

test('init writes nightlab.yaml from a preset and will not overwrite it without --force', async () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, 'nightlab.yaml');
    const first = await nightlab(['init', '--preset', 'tiny-lm'], { cwd: dir });
    assert.equal(first.code, 0, show(first));
    assert.match(first.stdout, /Wrote .*nightlab\.yaml \(preset tiny-lm\)/);
    assert.deepEqual(
      parseConfig(YAML.parse(readFileSync(file, 'utf8')), file),
      parseConfig(PRESETS['tiny-lm']),
      'the file is the preset',
    );

    writeFileSync(file, '# my own edits\n');
    const again = await nightlab(['init', '--preset', 'tiny-lm'], { cwd: dir });
    assert.equal(again.code, 2, show(again));
    assert.match(again.stderr, /usage error: .*nightlab\.yaml exists; pass --force to overwrite it/);
    assert.equal(readFileSync(file, 'utf8'), '# my own edits\n', 'untouched');

    const forced = await nightlab(['init', '--preset', 'tiny-lm', '--force'], { cwd: dir });
    assert.equal(forced.code, 0, show(forced));
    assert.equal(parseConfig(YAML.parse(readFileSync(file, 'utf8'))).run.command, 'python3 train.py');

    const other = tempDir();
    try {
      const def = await nightlab(['init'], { cwd: other });
      assert.equal(def.code, 0, show(def));
      assert.equal(
        parseConfig(YAML.parse(readFileSync(path.join(other, 'nightlab.yaml'), 'utf8'))).run.command,
        'uv run train.py',
        'the default preset is autoresearch',
      );
    } finally {
      rmSync(other, { recursive: true, force: true });
    }

    const unknown = await nightlab(['init', '--preset', 'nope', '--force'], { cwd: dir });
    assert.equal(unknown.code, 2, show(unknown));
    assert.match(unknown.stderr, /nope.*autoresearch, tiny-lm/s);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------------------------- start

interface StartCase {
  name: string;
  /** The config file's text, or an object written as YAML; `target` defaults to the shared repo. */
  config?: string | Record<string, unknown>;
  /** Where the config lives (default config.yaml in the case's own directory). */
  file?: string;
  /** Prepares the case's directory (and may return a target repo of its own). */
  setup?: (dir: string, tag: string) => Promise<string | void> | string | void;
  /** The config, when it names something setup made in the case's directory. */
  configFor?: (dir: string) => Record<string, unknown>;
  tag?: string;
  expect: RegExp;
}

const base = (over: Record<string, unknown>) => ({ ...QUADRATIC_CONFIG, ...over }) as Record<string, unknown>;
const without = (key: string) => Object.fromEntries(Object.entries(QUADRATIC_CONFIG).filter(([k]) => k !== key));

test(
  'start refuses bad input with a clear message and starts nothing',
  { timeout: 300_000, concurrency: 8 },
  async (t) => {
    const repo = await makeRepo();
    const cases: StartCase[] = [
      {
        name: 'config file missing',
        file: 'nope/missing.yaml',
        expect: /file not found: .*missing\.yaml; create one with `nightlab init`/,
      },
      {
        name: 'YAML syntax error',
        config: 'editable: [train.py\nrun: {command: "python3 train.py"\n',
        expect: /cannot parse YAML: /,
      },
      {
        name: 'JSON syntax error',
        file: 'config.json',
        config: '{"editable": ["train.py"],',
        expect: /cannot parse JSON: /,
      },
      { name: 'editable missing', config: without('editable'), expect: /^\s+- editable: required/m },
      { name: 'editable empty', config: base({ editable: [] }), expect: /editable: list at least one file/ },
      {
        name: 'metric.direction down',
        config: base({ metric: { name: 'val_bpb', direction: 'down' } }),
        expect: /metric\.direction: must be "lower" or "higher"/,
      },
      {
        name: 'run.timeoutSec negative',
        config: base({ run: { command: 'python3 train.py', timeoutSec: -1 } }),
        expect: /run\.timeoutSec: must be > 0/,
      },
      {
        name: 'run.timeoutSec a string',
        config: base({ run: { command: 'python3 train.py', timeoutSec: 'ten minutes' } }),
        expect: /run\.timeoutSec: expected number, got string \(must be a number of seconds \(e\.g\. 600\)\)/,
      },
      {
        name: 'unknown top-level key',
        config: base({ edittable: ['train.py'] }),
        expect: /unknown field\(s\) "edittable"; check the spelling/,
      },
      {
        name: 'metric.pattern without a group',
        config: base({ metric: { name: 'val_bpb', pattern: 'val_bpb: [0-9.]+' } }),
        expect: /metric\.pattern: must be a regular expression with exactly one capture group/,
      },
      {
        name: 'editable and locked',
        config: base({ locked: ['prepare.py', 'train.py'] }),
        expect: /locked: train\.py is listed as both editable and locked; remove it from one list/,
      },
      {
        name: 'command proposer without command',
        config: base({ proposer: { kind: 'command' } }),
        expect: /proposer\.command: required when proposer\.kind is "command"/,
      },
      {
        name: 'secret in run.env',
        config: base({ run: { command: 'python3 train.py', env: { ANTHROPIC_API_KEY: 'sk-ant-x' } } }),
        expect: /run\.env\.ANTHROPIC_API_KEY: looks like a secret.*Remove it/,
      },
      {
        name: 'absolute editable path',
        config: base({ editable: ['/etc/passwd'] }),
        expect: /editable\.0: must be a path inside the target repository \(relative, no "\.\."\)/,
      },
      {
        name: '.. in a locked path',
        config: base({ locked: ['../prepare.py'] }),
        expect: /locked\.0: must be a path inside the target repository/,
      },
      {
        name: 'target does not exist',
        config: base({ target: 'no/such/dir' }),
        expect: /target: .*no\/such\/dir does not exist; fix the path \(relative to the config file\)/,
      },
      {
        name: 'target not a git repo',
        setup: (dir) => {
          const plain = path.join(dir, 'plain');
          cpSync(QUADRATIC, plain, { recursive: true });
          return plain;
        },
        expect: /target: .*plain is not a git repository; run `git init && git add -A && git commit -m baseline` there/,
      },
      {
        name: 'target without commits',
        setup: async (dir) => {
          const fresh = path.join(dir, 'fresh');
          cpSync(QUADRATIC, fresh, { recursive: true });
          await git(fresh).raw(['init', '--quiet', '-b', 'main']);
          return fresh;
        },
        expect: /target: .*fresh has no commits; commit the baseline code first/,
      },
      {
        name: 'editable file missing',
        config: base({ editable: ['model.py'] }),
        expect: /editable: model\.py is not in the target's HEAD commit [0-9a-f]{7}; fix the path or add the file/,
      },
      {
        name: 'locked file not committed',
        setup: async () => {
          const own = await makeRepo();
          writeFileSync(path.join(own, 'data.bin'), 'not committed');
          return own;
        },
        config: base({ locked: ['prepare.py', 'data.bin'] }),
        expect:
          /locked: data\.bin is not in the target's HEAD commit [0-9a-f]{7} \(it exists but is not committed; commit it\)/,
      },
      {
        name: 'remote that cannot be read',
        config: base({ remote: 'file:///no/such/repo.git' }),
        expect:
          /remote: file:\/\/\/no\/such\/repo\.git cannot be read from this host \(.+\); fix the URL, or leave remote out/,
      },
      {
        name: 'remote of another repository',
        setup: async (dir) => {
          const other = path.join(dir, 'other');
          cpSync(QUADRATIC, other, { recursive: true });
          await git(other).raw(['init', '--quiet', '-b', 'main']);
          await git(other).raw(['add', '-A']);
          await git(other).raw(['commit', '--quiet', '-m', 'another history']);
        },
        configFor: (dir) => base({ remote: `file://${path.join(dir, 'other')}` }),
        expect:
          /remote: file:\/\/.+ does not serve the target repository \(none of its refs is at HEAD [0-9a-f]{7}\); name the target repository itself/,
      },
      { name: 'tag with uppercase', tag: 'Nov27', expect: /tag: "Nov27" must be lowercase letters, digits/ },
      { name: 'tag with a space', tag: 'my tag', expect: /tag: "my tag" must be lowercase letters, digits/ },
      {
        name: 'branch already exists',
        tag: uniqueTag('cli-exists'),
        setup: async (_dir, tag) => {
          const own = await makeRepo();
          await git(own).raw(['branch', `autoresearch/${tag}`]);
          return own;
        },
        expect:
          /branch autoresearch\/cli-exists-\S+ already exists in .*; choose another --tag, or delete the branch \(git branch -D autoresearch\/cli-exists-\S+\)/,
      },
    ];

    const refs = async (r: string) => git(r).raw(['for-each-ref', '--format=%(refname) %(objectname)']);
    const refsBefore = await refs(repo);
    const tags: string[] = [];
    const client = await connectClient(ADDRESS);
    try {
      await Promise.all(
        cases.map((c) =>
          t.test(c.name, async () => {
            const dir = tempDir('nightlab-cli-case-');
            let own: string | null = null;
            try {
              const tag = c.tag ?? uniqueTag('cli');
              tags.push(tag);
              own = (await c.setup?.(dir, tag)) || null;
              const target = own ?? repo;
              const ownRefs = own ? await refs(own).catch(() => null) : null; // null: not a repo, or no commits
              const file = path.join(dir, c.file ?? 'config.yaml');
              const config = c.configFor?.(dir) ?? c.config ?? base({});
              if (c.file !== 'nope/missing.yaml') {
                const text =
                  typeof config === 'string'
                    ? config
                    : YAML.stringify({
                        ...config,
                        target: typeof config.target === 'string' && config.target !== '.' ? config.target : target,
                      });
                writeFileSync(file, text);
              }
              const r = await nightlab(['start', '--config', file, '--tag', tag], { cwd: dir });
              assert.equal(r.code, 2, show(r));
              assert.match(r.stderr, c.expect, show(r));
              // --tag is a flag: its problems are usage errors; the rest is the config's.
              const label = c.tag ? /^nightlab: usage error: / : /^Invalid campaign config /;
              assert.match(r.stderr, label, show(r));
              assert.doesNotMatch(r.stdout, /Started campaign/);
              assert.doesNotMatch(r.stderr, /^\s+at /m, 'a message, not a stack trace');
              if (own) assert.equal(await refs(own).catch(() => null), ownRefs, 'no ref was written in the target');
            } finally {
              rmSync(dir, { recursive: true, force: true });
              if (own && own.startsWith(dir) === false && path.basename(own) === 'target')
                rmSync(path.dirname(own), { recursive: true, force: true });
            }
          }),
        ),
      );

      // Nothing started: no workflow for any tag, no records, the shared target untouched.
      for (const tag of tags) {
        if (!/^[a-z0-9][a-z0-9._-]*$/.test(tag)) continue;
        await assert.rejects(
          client.workflow.getHandle(campaignWorkflowId(tag)).describe(),
          WorkflowNotFoundError,
          `no workflow for ${tag}`,
        );
      }
      assert.equal(existsSync(path.join(HOME, 'campaigns')), false, 'no campaign directory was made');
      assert.equal(await refs(repo), refsBefore, 'no ref was written in the target');
      assert.equal(await git(repo).raw(['status', '--porcelain']), '');
    } finally {
      // Should a case ever start a campaign by mistake, it must not run on in the shared server.
      for (const tag of tags)
        await client.workflow
          .getHandle(campaignWorkflowId(tag))
          .terminate('cli test cleanup')
          .catch(() => {});
      await client.connection.close();
      rmSync(path.dirname(repo), { recursive: true, force: true });
    }
  },
);

test('start refuses a branch name git rejects', async () => {
  const repo = await makeRepo();
  const dir = tempDir();
  const home = tempDir('nightlab-cli-home-');
  const tag = uniqueTag('cli-branch');
  const client = await connectClient(ADDRESS);
  try {
    const file = path.join(dir, 'nightlab.yaml');
    writeFileSync(file, YAML.stringify({ ...QUADRATIC_CONFIG, target: repo, branch: 'bad..name/{tag}' }));
    const r = await nightlab(['start', '--config', file, '--tag', tag], { cwd: dir, home });
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, new RegExp(`branch: "bad\\.\\.name/${tag}" is not a valid git branch name`));
    await assert.rejects(client.workflow.getHandle(campaignWorkflowId(tag)).describe(), WorkflowNotFoundError);
  } finally {
    await client.workflow
      .getHandle(campaignWorkflowId(tag))
      .terminate('cli test cleanup')
      .catch(() => {});
    await client.connection.close();
    for (const d of [path.dirname(repo), dir, home]) rmSync(d, { recursive: true, force: true });
  }
});

test('start: the same config with good input starts the campaign; a second start with the tag is refused', async () => {
  // The control for the cases above: the shared config is valid, so each failure came from its one fault.
  const repo = await makeRepo();
  const dir = tempDir();
  const home = tempDir('nightlab-cli-home-');
  const tag = uniqueTag('cli-ok');
  const tag2 = uniqueTag('cli-json');
  const client = await connectClient(ADDRESS);
  try {
    const file = path.join(dir, 'nightlab.yaml');
    writeFileSync(file, YAML.stringify({ ...QUADRATIC_CONFIG, target: path.relative(dir, repo) }));
    const r = await nightlab(['start', '--config', file, '--tag', tag], { cwd: dir, home });
    assert.equal(r.code, 0, show(r));
    assert.match(
      r.stdout,
      new RegExp(`Started campaign ${tag} \\(workflow campaign-${tag}\\), proposer mutate, branch autoresearch/${tag}`),
    );
    assert.match(
      r.stdout,
      new RegExp(`Records: ${path.join(home, 'campaigns', tag).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    );
    const desc = await client.workflow.getHandle(campaignWorkflowId(tag)).describe();
    assert.equal(desc.type, 'campaign');

    const again = await nightlab(['start', '--config', file, '--tag', tag], { cwd: dir, home });
    assert.equal(again.code, 2, show(again));
    const running = `nightlab: usage error: a campaign with tag ${tag} is already running; see \`nightlab status ${tag}\``;
    assert.ok(again.stderr.startsWith(running), show(again));

    // --json: what was started, as JSON alone on stdout; --gpu-task-queue: where its runs go.
    const queue = `cli-gpu-${tag2}`;
    const args = ['start', '--config', file, '--tag', tag2, '--gpu-task-queue', queue, '--json'];
    const json = await nightlab(args, { cwd: dir, home });
    assert.equal(json.code, 0, show(json));
    const { uiUrl, ...started } = JSON.parse(json.stdout);
    const campaignDir = path.join(home, 'campaigns', tag2);
    assert.deepEqual(started, {
      tag: tag2,
      workflowId: `campaign-${tag2}`,
      proposer: 'mutate',
      branch: `autoresearch/${tag2}`,
      gpuTaskQueue: queue,
      campaignDir,
    });
    assert.match(uiUrl, new RegExp(`/namespaces/default/workflows/campaign-${tag2}$`));
    assert.equal((await campaignInput(client, tag2)).gpuTaskQueue, queue, "in the workflow's start input");

    // A GPU worker takes runs from that queue: it polls it.
    const gpu = spawnNightlab(['gpu-worker', '--gpus', 'cpu', '--task-queue', queue], { home });
    try {
      await printed(gpu, /^GPU worker on /m);
      const ACTIVITY = proto.temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY;
      await waitFor('a poller on the queue', async () => {
        const q = await client.workflowService.describeTaskQueue({
          namespace: 'default',
          taskQueue: { name: queue },
          taskQueueType: ACTIVITY,
        });
        return (q.pollers ?? []).length > 0;
      });
    } finally {
      gpu.kill('SIGKILL');
    }
  } finally {
    for (const t of [tag, tag2])
      await client.workflow
        .getHandle(campaignWorkflowId(t))
        .terminate('cli test cleanup')
        .catch(() => {});
    await client.connection.close();
    for (const d of [path.dirname(repo), dir, home]) rmSync(d, { recursive: true, force: true });
  }
});

test('worker refuses a bad --max-activities (or NIGHTLAB_MAX_ACTIVITIES), before connecting', async () => {
  const cases: { args: string[]; env: Record<string, string>; expect: RegExp }[] = [
    {
      args: ['worker', '--max-activities', '0'],
      env: {},
      expect: /option '--max-activities <n>' argument '0' is invalid\. must be a whole number >= 1/,
    },
    {
      args: ['worker'],
      env: { NIGHTLAB_MAX_ACTIVITIES: 'many' },
      expect: /option '--max-activities <n>' value 'many' from env 'NIGHTLAB_MAX_ACTIVITIES' is invalid/,
    },
  ];
  for (const c of cases) {
    const r = await nightlab(c.args, { env: { ...c.env, TEMPORAL_ADDRESS: '127.0.0.1:1' } });
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, c.expect, show(r));
  }
});

// ------------------------------------------------------------------------- status and doctor

test('status, pause and results of an unknown tag say there is no such campaign', async () => {
  const tag = uniqueTag('cli-none');
  const runs = await Promise.all(
    [
      ['status', tag],
      ['status', tag, '--json'],
      ['pause', tag],
      ['results', tag],
    ].map((a) => nightlab(a)),
  );
  for (const r of runs) {
    assert.equal(r.code, 1, show(r));
    assert.match(
      r.stderr,
      new RegExp(`No campaign with tag ${tag} \\(workflow campaign-${tag}\\); see \`nightlab list\``),
      show(r),
    );
    assert.equal(r.stdout, '');
  }
});

test('an unreachable server: status names the address and how to fix it', async () => {
  const r = await nightlab(['status', 'x'], { env: { TEMPORAL_ADDRESS: '127.0.0.1:1' } });
  assert.equal(r.code, 1, show(r));
  assert.match(r.stderr, /Cannot reach the Temporal server at 127\.0\.0\.1:1/);
  assert.match(r.stderr, /Start one with `nightlab server`, or set TEMPORAL_ADDRESS to a running server/);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'a message, not a stack trace');
});

test('doctor: an unreachable server fails the check with a fix line; the suite server passes it', async () => {
  const [down, up] = await Promise.all([
    nightlab(['doctor'], { env: { TEMPORAL_ADDRESS: '127.0.0.1:1' } }),
    nightlab(['doctor']),
  ]);
  assert.notEqual(down.code, 0, show(down));
  assert.match(
    down.stdout,
    /^\[FAIL\] Temporal connection: Cannot reach the Temporal server at 127\.0\.0\.1:1 .*\n\s+fix: Start one with `nightlab server`, or set TEMPORAL_ADDRESS to a running server$/m,
  );
  assert.match(down.stdout, /Some required parts are missing: see the fixes above\./);
  assert.match(down.stdout, /^\[ok {2}\] Node\.js >= 20/m);
  // Every failing check carries a fix.
  const lines = down.stdout.split('\n');
  lines.forEach((l, i) => {
    if (l.startsWith('[FAIL]')) assert.match(lines[i + 1] ?? '', /^\s+fix: \S/, `${l} has a fix`);
  });

  assert.match(
    up.stdout,
    new RegExp(`^\\[ok {2}\\] Temporal connection: ${ADDRESS.replace(/\./g, '\\.')}, namespace default .*TLS off`, 'm'),
    show(up),
  );
  assert.match(up.stdout, /^\[ok {2}\] Nightlab's search attributes: registered in namespace "default"$/m, show(up));
  // Exit status follows the required checks: 0 exactly when none failed on this machine.
  assert.equal(up.code === 0, !/^\[FAIL\]/m.test(up.stdout), show(up));
});

test('doctor --json: the checks as JSON alone on stdout, the exit status as without it', async () => {
  const r = await nightlab(['doctor', '--json']);
  const report = JSON.parse(r.stdout) as {
    ok: boolean;
    checks: { name: string; required: boolean; ok: boolean; detail: string; fix?: string }[];
  };
  assert.equal(r.code === 0, report.ok, show(r));
  assert.equal(
    report.ok,
    report.checks.every((c) => c.ok || !c.required),
  );
  const server = report.checks.find((c) => c.name === 'Temporal connection');
  assert.equal(server?.ok, true, show(r));
  assert.match(server?.detail ?? '', new RegExp(`^${ADDRESS.replace(/\./g, '\\.')}, namespace default`));
  for (const c of report.checks.filter((x) => !x.ok)) assert.match(c.fix ?? '', /\S/, `${c.name} has a fix`);

  // A client of a remote cluster needs neither the Temporal CLI nor the example's packages.
  const remote = await nightlab(['doctor', '--json'], { env: { TEMPORAL_ADDRESS: 'temporal.example.invalid:7233' } });
  const checks = (JSON.parse(remote.stdout) as typeof report).checks;
  const required = (name: RegExp) => checks.find((c) => name.test(c.name))?.required;
  assert.equal(required(/^Temporal CLI$/), false, show(remote));
  assert.equal(required(/numpy/), false, show(remote));
  assert.equal(required(/^Temporal connection$/), true, show(remote));
});

// ------------------------------------------------------------------ a campaign through the CLI

test(
  'the CLI pauses, steers, resumes and stops a campaign; its --json outputs are JSON alone',
  { timeout: 300_000 },
  async () => {
    const l = await lab();
    try {
      const repo = await makeRepo();
      const run = { command: 'python3 train.py', env: { QUAD_SLEEP: '0.3' }, timeoutSec: 60 };
      const c = await l.start(repo, { budget: { maxExperiments: 200 }, run });
      const cli = (...args: string[]) => nightlab(args, { home: l.home });
      const json = async <T>(...args: string[]): Promise<T> => {
        const r = await cli(...args, '--json');
        assert.equal(r.code, 0, show(r));
        return JSON.parse(r.stdout) as T;
      };
      const status = () => json<CampaignSnapshot & { ended: boolean; alarms: unknown[] }>('status', c.tag);
      await waitFor('an experiment', async () => (await status()).experiments >= 1);

      const paused = await cli('pause', c.tag);
      assert.equal(paused.code, 0, show(paused));
      assert.equal(paused.stdout, `Sent pause to campaign ${c.tag}: ${PAUSE_WORDS}.\n`);
      await waitFor('paused', async () => (await status()).state === 'paused');
      const steered = await cli('steer', c.tag, '--note', 'try wider models');
      assert.equal(steered.code, 0, show(steered));
      assert.equal(steered.stdout, `Steered campaign ${c.tag} (1 note(s) in the proposer's context).\n`);
      assert.equal((await status()).message, 'steered: try wider models');
      const resumed = await cli('resume', c.tag);
      assert.equal(resumed.code, 0, show(resumed));
      await waitFor('running again', async () => (await status()).state === 'running');
      const stopped = await cli('stop', c.tag);
      assert.equal(stopped.code, 0, show(stopped));
      assert.ok(stopped.stdout.endsWith(`: ${STOP_WORDS}.\n`), show(stopped));
      const final = await c.result();
      assert.equal(final.state, 'stopped');

      // An ended campaign takes no control: a failure while running, exit 1.
      const late = await cli('pause', c.tag);
      assert.equal(late.code, 1, show(late));
      assert.equal(late.stderr, `nightlab: campaign ${c.tag} has ended (stopped); nothing to pause\n`);

      const s = await status();
      assert.equal(s.state, 'stopped');
      assert.equal(s.ended, true);
      assert.equal(s.experiments, final.experiments);
      assert.ok(Array.isArray(s.alarms));
      const rows = await json<ResultRow[]>('results', c.tag);
      // The baseline and every finished experiment, once each (a proposal the stop caught leaves a gap).
      assert.equal(rows.length, final.experiments + 1);
      assert.equal(new Set(rows.map((r) => r.experiment)).size, rows.length);
      assert.equal(rows[0].experiment, 0, 'in order, the baseline first');
      assert.ok(
        rows.every((r, i) => i === 0 || r.experiment > rows[i - 1].experiment),
        'in order',
      );
      assert.ok(rows.every((r) => ['keep', 'discard', 'crash'].includes(r.status)));
      assert.equal(rows.filter((r) => r.best).length, 1, 'the best marked');
      assert.ok(rows[0].figures.n >= 1 && rows[0].figures.mean !== null, "the baseline's runs: count and mean");
      const listed = await waitFor('the list says stopped', async () => {
        const all = await json<{ tag: string; state: string; ended: boolean; experiments: number }[]>('list');
        return all.find((x) => x.tag === c.tag && x.state === 'stopped');
      });
      assert.equal(listed.ended, true);
      const report = await json<{ html: string; png: string; svg: string; experiments: number }>('report', c.tag);
      for (const f of [report.html, report.png, report.svg]) assert.ok(existsSync(f), `${f} was written`);
      assert.equal(report.experiments, final.experiments, 'the experiments after the baseline');
    } finally {
      await l.close();
    }
  },
);

// ----------------------------------------------------------------------------------- dashboard

/** Resolves to the first match of `pattern` in what the child prints, or rejects when it exits first. */
function printed(child: ChildProcess, pattern: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    const read = (d: Buffer) => {
      out += d;
      const m = out.match(pattern);
      if (m) resolve(m);
    };
    child.stdout!.on('data', read);
    child.stderr!.on('data', read);
    child.once('exit', (code) => reject(new Error(`exited ${code} before printing ${pattern}:\n${out}`)));
  });
}

test(
  'dashboard: on loopback by default, no token; --host 0.0.0.0 prints a URL whose token every request needs',
  { timeout: 120_000 },
  async () => {
    for (const host of [null, '0.0.0.0']) {
      const child = spawnNightlab(['dashboard', '--port', '0', ...(host ? ['--host', host] : [])]);
      try {
        const [, printedUrl] = await printed(child, /^Nightlab dashboard at (\S+) /m);
        const url = new URL(printedUrl);
        const api = `http://127.0.0.1:${url.port}/api/campaigns`;
        if (!host) {
          assert.equal(url.href, `http://127.0.0.1:${url.port}/`, 'no token on loopback');
          assert.equal((await fetch(api)).status, 200);
        } else {
          const token = url.searchParams.get('token') ?? '';
          assert.match(token, /^[\w-]{32}$/, printedUrl);
          assert.equal((await fetch(api)).status, 403, 'no token, no entry');
          const ok = await fetch(`${api}?token=${token}`);
          assert.equal(ok.status, 200);
          assert.ok(Array.isArray(((await ok.json()) as { campaigns: unknown[] }).campaigns));
        }
        child.kill('SIGINT');
        assert.equal(await new Promise((resolve) => child.once('exit', resolve)), 0, 'Ctrl-C ends it cleanly');
      } finally {
        child.kill('SIGKILL');
      }
    }
  },
);
