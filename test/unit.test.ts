// Pure functions and single activities, each on its own: decisions, config, the mutate proposer,
// metric reading, the records, run classification, the training environment, git effects and
// preflight. Git and preflight run against real repositories in temp directories.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { adoptBest, judgeCandidate, type JudgingIO } from '../workflows/judging';
import { closeGroup, groupOf, groupSS, judgeConfirmed, judgeFirstRun, launchBlocked, mean, nextFix, noiseSigma, runFailed, type NoisePolicy } from '../workflows/decisions';
import { checkTag, ConfigError, parseConfig, presetYaml, PRESETS, type CampaignConfigInput } from '../common/config';
import { findKnobs, mutateProposer, perturb, settingsIn } from '../proposers/mutate';
import { buildContext, renderContext, type ProposerContext } from '../proposers/context';
import { looksOutOfMemory, readMetric } from '../lib/metrics';
import {
  appendExperiment, appendRejection, cleanDescription, experiments, LEDGER_FILE, readLedger, readResultsTsv, RESULTS_FILE, resultsLine,
} from '../lib/ledger';
import type { ExperimentRecord, NoiseState } from '../common/shared';
import { classify } from '../gpu-worker/outcome';
import { pidRecord, reapOrphan } from '../lib/supervise';
import { spawn } from 'node:child_process';
import { trainingEnv } from '../gpu-worker/env';
import { applyChange, checkoutWorktree, commitWorktree, compareAndSwapRef, git, mergeChange, readRef, removeWorktree, setRef, showFile } from '../lib/git';
import { preflight } from '../activities/preflight';
import { baseEnv, helperPid, runCommand } from '../lib/spawn';
import { pairRuns, type RunningRun } from '../client/live';
import { makeRepo, QUADRATIC, QUADRATIC_CONFIG, setLine, tempDir } from './helpers';

// ------------------------------------------------------------------------------------ decisions

const LOWER: NoisePolicy = { direction: 'lower', minImprovement: 0, k: 2, confirmRuns: 4, bestRuns: 10 };
const HIGHER: NoisePolicy = { ...LOWER, direction: 'higher' };
const best = (...xs: number[]) => groupOf(xs);

test('groups: Welford means and spreads; identical runs give exactly zero noise', () => {
  const g = groupOf([1.5, 1.5, 1.5]);
  assert.equal(mean(g), 1.5);
  assert.equal(groupSS(g), 0, 'no rounding residue');
  assert.equal(noiseSigma({ ss: 0, dof: 0 }, [g]), 0);
  const h = groupOf([1, 2, 3]);
  assert.equal(mean(h), 2);
  assert.ok(Math.abs(groupSS(h) - 2) < 1e-12);
  assert.equal(noiseSigma({ ss: 0, dof: 0 }, [groupOf([7])]), null, 'one run says nothing about noise');
  // Pooling: two groups of spread 1 each (variance 1) give sigma 1.
  const pool = closeGroup(closeGroup({ ss: 0, dof: 0 }, h), groupOf([10, 11, 12]));
  assert.deepEqual(pool.dof, 4);
  assert.ok(Math.abs(noiseSigma(pool)! - 1) < 1e-12);
});

test('runFailed: a run that did not end ok, or has no finite metric, failed', () => {
  for (const outcome of ['crash', 'timeout', 'oom', 'no-metric', 'cancelled'] as const) assert.equal(runFailed({ outcome, metric: 0.5 }), true, outcome);
  assert.equal(runFailed({ outcome: 'ok', metric: null }), true);
  assert.equal(runFailed({ outcome: 'ok', metric: NaN }), true);
  assert.equal(runFailed({ outcome: 'ok', metric: Infinity }), true);
  assert.equal(runFailed({ outcome: 'ok', metric: 0.5 }), false);
});

test('judgeFirstRun: not better (or not by minImprovement) is discarded at once, in either direction', () => {
  assert.equal(judgeFirstRun(1.0, best(1.0), 0.01, LOWER).kind, 'discard', 'equal is not better');
  assert.match(judgeFirstRun(1.1, best(1.0), 0.01, LOWER).evidence, /not better/);
  assert.equal(judgeFirstRun(0.9, best(1.0), 0.01, HIGHER).kind, 'discard');
  const small = judgeFirstRun(0.995, best(1.0), 0.01, { ...LOWER, minImprovement: 0.01 });
  assert.equal(small.kind, 'discard');
  assert.match(small.evidence, /not more than minImprovement 0\.01/);
});

test('judgeFirstRun: without a noise estimate it is autoresearch\'s rule; with zero noise one run is the truth', () => {
  const v = judgeFirstRun(0.99, best(1.0), null, LOWER);
  assert.equal(v.kind, 'keep');
  assert.match(v.evidence, /no noise estimate/);
  const d = judgeFirstRun(0.9999, best(1.0, 1.0, 1.0), 0, LOWER);
  assert.equal(d.kind, 'keep');
  assert.match(d.evidence, /identical/);
  assert.equal(judgeFirstRun(1.01, best(1.0), 0, HIGHER).kind, 'keep');
});

test('judgeFirstRun: a clear win is kept, a win inside the noise is confirmed', () => {
  // sigma 0.01, best of 3 runs: margin = 2 * 0.01 * sqrt(1 + 1/3) = 0.0231; clear win > 1.5 x that.
  const clear = judgeFirstRun(0.95, best(1.0, 1.0, 1.0), 0.01, LOWER);
  assert.equal(clear.kind, 'keep');
  assert.ok(clear.kind === 'keep' && Math.abs(clear.delta + 0.05) < 1e-12);
  const inside = judgeFirstRun(0.99, best(1.0, 1.0, 1.0), 0.01, LOWER);
  assert.equal(inside.kind, 'confirm');
  assert.match(inside.evidence, /confirming with 4 more seeds/);
  // With confirmation switched off, the margin alone decides.
  assert.equal(judgeFirstRun(0.97, best(1.0, 1.0, 1.0), 0.01, { ...LOWER, confirmRuns: 0 }).kind, 'keep');
  assert.equal(judgeFirstRun(0.99, best(1.0, 1.0, 1.0), 0.01, { ...LOWER, confirmRuns: 0 }).kind, 'discard');
});

test('judgeConfirmed: the fresh runs\' mean must clear k standard errors of the difference', () => {
  // sigma 0.01, 4 fresh vs 10 best: standard error 0.01 * sqrt(1/4 + 1/10) = 0.005916; margin 0.01183.
  const b = groupOf(Array(10).fill(1.0));
  const keep = judgeConfirmed(groupOf([0.985, 0.987, 0.986, 0.986]), b, 0.01, LOWER);
  assert.equal(keep.kind, 'keep');
  assert.match(keep.evidence, /mean of 4 fresh runs 0\.986 vs best 1 \(10 runs\)/);
  assert.equal(judgeConfirmed(groupOf([0.99, 0.99, 0.99, 0.99]), b, 0.01, LOWER).kind, 'discard');
  // Higher is better; 2 vs 2 runs: margin 2 * 0.01 * sqrt(1/2 + 1/2) = 0.02.
  assert.equal(judgeConfirmed(groupOf([1.025, 1.025]), groupOf([1.0, 1.0]), 0.01, HIGHER).kind, 'keep');
  assert.equal(judgeConfirmed(groupOf([1.015, 1.015]), groupOf([1.0, 1.0]), 0.01, HIGHER).kind, 'discard');
  assert.equal(judgeConfirmed(groupOf([1.025, 1.025]), groupOf([1.0, 1.0]), 0.01, { ...HIGHER, minImprovement: 0.03 }).kind, 'discard');
});

