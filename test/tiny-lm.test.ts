// A short full campaign on the real example target (numpy LM on Tiny Shakespeare), as the demo
// runs it, with the test-sized token budget: the results parse with autoresearch's header.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { experiments, readResultsTsv } from '../lib/ledger';
import { readRef } from '../lib/git';
import { lab, makeRepo, TINY_LM, tinyLm } from './helpers';

test('tiny-lm: baseline and experiments with the offline proposer; the branch ends at the best kept commit', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo(TINY_LM);
    const c = await l.start(repo, {
      ...tinyLm(),
      proposer: { kind: 'mutate', seed: 0 },
      budget: { maxExperiments: 4, maxHours: null, maxCostUsd: null },
    });
    const s = await c.result();
    assert.equal(s.state, 'completed');
    assert.equal(s.experiments, 4);
    const rows = experiments(c.campaignDir);
    assert.equal(rows.length, 5);
    assert.ok(
      rows.every((r) => r.status !== 'crash'),
      rows.map((r) => `${r.experiment} ${r.status} ${r.reason}`).join('\n'),
    );
    // A character model on Shakespeare: bits per byte well under uniform (log2 65 = 6.02).
    assert.ok(s.baselineMetric! > 2 && s.baselineMetric! < 4, `baseline val_bpb ${s.baselineMetric}`);
    assert.ok(s.noiseSigma !== null && s.noiseSigma > 0, 'seeds move val_bpb: the noise is measured');
    const best = s.kept > 0 ? rows.filter((r) => r.status === 'keep' && r.experiment > 0).at(-1)! : rows[0];
    assert.equal(await readRef(repo, `refs/heads/${c.branch}`), best.commit);
    const tsv = readResultsTsv(c.campaignDir);
    assert.deepEqual(tsv.header, ['commit', 'val_bpb', 'memory_gb', 'status', 'description']);
    assert.equal(tsv.rows.length, 5);
  } finally {
    await l.close();
  }
});
