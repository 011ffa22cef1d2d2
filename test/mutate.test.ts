// The offline proposer (mutate) and the context every proposer is given.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../common/config';
import { findKnobs, mutateProposer, perturb, settingsIn } from '../proposers/mutate';
import { buildContext, renderContext, type ProposerContext } from '../proposers/context';
import { appendExperiment } from '../lib/ledger';
import { checkoutWorktree, commitWorktree, readRef, setRef } from '../lib/git';
import { makeRepo, QUADRATIC_CONFIG, setLine, tempDir } from './helpers';

const TRAIN = [
  '# a training script',
  'import os',
  'LEARNING_RATE = 0.04  # the step size',
  'DEPTH = 8',
  'BATCH_SIZE=64',
  'WEIGHT_DECAY = 1e-4',
  'SEED = 1337',
  'lowercase_rate = 0.5',
  'Mixed_Case = 3',
  'NAME = "gpt"',
  'def f():',
  '    INNER = 5',
  '    return INNER',
  'WARMUP = -2',
  '',
].join('\n');

test('findKnobs: module-level UPPER_CASE numeric assignments only, never SEED', () => {
  const knobs = findKnobs([
    { path: 'train.py', content: TRAIN },
    { path: 'notes.md', content: 'LEARNING_RATE = 1\n' },
  ]);
  assert.deepEqual(
    knobs.map((k) => [k.name, k.value, k.line]),
    [
      ['LEARNING_RATE', '0.04', 2],
      ['DEPTH', '8', 3],
      ['BATCH_SIZE', '64', 4],
      ['WEIGHT_DECAY', '1e-4', 5],
      ['WARMUP', '-2', 13],
    ],
  );
  assert.ok(
    knobs.every((k) => k.file === 'train.py'),
    'only Python files are searched',
  );
});

test('perturb: ints stay ints and change; floats change', () => {
  const factors = [0.5, 0.67, 0.8, 1.25, 1.5, 2];
  for (const v of ['8', '64', '1', '0', '3', '-3', '1000']) {
    for (const f of factors) {
      const y = perturb(v, f);
      assert.match(y, /^-?\d+$/, `int ${v} x ${f} -> ${y}`);
      assert.notEqual(Number(y), Number(v), `int ${v} x ${f} must change`);
    }
  }
  for (const v of ['0.04', '1e-4', '0.5', '3.0', '0.0', '2.5']) {
    for (const f of factors) {
      const y = perturb(v, f);
      assert.ok(Number.isFinite(Number(y)), `${v} x ${f} -> ${y}`);
      assert.notEqual(Number(y), Number(v), `float ${v} x ${f} must change`);
    }
  }
  assert.equal(perturb('64', 2), '128');
  assert.equal(perturb('64', 0.5), '32');
  assert.equal(perturb('0.04', 1.25), '0.05');
  assert.equal(perturb('1', 0.5), '2', 'a positive int never drops below 1');
});

test('perturb: a float literal stays a float literal', () => {
  for (const v of ['1.0', '0.5', '2.0']) {
    for (const f of [0.5, 0.67, 0.8, 1.25, 1.5, 2])
      assert.match(perturb(v, f), /[.eE]/, `${v} x ${f} -> ${perturb(v, f)}`);
  }
});

function mutateCtx(over: Partial<ProposerContext> = {}): ProposerContext {
  return {
    tag: 'unit',
    experiment: 3,
    attempt: 0,
    seed: 7,
    model: 'claude-sonnet-5-5',
    effort: 'medium',
    metric: { name: 'val_bpb', direction: 'lower' },
    instructions: '',
    notes: [],
    editable: [{ path: 'train.py', content: TRAIN }],
    locked: [],
    history: [],
    best: { experiment: 0, metric: 1, commit: 'f'.repeat(40) },
    fix: null,
    inFlight: [],
    lastRejection: null,
    code: { repo: '/nonexistent', sha: '0'.repeat(40) },
    ...over,
  };
}

test('mutateProposer: the same context gives the same edit; another attempt usually another one', async () => {
  const signal = new AbortController().signal;
  const a = await mutateProposer(mutateCtx(), signal);
  const b = await mutateProposer(mutateCtx(), signal);
  assert.deepEqual(a, b, 'a retried activity proposes the same edit');
  const descriptions = new Set<string>();
  for (let attempt = 0; attempt < 12; attempt++)
    descriptions.add((await mutateProposer(mutateCtx({ attempt }), signal)).description);
  assert.ok(descriptions.size >= 6, `12 attempts should give mostly different edits: ${[...descriptions].join(' | ')}`);
  const otherSeed = await mutateProposer(mutateCtx({ seed: 8 }), signal);
  const otherTag = await mutateProposer(mutateCtx({ tag: 'other' }), signal);
  assert.ok(
    otherSeed.description !== a.description || otherTag.description !== a.description,
    'seed and tag feed the RNG',
  );
});

