// The search on the real tiny-lm target, and forks: a proposal of files already trained reuses the earlier
// result (no run) or, when a move can be made, gives its turn to one; and the engine makes experiments of
// its own: a combine of two near misses and an ablation of a kept change, each recorded with what it is
// made of and why. And a candidate rebased onto a best that already holds its change is not trained.
import { test } from 'node:test';
import { asyncLocalStorage, type Context } from '@temporalio/activity';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { campaignWorkflowId } from '../common/shared';
import { commitFiles, readRef, treesOf } from '../lib/git';
import { createActivities } from '../activities';
import { parseConfig } from '../common/config';
import { seededRandom, type IdeaEntry } from '../common/search';
import { reuseRecord } from '../activities/search';
import { appendExperiment, experiments, readLedger, screeningRuns } from '../lib/ledger';
import {
  ADDRESS,
  lab,
  makeRepo,
  plannedProposer,
  proposalContext,
  QUADRATIC_CONFIG,
  ROOT,
  tempDir,
  TINY_LM,
  tinyLm,
} from './helpers';

test('tiny-lm: a duplicate reuses its result, or a move is made instead; the engine combines two near misses and ablates a keep', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo(TINY_LM);
    const c = await l.start(repo, {
      ...tinyLm(300_000),
      // One run decides (the code is deterministic): gains under 0.02 are near misses, discarded.
      noise: { baselineRuns: 1 },
      keep: { minImprovement: 0.02 },
      lookahead: 0,
      budget: { maxExperiments: 8, maxHours: null, maxCostUsd: null },
      // Seed 20 draws the proposer for experiments 3-5, a combine for 6 and an ablation for 7; revisits
      // are on (a share of 0 would keep them out of the move made in place of a duplicate too) but never drawn.
      search: { combine: 0.45, ablate: 0.45, revisit: 0.01 },
      proposer: {
        ...plannedProposer({
          1: { WEIGHT_DECAY: 0.0, desc: 'no weight decay' },
          2: { WEIGHT_DECAY: 0.0, desc: 'no weight decay, again' },
          3: { INIT_SCALE: 0.9, desc: 'smaller init' },
          4: { LEARNING_RATE: 0.003, desc: 'learning rate 3x' },
          5: { HIDDEN_DIM: 96, desc: 'wider hidden layer' },
          6: { EMBED_DIM: 10, desc: 'unused: a move' },
          7: { EMBED_DIM: 12, desc: 'unused: a move' },
          8: { LEARNING_RATE: 0.001, desc: 'learning rate back to 0.001' },
        }),
        seed: 20,
      },
    });
    const s = await c.result();
    assert.equal(s.state, 'completed');
    const rows = experiments(c.campaignDir);
    const show = rows.map((r) => `${r.experiment} ${r.status} ${r.description}: ${r.evidence}`).join('\n');
    const row = (n: number) => rows.find((r) => r.experiment === n)!;
    assert.deepEqual(
      [1, 3, 4, 5].map((n) => row(n).status),
      ['discard', 'discard', 'keep', 'keep'],
      show,
    );
    assert.ok(row(1).delta! < 0 && row(3).delta! < 0, `near misses: better, not by 0.02\n${show}`);

    // Experiment 2 proposed experiment 1's files again, when no move could be made instead (one near
    // miss, nothing kept yet): its result, reused, and no GPU run.
    assert.equal(row(2).duplicateOf, 1, show);
    assert.equal(row(2).runs, 0);
    assert.equal(row(2).metric, row(1).metric);
    assert.match(row(2).evidence, /^the same files as experiment 1 \(discard [\d.]+\): its result reused, no run$/);
    const ledger = readLedger(c.campaignDir);
    assert.equal(screeningRuns(ledger).filter((r) => r.experiment === 2).length, 0, 'no GPU time');

    // The engine's own moves, in place of the proposer, each saying what it is made of and why.
    assert.deepEqual(
      row(6).move && { kind: row(6).move!.kind, of: row(6).move!.of },
      { kind: 'combine', of: [1, 3] },
      show,
    );
    assert.match(row(6).description, /^combine #1 \+ #3: no weight decay \+ smaller init$/);
    assert.match(
      row(6).move!.evidence,
      /^each inside the noise of the best of its time: #1 \(no weight decay: \+0\.00515/,
    );
    assert.deepEqual(
      row(7).move && { kind: row(7).move!.kind, of: row(7).move!.of },
      { kind: 'ablate', of: [4] },
      show,
    );
    assert.match(row(7).description, /^ablate #4: without learning rate 3x$/);
    // Experiment 8 proposed experiment 7's files again (the learning rate back): a move was possible,
    // so the engine made one instead of reusing the result, and says why.
    assert.deepEqual(
      row(8).move && { kind: row(8).move!.kind, of: row(8).move!.of },
      { kind: 'revisit', of: [1] },
      show,
    );
    assert.equal(row(8).duplicateOf, undefined);
    assert.ok(row(8).runs >= 1);
    assert.match(
      row(8).move!.evidence,
      /^the proposal \(learning rate back to 0\.001\) had the same files as experiment 7; instead: looked better inside the noise: #1 /,
    );
    // Each recorded with its idea: the settings it changed, old -> new.
    const settings = (n: number) => row(n).idea!.settings.map((x) => `${x.name} ${x.from} -> ${x.to}`);
    assert.deepEqual(settings(6), ['WEIGHT_DECAY 0.01 -> 0', 'INIT_SCALE 1.0 -> 0.9']);
    assert.deepEqual(settings(7), ['LEARNING_RATE 0.003 -> 0.001']);
  } finally {
    await l.close();
  }
});

