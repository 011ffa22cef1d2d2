// Keeping every slot busy and keeps honest: parallel experiments on several CPU slots, a proposal
// prepared on an old best rebased (or proposed again on a conflict), two campaigns sharing one
// fleet, and noise-aware keeps with confirmation runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { campaignWorkflowId } from '../common/shared';
import { experiments, readLedger } from '../lib/ledger';
import { git, readRef } from '../lib/git';
import { statusQuery } from '../workflows/messages';
import type { CampaignSnapshot } from '../common/shared';
import { lab, makeRepo, plannedProposer, proposalContext, type Lab } from './helpers';

/** Queries the campaign's status every `everyMs` until it ends: its result and every status seen. */
async function watchStatus(
  l: Lab,
  c: { tag: string; result: () => Promise<CampaignSnapshot> },
  everyMs: number,
): Promise<{ result: CampaignSnapshot; seen: CampaignSnapshot[] }> {
  const handle = l.client.workflow.getHandle(campaignWorkflowId(c.tag));
  const seen: CampaignSnapshot[] = [];
  let finished = false;
  const done = c.result().finally(() => (finished = true));
  while (!finished) {
    const s = await handle.query(statusQuery).catch(() => null);
    if (s) seen.push(s);
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return { result: await done, seen };
}

/** The most experiments any status showed training (holding a slot) at once. */
const mostTraining = (seen: CampaignSnapshot[]) =>
  Math.max(0, ...seen.map((s) => s.inFlight.filter((f) => f.phase === 'train' || f.phase === 'confirm').length));

test('parallelism 2 keeps two CPU slots training at once, never more', async () => {
  const l = await lab({
    slots: [
      { name: 'cpu0', devices: null },
      { name: 'cpu1', devices: null },
    ],
  });
  try {
    const repo = await makeRepo();
    const c = await l.start(repo, {
      parallelism: 2,
      budget: { maxExperiments: 6 },
      run: { command: 'python3 train.py', env: { QUAD_SLEEP: '1' }, timeoutSec: 60 },
    });
    const { result: status, seen } = await watchStatus(l, c, 150);
    assert.equal(status.experiments, 6);
    assert.equal(mostTraining(seen), 2, 'two experiments trained at the same time, and never three');
    const runs = readLedger(c.campaignDir).filter((r) => r.kind === 'run');
    assert.deepEqual(
      new Set(runs.map((r) => r.kind === 'run' && r.slot)),
      new Set(['cpu0', 'cpu1']),
      'both slots were used',
    );
    assert.deepEqual(
      experiments(c.campaignDir)
        .map((r) => r.experiment)
        .sort((a, b) => a - b),
      [0, 1, 2, 3, 4, 5, 6],
    );
  } finally {
    await l.close();
  }
});

test('status counts an experiment as training only while its run holds a slot: a win on an old best waits for its confirmation as judge', async () => {
  const l = await lab({
    slots: [
      { name: 'cpu0', devices: null },
      { name: 'cpu1', devices: null },
    ],
  });
  try {
    // Two settings the metric ignores, so 3 and 4 rebase onto 1 without a conflict.
    const repo = await makeRepo(undefined, (dir) =>
      appendFileSync(path.join(dir, 'train.py'), '\nPAD_A = 1\n\n\n\nPAD_B = 1\n'),
    );
    // 1 and 2 are wins trained side by side on the baseline. 1 is kept first; 3 and 4, queued,
    // are rebased onto it and take the two slots; 2, a win measured on the old best, must be
    // rebased and confirmed, and waits for a slot.
    const proposer = plannedProposer({
      1: { LEARNING_RATE: 0.3, desc: 'lower lr' },
      2: { WIDTH: 20, desc: 'wider, a bigger win', delay: 0.5 },
      3: { PAD_A: 2, desc: 'pad a', delay: 0.8 },
      4: { PAD_B: 2, desc: 'pad b', delay: 0.8 },
    });
    const c = await l.start(repo, {
      parallelism: 2,
      proposer,
      budget: { maxExperiments: 4 },
      run: { command: 'python3 train.py', env: { QUAD_SLEEP: '2' }, timeoutSec: 60 },
    });
    const { seen } = await watchStatus(l, c, 100);
    const phasesOf2 = new Set(seen.flatMap((s) => s.inFlight.filter((f) => f.experiment === 2).map((f) => f.phase)));
    const rows = Object.fromEntries(experiments(c.campaignDir).map((r) => [r.experiment, r]));
    const summary = JSON.stringify(Object.values(rows).map((r) => [r.experiment, r.status, r.metric, r.reason]));
    assert.equal(rows[1].status, 'keep', summary);
    assert.equal(rows[2].status, 'keep', summary);
    assert.equal(rows[2].parent, rows[1].commit, '2 was rebased onto 1 before its confirmation');
    assert.ok(
      phasesOf2.has('judge'),
      `2 waited for its confirmation slot as judge (seen: ${[...phasesOf2].join(', ')})`,
    );
    assert.equal(mostTraining(seen), 2, 'never more than two experiments shown training on two slots');
  } finally {
    await l.close();
  }
});

test('a proposal prepared while the best moved is rebased onto it; a conflicting one is proposed again on top', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    // Experiments 2 and 3 are proposed while 1 trains (lookahead 2), all on the baseline; the
    // delays make them reach the slot in number order.
    const proposer = plannedProposer({
      1: { WIDTH: 16, desc: 'wider' },
      2: { LEARNING_RATE: 0.2, desc: 'lower lr', delay: 0.4 },
      3: { WIDTH: 12, desc: 'width 12', delay: 0.8 },
    });
    const c = await l.start(repo, {
      proposer,
      lookahead: 2,
      budget: { maxExperiments: 3 },
      run: { command: 'python3 train.py', env: { QUAD_SLEEP: '1' }, timeoutSec: 60 },
    });
    await c.result();
    const rows = Object.fromEntries(experiments(c.campaignDir).map((r) => [r.experiment, r]));
    assert.equal(rows[1].status, 'keep');
    // 2 was built on the baseline; it trained on top of 1, with both changes.
    assert.equal(rows[2].parent, rows[1].commit);
    assert.equal(await git(repo).raw(['rev-parse', `${rows[2].commit}^`]), rows[1].commit);
    const code2 = await git(repo).raw(['show', `${rows[2].commit}:train.py`]);
    assert.match(code2, /^WIDTH = 16$/m);
    assert.match(code2, /^LEARNING_RATE = 0\.2$/m);
    assert.match(await git(repo).raw(['log', '-1', '--format=%B', rows[2].commit]), /rebased onto/);
    // 3 changed the same line as 1: its rebase conflicted, it was recorded and proposed again on the new best.
    const conflict = readLedger(c.campaignDir).find((r) => r.kind === 'rejected' && r.experiment === 3);
    assert.ok(
      conflict && conflict.kind === 'rejected' && /conflicts with kept experiment/.test(conflict.reason),
      JSON.stringify(conflict),
    );
    assert.notEqual(rows[3].parent, rows[0].commit, 'the second proposal of 3 was built on a newer best');
    // The branch holds only kept commits, each on top of the previous one.
    const kept = Object.values(rows).filter((r) => r.status === 'keep' && r.experiment > 0);
    const onBranch = (await git(repo).raw(['rev-list', `${rows[0].commit}..${c.branch}`])).split('\n').filter(Boolean);
    assert.deepEqual(new Set(onBranch), new Set(kept.map((r) => r.commit)));
  } finally {
    await l.close();
  }
});