test('judgeCandidate: a keep is adopted the moment it is decided, so an experiment judged in the same instant meets the new best', async () => {
  const state: NoiseState = { best: { sha: 'base', experiment: 0, group: best(1.5), nextRun: 1, pending: 0 }, pool: { ss: 0, dof: 0 } };
  const parentOf: Record<string, string> = { a: 'base', b: 'base' };
  const io = (name: string, experiment: number): JudgingIO => ({
    candidate: async () => ({ metric: 1.3, failed: false, reason: '' }),
    best: async () => ({ metric: 1.2, failed: false, reason: '' }),
    onBest: () => parentOf[name] === state.best.sha,
    rebase: async () => {
      parentOf[name] = state.best.sha;
      return true;
    },
    adopt: (keep) => adoptBest(state, { sha: name, experiment, group: keep.group, nextRun: keep.runs }),
  });
  // Both first runs end together (one workflow activation): a is better than the base, and so is b.
  const [a, b] = await Promise.all([
    judgeCandidate({ metric: 1.2, failed: false, reason: '' }, state, LOWER, io('a', 1)),
    judgeCandidate({ metric: 1.3, failed: false, reason: '' }, state, LOWER, io('b', 2)),
  ]);
  assert.equal(a.kind, 'keep');
  assert.equal(state.best.sha, 'a', 'a is the best');
  // b was judged against a, not against the base both started from: not a second keep off a's line.
  assert.notEqual(b.kind, 'keep', JSON.stringify(b));
});

test('launchBlocked: experiments, hours and cost each stop new experiments, and only when reached', () => {
  const none = { maxExperiments: null, maxHours: null, maxCostUsd: null };
  const s = { next: 4, costUsd: 0.5, startedAtMs: 1_000_000 }; // experiments 1..3 launched
  assert.equal(launchBlocked(s, none, 1_000_000 + 1e12), null, 'no budget: never ends');
  assert.equal(launchBlocked(s, { ...none, maxExperiments: 4 }, 1_000_000), null);
  assert.match(launchBlocked(s, { ...none, maxExperiments: 3 }, 1_000_000)!, /budget reached: 3 of 3 experiments/);
  const hour = 3_600_000;
  assert.equal(launchBlocked(s, { ...none, maxHours: 2 }, 1_000_000 + 2 * hour - 1), null);
  assert.match(launchBlocked(s, { ...none, maxHours: 2 }, 1_000_000 + 2 * hour)!, /budget reached: 2 h/);
  assert.match(launchBlocked(s, { ...none, maxHours: 0.5 }, 1_000_000 + hour)!, /0\.5 h/);
  assert.equal(launchBlocked(s, { ...none, maxCostUsd: 0.51 }, 1_000_000), null);
  assert.match(launchBlocked(s, { ...none, maxCostUsd: 0.5 }, 1_000_000)!, /\$0\.50 of \$0\.50/);
});

test('nextFix: a crash opens maxFixAttempts fix attempts that count down to none', () => {
  let fix = nextFix(null, { sha: 'a'.repeat(40), experiment: 4 }, 2);
  assert.deepEqual(fix, { crashedSha: 'a'.repeat(40), experiment: 4, attemptsLeft: 2 });
  fix = nextFix(fix, { sha: 'b'.repeat(40), experiment: 5 }, 2);
  assert.deepEqual(fix, { crashedSha: 'b'.repeat(40), experiment: 5, attemptsLeft: 1 }, 'the fix of a fix works on the newest crash');
  fix = nextFix(fix, { sha: 'c'.repeat(40), experiment: 6 }, 2);
  assert.equal(fix, null, 'attempts spent: the campaign moves on');
  assert.equal(nextFix(null, { sha: 'd'.repeat(40), experiment: 1 }, 0), null, 'maxFixAttempts 0: no fixes at all');
  assert.equal(nextFix(null, { sha: 'd'.repeat(40), experiment: 1 }, 1)!.attemptsLeft, 1);
});

// --------------------------------------------------------------------------------------- config

const BASE = QUADRATIC_CONFIG as Record<string, any>;

