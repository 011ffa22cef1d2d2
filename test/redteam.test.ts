// Red-team proposals (test/redteam-attacks.ts): each tries to bend the harness, and each must be
// blocked and recorded with its reason. `npm run redteam` runs the same attacks and prints a line each.
//
// The sandbox cases need bubblewrap (`apt-get install -y bubblewrap`) and a host that lets it create
// namespaces. Where it cannot, the suite still holds everything that does not depend on it (locked
// files, the evaluation, the environment, bounds) and says, as a test diagnostic, which cases were
// only observed.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { experiments } from '../lib/ledger';
import { campaignWorkflowId } from '../common/shared';
import { ConfigError, parseConfig } from '../common/config';
import { checkMetric } from '../lib/metrics';
import { decideSandbox, resetSandboxProbe, sandboxSupport } from '../lib/sandbox';
import { lab, makeRepo, waitFor } from './helpers';
import { processesWithEnv, redteamProposer, redteamRepo, runRedTeam } from './redteam-attacks';

/** Runs one group of attacks and holds each to being blocked (sandbox cases only where there is one). */
async function holds(t: TestContext, group: NonNullable<Parameters<typeof runRedTeam>[0]>['only']): Promise<void> {
  const sandboxed = (await sandboxSupport()).ok;
  const results = await runRedTeam({ only: group });
  assert.ok(results.length > 0);
  for (const r of results) {
    if (r.needsSandbox && !sandboxed) {
      t.diagnostic(
        `NOT HELD (no sandbox here: ${((await sandboxSupport()) as { why: string }).why}): ${r.name}: ${r.blocked ? 'blocked' : 'got through'} — ${r.detail}`,
      );
      continue;
    }
    assert.ok(r.blocked, `${r.name} (${r.against}) got through: ${r.detail}`);
  }
}

test('red team: hostile training runs and evaluations are contained, and each is recorded with its reason', (t) =>
  holds(t, 'training'));
test('red team: a hostile command proposer is confined', (t) => holds(t, 'proposer'));
test('red team: a faked gain far beyond the noise is confirmed on clean caches and flagged; a misspelt held-out path is refused', async (t) => {
  await holds(t, 'suspect');
  await holds(t, 'config');
});

test('red team, no evaluator: only the final summary block counts; a metric printed twice or malformed is a crash', async () => {
  const l = await lab();
  try {
    const repo = await redteamRepo();
    const proposer = redteamProposer({
      1: [
        {
          desc: 'print a fake summary before the real one',
          code: 'print("---\\nval_bpb:          0.000001", flush=True)',
        },
      ],
      2: [
        {
          desc: 'print a second val_bpb after the real one',
          code: 'import atexit\natexit.register(lambda: print("val_bpb:          0.000001", flush=True))',
        },
      ],
      3: [
        {
          desc: 'print a malformed val_bpb as the final block',
          code: 'import atexit\natexit.register(lambda: print("---\\nval_bpb: 0.000001 (ema)", flush=True))',
        },
      ],
      4: [
        {
          desc: 'print nan as the final block',
          code: 'import atexit\natexit.register(lambda: print("---\\nval_bpb: nan", flush=True))',
        },
      ],
      5: [
        {
          desc: 'hang, with a child that detaches itself',
          code: 'import subprocess\nsubprocess.Popen(["sleep", "3600"], start_new_session=True)\ntime.sleep(3600)',
        },
      ],
    });
    // Every process of these runs carries the mark, so the test can tell that none outlived its run.
    const mark = `redteam-${Date.now().toString(36)}`;
    const c = await l.start(repo, {
      noise: { baselineRuns: 1 },
      lookahead: 0,
      crash: { maxFixAttempts: 0 },
      proposer,
      budget: { maxExperiments: 5 },
      run: { command: 'python3 train.py', env: { REDTEAM_MARK: mark }, timeoutSec: 5 },
    });
    const s = await c.result();
    assert.equal(s.state, 'completed', s.message);
    const rows = experiments(c.campaignDir);
    const summary = rows.map((r) => `${r.experiment} ${r.status} ${r.outcome} ${r.reason}`).join('\n');
    assert.deepEqual(
      rows.map((r) => [r.experiment, r.status, r.outcome]),
      [
        [0, 'keep', 'ok'],
        [1, 'discard', 'ok'],
        [2, 'crash', 'crash'],
        [3, 'crash', 'crash'],
        [4, 'crash', 'crash'],
        [5, 'crash', 'timeout'],
      ],
      summary,
    );
    assert.equal(rows[1].metric, rows[0].metric, 'the fake line before the summary does not count');
    assert.match(rows[2].reason, /^metric printed twice: val_bpb appears 2 times in the final summary block/);
    assert.match(rows[3].reason, /^malformed metric line: "val_bpb: 0\.000001 \(ema\)"/);
    assert.match(rows[4].reason, /^malformed metric line: "val_bpb: nan"/);
    assert.ok(
      rows.every((r) => r.heldOut === undefined),
      'no evaluator, no held-out figure',
    );
    // The hung run and its detached child are gone: the process group is killed, and in the
    // sandbox the pid namespace takes every process with it.
    const survivors = await waitFor(
      'the hung run to be reaped',
      () => {
        const left = processesWithEnv(`REDTEAM_MARK=${mark}`);
        return left.length === 0 ? [] : null;
      },
      10_000,
    ).catch(() => processesWithEnv(`REDTEAM_MARK=${mark}`));
    if ((await sandboxSupport()).ok) assert.deepEqual(survivors, [], 'no process of the hung run survives');
    else for (const pid of survivors) process.kill(Number(pid), 'SIGKILL'); // without a pid namespace a child that calls setsid escapes the group
  } finally {
    await l.close();
  }
});

