// The idea archive (lib/ideas.ts): settings read from real diffs in a real git repository, the
// normalised diff hash (blind to whitespace and comments), and the compaction for a proposer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { ExperimentRecord } from '../common/shared';
import type { IdeaEntry } from '../common/search';
import { parseConfig } from '../common/config';
import { commitFacts, compactArchive, ideaEntries, readSettings } from '../lib/ideas';
import { buildContext, renderContext } from '../proposers/context';
import { mutateProposer, settingsIn } from '../proposers/mutate';
import { appendExperiment, appendRun } from '../lib/ledger';
import { commitFiles, git, readRef } from '../lib/git';
import { makeRepo, QUADRATIC_CONFIG, tempDir } from './helpers';

test('readSettings: module-level NAME = literal, values without comments', () => {
  const settings = readSettings(
    [
      'TOTAL_BATCH_SIZE = 2**19  # tokens',
      'ADAM_BETAS = (0.8,  0.95)',
      'WINDOW_PATTERN = "SSSL" # a # in a comment',
      'HASH = "#fff"',
      'USE_FLASH = True',
      'MODEL_DIM = DEPTH * 64',
      'BUILT = make(3)',
      'lowercase = 1',
      '    INDENTED = 2',
      'OPEN = (1,',
    ].join('\n'),
  );
  assert.deepEqual(Object.fromEntries(settings), {
    TOTAL_BATCH_SIZE: '2**19',
    ADAM_BETAS: '(0.8, 0.95)',
    WINDOW_PATTERN: '"SSSL"',
    HASH: '"#fff"',
    USE_FLASH: 'True',
  });
});

/** A ledger row for `commit` built on `parent`. */
function row(
  experiment: number,
  commit: string,
  parent: string,
  over: Partial<ExperimentRecord> = {},
): ExperimentRecord {
  return {
    tag: 'unit',
    experiment,
    commit,
    parent,
    status: 'discard',
    outcome: 'ok',
    metric: 1.01,
    bestBefore: 1,
    delta: 0.01,
    memoryGb: 0,
    description: `experiment ${experiment}`,
    reason: '',
    evidence: 'mean of 2 runs 1.01 vs best 1 (3 runs): not better (z -1.2, sigma 0.008 from 4 dof)',
    runs: 1,
    seconds: 1,
    logPath: '',
    host: 'h',
    slot: 's',
    costUsd: 0,
    fixOf: null,
    finishedAt: '2026-01-01T00:00:00.000Z',
    ...over,
  };
}

