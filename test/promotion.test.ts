// Promotion (config `promote`): each keep is re-run at a larger fidelity beside the best it replaced;
// the ledger, `results --json` and the report show whether it transfers; with `gate`, a keep that loses
// at the larger scale is taken back off the branch by a commit saying why.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ResultRow } from '../client/results';
import { experiments, readLedger, screeningRuns } from '../lib/ledger';
import { git, readRef } from '../lib/git';
import { ADDRESS, lab, makeRepo, plannedProposer, ROOT, TINY_LM, tinyLm } from './helpers';

async function cli(home: string, ...args: string[]): Promise<unknown> {
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(ROOT, 'bin', 'nightlab.mjs'), ...args], {
    env: { ...process.env, NIGHTLAB_HOME: home, TEMPORAL_ADDRESS: ADDRESS },
  });
  return JSON.parse(stdout);
}

test('tiny-lm: a keep is re-run at a larger budget beside the baseline; results --json and the report say if it transfers', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo(TINY_LM);
    const c = await l.start(repo, {
      // Screening on a quarter of the characters; promoted on the whole budget.
      ...tinyLm(300_000),
      promote: { env: { TINYLM_TOKEN_BUDGET: '1200000' } },
      noise: { baselineRuns: 2 },
      budget: { maxExperiments: 1, maxHours: null, maxCostUsd: null },
      proposer: plannedProposer({ 1: { LEARNING_RATE: 0.004, desc: 'learning rate 4x higher' } }),
    });
    const s = await c.result();
    assert.equal(s.state, 'completed');
    const ledger = readLedger(c.campaignDir);
    const [base, kept] = experiments(c.campaignDir);
    assert.equal(kept.status, 'keep', 'a 4x learning rate wins a short screen');
    const promotion = ledger.find((r) => r.kind === 'promotion');
    assert.ok(promotion && promotion.kind === 'promotion', 'the keep was promoted');
    assert.equal(promotion.experiment, 1);
    assert.equal(promotion.parent, base.commit);
    assert.ok(promotion.promoted.metric !== null && promotion.promoted.parent !== null, promotion.evidence);
    // The promoted fidelity is another scale: the baseline's figure there is not its screening figure.
    assert.notEqual(promotion.promoted.parent!.toFixed(6), promotion.screen.parent.toFixed(6));
    const promotedRuns = ledger.filter((r) => r.kind === 'run' && r.fidelity === 'promote');
    assert.deepEqual(promotedRuns.map((r) => r.kind === 'run' && r.experiment).sort(), [0, 1]);
    assert.equal(promotion.transfers, promotion.promoted.metric! < promotion.promoted.parent!);

    const rows = (await cli(l.home, 'results', c.tag, '--json')) as ResultRow[];
    const row = rows.find((r) => r.experiment === 1)!;
    assert.deepEqual(row.promotion?.promoted, promotion.promoted);
    assert.equal(row.promotion?.transfers, promotion.transfers);
    const screening = screeningRuns(ledger).filter((r) => r.experiment === 0 && r.commit === promotion.parent);
    assert.equal(rows[0].figures.n, screening.length, "promoted runs are not counted among the baseline's runs");
    const report = (await cli(l.home, 'report', c.tag, '--json')) as { html: string };
    const html = readFileSync(report.html, 'utf8');
    assert.match(html, /<th>promoted<\/th>/);
    // The idea archive, from the records alone: the setting the keep changed, old -> new.
    assert.match(html, /<h2>Idea archive<\/h2>[\s\S]*LEARNING_RATE/);
    assert.deepEqual(row.idea?.settings, [{ file: 'train.py', name: 'LEARNING_RATE', from: '0.001', to: '0.004' }]);
    assert.match(
      html,
      new RegExp(`${promotion.transfers ? 'transfers' : 'does not transfer'} at the promoted fidelity`),
    );
  } finally {
    await l.close();
  }
});

test('promote.gate: a keep that loses at the larger scale is reverted by a commit that says why', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    const c = await l.start(repo, {
      // Width helps the screen and costs at the larger scale.
      promote: { env: { QUAD_WIDTH_COST: '0.1' }, gate: true },
      noise: { baselineRuns: 1 },
      budget: { maxExperiments: 2 },
      // One experiment after the other: the second is proposed once the first is promoted.
      lookahead: 0,
      proposer: plannedProposer({ 1: { WIDTH: 20, desc: 'wider' }, 2: { LEARNING_RATE: 0.12, desc: 'lr 0.12' } }),
    });
    const s = await c.result();
    assert.equal(s.state, 'completed');
    const ledger = readLedger(c.campaignDir);
    const [base, wider, lr] = experiments(c.campaignDir);
    assert.equal(wider.status, 'keep');
    const promotion = ledger.find((r) => r.kind === 'promotion' && r.experiment === 1);
    assert.ok(promotion && promotion.kind === 'promotion');
    assert.equal(promotion.transfers, false, promotion.evidence);
    assert.ok(promotion.reverted, promotion.evidence);
    const revert = promotion.reverted;
    const tree = (sha: string) => git(repo).raw(['rev-parse', `${sha}^{tree}`]);
    assert.equal(promotion.parent, base.commit);
    assert.equal(await tree(revert), await tree(base.commit), 'the baseline files again');
    assert.equal(await git(repo).raw(['rev-parse', `${revert}^`]), promotion.commit, 'on top of the keep');
    assert.match(
      await git(repo).raw(['log', '-1', '--format=%B', revert]),
      /^Revert experiment 1: it does not transfer/,
    );
    // The next experiment was built on the revert, and the branch went on from there.
    assert.equal(lr.parent, revert);
    const head = await readRef(repo, `refs/heads/${c.branch}`);
    assert.equal(head, lr.status === 'keep' ? lr.commit : revert);
  } finally {
    await l.close();
  }
});