test('red team: without a working sandbox, auto warns once and runs; required refuses and the campaign fails with the reason', async (t: TestContext) => {
  const saved = process.env.NIGHTLAB_BWRAP;
  process.env.NIGHTLAB_BWRAP = '/nonexistent/bwrap';
  resetSandboxProbe();
  const l = await lab();
  try {
    const warnings: string[] = [];
    const auto = await decideSandbox('auto', (w) => warnings.push(w));
    assert.equal(auto.kind, 'none');
    await decideSandbox('auto', (w) => warnings.push(w));
    assert.equal(warnings.length, 1, 'the worker warns once');
    assert.match(
      warnings[0],
      /NOT sandboxed: bubblewrap \(bwrap\) is not installed; install it with `apt-get install -y bubblewrap`/,
    );
    assert.equal((await decideSandbox('off')).kind, 'none');
    const required = await decideSandbox('required');
    assert.equal(required.kind, 'refuse');

    const repo = await makeRepo();
    const c = await l.start(repo, { sandbox: 'required', noise: { baselineRuns: 1 } });
    await assert.rejects(c.result(), (e: Error & { cause?: Error }) =>
      /sandbox required but unavailable: bubblewrap \(bwrap\) is not installed/.test(e.cause?.message ?? ''),
    );
    const rows = experiments(c.campaignDir);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].status, 'crash');
    assert.match(rows[0].reason, /^sandbox required but unavailable/);
    assert.equal((await l.client.workflow.getHandle(campaignWorkflowId(c.tag)).describe()).status.name, 'FAILED');

    // auto: the run goes ahead, and its log says it was not isolated.
    const a = await l.start(repo, { noise: { baselineRuns: 1 }, budget: { maxExperiments: 1 } });
    assert.equal((await a.result()).state, 'completed');
    assert.match(
      readFileSync(experiments(a.campaignDir)[0].logPath, 'utf8'),
      /=== sandbox: NONE — bubblewrap \(bwrap\) is not installed/,
    );
  } finally {
    if (saved === undefined) delete process.env.NIGHTLAB_BWRAP;
    else process.env.NIGHTLAB_BWRAP = saved;
    resetSandboxProbe();
    await l.close();
  }
  if (!(await sandboxSupport()).ok)
    t.diagnostic(`this host has no working sandbox: ${((await sandboxSupport()) as { why: string }).why}`);
});