test('ideaEntries: files, settings old -> new, trees and a normalised diff hash from real commits', async () => {
  const repo = await makeRepo();
  const campaignDir = tempDir();
  try {
    const base = (await readRef(repo, 'HEAD'))!;
    const train = readFileSync(path.join(repo, 'train.py'), 'utf8');
    const commit = (files: Record<string, string>, message: string) =>
      commitFiles(repo, { code: base, parent: base, files, message });
    const lr = train.replace('LEARNING_RATE = 0.5', 'LEARNING_RATE = 0.25');
    // The same change, with a comment added, a comment line re-worded and a line re-indented.
    const lrNoisy = lr
      .replace('LEARNING_RATE = 0.25', 'LEARNING_RATE   =  0.25  # halved')
      .replace('# (the settings are kept apart', '#   (the settings, as it happens, are kept apart')
      .replace('import os', 'import os   ');
    const commits = {
      lr: await commit({ 'train.py': lr }, 'LEARNING_RATE 0.5 -> 0.25'),
      lrNoisy: await commit({ 'train.py': lrNoisy }, 'the same, noisily'),
      lrOther: await commit({ 'train.py': train.replace('LEARNING_RATE = 0.5', 'LEARNING_RATE = 0.3') }, 'LR 0.3'),
      code: await commit({ 'train.py': train.replace('val = (LEARNING_RATE', 'val = 1.0 * (LEARNING_RATE') }, 'code'),
      both: await commit({ 'train.py': lr, 'notes.md': 'why\n' }, 'LR and a note'),
    };
    const rows = [row(0, base, base, { status: 'keep', delta: 0, description: 'baseline' })];
    for (const [i, sha] of Object.values(commits).entries()) rows.push(row(i + 1, sha, base));
    rows[1] = { ...rows[1], status: 'keep', delta: -0.004, runs: 2 };
    for (const r of rows) appendExperiment(campaignDir, r, 'val_bpb', '');
    for (const [run, metric] of [1.0, 0.992].entries())
      appendRun(campaignDir, { ...rows[1], run, metric, outcome: 'ok', memoryMb: 0, reason: '' } as never);

    const entries = await ideaEntries({ repo, campaignDir, direction: 'lower' });
    const [baseline, lrEntry, noisy, other, code, both] = entries;
    assert.deepEqual(baseline.files, [], 'the baseline changes nothing');
    assert.deepEqual(baseline.touches, []);
    assert.deepEqual(lrEntry.settings, [{ file: 'train.py', name: 'LEARNING_RATE', from: '0.5', to: '0.25' }]);
    assert.deepEqual(lrEntry.touches, ['LEARNING_RATE']);
    assert.deepEqual(lrEntry.files, ['train.py']);
    assert.equal(lrEntry.tree, await git(repo).raw(['rev-parse', `${commits.lr}^{tree}`]));
    assert.equal(lrEntry.parentTree, await git(repo).raw(['rev-parse', `${base}^{tree}`]));
    assert.equal(lrEntry.gain, 0.004, 'lower is better: a negative delta is a gain');
    assert.equal(lrEntry.sigma, 0.008, 'the noise sigma the evidence quotes');
    assert.ok(Math.abs(lrEntry.spread! - 0.008 / Math.SQRT2) < 1e-12, `spread of its two runs: ${lrEntry.spread}`);
    assert.equal(other.spread, null, 'one run: no spread');

    assert.equal(noisy.diffHash, lrEntry.diffHash, 'whitespace and comments do not change the hash');
    assert.notEqual(noisy.tree, lrEntry.tree, 'though the tree differs');
    assert.deepEqual(noisy.settings, lrEntry.settings, 'the comment is not part of the value');
    assert.notEqual(other.diffHash, lrEntry.diffHash, 'another value is another change');
    assert.deepEqual(other.settings[0].to, '0.3');
    assert.deepEqual(code.settings, [], 'a code change reads no setting');
    assert.deepEqual(code.touches, ['train.py'], 'and is grouped by its file');
    assert.deepEqual(both.files, ['notes.md', 'train.py']);
    assert.deepEqual(both.touches, ['LEARNING_RATE', 'notes.md'], 'the setting, and the file changed beyond settings');
    assert.strictEqual(
      commitFacts(repo, commits.lr, base),
      commitFacts(repo, commits.lr, base),
      'git is read once per commit',
    );
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
    rmSync(campaignDir, { recursive: true, force: true });
  }
});

/** An archive entry that set `name` to `to` (or, with no name, changed `file` as `description` says). */
function entry(
  experiment: number,
  o: {
    name?: string;
    to?: string;
    file?: string;
    status?: 'keep' | 'discard' | 'crash';
    gain?: number | null;
    description?: string;
  },
): IdeaEntry {
  const settings = o.name ? [{ file: 'train.py', name: o.name, from: '1', to: o.to ?? '2' }] : [];
  return {
    experiment,
    status: o.status ?? 'discard',
    description: o.description ?? (o.name ? `${o.name} 1 -> ${o.to}` : 'a code change'),
    commit: `c${experiment}`,
    parent: 'c0',
    gain: o.gain === undefined ? -0.002 : o.gain,
    sigma: 0.003,
    runs: 1,
    touches: o.name ? [o.name] : [o.file ?? 'model.py'],
    tree: `t${experiment}`,
    parentTree: 'p',
    files: o.name ? ['train.py'] : [o.file ?? 'model.py'],
    settings,
    diffHash: `h${experiment}`,
    metric: 1,
    spread: null,
  };
}