test('mutateProposer: each edit changes one or two numbers and nothing else', async () => {
  const signal = new AbortController().signal;
  const original = TRAIN.split('\n');
  const counts = new Map<number, number>();
  for (let experiment = 1; experiment <= 60; experiment++) {
    const reply = await mutateProposer(mutateCtx({ experiment }), signal);
    assert.deepEqual(Object.keys(reply.files!), ['train.py']);
    const lines = reply.files!['train.py'].split('\n');
    assert.equal(lines.length, original.length);
    const changed = lines.map((l, i) => [l, original[i]] as const).filter(([l, o]) => l !== o);
    counts.set(changed.length, (counts.get(changed.length) ?? 0) + 1);
    assert.ok(
      changed.length === 1 || changed.length === 2,
      `experiment ${experiment}: ${changed.length} lines changed`,
    );
    for (const [now, before] of changed) {
      // Same name, same spacing, same comment: only the number differs.
      const strip = (s: string) => s.replace(/-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?/, '#');
      assert.equal(
        strip(now.replace(/^([A-Z_]+)/, '')),
        strip(before.replace(/^([A-Z_]+)/, '')),
        `${before} -> ${now}`,
      );
      assert.equal(now.split(/\s*=/)[0], before.split(/\s*=/)[0]);
      assert.ok(!/^(SEED|lowercase_rate|Mixed_Case|NAME|\s)/.test(before), `never touches ${before}`);
    }
    // The description says exactly what changed: "NAME old -> new" for each changed line.
    const value = (line: string) => line.split('=')[1].trim().split(/\s/)[0];
    const expected = changed.map(([now, before]) => `${before.split(/\s*=/)[0]} ${value(before)} -> ${value(now)}`);
    assert.deepEqual(reply.description.split(', ').sort(), expected.sort());
  }
  assert.ok((counts.get(1) ?? 0) > (counts.get(2) ?? 0), `mostly one change at a time: ${JSON.stringify([...counts])}`);
  assert.ok((counts.get(2) ?? 0) > 0, 'sometimes two');
});

test('mutateProposer: settings that experiments in flight are changing are left to them while others remain', async () => {
  const signal = new AbortController().signal;
  assert.deepEqual(settingsIn('WIDTH 8 -> 16, LEARNING_RATE 0.1 -> 0.05'), ['WIDTH', 'LEARNING_RATE']);
  assert.deepEqual(settingsIn('try a wider model'), []);
  const names = findKnobs([{ path: 'train.py', content: TRAIN }]).map((k) => k.name);
  const busy = names.slice(0, -1);
  const inFlight = busy.map((name, i) => ({ experiment: 10 + i, description: `${name} 1 -> 2`, tree: '' }));
  for (let experiment = 1; experiment <= 20; experiment++) {
    const reply = await mutateProposer(mutateCtx({ experiment, inFlight }), signal);
    assert.deepEqual(settingsIn(reply.description), [names.at(-1)], `experiment ${experiment}: ${reply.description}`);
  }
  // Every setting busy: any of them may be drawn (a proposal is still made).
  const all = names.map((name, i) => ({ experiment: 10 + i, description: `${name} 1 -> 2`, tree: '' }));
  const drawn = new Set<string>();
  for (let experiment = 1; experiment <= 20; experiment++)
    for (const n of settingsIn((await mutateProposer(mutateCtx({ experiment, inFlight: all }), signal)).description))
      drawn.add(n);
  assert.ok(drawn.size > 1, `draws from every setting: ${[...drawn].join(', ')}`);
});

test('buildContext: experiments proposed and not yet recorded are in flight, the proposal itself excepted', async () => {
  const repo = await makeRepo();
  const campaignDir = tempDir();
  try {
    const base = (await readRef(repo, 'HEAD'))!;
    const wt = path.join(campaignDir, 'wt');
    await checkoutWorktree(repo, wt, base);
    for (const [n, width] of [
      [1, '16'],
      [2, '32'],
      [3, '64'],
    ] as const) {
      setLine(path.join(wt, 'train.py'), 'WIDTH', width);
      await setRef(
        repo,
        `refs/nightlab/unit/${n}`,
        await commitWorktree(wt, base, `WIDTH 8 -> ${width}\n\nNightlab campaign unit, experiment ${n}`),
      );
    }
    await setRef(repo, 'refs/nightlab/unit/0', base);
    await setRef(repo, 'refs/nightlab/other/5', base); // another campaign's experiment
    appendExperiment(
      campaignDir,
      {
        tag: 'unit',
        experiment: 1,
        commit: base,
        parent: base,
        status: 'discard',
        outcome: 'ok',
        metric: 1.5,
        bestBefore: 1.4,
        delta: 0.1,
        memoryGb: 0,
        description: 'WIDTH 8 -> 16',
        reason: 'x',
        evidence: 'x',
        runs: 1,
        seconds: 1,
        logPath: '',
        host: 'h',
        slot: 's',
        costUsd: 0,
        fixOf: null,
        finishedAt: new Date().toISOString(),
      },
      'val_bpb',
      '',
    );
    const config = parseConfig({ ...QUADRATIC_CONFIG, proposer: { kind: 'mutate', seed: 0 } }, 'unit');
    const ctx = await buildContext({
      tag: 'unit',
      experiment: 3,
      attempt: 0,
      repo,
      campaignDir,
      config,
      parentSha: base,
      fix: null,
      notes: [],
      instructionsOverride: null,
    });
    assert.deepEqual(
      ctx.inFlight.map(({ experiment, description }) => ({ experiment, description })),
      [{ experiment: 2, description: 'WIDTH 8 -> 32' }],
      'recorded 1, the baseline, itself and other campaigns are not in flight',
    );
    // With its files' tree: a proposal of the same files is not trained while it is.
    assert.match(ctx.inFlight[0].tree, /^[0-9a-f]{40}$/);
    assert.match(renderContext(ctx), /# Experiments in flight \(proposed, not judged yet\)\n\n2\tWIDTH 8 -> 32\n/);
    assert.doesNotMatch(renderContext({ ...ctx, inFlight: [] }), /in flight/);
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
    rmSync(campaignDir, { recursive: true, force: true });
  }
});

test('mutateProposer: no knobs is a clear error', async () => {
  await assert.rejects(
    mutateProposer(
      mutateCtx({ editable: [{ path: 'train.py', content: 'seed = 1\nSEED = 2\n' }] }),
      new AbortController().signal,
    ),
    /found no UPPER_CASE = <number> settings in train\.py/,
  );
});