test('fork: a new campaign from a parent experiment, on the parent archive (its trained files are reused)', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo();
    // Attempt keys: the fork's first proposal (attempt 0, width 16 again) is a no-op on its base and
    // is proposed again (attempt 1): the parent's experiment 2 files, discarded there.
    const c = await l.start(repo, {
      lookahead: 0,
      noise: { baselineRuns: 1 },
      budget: { maxExperiments: 2 },
      proposer: plannedProposer({
        1: { WIDTH: 16, desc: 'wider' },
        '1/0': { WIDTH: 16, desc: 'wider' },
        '1/1': { LEARNING_RATE: 0.9, desc: 'much higher learning rate, on the fork' },
        2: { LEARNING_RATE: 0.9, desc: 'much higher learning rate' },
      }),
    });
    await c.result();
    const parent = experiments(c.campaignDir);
    assert.deepEqual(
      parent.map((r) => r.status),
      ['keep', 'keep', 'discard'],
    );
    const tag = `${c.tag}-fork`;
    const out = await promisify(execFile)(
      process.execPath,
      [path.join(ROOT, 'bin', 'nightlab.mjs'), 'fork', c.tag, '--from', '1', '--tag', tag, '--json'],
      { env: { ...process.env, NIGHTLAB_HOME: l.home, TEMPORAL_ADDRESS: ADDRESS } },
    );
    const started = JSON.parse(out.stdout) as { tag: string; branch: string; campaignDir: string };
    assert.equal(started.tag, tag);
    const s = await l.client.workflow.getHandle(campaignWorkflowId(tag)).result();
    assert.equal(s.state, 'completed');
    const fork = experiments(started.campaignDir);
    // Its baseline is the parent's experiment 1, run again.
    assert.equal(fork[0].commit, parent[1].commit);
    assert.equal(fork[0].metric, parent[1].metric);
    // Its proposer saw the parent's archive, and the parent's trained files were not trained again.
    assert.match(proposalContext(started.campaignDir, 1, 1), new RegExp(`${c.tag}#2`));
    assert.match(
      fork[1].evidence,
      new RegExp(`^the same files as experiment ${c.tag}#2 \\(discard [\\d.]+\\): its result`),
    );
    assert.equal(fork[1].runs, 0);
    assert.equal(await readRef(repo, `refs/heads/${started.branch}`), parent[1].commit, 'the fork kept nothing new');
  } finally {
    await l.close();
  }
});

/**
 * For the activities called directly: a quadratic repo, a campaign directory, and `commit(message,
 * { NAME: value })`, a candidate on the base with those settings of train.py changed.
 */
async function scratch(prefix: string) {
  const repo = await makeRepo();
  const campaignDir = path.join(tempDir(prefix), 'campaign');
  mkdirSync(campaignDir, { recursive: true });
  const base = (await readRef(repo, 'HEAD'))!;
  const train = readFileSync(path.join(repo, 'train.py'), 'utf8');
  const edit = (values: Record<string, string>) =>
    Object.entries(values).reduce((t, [k, v]) => t.replace(new RegExp(`^${k} = .*$`, 'm'), `${k} = ${v}`), train);
  const commit = (message: string, values: Record<string, string>) =>
    commitFiles(repo, { code: base, parent: base, files: { 'train.py': edit(values) }, message });
  return { repo, campaignDir, base, commit };
}