test('compactArchive: groups with counts, values and outcomes, near misses, within the budget', () => {
  const entries: IdeaEntry[] = [
    entry(1, { name: 'MATRIX_LR', to: '0.02' }),
    entry(2, { name: 'MATRIX_LR', to: '0.06' }),
    entry(3, { name: 'MATRIX_LR', to: '0.06' }),
    entry(4, { name: 'MATRIX_LR', to: '0.05', status: 'keep', gain: 0.004 }),
    entry(5, { name: 'DEPTH', to: '10', gain: 0.0011 }),
    entry(6, { file: 'model.py', description: 'use rotary embeddings', status: 'crash', gain: null }),
    ...Array.from({ length: 40 }, (_, i) => entry(7 + i, { name: `KNOB_${i}`, to: String(i) })),
  ];
  const full = compactArchive(entries, 10_000);
  assert.match(full, /^46 experiments \(1 keep, 44 discard, 1 crash\)/);
  assert.match(full, /Near misses[^\n]*\n- #5 DEPTH 1 -> 10: \+0\.0011 over 1 run\n/);
  assert.match(
    full,
    /\nMATRIX_LR \(4 tried: 1 keep, 3 discard; best \+0\.004 in #4\): 0\.02 \(discard\), 0\.05 \(keep \+0\.004\), 0\.06 \(discard x2\)\n/,
  );
  assert.match(full, /\nDEPTH \(1 tried: 1 discard; best \+0\.0011 in #5\): 10 \(discard, near miss\)\n/);
  assert.match(full, /\nmodel\.py \(1 tried: 1 crash\): "use rotary embeddings" \(crash\)/);
  // Most informative first: the keep's group, then the near miss's, then the most tried.
  const order = ['MATRIX_LR (', 'DEPTH (', 'model.py ('].map((k) => full.indexOf(k));
  assert.deepEqual(
    [...order].sort((a, b) => a - b),
    order,
  );
  assert.ok(!full.includes('left out'), 'everything fits a large budget');

  for (const budget of [150, 300, 600]) {
    const small = compactArchive(entries, budget);
    assert.ok(small.length <= budget * 4, `${small.length} chars for ${budget} tokens`);
    assert.match(small, /^46 experiments/);
    assert.match(small, /\nMATRIX_LR \(4 tried/, 'the most informative group is kept');
    assert.match(small, /\.\.\. \d+ more groups \(\d+ experiments\) left out for length/);
  }
  assert.equal(compactArchive([], 100), '(no experiments yet)');
});

test('proposers see the archive; mutate does not set a setting to a value tried on the same best', async () => {
  const repo = await makeRepo();
  const campaignDir = tempDir();
  try {
    const base = (await readRef(repo, 'HEAD'))!;
    const train = readFileSync(path.join(repo, 'train.py'), 'utf8');
    const halved = await commitFiles(repo, {
      code: base,
      parent: base,
      files: { 'train.py': train.replace('LEARNING_RATE = 0.5', 'LEARNING_RATE = 0.25') },
      message: 'halve the learning rate',
    });
    appendExperiment(
      campaignDir,
      row(0, base, base, { status: 'keep', delta: 0, description: 'baseline' }),
      'val_bpb',
      '',
    );
    // Described in words (as an LLM would), so only the archive can tell it is the same change.
    appendExperiment(campaignDir, row(1, halved, base, { description: 'halve the learning rate' }), 'val_bpb', '');
    const config = parseConfig({ ...QUADRATIC_CONFIG, proposer: { kind: 'mutate', seed: 0 } }, 'unit');
    const args = { tag: 'unit', attempt: 0, repo, campaignDir, config, parentSha: base, fix: null, notes: [] };
    const ctx = await buildContext({ ...args, experiment: 2, instructionsOverride: null });
    assert.match(ctx.archive!.text, /\nLEARNING_RATE \(1 tried: 1 discard; best -0\.01 in #1\): 0\.25 \(discard\)/);
    assert.match(
      renderContext(ctx),
      /# The idea archive \(every experiment, grouped by what it changed\)\n\n1 experiment \(0 keep, 1 discard, 0 crash\)/,
    );
    assert.equal(ctx.archive!.plateau, null, 'one experiment is no plateau');

    const signal = new AbortController().signal;
    const proposals = async (archive: typeof ctx.archive) => {
      const out: string[] = [];
      for (let experiment = 2; experiment < 60; experiment++)
        out.push((await mutateProposer({ ...ctx, experiment, archive }, signal)).description);
      return out;
    };
    const without = await proposals(undefined);
    assert.ok(without.includes('LEARNING_RATE 0.5 -> 0.25'), 'without the archive it is proposed again');
    const withArchive = await proposals(ctx.archive);
    assert.ok(!withArchive.includes('LEARNING_RATE 0.5 -> 0.25'), withArchive.join(' | '));
    assert.ok(
      withArchive.some((d) => settingsIn(d).includes('LEARNING_RATE')),
      'other values are still tried',
    );
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
    rmSync(campaignDir, { recursive: true, force: true });
  }
});