test('a conflict never holds up the slot: a candidate on the new best trains while the conflicting one is proposed again, told what is in flight', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    // The default lookahead (2 x parallelism): 2 and 3 are proposed on the baseline while 1 trains.
    const proposer = plannedProposer({
      1: { WIDTH: 16, desc: 'wider' },
      2: { WIDTH: 12, desc: 'width 12', delay: 0.3 },
      '2/1': { WIDTH: 14, desc: 'width 14, on the new best', delay: 5 },
      3: { LEARNING_RATE: 0.2, desc: 'lower lr', delay: 0.6 },
    });
    const c = await l.start(repo, {
      proposer,
      budget: { maxExperiments: 3 },
      // 1 trains for 2 s so that 2 and 3 are surely proposed on the baseline before it is kept.
      run: { command: 'python3 train.py', env: { QUAD_SLEEP: '2' }, timeoutSec: 60 },
    });
    await c.result();
    const rows = Object.fromEntries(experiments(c.campaignDir).map((r) => [r.experiment, r]));
    assert.equal(rows[1].status, 'keep');
    const conflict = readLedger(c.campaignDir).find((r) => r.kind === 'rejected' && r.experiment === 2);
    assert.ok(
      conflict && conflict.kind === 'rejected' && /conflicts with kept experiment 1/.test(conflict.reason),
      JSON.stringify(conflict),
    );
    assert.equal(rows[3].parent, rows[1].commit, '3 was rebased onto 1');
    assert.equal(rows[2].description, 'width 14, on the new best');
    // 3 trained and was recorded while 2 was being proposed again (5 s): the slot did not wait for it.
    const reproposed = statSync(path.join(c.campaignDir, 'proposals', '2-1.json')).mtimeMs;
    assert.ok(
      Date.parse(rows[3].finishedAt) < reproposed,
      `3 finished at ${rows[3].finishedAt}, 2 was proposed again at ${new Date(reproposed).toISOString()}`,
    );
    // The second proposal of 2 was shown 3 as in flight.
    const context = proposalContext(c.campaignDir, 2);
    assert.match(context, /# Experiments in flight \(proposed, not judged yet\)\n\n3\tlower lr\n/);
  } finally {
    await l.close();
  }
});

