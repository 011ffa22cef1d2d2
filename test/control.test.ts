// Controlling a campaign and the ways runs go wrong: pause/resume/stop, budgets, crash, timeout,
// out-of-memory and no-metric runs, the crash-fix loop, a baseline that cannot run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { campaignWorkflowId } from '../common/shared';
import { experiments } from '../lib/ledger';
import { readRef, git } from '../lib/git';
import { statusQuery } from '../workflows/messages';
import { CampaignEnded, sendControl, steerCampaign, SteerRefused } from '../client/control';
import { CampaignNotFound } from '../client/campaigns';
import { lab, makeRepo, plannedProposer, proposalContext, tempDir, waitFor } from './helpers';

test('pause: no new experiment; resume goes on; stop ends the campaign (the client layer sends them)', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    const c = await l.start(repo, {
      budget: { maxExperiments: 200 },
      run: { command: 'python3 train.py', env: { QUAD_SLEEP: '0.5' }, timeoutSec: 60 },
    });
    const handle = l.client.workflow.getHandle(campaignWorkflowId(c.tag));
    await waitFor('two experiments', async () => (await handle.query(statusQuery)).experiments >= 2);
    await sendControl(l.client, c.tag, 'pause');
    const paused = await waitFor('paused state', async () => {
      const s = await handle.query(statusQuery);
      return s.state === 'paused' && s.current === null && s;
    });
    await new Promise((r) => setTimeout(r, 2500));
    const still = await handle.query(statusQuery);
    assert.equal(still.experiments, paused.experiments, 'no experiment runs while paused');
    assert.equal(experiments(c.campaignDir).length, paused.experiments + 1);

    await sendControl(l.client, c.tag, 'resume');
    await waitFor(
      'progress after resume',
      async () => (await handle.query(statusQuery)).experiments >= paused.experiments + 2,
    );
    await sendControl(l.client, c.tag, 'stop');
    const final = await c.result();
    assert.equal(final.state, 'stopped');
    // An ended campaign takes no more controls; an unknown tag is no campaign.
    await assert.rejects(
      sendControl(l.client, c.tag, 'resume'),
      (e) => e instanceof CampaignEnded && /has ended \(stopped\); nothing to resume/.test(e.message),
    );
    await assert.rejects(steerCampaign(l.client, c.tag, { note: 'too late' }), CampaignEnded);
    await assert.rejects(sendControl(l.client, `${c.tag}-none`, 'pause'), CampaignNotFound);
    assert.ok(final.experiments < 200);
    const rows = experiments(c.campaignDir);
    assert.equal(rows.length, final.experiments + 1, 'every finished experiment recorded once, the baseline too');
    // Each recorded once. A proposal still waiting for a slot at the stop was never trained, so it
    // leaves a gap in the numbers, not a row.
    assert.equal(new Set(rows.map((r) => r.experiment)).size, rows.length);
    const desc = await handle.describe();
    assert.equal(desc.typedSearchAttributes.getAll().find((p) => p.key.name === 'NightlabStatus')?.value, 'stopped');
  } finally {
    await l.close();
  }
});

test('the time budget ends a campaign cleanly', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    // 0.0005 h = 1.8 s: the baseline and a few experiments fit, then the campaign completes.
    const c = await l.start(repo, {
      budget: { maxExperiments: null, maxHours: 0.0005 },
      run: { command: 'python3 train.py', env: { QUAD_SLEEP: '0.3' }, timeoutSec: 60 },
    });
    const s = await c.result();
    assert.equal(s.state, 'completed');
    assert.match(s.message, /budget reached: 0.0005 h/);
    assert.equal(experiments(c.campaignDir).length, s.experiments + 1);
  } finally {
    await l.close();
  }
});

test('crash, timeout, out-of-memory and no-metric runs are recorded with their reasons; the run tree is killed', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    const pidFile = path.join(tempDir(), 'hang.pid');
    // The hanging run writes its pid, so the test can check the whole process tree was killed.
    const train = path.join(repo, 'train.py');
    writeFileSync(
      train,
      readFileSync(train, 'utf8').replace(
        'if mode == 2:\n',
        `if mode == 2:\n    open(${JSON.stringify(pidFile)}, "w").write(str(os.getpid()))\n`,
      ),
    );
    await git(repo).raw(['commit', '-qam', 'pidfile for the hang']);
    const proposer = plannedProposer({
      1: { mode: 1, desc: 'crash on purpose' },
      2: { mode: 2, desc: 'hang on purpose' },
      3: { mode: 3, desc: 'print no metric' },
      4: { mode: 4, desc: 'run out of memory' },
      5: { LEARNING_RATE: 0.2, desc: 'lower the learning rate' },
    });
    const c = await l.start(repo, {
      proposer,
      crash: { maxFixAttempts: 0 },
      budget: { maxExperiments: 5 },
      lookahead: 0, // one at a time, so the plan's experiments run in number order
      sandbox: 'off', // the hanging run's pid file lives in /tmp, which a sandboxed run cannot write
      run: { command: 'python3 train.py', env: {}, timeoutSec: 3 },
    });
    const s = await c.result();
    assert.equal(s.state, 'completed');
    const rows = experiments(c.campaignDir);
    assert.deepEqual(
      rows.map((r) => [r.experiment, r.status, r.outcome]),
      [
        [0, 'keep', 'ok'],
        [1, 'crash', 'crash'],
        [2, 'crash', 'timeout'],
        [3, 'crash', 'no-metric'],
        [4, 'crash', 'oom'],
        [5, 'keep', 'ok'],
      ],
    );
    assert.match(rows[1].reason, /boom: the model diverged/);
    assert.match(rows[2].reason, /hard timeout of 3 s/);
    assert.match(rows[3].reason, /no val_bpb/);
    assert.match(rows[4].reason, /out of memory/);
    assert.equal(s.crashes, 4);
    assert.equal(s.kept, 1);
    // The timed-out trainer and its process group are gone.
    const pid = Number(readFileSync(pidFile, 'utf8'));
    assert.throws(() => process.kill(pid, 0), 'the hanging trainer was killed');
    // Crashed experiments' commits stay reachable for inspection; the branch holds only the keep.
    assert.equal(await readRef(repo, `refs/heads/${c.branch}`), rows[5].commit);
    for (const r of rows) assert.ok(existsSync(r.logPath), `experiment ${r.experiment} has its log`);
    assert.match(readFileSync(rows[1].logPath, 'utf8'), /RuntimeError: boom/);
  } finally {
    await l.close();
  }
});

