// The campaign end to end against the real server: baseline, experiments, keeps, git refs,
// records, continue-as-new, and search attributes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { campaignWorkflowId, experimentRef } from '../common/shared';
import { experiments, readLedger, readResultsTsv } from '../lib/ledger';
import { readRef, git } from '../lib/git';
import { lab, makeRepo } from './helpers';

test('a campaign runs the baseline and N experiments, keeps improvements and records everything', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    const userHead = await readRef(repo, 'HEAD');
    const c = await l.start(repo, { budget: { maxExperiments: 8 } }, { historyEventsLimit: 60 });
    const status = await c.result();

    assert.equal(status.state, 'completed');
    assert.match(status.message, /budget reached: 8 of 8 experiments/);
    assert.equal(status.experiments, 8);
    // Rows are in the order experiments finished; a proposal prepared ahead may overtake another.
    const rows = experiments(c.campaignDir);
    assert.deepEqual(
      rows.map((r) => r.experiment).sort((a, b) => a - b),
      [0, 1, 2, 3, 4, 5, 6, 7, 8],
      'baseline plus 8 experiments, each once',
    );
    // The baseline ran three times (the noise estimate); this target is deterministic, so sigma is 0.
    const baselineRuns = readLedger(c.campaignDir).filter((r) => r.kind === 'run' && r.experiment === 0);
    assert.equal(baselineRuns.length, 3);
    assert.equal(status.noiseSigma, 0);
    assert.match(rows[0].evidence, /mean of 3 runs/);
    assert.equal(rows[0].description, 'baseline');
    rows.sort((a, b) => a.experiment - b.experiment);
    const kept = rows.filter((r) => r.status === 'keep' && r.experiment > 0);
    assert.ok(
      kept.length >= 1,
      `random search should beat the baseline at least once: ${rows.map((r) => `${r.status} ${r.metric}`).join(', ')}`,
    );
    assert.equal(status.kept, kept.length);

    // The branch head is the best kept commit, and every experiment's commit stays reachable.
    const best = rows.filter((r) => r.status === 'keep').reduce((a, b) => (b.metric! < a.metric! ? b : a));
    assert.equal(await readRef(repo, `refs/heads/${c.branch}`), best.commit);
    assert.equal(status.bestCommit, best.commit);
    assert.equal(status.bestMetric, best.metric);
    for (const r of rows)
      assert.equal(
        await readRef(repo, experimentRef(c.tag, r.experiment)),
        r.commit,
        `experiment ${r.experiment} has its ref`,
      );
    // The branch holds only kept commits: its history since the baseline is exactly the keeps.
    const onBranch = (await git(repo).raw(['rev-list', `${rows[0].commit}..${c.branch}`])).split('\n').filter(Boolean);
    assert.deepEqual(new Set(onBranch), new Set(kept.map((r) => r.commit)));
    // Commit messages carry the description; notes carry the metric.
    const msg = await git(repo).raw(['log', '-1', '--format=%B', rows[1].commit]);
    assert.ok(msg.startsWith(rows[1].description), msg);
    const note = await git(repo).raw(['notes', '--ref=nightlab', 'show', rows[1].commit]);
    assert.match(note, new RegExp(`experiment 1: ${rows[1].status}`));

    // The user's checkout is untouched.
    assert.equal(await readRef(repo, 'HEAD'), userHead);
    assert.equal(await git(repo).raw(['status', '--porcelain']), '');

    // results.tsv in autoresearch's schema, one row per experiment.
    const tsv = readResultsTsv(c.campaignDir);
    assert.deepEqual(tsv.header, ['commit', 'val_bpb', 'memory_gb', 'status', 'description']);
    assert.equal(tsv.rows.length, 9);
    const finished = experiments(c.campaignDir);
    for (const [i, row] of tsv.rows.entries()) {
      assert.equal(row[0], finished[i].commit.slice(0, 7));
      assert.match(row[1], /^\d+\.\d{6}$/);
      assert.equal(row[2], '2.0');
      assert.equal(row[3], finished[i].status);
    }

    // Continue-as-new happened (small history limit) and state carried over exactly.
    const handle = l.client.workflow.getHandle(campaignWorkflowId(c.tag));
    const desc = await handle.describe();
    assert.notEqual(
      desc.runId,
      desc.raw.workflowExecutionInfo?.firstRunId,
      'the campaign continued as new at least once',
    );
    assert.ok((desc.historyLength ?? 0) < 200);

    // Search attributes a person can filter on in the Web UI.
    const sa = Object.fromEntries(desc.typedSearchAttributes.getAll().map((p) => [p.key.name, p.value]));
    assert.equal(sa.NightlabStatus, 'completed');
    assert.equal(sa.NightlabExperiments, 8);
    assert.equal(sa.NightlabKept, kept.length);
    assert.equal(sa.NightlabBestMetric, best.metric);
    assert.equal(sa.NightlabTag, c.tag);
    assert.equal(readLedger(c.campaignDir).filter((r) => r.kind === 'experiment').length, 9);
  } finally {
    await l.close();
  }
});