test("a GPU worker fetches candidates over the campaign's remote URL; a target path it can read lends its objects instead", async () => {
  const l = await lab();
  try {
    const run = { command: 'python3 train.py', env: {}, timeoutSec: 60 };
    const viaUrl = await makeRepo();
    const url = `file://${viaUrl}`;
    const a = await l.start(viaUrl, { remote: url, budget: { maxExperiments: 2 }, run });
    const viaPath = await makeRepo();
    const b = await l.start(viaPath, { budget: { maxExperiments: 2 }, run });
    assert.equal((await a.result()).experiments, 2);
    assert.equal((await b.result()).experiments, 2);
    const cacheOf = (remote: string) =>
      path.join(l.home, 'repos', createHash('sha256').update(remote).digest('hex').slice(0, 16));
    // Over the URL: each candidate was fetched into the GPU host's own cache.
    const fetched = (await git(cacheOf(url)).raw(['for-each-ref', '--format=%(refname)', `refs/nightlab/${a.tag}/`]))
      .split('\n')
      .filter(Boolean);
    assert.deepEqual(fetched.sort(), [0, 1, 2].map((n) => `refs/nightlab/${a.tag}/${n}`).sort());
    assert.equal(existsSync(path.join(cacheOf(url), 'objects', 'info', 'alternates')), false);
    // From the path: nothing fetched, the objects are the target's own.
    assert.equal(
      readFileSync(path.join(cacheOf(viaPath), 'objects', 'info', 'alternates'), 'utf8').trim(),
      path.join(viaPath, '.git', 'objects'),
    );
    assert.equal(await git(cacheOf(viaPath)).raw(['for-each-ref', `refs/nightlab/${b.tag}/`]), '');
  } finally {
    await l.close();
  }
});