test('a crash gets fix attempts that see the log tail, and a fix is kept on top of the best commit', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    const proposer = plannedProposer({
      1: { mode: 1, LEARNING_RATE: 0.2, desc: 'lower lr (and a bug)' },
      fix: { mode: 0, desc: 'fix: remove the bug' },
      3: { WIDTH: 4, desc: 'narrower' },
    });
    // lookahead 0: experiment 2 is proposed after 1 crashed, so it is the fix.
    const c = await l.start(repo, {
      proposer,
      crash: { maxFixAttempts: 2 },
      budget: { maxExperiments: 3 },
      lookahead: 0,
    });
    const s = await c.result();
    const rows = experiments(c.campaignDir);
    assert.deepEqual(
      rows.map((r) => [r.experiment, r.status, r.fixOf]),
      [
        [0, 'keep', null],
        [1, 'crash', null],
        [2, 'keep', 1],
        [3, 'discard', null],
      ],
    );
    const fixContext = proposalContext(c.campaignDir, 2);
    assert.match(fixContext, /fix the crash of experiment 1/);
    assert.match(fixContext, /RuntimeError: boom: the model diverged/, 'the log tail reaches the proposer');
    // The fix's parent is the baseline (best), not the crashed commit: the branch holds only keeps.
    assert.equal(rows[2].parent, rows[0].commit);
    assert.equal(await git(repo).raw(['rev-parse', `${rows[2].commit}^`]), rows[0].commit);
    assert.equal(await readRef(repo, `refs/heads/${c.branch}`), rows[2].commit);
    const diff = await git(repo).raw(['diff', rows[0].commit, rows[2].commit]);
    assert.match(diff, /\+LEARNING_RATE = 0.2/);
    assert.doesNotMatch(diff, /mode = 1/);
    assert.equal(s.kept, 1);
  } finally {
    await l.close();
  }
});

test('a baseline that cannot run fails the campaign with the reason, before any experiment', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    const c = await l.start(repo, { run: { command: 'nosuch-trainer --fast', env: {}, timeoutSec: 30 } });
    await assert.rejects(c.result(), (e: Error & { cause?: Error }) =>
      /command not found \(exit 127\)/.test(e.cause?.message ?? ''),
    );
    const rows = experiments(c.campaignDir);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].outcome, 'crash');
    const desc = await l.client.workflow.getHandle(campaignWorkflowId(c.tag)).describe();
    assert.equal(desc.status.name, 'FAILED');
    assert.equal(desc.typedSearchAttributes.getAll().find((p) => p.key.name === 'NightlabStatus')?.value, 'failed');
  } finally {
    await l.close();
  }
});

test("a steering note given mid-campaign reaches the next proposal's context and is visible in the history", async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    const plan: Record<string, Record<string, number | string>> = {};
    for (let n = 1; n <= 6; n++) plan[n] = { WIDTH: 8 + n, desc: `width ${8 + n}` };
    const proposer = plannedProposer(plan);
    const c = await l.start(repo, {
      proposer,
      lookahead: 0,
      budget: { maxExperiments: 6 },
      run: { command: 'python3 train.py', env: { QUAD_SLEEP: '0.7' }, timeoutSec: 60 },
    });
    const handle = l.client.workflow.getHandle(campaignWorkflowId(c.tag));
    await waitFor('experiment 2 proposed', () => existsSync(path.join(c.campaignDir, 'proposals', '2-0.context.md')));
    const note = 'try wider models first, never touch the learning rate';
    // An empty note is refused by the update's validator, before it reaches history.
    await assert.rejects(
      steerCampaign(l.client, c.tag, { note: '  ' }),
      (e) => e instanceof SteerRefused && /steering refused: .*non-empty/.test(e.message),
    );
    const r = await steerCampaign(l.client, c.tag, { note });
    assert.equal(r.notes, 1);
    const s = await c.result();
    assert.equal(s.state, 'completed');
    const before = proposalContext(c.campaignDir, 1);
    assert.doesNotMatch(before, /Notes from the human/);
    const after = proposalContext(c.campaignDir, 6);
    assert.match(after, /# Notes from the human/);
    assert.ok(after.includes(note), 'the note is in the context of a later proposal');
    const history = JSON.stringify((await handle.fetchHistory()).events);
    assert.ok(
      history.includes('workflowExecutionUpdateAcceptedEventAttributes'),
      'the steering update is in the history',
    );
  } finally {
    await l.close();
  }
});