function problemsOf(raw: unknown): string[] {
  try {
    parseConfig(raw, 'test.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, `a ConfigError, got ${e}`);
    assert.match(e.message, /Invalid campaign config test\.yaml/);
    return e.problems;
  }
  assert.fail(`expected ${JSON.stringify(raw)} to be rejected`);
}

test('parseConfig: the quadratic config parses, with defaults filled in', () => {
  const c = parseConfig(QUADRATIC_CONFIG);
  assert.deepEqual(c.editable, ['train.py']);
  assert.equal(c.run.timeoutSec, 60);
  assert.deepEqual(c.run.env, {});
  assert.equal(c.keep.minImprovement, 0);
  assert.equal(c.crash.maxFixAttempts, 2);
  assert.equal(c.branch, 'autoresearch/{tag}');
  assert.equal(c.budget.maxHours, null);
  // Lookahead defaults to 2 x parallelism, resolved into the config a campaign starts with.
  assert.equal(c.parallelism, 1);
  assert.equal(c.lookahead, 2);
  assert.equal(parseConfig({ ...QUADRATIC_CONFIG, parallelism: 4 }).lookahead, 8);
  assert.equal(parseConfig({ ...QUADRATIC_CONFIG, parallelism: 4, lookahead: 0 }).lookahead, 0);
  // Numbers in run.env become strings (environment values).
  assert.deepEqual(parseConfig({ ...BASE, run: { ...BASE.run, env: { QUAD_SLEEP: 2 } } }).run.env, { QUAD_SLEEP: '2' });
});

test('parseConfig: each wrong field is named, with what to do about it', () => {
  const cases: [string, unknown, RegExp][] = [
    ['editable empty', { ...BASE, editable: [] }, /^editable: list at least one file .*\(e\.g\. \[train\.py\]\)/],
    ['metric.direction down', { ...BASE, metric: { ...BASE.metric, direction: 'down' } }, /^metric\.direction: must be "lower" or "higher"/],
    ['run.timeoutSec negative', { ...BASE, run: { ...BASE.run, timeoutSec: -5 } }, /^run\.timeoutSec: must be > 0/],
    ['run.timeoutSec string', { ...BASE, run: { ...BASE.run, timeoutSec: '600' } }, /^run\.timeoutSec: expected number, got string .*e\.g\. 600/],
    ['top-level typo', { ...BASE, editabel: ['train.py'] }, /unknown field\(s\) "editabel"; check the spelling/],
    ['nested typo', { ...BASE, run: { ...BASE.run, timeout: 5 } }, /^run: unknown field\(s\) "timeout"/],
    ['pattern without group', { ...BASE, metric: { ...BASE.metric, pattern: 'val_bpb: \\S+' } }, /^metric\.pattern: must be a regular expression with exactly one capture group/],
    ['pattern with two groups', { ...BASE, metric: { ...BASE.metric, pattern: '(val_bpb): (\\S+)' } }, /^metric\.pattern: .*exactly one capture group/],
    ['pattern not a regex', { ...BASE, metric: { ...BASE.metric, pattern: '(' } }, /^metric\.pattern: /],
    ['editable and locked', { ...BASE, locked: ['prepare.py', 'train.py'] }, /^locked: train\.py is listed as both editable and locked; remove it from one list/],
    ['command proposer without command', { ...BASE, proposer: { kind: 'command' } }, /^proposer\.command: required when proposer\.kind is "command"/],
    ['secret in run.env', { ...BASE, run: { ...BASE.run, env: { ANTHROPIC_API_KEY: 'sk-ant-x' } } }, /^run\.env\.ANTHROPIC_API_KEY: looks like a secret.*Remove it/],
    ['token in run.env', { ...BASE, run: { ...BASE.run, env: { HF_TOKEN: 'x' } } }, /^run\.env\.HF_TOKEN: looks like a secret/],
    ['absolute editable', { ...BASE, editable: ['/etc/passwd'] }, /^editable\.0: must be a path inside the target repository \(relative, no "\.\."\)/],
    ['.. in locked', { ...BASE, locked: ['../outside.py'] }, /^locked\.0: must be a path inside the target repository/],
    ['.. in instructions', { ...BASE, instructions: 'docs/../../program.md' }, /^instructions: must be a path inside/],
    ['unknown proposer', { ...BASE, proposer: { kind: 'gpt' } }, /^proposer\.kind: must be one of auto, mutate, anthropic, command/],
    ['fractional budget', { ...BASE, budget: { maxExperiments: 1.5 } }, /^budget\.maxExperiments: .*whole number/],
    ['metric name with a space', { ...BASE, metric: { name: 'val bpb' } }, /^metric\.name: must be an identifier such as val_bpb/],
    ['negative minImprovement', { ...BASE, keep: { minImprovement: -1 } }, /^keep\.minImprovement: must be >= 0/],
    ['missing run.command', { ...BASE, run: { timeoutSec: 5 } }, /^run\.command: required: the training command \(e\.g\. "uv run train\.py"\)/],
  ];
  for (const [name, raw, re] of cases) {
    const problems = problemsOf(raw);
    assert.ok(problems.some((p) => re.test(p)), `${name}: ${JSON.stringify(problems)} should match ${re}`);
  }
});

test('parseConfig: a missing editable list is named', () => {
  const { editable: _e, ...raw } = BASE;
  const problems = problemsOf(raw);
  assert.ok(problems.some((p) => p.startsWith('editable: ')), JSON.stringify(problems));
});

test('parseConfig: a missing required section says what to write (e.g. ...)', () => {
  const { editable: _e, ...noEditable } = BASE;
  const { run: _r, ...noRun } = BASE;
  const { metric: _m, ...noMetric } = BASE;
  for (const [field, raw] of [['editable', noEditable], ['run', noRun], ['metric', noMetric]] as const) {
    const p = problemsOf(raw).find((x) => x.startsWith(`${field}: `));
    assert.match(p ?? '', /e\.g\./, `${field}: ${p}`);
  }
});

test('parseConfig: every problem is reported at once, not only the first', () => {
  const problems = problemsOf({ ...BASE, metric: { name: 'val_bpb', direction: 'down' }, run: { command: 'x', timeoutSec: -1 } });
  assert.ok(problems.some((p) => p.startsWith('metric.direction')), JSON.stringify(problems));
  assert.ok(problems.some((p) => p.startsWith('run.timeoutSec')), JSON.stringify(problems));
});

test('PRESETS.autoresearch is karpathy/autoresearch unchanged', () => {
  const c = parseConfig(PRESETS.autoresearch, 'preset');
  assert.equal(c.run.command, 'uv run train.py');
  assert.equal(c.run.timeoutSec, 600);
  assert.equal(c.metric.name, 'val_bpb');
  assert.equal(c.metric.direction, 'lower');
  assert.deepEqual(c.editable, ['train.py']);
  assert.deepEqual([...c.locked].sort(), ['prepare.py', 'pyproject.toml']);
  assert.equal(c.instructions, 'program.md');
  assert.equal(c.memory?.key, 'peak_vram_mb');
  const tiny = parseConfig(PRESETS['tiny-lm'], 'preset');
  assert.equal(tiny.metric.name, 'val_bpb');
  assert.deepEqual(tiny.locked, ['prepare.py', 'evaluate.py']);
});

test('presetYaml round-trips through YAML and parseConfig; an unknown preset names the choices', () => {
  for (const name of Object.keys(PRESETS)) {
    const text = presetYaml(name);
    assert.match(text, new RegExp(`^# Nightlab campaign config \\(preset ${name}\\)`));
    assert.deepEqual(parseConfig(YAML.parse(text), name), parseConfig(PRESETS[name], name));
  }
  assert.throws(() => presetYaml('nope'), (e: unknown) => e instanceof ConfigError && /--preset: unknown preset "nope"; choose one of autoresearch, tiny-lm/.test(e.message));
});

test('checkTag: lowercase letters, digits, ".", "_" and "-" only, at most 63 characters', () => {
  for (const ok of ['nov27', 'a', 'run.2_b-c', '0abc', 'x'.repeat(63)]) assert.doesNotThrow(() => checkTag(ok), ok);
  for (const bad of ['Nov27', 'a b', '', '-x', '.x', 'a/b', 'x'.repeat(64), 'tag\n']) {
    assert.throws(() => checkTag(bad), (e: unknown) => e instanceof ConfigError && e.problems[0].startsWith(`tag: "${bad}" must be lowercase`), JSON.stringify(bad));
  }
});

// --------------------------------------------------------------------------------------- mutate

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
  const knobs = findKnobs([{ path: 'train.py', content: TRAIN }, { path: 'notes.md', content: 'LEARNING_RATE = 1\n' }]);
  assert.deepEqual(knobs.map((k) => [k.name, k.value, k.line]), [
    ['LEARNING_RATE', '0.04', 2],
    ['DEPTH', '8', 3],
    ['BATCH_SIZE', '64', 4],
    ['WEIGHT_DECAY', '1e-4', 5],
    ['WARMUP', '-2', 13],
  ]);
  assert.ok(knobs.every((k) => k.file === 'train.py'), 'only Python files are searched');
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
    for (const f of [0.5, 0.67, 0.8, 1.25, 1.5, 2]) assert.match(perturb(v, f), /[.eE]/, `${v} x ${f} -> ${perturb(v, f)}`);
  }
});

function mutateCtx(over: Partial<ProposerContext> = {}): ProposerContext {
  return {
    tag: 'unit', experiment: 3, attempt: 0, seed: 7, model: 'claude-sonnet-5-5', effort: 'medium',
    metric: { name: 'val_bpb', direction: 'lower' },
    instructions: '', notes: [],
    editable: [{ path: 'train.py', content: TRAIN }],
    locked: [], history: [],
    best: { experiment: 0, metric: 1, commit: 'f'.repeat(40) },
    fix: null, inFlight: [], lastRejection: null, code: { repo: '/nonexistent', sha: '0'.repeat(40) },
    ...over,
  };
}