test('two campaigns share one fleet of GPU workers and both finish', async () => {
  const l = await lab({
    slots: [
      { name: 'cpu0', devices: null },
      { name: 'cpu1', devices: null },
    ],
  });
  try {
    const run = { command: 'python3 train.py', env: { QUAD_SLEEP: '0.5' }, timeoutSec: 60 };
    const [a, b] = await Promise.all([
      l.start(await makeRepo(), { parallelism: 2, budget: { maxExperiments: 4 }, run }),
      l.start(await makeRepo(), { parallelism: 2, budget: { maxExperiments: 4 }, run }),
    ]);
    const [sa, sb] = await Promise.all([a.result(), b.result()]);
    assert.equal(sa.experiments, 4);
    assert.equal(sb.experiments, 4);
    for (const c of [a, b]) {
      const odd = readLedger(c.campaignDir).filter((r) => r.kind === 'run' && r.slot !== 'cpu0' && r.slot !== 'cpu1');
      assert.deepEqual(odd, [], `${c.tag} ran only on the shared slots`);
    }
    const all = [a, b].flatMap((c) => readLedger(c.campaignDir).flatMap((r) => (r.kind === 'run' ? [r.slot] : [])));
    assert.deepEqual(new Set(all), new Set(['cpu0', 'cpu1']));
    // Fair turns: each campaign finished an experiment before the other finished its last one
    // (with the fleet asked for twice its slots, neither campaign waited for the other to end).
    const finished = [a, b].map((c) =>
      experiments(c.campaignDir)
        .filter((r) => r.experiment > 0)
        .map((r) => Date.parse(r.finishedAt)),
    );
    assert.ok(
      Math.min(...finished[0]) < Math.max(...finished[1]) && Math.min(...finished[1]) < Math.max(...finished[0]),
      `interleaved: ${JSON.stringify(finished)}`,
    );
  } finally {
    await l.close();
  }
});

test('a win inside the noise gets more runs with other seeds while the best is re-run; a clear win is kept at once', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    const proposer = plannedProposer({
      1: { LEARNING_RATE: 0.499, desc: 'a change smaller than the noise' },
      2: { LEARNING_RATE: 0.2, desc: 'a real improvement' },
    });
    const c = await l.start(repo, {
      proposer,
      lookahead: 0,
      budget: { maxExperiments: 2 },
      noise: { baselineRuns: 3, confirmRuns: 2, bestRuns: 5 },
      run: { command: 'python3 train.py', env: { QUAD_NOISE: '0.01' }, timeoutSec: 60 },
    });
    const s = await c.result();
    const rows = Object.fromEntries(experiments(c.campaignDir).map((r) => [r.experiment, r]));
    const runs = readLedger(c.campaignDir).filter((r) => r.kind === 'run');
    const runsOf = (n: number) => runs.filter((r) => r.experiment === n);

    // The sequential rule: run by run, at most 1 + confirmRuns runs, each look stated in the evidence.
    assert.equal(rows[1].status, 'discard');
    assert.ok(rows[1].runs >= 2 && rows[1].runs <= 3, `more runs, at most 1 + confirmRuns: ${rows[1].runs}`);
    assert.match(rows[1].evidence, /log-odds of a 2-sigma gain .*: one more run; mean of \d runs /);
    assert.equal(runsOf(1).length, rows[1].runs);
    const reRun = Math.min(5, Math.max(3, 2 * rows[1].runs));
    assert.equal(
      runsOf(0).length,
      reRun,
      "the baseline was re-run up to twice the candidate's runs (bestRuns at most)",
    );
    assert.deepEqual(
      runsOf(0)
        .map((r) => r.kind === 'run' && r.run)
        .sort(),
      Array.from({ length: reRun }, (_, i) => i),
      'each re-run has its own seed',
    );

    assert.equal(rows[2].status, 'keep');
    assert.equal(rows[2].runs, 1, 'far outside the noise: one run decides');
    assert.match(rows[2].evidence, />= keep bound/);
    assert.equal(await readRef(repo, `refs/heads/${c.branch}`), rows[2].commit);
    assert.ok(s.noiseSigma !== null && s.noiseSigma > 0.003 && s.noiseSigma < 0.03, `noise estimated: ${s.noiseSigma}`);
  } finally {
    await l.close();
  }
});