test('checkMetric: one finite number in the final block counts; twice, or malformed, is a problem', () => {
  const spec = { name: 'val_bpb' };
  assert.deepEqual(
    checkMetric('val_bpb: 0.1\n---\nval_bpb: 0.99\npeak_vram_mb: 1\n', spec),
    { value: 0.99, problem: null },
    'a figure before the last --- does not count',
  );
  assert.deepEqual(checkMetric('---\ntraining_seconds: 3\n', spec), { value: null, problem: null });
  assert.deepEqual(
    checkMetric('---\nval_bpb_ema: 0.5\nval_bpb: 1e-3\n', spec),
    { value: 0.001, problem: null },
    'a longer name is another figure',
  );
  assert.match(
    checkMetric('---\nval_bpb: 0.9\nval_bpb: 0.1\n', spec).problem!,
    /^metric printed twice: val_bpb appears 2 times/,
  );
  assert.match(checkMetric('---\nval_bpb = 0.9\nval_bpb: 0.9\n', spec).problem!, /^metric printed twice/);
  for (const bad of ['val_bpb: nan', 'val_bpb: inf', 'val_bpb: 0.9 (ema)', 'val_bpb:', 'val_bpb: 0.9 0.8']) {
    assert.match(checkMetric(`---\n${bad}\n`, spec).problem!, /^malformed metric line: /, bad);
  }
  const pattern = { name: 'bpb', pattern: 'final bpb=(\\S+)' };
  assert.deepEqual(checkMetric('---\nfinal bpb=1.25\n', pattern), { value: 1.25, problem: null });
  assert.match(checkMetric('---\nfinal bpb=1.5\nfinal bpb=1.25\n', pattern).problem!, /^metric printed twice/);
  assert.match(checkMetric('---\nfinal bpb=oops\n', pattern).problem!, /^malformed metric line/);
});

test('config: held-out data is neither locked (shown to the proposer) nor editable; the held-out figure is not the deciding one', () => {
  const base = {
    editable: ['train.py'],
    locked: ['prepare.py'],
    run: { command: 'python3 train.py' },
    metric: { name: 'val_bpb' },
  };
  const ok = parseConfig({
    ...base,
    evaluate: {
      command: 'python3 evaluate.py',
      metric: 'val_bpb',
      heldOut: 'test_bpb',
      heldOutPaths: ['data/heldout'],
    },
  });
  assert.equal(ok.sandbox, 'auto');
  assert.equal(ok.evaluate!.timeoutSec, 120);
  const problems = (raw: unknown) => {
    try {
      parseConfig(raw);
      return '';
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return e.message;
    }
  };
  assert.match(
    problems({ ...base, locked: ['prepare.py', 'data'], evaluate: { command: 'e', heldOutPaths: ['data/heldout'] } }),
    /evaluate\.heldOutPaths\.0: data\/heldout overlaps locked data; held-out data must be neither locked/,
  );
  assert.match(
    problems({ ...base, evaluate: { command: 'e', heldOut: 'val_bpb' } }),
    /evaluate\.heldOut: val_bpb is the deciding metric/,
  );
  assert.match(problems({ ...base, sandbox: 'sometimes' }), /sandbox: must be "auto", "required" or "off"/);
  // The harness's own settings.
  assert.match(
    problems({ ...base, run: { command: 'x', persist: ['envs/.venv'], setup: 's' } }),
    /run\.persist\.0: must be a top-level path of the repository/,
  );
  assert.match(
    problems({ ...base, run: { command: 'x', persist: ['.venv'] } }),
    /run\.setup: required with run\.persist/,
  );
  assert.match(
    problems({ ...base, run: { command: 'x', persist: ['train.py'], setup: 's' } }),
    /run\.persist\.0: train\.py overlaps train\.py/,
  );
  assert.match(
    problems({ ...base, run: { command: 'x', readOnly: ['~'] } }),
    /run\.readOnly\.0: must be an absolute path or ~\/\.\.\./,
  );
  assert.match(
    problems({ ...base, evaluate: { command: 'e', model: 'm' } }),
    /evaluate\.metric: required with evaluate\.model/,
  );
  assert.match(
    problems({ ...base, proposer: { kind: 'command', command: 'c', network: ['http://api.anthropic.com'] } }),
    /proposer\.network\.0: must be host or host:port/,
  );
  assert.match(
    problems({ ...base, locked: ['.git/config'] }),
    /locked\.0: must name a file or folder of the repository/,
  );
  assert.deepEqual(
    parseConfig({ ...base, locked: ['./prepare.py', 'data/'] }).locked,
    ['prepare.py', 'data'],
    'one spelling per path',
  );
});