test('mutateProposer: the same context gives the same edit; another attempt usually another one', async () => {
  const signal = new AbortController().signal;
  const a = await mutateProposer(mutateCtx(), signal);
  const b = await mutateProposer(mutateCtx(), signal);
  assert.deepEqual(a, b, 'a retried activity proposes the same edit');
  const descriptions = new Set<string>();
  for (let attempt = 0; attempt < 12; attempt++) descriptions.add((await mutateProposer(mutateCtx({ attempt }), signal)).description);
  assert.ok(descriptions.size >= 6, `12 attempts should give mostly different edits: ${[...descriptions].join(' | ')}`);
  const otherSeed = await mutateProposer(mutateCtx({ seed: 8 }), signal);
  const otherTag = await mutateProposer(mutateCtx({ tag: 'other' }), signal);
  assert.ok(otherSeed.description !== a.description || otherTag.description !== a.description, 'seed and tag feed the RNG');
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
    assert.ok(changed.length === 1 || changed.length === 2, `experiment ${experiment}: ${changed.length} lines changed`);
    for (const [now, before] of changed) {
      // Same name, same spacing, same comment: only the number differs.
      const strip = (s: string) => s.replace(/-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?/, '#');
      assert.equal(strip(now.replace(/^([A-Z_]+)/, '')), strip(before.replace(/^([A-Z_]+)/, '')), `${before} -> ${now}`);
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
  const inFlight = busy.map((name, i) => ({ experiment: 10 + i, description: `${name} 1 -> 2` }));
  for (let experiment = 1; experiment <= 20; experiment++) {
    const reply = await mutateProposer(mutateCtx({ experiment, inFlight }), signal);
    assert.deepEqual(settingsIn(reply.description), [names.at(-1)], `experiment ${experiment}: ${reply.description}`);
  }
  // Every setting busy: any of them may be drawn (a proposal is still made).
  const all = names.map((name, i) => ({ experiment: 10 + i, description: `${name} 1 -> 2` }));
  const drawn = new Set<string>();
  for (let experiment = 1; experiment <= 20; experiment++) for (const n of settingsIn((await mutateProposer(mutateCtx({ experiment, inFlight: all }), signal)).description)) drawn.add(n);
  assert.ok(drawn.size > 1, `draws from every setting: ${[...drawn].join(', ')}`);
});

test('buildContext: experiments proposed and not yet recorded are in flight, the proposal itself excepted', async () => {
  const repo = await makeRepo();
  const campaignDir = tempDir();
  try {
    const base = (await readRef(repo, 'HEAD'))!;
    const wt = path.join(campaignDir, 'wt');
    await checkoutWorktree(repo, wt, base);
    for (const [n, width] of [[1, '16'], [2, '32'], [3, '64']] as const) {
      setLine(path.join(wt, 'train.py'), 'WIDTH', width);
      await setRef(repo, `refs/nightlab/unit/${n}`, await commitWorktree(wt, base, `WIDTH 8 -> ${width}\n\nNightlab campaign unit, experiment ${n}`));
    }
    await setRef(repo, 'refs/nightlab/unit/0', base);
    await setRef(repo, 'refs/nightlab/other/5', base); // another campaign's experiment
    appendExperiment(campaignDir, {
      tag: 'unit', experiment: 1, commit: base, parent: base, status: 'discard', outcome: 'ok', metric: 1.5, bestBefore: 1.4, delta: 0.1, memoryGb: 0,
      description: 'WIDTH 8 -> 16', reason: 'x', evidence: 'x', runs: 1, seconds: 1, logPath: '', host: 'h', slot: 's', costUsd: 0, fixOf: null, finishedAt: new Date().toISOString(),
    }, 'val_bpb', '');
    const config = parseConfig({ ...QUADRATIC_CONFIG, proposer: { kind: 'mutate', seed: 0 } }, 'unit');
    const ctx = await buildContext({ tag: 'unit', experiment: 3, attempt: 0, repo, campaignDir, config, parentSha: base, fix: null, notes: [], instructionsOverride: null });
    assert.deepEqual(ctx.inFlight, [{ experiment: 2, description: 'WIDTH 8 -> 32' }], 'recorded 1, the baseline, itself and other campaigns are not in flight');
    assert.match(renderContext(ctx), /# Experiments in flight \(proposed, not judged yet\)\n\n2\tWIDTH 8 -> 32\n/);
    assert.doesNotMatch(renderContext({ ...ctx, inFlight: [] }), /in flight/);
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
    rmSync(campaignDir, { recursive: true, force: true });
  }
});

test('mutateProposer: no knobs is a clear error', async () => {
  await assert.rejects(mutateProposer(mutateCtx({ editable: [{ path: 'train.py', content: 'seed = 1\nSEED = 2\n' }] }), new AbortController().signal), /found no UPPER_CASE = <number> settings in train\.py/);
});

// -------------------------------------------------------------------------------------- metrics

const SPEC = { name: 'val_bpb', direction: 'lower' as const };

test('readMetric: reads the summary block after the last "---" only', () => {
  const log = [
    'step 00100 | val_bpb: 9.5',
    'val_bpb: 3.2',
    '---',
    'val_bpb:          1.500000',
    '---',
    'val_bpb:          0.997900',
    'training_seconds: 300.1',
    'peak_vram_mb:     45060.2',
    '',
  ].join('\n');
  assert.equal(readMetric(log, SPEC), 0.9979);
  assert.equal(readMetric(log, { ...SPEC, name: 'peak_vram_mb' }), 45060.2);
});

test('readMetric: a number printed before the "---" does not count', () => {
  assert.equal(readMetric('val_bpb: 0.5\n---\ntraining_seconds: 300\n', SPEC), null);
  assert.equal(readMetric('val_bpb: 0.5\n---\n', SPEC), null);
  assert.equal(readMetric('---\nval_bpb_ema: 0.5\nmy_val_bpb: 0.4\n', SPEC), null, 'a longer name is another figure');
  assert.equal(readMetric('---\nval_bpb: nan\n', SPEC), null, 'nan is not a metric');
  assert.equal(readMetric('no summary at all, val_bpb: 0.7 inline\n', SPEC), null);
});

test('readMetric: a custom pattern reads its capture group, in the summary block only', () => {
  const spec = { ...SPEC, pattern: 'final bpb=([0-9.]+)' };
  assert.equal(readMetric('final bpb=2.0\n---\nresult: final bpb=1.25 (ema)\n', spec), 1.25);
  assert.equal(readMetric('final bpb=2.0\n---\nnothing here\n', spec), null);
  assert.equal(readMetric('---\nfinal bpb=1.5\nfinal bpb=1.25\n', spec), 1.25, 'the last match wins');
});

test('looksOutOfMemory: GPU and host out-of-memory messages', () => {
  assert.equal(looksOutOfMemory('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB'), true);
  assert.equal(looksOutOfMemory('MemoryError'), true);
  assert.equal(looksOutOfMemory('OSError: [Errno 12] Cannot allocate memory'), true);
  assert.equal(looksOutOfMemory('step 10 | loss 3.0\n---\nval_bpb: 1.0\npeak_vram_mb: 2048.0'), false);
  assert.equal(looksOutOfMemory('RuntimeError: boom: the model diverged'), false);
});

// --------------------------------------------------------------------------------------- ledger

function record(over: Partial<ExperimentRecord> = {}): ExperimentRecord {
  return {
    tag: 'unit', experiment: 1, commit: '0123456789abcdef0123456789abcdef01234567', parent: 'f'.repeat(40),
    status: 'keep', outcome: 'ok', metric: 0.9979, bestBefore: 1.0, delta: -0.0021, memoryGb: 44.0039,
    description: 'raise LR', reason: 'improved', evidence: 'improved', runs: 1, seconds: 300.2, logPath: '/tmp/x.log', host: 'h', slot: 'cpu',
    costUsd: 0, fixOf: null, finishedAt: '2025-01-01T00:00:00.000Z', ...over,
  };
}

test('resultsLine: autoresearch format (7-char sha, 6 decimals, memory .1f, crash 0.000000 and 0.0)', () => {
  assert.equal(resultsLine(record()), '0123456\t0.997900\t44.0\tkeep\traise LR');
  assert.equal(resultsLine(record({ status: 'discard', metric: 1.23456789, memoryGb: 2.06 })), '0123456\t1.234568\t2.1\tdiscard\traise LR');
  assert.equal(resultsLine(record({ status: 'crash', metric: 0.5, memoryGb: 44, description: 'double width' })), '0123456\t0.000000\t0.0\tcrash\tdouble width');
  assert.equal(resultsLine(record({ status: 'crash', metric: null, memoryGb: 0 })), '0123456\t0.000000\t0.0\tcrash\traise LR');
  assert.equal(resultsLine(record({ description: 'a\tb\nc' })).split('\t').length, 5);
});

test('cleanDescription: one line without tabs, bounded', () => {
  assert.equal(cleanDescription('  raise\tLR\r\nand  width\n'), 'raise LR and width');
  const long = cleanDescription('x'.repeat(500));
  assert.equal(long.length, 200);
  assert.ok(long.endsWith('...'));
});

test('appendExperiment: the same record twice gives one ledger row and one results.tsv row', () => {
  const dir = path.join(tempDir(), 'campaign');
  try {
    const r0 = record({ experiment: 0, commit: 'a'.repeat(40), description: 'baseline' });
    const r1 = record({ experiment: 1, commit: 'b'.repeat(40) });
    appendExperiment(dir, r0, 'val_bpb', 'log 0');
    appendExperiment(dir, r0, 'val_bpb', 'log 0');
    appendExperiment(dir, r1, 'val_bpb', 'log 1');
    appendExperiment(dir, r1, 'val_bpb', 'log 1');
    const rows = experiments(dir);
    assert.deepEqual(rows.map((r) => r.experiment), [0, 1]);
    assert.equal(rows[1].logTail, 'log 1');
    assert.deepEqual({ ...rows[1], kind: undefined, logTail: undefined }, { ...r1, kind: undefined, logTail: undefined });
    const tsv = readResultsTsv(dir);
    assert.deepEqual(tsv.header, ['commit', 'val_bpb', 'memory_gb', 'status', 'description']);
    assert.deepEqual(tsv.rows.map((r) => r[0]), ['aaaaaaa', 'bbbbbbb']);
    assert.equal(readFileSync(path.join(dir, RESULTS_FILE), 'utf8').split('\n').filter(Boolean).length, 3);
    // A retry after the ledger write but before the results.tsv write fills in only the missing row.
    const r2 = record({ experiment: 2, commit: 'c'.repeat(40) });
    appendFileSync(path.join(dir, LEDGER_FILE), `${JSON.stringify({ kind: 'experiment', ...r2, logTail: '' })}\n`);
    appendExperiment(dir, r2, 'val_bpb', '');
    assert.deepEqual(experiments(dir).map((r) => r.experiment), [0, 1, 2]);
    assert.deepEqual(readResultsTsv(dir).rows.map((r) => r[0]), ['aaaaaaa', 'bbbbbbb', 'ccccccc']);
  } finally {
    rmSync(path.dirname(dir), { recursive: true, force: true });
  }
});

test('appendExperiment: a ledger whose last line was cut mid-write is repaired by the next append', () => {
  const dir = tempDir();
  try {
    const r0 = record({ experiment: 0, commit: 'a'.repeat(40) });
    const r1 = record({ experiment: 1, commit: 'b'.repeat(40) });
    const whole = JSON.stringify({ kind: 'experiment', ...r0, logTail: '' });
    const cut = JSON.stringify({ kind: 'experiment', ...r1, logTail: '' }).slice(0, 40);
    writeFileSync(path.join(dir, LEDGER_FILE), `${whole}\n${cut}`);
    assert.deepEqual(experiments(dir).map((r) => r.experiment), [0], 'the cut line is skipped');
    appendExperiment(dir, r1, 'val_bpb', '');
    assert.deepEqual(experiments(dir).map((r) => r.experiment), [0, 1], 'the retried row is written whole');
    const lines = readFileSync(path.join(dir, LEDGER_FILE), 'utf8').split('\n');
    assert.equal(lines.at(-1), '', 'ends with a newline');
    assert.equal(lines[1], cut, 'the cut line stays on a line of its own');
    assert.doesNotThrow(() => JSON.parse(lines[2]));
    appendExperiment(dir, r1, 'val_bpb', '');
    assert.equal(experiments(dir).length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('appendRejection: keyed by (experiment, attempt)', () => {
  const dir = tempDir();
  try {
    const row = { tag: 'unit', experiment: 3, attempt: 0, description: 'edit prepare.py', reason: 'changes locked file(s): prepare.py', costUsd: 0.01, at: '2025-01-01T00:00:00Z' };
    appendRejection(dir, row);
    appendRejection(dir, row);
    appendRejection(dir, { ...row, attempt: 1 });
    appendRejection(dir, { ...row, attempt: 1 });
    appendRejection(dir, { ...row, experiment: 4 });
    const rows = readLedger(dir);
    assert.deepEqual(rows.map((r) => [r.kind, r.experiment, r.kind === 'rejected' ? r.attempt : -1]), [['rejected', 3, 0], ['rejected', 3, 1], ['rejected', 4, 0]]);
    assert.equal(experiments(dir).length, 0, 'rejections are not experiments');
    assert.equal(existsSync(path.join(dir, RESULTS_FILE)), false, 'nor results.tsv rows');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// --------------------------------------------------------------------------- classify / env

const RUN = { exitCode: 0, signal: null, killedFor: null, metric: 1.0, tail: 'step 1\n---\nval_bpb: 1.0', timeoutSec: 30, command: 'python3 train.py', metricName: 'val_bpb' } as Parameters<typeof classify>[0];

test('classify: timeout, command not found, out of memory, crash, no metric, ok', () => {
  const t = classify({ ...RUN, killedFor: 'timeout', exitCode: null, signal: 'SIGTERM', metric: null });
  assert.equal(t.outcome, 'timeout');
  assert.match(t.reason, /hard timeout of 30 s/);
  assert.equal(classify({ ...RUN, killedFor: 'timeout', exitCode: 137, metric: null }).outcome, 'timeout', 'the timeout kill is not an OOM');

  const nf = classify({ ...RUN, exitCode: 127, metric: null, tail: 'sh: 1: pythn3: not found', command: 'pythn3 train.py' });
  assert.equal(nf.outcome, 'crash');
  assert.match(nf.reason, /command not found \(exit 127\): pythn3 train\.py/);

  const oomText = classify({ ...RUN, exitCode: 1, metric: null, tail: 'Traceback\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB' });
  assert.equal(oomText.outcome, 'oom');
  assert.match(oomText.reason, /out of memory: torch\.OutOfMemoryError/);
  assert.equal(classify({ ...RUN, exitCode: 137, metric: null, tail: 'step 5' }).outcome, 'oom', 'exit 137: killed by the OOM killer');
  assert.equal(classify({ ...RUN, exitCode: null, signal: 'SIGKILL', metric: null, tail: 'step 5' }).outcome, 'oom');

  const crash = classify({ ...RUN, exitCode: 1, metric: null, tail: 'Traceback\nRuntimeError: boom: the model diverged\n' });
  assert.equal(crash.outcome, 'crash');
  assert.equal(crash.reason, 'exit 1: RuntimeError: boom: the model diverged');
  assert.equal(classify({ ...RUN, exitCode: 2, metric: 1.0 }).outcome, 'crash', 'a metric does not excuse a failing exit');

  const nm = classify({ ...RUN, exitCode: 0, metric: null, tail: 'step 1' });
  assert.equal(nm.outcome, 'no-metric');
  assert.match(nm.reason, /exited 0 but printed no val_bpb/);

  assert.deepEqual(classify(RUN), { outcome: 'ok', reason: '' });
});

test('classify: a run that exits 0 with a metric is ok even if its log mentions memory trouble', () => {
  const r = classify({ ...RUN, tail: 'warning: CUDA out of memory, retrying with a smaller batch\n---\nval_bpb: 1.0' });
  assert.equal(r.outcome, 'ok');
});

test('trainingEnv: secrets on the worker never reach the run; PATH does; CUDA_VISIBLE_DEVICES is the slot', () => {
  const saved = { ...process.env };
  try {
    process.env.ANTHROPIC_API_KEY = 'sk-ant-unit-secret';
    process.env.GITHUB_TOKEN = 'ghp_unit';
    process.env.HF_TOKEN = 'hf_unit';
    process.env.AWS_SECRET_ACCESS_KEY = 'aws';
    process.env.SOME_RANDOM_VAR = 'not on the allowlist';
    process.env.CUDA_VISIBLE_DEVICES = '0,1,2,3';
    process.env.PATH = '/opt/unit/bin:/usr/bin';

    const cpu = trainingEnv({ QUAD_SLEEP: '1', MY_TOKEN: 'from-config' }, null);
    for (const k of ['ANTHROPIC_API_KEY', 'GITHUB_TOKEN', 'HF_TOKEN', 'AWS_SECRET_ACCESS_KEY', 'SOME_RANDOM_VAR', 'MY_TOKEN']) {
      assert.equal(cpu[k], undefined, `${k} must not pass`);
    }
    assert.ok(!Object.values(cpu).some((v) => /sk-ant|ghp_|hf_unit/.test(v)), 'no secret value under any name');
    assert.equal(cpu.PATH, '/opt/unit/bin:/usr/bin');
    assert.equal(cpu.QUAD_SLEEP, '1', "the config's own env passes");
    assert.equal(cpu.CUDA_VISIBLE_DEVICES, '', 'a CPU slot sees no GPU, whatever the worker had');
    assert.equal(cpu.PYTHONUNBUFFERED, '1');

    const gpu = trainingEnv({ CUDA_VISIBLE_DEVICES: '0,1' }, '2');
    assert.equal(gpu.CUDA_VISIBLE_DEVICES, '2', 'the slot decides the device, not the config');
    assert.equal(gpu.ANTHROPIC_API_KEY, undefined);
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
});

test('reapOrphan kills the run recorded in run.pid, and nothing that only shares its number (another boot, another process)', async () => {
  const dir = tempDir();
  const pidFile = path.join(dir, 'run.pid');
  const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
  const orphan = () => {
    const child = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    child.unref();
    return child.pid!;
  };
  const gone = async (pid: number) => { for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 20)); return !alive(pid); };
  const pids: number[] = [];
  try {
    const pid = orphan();
    pids.push(pid);
    const rec = JSON.parse(pidRecord(pid));
    assert.equal(rec.pid, pid);
    if (existsSync('/proc/self/stat')) assert.match(String(rec.start), /^\d+$/);

    // Written before a reboot: the number may now be anyone's.
    writeFileSync(pidFile, JSON.stringify({ ...rec, boot: 'another-boot' }));
    assert.equal(reapOrphan(pidFile), null);
    assert.equal(existsSync(pidFile), false, 'the stale record is dropped');
    // The number was handed to a process started later.
    if (rec.start !== null) {
      writeFileSync(pidFile, JSON.stringify({ ...rec, start: String(Number(rec.start) - 1) }));
      assert.equal(reapOrphan(pidFile), null);
    }
    assert.ok(alive(pid), 'neither record killed the process');

    // The run's own record: its group is killed.
    writeFileSync(pidFile, pidRecord(pid));
    assert.equal(reapOrphan(pidFile), pid);
    assert.ok(await gone(pid));
    // A bare number, as versions before the record wrote it, is still reaped.
    const old = orphan();
    pids.push(old);
    writeFileSync(pidFile, String(old));
    assert.equal(reapOrphan(pidFile), old);
    assert.ok(await gone(old));
    assert.equal(reapOrphan(pidFile), null, 'no file, nothing to do');
  } finally {
    for (const p of pids) try { process.kill(-p, 'SIGKILL'); } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------------------------------ git


test('compareAndSwapRef: create-only, compare-and-swap, idempotent retries, no rewind', async () => {
  const repo = await makeRepo(QUADRATIC, (d) => setLine(path.join(d, 'train.py'), 'WIDTH', '12'));
  try {
    const b = await readRef(repo, 'HEAD');
    const a = await readRef(repo, 'HEAD~1');
    assert.ok(a && b && a !== b);
    const ref = 'refs/nightlab/unit/1';

    assert.equal(await compareAndSwapRef(repo, ref, a, null), true);
    assert.equal(await readRef(repo, ref), a);
    assert.equal(await compareAndSwapRef(repo, ref, a, null), true, 'a retried create finds its effect');
    assert.equal(await compareAndSwapRef(repo, ref, b, null), false, 'create-only fails when the ref exists with another value');
    assert.equal(await readRef(repo, ref), a);

    assert.equal(await compareAndSwapRef(repo, ref, b, a), true);
    assert.equal(await readRef(repo, ref), b);
    assert.equal(await compareAndSwapRef(repo, ref, b, a), true, 'a retried move finds its effect');
    assert.equal(await compareAndSwapRef(repo, ref, a, b), true);
    assert.equal(await compareAndSwapRef(repo, ref, b, a), true);
    // A stale writer that expects the old value cannot rewind the ref.
    assert.equal(await compareAndSwapRef(repo, ref, a, a), false);
    assert.equal(await compareAndSwapRef(repo, ref, a, 'c'.repeat(40)), false);
    assert.equal(await readRef(repo, ref), b);
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
  }
});

test('commitWorktree + setRef: a child of the given parent under its own ref; the user\'s HEAD stays', async () => {
  const repo = await makeRepo();
  const home = tempDir();
  try {
    const base = (await readRef(repo, 'HEAD'))!;
    const wt = path.join(home, 'wt');
    await checkoutWorktree(repo, wt, base);
    setLine(path.join(wt, 'train.py'), 'WIDTH', '16');
    const ref = 'refs/nightlab/unit/7';
    const sha = await commitWorktree(wt, base, 'WIDTH 8 -> 16');
    await setRef(repo, ref, sha);
    assert.equal(await readRef(repo, ref), sha);
    assert.equal((await git(repo).raw(['rev-parse', `${sha}^`])), base, 'parent is the given commit');
    assert.equal(await git(repo).raw(['log', '-1', '--format=%B', sha]), 'WIDTH 8 -> 16');
    assert.equal(await git(repo).raw(['log', '-1', '--format=%an <%ae>', sha]), 'Nightlab <nightlab@localhost>');
    assert.match(await git(repo).raw(['show', `${sha}:train.py`]), /^WIDTH = 16$/m);
    assert.equal(await git(repo).raw(['diff', '--name-only', base, sha]), 'train.py');
    assert.equal(await readRef(repo, 'HEAD'), base, "the user's HEAD did not move");
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
});

test('git: a non-zero exit rejects with git\'s own words; file contents come back byte for byte', async () => {
  const repo = await makeRepo();
  try {
    await assert.rejects(git(repo).raw(['rev-parse', '--verify', 'no-such-ref']), /git rev-parse --verify no-such-ref failed in .*: fatal: Needed a single revision/);
    // A silent failure (no stderr) rejects too.
    await assert.rejects(git(repo).raw(['rev-parse', '--verify', '--quiet', 'no-such-ref']));
    const base = (await readRef(repo, 'HEAD'))!;
    const text = readFileSync(path.join(repo, 'train.py'), 'utf8');
    assert.equal(await showFile(repo, base, 'train.py'), text, 'trailing newline kept');
    assert.equal(await showFile(repo, base, 'missing.py'), null);
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
  }
});

test('runCommand: exit status, bytes out, stdin in, only the given environment; a missing command rejects', async () => {
  const dir = tempDir();
  try {
    const r = await runCommand(['sh', '-c', 'cat; printf "%s|%s" "$FOO" "${SECRET:-unset}" >&2; exit 3'], { cwd: dir, env: { ...baseEnv(), FOO: 'bar' }, input: 'héllo\n' });
    assert.equal(r.code, 3);
    assert.equal(r.stdout.toString('utf8'), 'héllo\n');
    assert.equal(r.stderr.toString('utf8'), 'bar|unset');
    assert.ok(helperPid(), 'went through the helper');
    await assert.rejects(runCommand(['no-such-command-xyz'], { cwd: dir, env: baseEnv() }), (e: Error & { code?: string }) => e.code === 'ENOENT');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('runCommand: commands run side by side; a helper that dies fails its commands in flight and the next one starts a new helper', async () => {
  const dir = tempDir();
  try {
    // The first waits for a file the second makes: run one after another, this would never end.
    const waiter = runCommand(['sh', '-c', 'while [ ! -f go ]; do sleep 0.05; done; echo waited'], { cwd: dir, env: baseEnv() });
    await runCommand(['touch', 'go'], { cwd: dir, env: baseEnv() });
    assert.equal((await waiter).stdout.toString().trim(), 'waited');

    const first = helperPid()!;
    const inFlight = runCommand(['sleep', '30'], { cwd: dir, env: baseEnv() });
    process.kill(first, 'SIGKILL');
    await assert.rejects(inFlight, /the command helper exited/);
    const again = await runCommand(['echo', 'ok'], { cwd: dir, env: baseEnv() });
    assert.equal(again.stdout.toString().trim(), 'ok');
    assert.notEqual(helperPid(), first, 'a new helper');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('applyChange / mergeChange: a candidate\'s change moves onto a newer best; a conflicting one is refused and the worktree reset', async () => {
  const repo = await makeRepo();
  const home = tempDir();
  try {
    const base = (await readRef(repo, 'HEAD'))!;
    const wt = path.join(home, 'wt');
    const commit = async (from: string, edit: (text: string) => string) => {
      await checkoutWorktree(repo, wt, from);
      const file = path.join(wt, 'train.py');
      writeFileSync(file, edit(readFileSync(file, 'utf8')));
      return commitWorktree(wt, from, 'edit');
    };
    const kept = await commit(base, (t) => t.replace(/^WIDTH = .*$/m, 'WIDTH = 16'));
    // Far enough from WIDTH that git merges the two changes without a conflict.
    const candidate = await commit(base, (t) => t.replace('print("step 00001 | loss 3.0", flush=True)', 'print("step 00001 | loss 2.0", flush=True)'));
    const clash = await commit(base, (t) => t.replace(/^WIDTH = .*$/m, 'WIDTH = 4'));
    await checkoutWorktree(repo, wt, kept);
    assert.equal(await applyChange(wt, candidate), true);
    const both = readFileSync(path.join(wt, 'train.py'), 'utf8');
    assert.match(both, /^WIDTH = 16$/m);
    assert.match(both, /loss 2\.0/);
    await checkoutWorktree(repo, wt, kept);
    assert.equal(await applyChange(wt, clash), false);
    assert.equal(await git(wt).raw(['status', '--porcelain']), '', 'nothing half-applied is left');
    assert.match(readFileSync(path.join(wt, 'train.py'), 'utf8'), /^WIDTH = 16$/m);

    // The same rebase without a worktree (git 2.38+; CI's git is 2.39): the tree a cherry-pick makes.
    await checkoutWorktree(repo, wt, kept);
    await applyChange(wt, candidate);
    await git(wt).raw(['add', '-A']);
    const picked = await git(wt).raw(['write-tree']);
    const [major, minor] = (await git(repo).raw(['--version'])).match(/(\d+)\.(\d+)/)!.slice(1).map(Number);
    if (major > 2 || minor >= 38) {
      assert.equal(await mergeChange(repo, candidate, base, kept), picked, 'merged in the object store, same tree');
      assert.equal(await mergeChange(repo, clash, base, kept), null, 'a conflict');
      assert.equal(await mergeChange(repo, candidate, kept, base), undefined, 'a parent that is not the merge base: left to the worktree path');
    } else {
      assert.equal(await mergeChange(repo, candidate, base, kept), undefined, 'too old a git: the worktree path');
    }
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
});

test("checkoutWorktree: moves a detached worktree, cleans it, and leaves the user's checkout alone", async () => {
  const repo = await makeRepo(QUADRATIC, (d) => setLine(path.join(d, 'train.py'), 'WIDTH', '12'));
  const home = tempDir();
  try {
    const b = (await readRef(repo, 'HEAD'))!;
    const a = (await readRef(repo, 'HEAD~1'))!;
    // The user has work in progress.
    writeFileSync(path.join(repo, 'program.md'), 'my unsaved notes\n');
    writeFileSync(path.join(repo, 'scratch.txt'), 'untracked\n');
    const statusBefore = await git(repo).raw(['status', '--porcelain']);

    const wt = path.join(home, 'slots', 'cpu', 'worktree');
    await checkoutWorktree(repo, wt, a);
    assert.equal(await readRef(wt, 'HEAD'), a);
    assert.match(readFileSync(path.join(wt, 'train.py'), 'utf8'), /^WIDTH = 8$/m);
    assert.equal(readFileSync(path.join(wt, 'program.md'), 'utf8'), readFileSync(path.join(QUADRATIC, 'program.md'), 'utf8'), 'committed content, not the user\'s edit');

    // Leftovers of the last run go; the worktree moves to the next commit.
    writeFileSync(path.join(wt, 'train.py'), 'broken(\n');
    writeFileSync(path.join(wt, 'leftover.txt'), 'x');
    await checkoutWorktree(repo, wt, b);
    assert.equal(await readRef(wt, 'HEAD'), b);
    assert.match(readFileSync(path.join(wt, 'train.py'), 'utf8'), /^WIDTH = 12$/m);
    assert.equal(existsSync(path.join(wt, 'leftover.txt')), false);
    assert.equal(await git(wt).raw(['status', '--porcelain']), '');
    assert.equal(await git(wt).raw(['rev-parse', '--abbrev-ref', 'HEAD']), 'HEAD', 'detached, on no branch');

    // A worktree directory deleted by hand is recreated.
    rmSync(wt, { recursive: true, force: true });
    await checkoutWorktree(repo, wt, a);
    assert.equal(await readRef(wt, 'HEAD'), a);

    assert.equal(await readRef(repo, 'HEAD'), b, "the user's HEAD did not move");
    assert.equal(await git(repo).raw(['symbolic-ref', 'HEAD']), 'refs/heads/main', 'still on their branch');
    assert.equal(await git(repo).raw(['status', '--porcelain']), statusBefore, 'their edits and untracked files are intact');
    assert.equal(readFileSync(path.join(repo, 'program.md'), 'utf8'), 'my unsaved notes\n');
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
});

test('checkoutWorktree / removeWorktree side by side in one repository; a registration half-written by another process is waited out', async () => {
  const repo = await makeRepo(QUADRATIC);
  const home = tempDir();
  try {
    const head = (await readRef(repo, 'HEAD'))!;
    const dirs = Array.from({ length: 12 }, (_, i) => path.join(home, 'worktrees', `e${i}`));
    await Promise.all(dirs.map((d) => checkoutWorktree(repo, d, head)));
    for (const d of dirs) assert.equal(await readRef(d, 'HEAD'), head);
    // Removing half while adding the rest anew, as proposals and rebases do.
    const more = dirs.map((d) => `${d}-again`);
    await Promise.all([...dirs.slice(0, 6).map((d) => removeWorktree(repo, d)), ...more.map((d) => checkoutWorktree(repo, d, head))]);
    const listed = (await git(repo).raw(['worktree', 'list', '--porcelain'])).split('\n').filter((l) => l.startsWith('worktree ')).length;
    assert.equal(listed, 1 + 6 + 12, 'the main checkout, 6 left, 12 new');

    // Another process is half-way through registering "zz": git refuses to add any worktree until
    // its commondir is written. The add is retried and succeeds once it is.
    const admin = path.join(repo, '.git', 'worktrees', 'zz');
    mkdirSync(admin, { recursive: true });
    writeFileSync(path.join(admin, 'commondir'), '');
    writeFileSync(path.join(admin, 'gitdir'), `${path.join(home, 'zz', '.git')}\n`);
    await assert.rejects(git(repo).raw(['worktree', 'add', '--detach', path.join(home, 'plain'), head]), /failed to read .*commondir/);
    setTimeout(() => writeFileSync(path.join(admin, 'commondir'), '../..\n'), 60);
    const late = path.join(home, 'late');
    await checkoutWorktree(repo, late, head);
    assert.equal(await readRef(late, 'HEAD'), head);
  } finally {
    rmSync(path.dirname(repo), { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------------------------ preflight

test('preflight: no-op, locked file, file outside editable, Python syntax error are rejected; a valid edit passes', async () => {
  const config = { editable: ['train.py'], locked: ['prepare.py'], evaluate: { heldOutPaths: ['heldout'] } };
  const before = { 'train.py': 'WIDTH = 8\n', 'prepare.py': 'EVAL = 1\n' };
  const attempt = (files: Record<string, string>, atParent: Record<string, string | null> = before) => preflight(files, before, atParent, config);
  assert.match((await attempt({}))!, /^no-op edit: the proposal changed nothing/);
  assert.match((await attempt({ 'train.py': 'WIDTH = 8\n' }))!, /^no-op edit/, 'rewriting the same bytes is a no-op');
  assert.equal(await attempt({ 'prepare.py': 'EVAL = 10\n' }), 'changes locked file(s): prepare.py');
  assert.equal(await attempt({ 'heldout/test.txt': 'easy\n' }), 'changes held-out data: heldout/test.txt');
  assert.equal(await attempt({ 'train.py': 'WIDTH = 9\n', 'program.md': 'new\n' }), 'edits outside the editable files (train.py): program.md');
  assert.equal(await attempt({ '../escape.py': 'X = 1\n' }), 'edit to a path outside the repository: ../escape.py');
  assert.match((await attempt({ 'train.py': 'WIDTH = 8 +* (\n' }))!, /^train\.py does not compile: .*SyntaxError/);
  assert.equal(await attempt({ 'train.py': 'WIDTH = 16\n' }), null);
  // A fix edits the crashed commit: back to the best's own code is a no-op too.
  assert.match((await attempt({ 'train.py': 'WIDTH = 7\n' }, { 'train.py': 'WIDTH = 7\n', 'prepare.py': 'EVAL = 1\n' }))!, /^no-op edit: the result is identical to the best commit/);
  // A rejection reason is bounded, however many paths a proposal names.
  const many = Object.fromEntries(Array.from({ length: 1200 }, (_, i) => [`${'d'.repeat(900)}/${i}.py`, 'X = 1\n']));
  const reason = (await attempt(many))!;
  assert.ok(reason.length <= 1000 && /\[cut: \d+ more characters\]$/.test(reason), `bounded with a marker (${reason.length} characters)`);
});

test('pairRuns: each experiment in flight gets its own run, none while it judges; the best\'s re-runs stand apart', () => {
  const run = (experiment: number | undefined, slot: string): RunningRun => ({
    ...(experiment === undefined ? {} : { experiment }), elapsedSec: 1, timeoutSec: 60, lastLine: '', slot, host: 'h', attempt: 1, sinceHeartbeatSec: 0, state: 'started',
  });
  const five = { experiment: 5, phase: 'train', description: 'wider' };
  const six = { experiment: 6, phase: 'judge', description: 'lower lr' };
  const seven = { experiment: 7, phase: 'propose', description: '' };
  const own = run(5, 'gpu0');
  const bestReRun = run(3, 'gpu1');
  const pairs = pairRuns([five, six, seven], [bestReRun, own]);
  assert.deepEqual(pairs.map((p) => [p.flight?.experiment ?? null, p.run?.slot ?? null]), [[5, 'gpu0'], [6, null], [7, null], [null, 'gpu1']]);
  // A run that has not beaten yet (no experiment named) goes to the one experiment training.
  const fresh = run(undefined, 'gpu0');
  assert.deepEqual(pairRuns([six, five], [fresh]).map((p) => [p.flight?.experiment ?? null, p.run?.slot ?? null]), [[6, null], [5, 'gpu0']]);
  // With two training it cannot say whose: a block of its own.
  assert.deepEqual(pairRuns([five, { ...six, phase: 'confirm' }], [fresh]).map((p) => [p.flight?.experiment ?? null, p.run?.slot ?? null]), [[5, null], [6, null], [null, 'gpu0']]);
});