test('rebase: a candidate whose change the new best already holds is refused, not trained against the best', async () => {
  // Two slots' proposals on one best: X sets two things, Y only one of them. X is kept; Y rebased onto
  // X is X itself, and judging it would run the best against itself (a keep of that is luck).
  const { repo, campaignDir, base, commit } = await scratch('nightlab-rebase-');
  const both = await commit('wider, higher lr', { WIDTH: '16', LEARNING_RATE: '0.9' });
  const wider = await commit('wider', { WIDTH: '16' });
  const faster = await commit('higher lr', { LEARNING_RATE: '0.9' });
  const { rebaseCandidate } = createActivities();
  const rebase = (experiment: number, sha: string, onto: string) =>
    rebaseCandidate({
      ...{ repo, campaignDir, tag: 'rb', experiment, attempt: 0, sha, parent: base },
      ...{ onto, ontoExperiment: 1 },
    });
  assert.equal(await rebase(2, wider, both), null);
  assert.deepEqual(
    readLedger(campaignDir).map((r) => r.kind === 'rejected' && [r.experiment, r.reason]),
    [[2, 'its change is already in kept experiment 1: rebased onto it, nothing is left to try']],
  );
  // A change of its own still rebases: the higher learning rate onto the kept wider model.
  const moved = await rebase(3, faster, wider);
  assert.ok(moved);
  assert.deepEqual(await treesOf(repo, [moved]), await treesOf(repo, [both]));
  assert.equal(readLedger(campaignDir).length, 1);
});

test('two proposals at once never make the same move: the second sees the first in flight', async () => {
  // Two near misses on the baseline, and a combine drawn for experiments 3 and 4 both (parallelism 2).
  const { repo, campaignDir, base, commit } = await scratch('nightlab-claims-');
  const ideas = [await commit('lr 0.4', { LEARNING_RATE: '0.4' }), await commit('width 10', { WIDTH: '10' })];
  const record = (experiment: number, commit: string, delta: number | null, description: string) => ({
    ...({ tag: 'claims', experiment, commit, parent: base, status: delta === null ? 'keep' : 'discard' } as const),
    ...({
      outcome: 'ok',
      metric: 1 + (delta ?? 0),
      bestBefore: 1,
      delta,
      memoryGb: 0,
      description,
      reason: '',
    } as const),
    ...{ evidence: 'sigma 0.01 from 3 runs', runs: 1, seconds: 1, logPath: '', host: '', slot: '', costUsd: 0 },
    ...{ fixOf: null, finishedAt: new Date().toISOString() },
  });
  appendExperiment(campaignDir, record(0, base, null, 'baseline'), 'val_bpb', '');
  ideas.forEach((sha, i) => appendExperiment(campaignDir, record(i + 1, sha, -0.002, `idea ${i + 1}`), 'val_bpb', ''));
  const combine = 0.9;
  let seed = 1;
  while ([3, 4].some((n) => seededRandom('search', seed, n)() >= combine)) seed++;
  const config = parseConfig(
    {
      ...QUADRATIC_CONFIG,
      parallelism: 2,
      proposer: { kind: 'mutate', seed },
      search: { combine, ablate: 0, revisit: 0 },
    },
    'test',
  );
  const { propose } = createActivities();
  const args = (experiment: number) => ({
    ...{ tag: 'claims', experiment, attempt: 0, repo, campaignDir, config, parentSha: base },
    ...{ fix: null, notes: [], instructionsOverride: null },
  });
  // As a worker runs an activity: a context to heartbeat on and a cancellation signal (the proposer's turn).
  const context = { heartbeat() {}, cancellationSignal: new AbortController().signal } as unknown as Context;
  const made = await Promise.all([3, 4].map((n) => asyncLocalStorage.run(context, () => propose(args(n)))));
  const shas = made.map((p) => (p.kind === 'candidate' ? p.sha : ''));
  const descriptions = made.map((p) => p.description);
  assert.equal(descriptions.filter((d) => d.startsWith('combine #1 + #2')).length, 1, descriptions.join('\n'));
  const trees = await treesOf(repo, shas);
  assert.notEqual(trees[0], trees[1], 'not the same files twice');
});

test('a fix whose files were trained before is recorded as that fix, with the earlier result', async () => {
  const { repo, campaignDir, base, commit } = await scratch('nightlab-reuse-');
  const sha = await commit('wider', { WIDTH: '16' });
  const config = parseConfig(QUADRATIC_CONFIG, 'test');
  const args = {
    ...{ tag: 'reuse', experiment: 5, attempt: 0, repo, campaignDir, config, parentSha: base },
    ...{ fix: { experiment: 4, sha }, notes: [], instructionsOverride: null },
  };
  const of = { experiment: 2, status: 'discard', metric: 0.5, description: 'wider' } as IdeaEntry;
  const record = await reuseRecord(args, { sha, description: 'wider, fixed', costUsd: 0, of });
  assert.equal(record.fixOf, 4);
  assert.equal(record.duplicateOf, 2);
  assert.equal(record.runs, 0);
});
