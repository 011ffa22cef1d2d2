// The campaign config: parsing, each problem named with what to do, presets, tags.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import YAML from 'yaml';
import { checkTag, ConfigError, parseConfig, presetYaml, PRESETS } from '../common/config';
import { QUADRATIC_CONFIG } from './helpers';

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
    [
      'metric.direction down',
      { ...BASE, metric: { ...BASE.metric, direction: 'down' } },
      /^metric\.direction: must be "lower" or "higher"/,
    ],
    ['run.timeoutSec negative', { ...BASE, run: { ...BASE.run, timeoutSec: -5 } }, /^run\.timeoutSec: must be > 0/],
    [
      'run.timeoutSec string',
      { ...BASE, run: { ...BASE.run, timeoutSec: '600' } },
      /^run\.timeoutSec: expected number, got string .*e\.g\. 600/,
    ],
    ['top-level typo', { ...BASE, editabel: ['train.py'] }, /unknown field\(s\) "editabel"; check the spelling/],
    ['nested typo', { ...BASE, run: { ...BASE.run, timeout: 5 } }, /^run: unknown field\(s\) "timeout"/],
    [
      'pattern without group',
      { ...BASE, metric: { ...BASE.metric, pattern: 'val_bpb: \\S+' } },
      /^metric\.pattern: must be a regular expression with exactly one capture group/,
    ],
    [
      'pattern with two groups',
      { ...BASE, metric: { ...BASE.metric, pattern: '(val_bpb): (\\S+)' } },
      /^metric\.pattern: .*exactly one capture group/,
    ],
    ['pattern not a regex', { ...BASE, metric: { ...BASE.metric, pattern: '(' } }, /^metric\.pattern: /],
    [
      'editable and locked',
      { ...BASE, locked: ['prepare.py', 'train.py'] },
      /^locked: train\.py is listed as both editable and locked; remove it from one list/,
    ],
    [
      'command proposer without command',
      { ...BASE, proposer: { kind: 'command' } },
      /^proposer\.command: required when proposer\.kind is "command"/,
    ],
    [
      'secret in run.env',
      { ...BASE, run: { ...BASE.run, env: { ANTHROPIC_API_KEY: 'sk-ant-x' } } },
      /^run\.env\.ANTHROPIC_API_KEY: looks like a secret.*Remove it/,
    ],
    [
      'token in run.env',
      { ...BASE, run: { ...BASE.run, env: { HF_TOKEN: 'x' } } },
      /^run\.env\.HF_TOKEN: looks like a secret/,
    ],
    [
      'absolute editable',
      { ...BASE, editable: ['/etc/passwd'] },
      /^editable\.0: must be a path inside the target repository \(relative, no "\.\."\)/,
    ],
    ['.. in locked', { ...BASE, locked: ['../outside.py'] }, /^locked\.0: must be a path inside the target repository/],
    ['.. in instructions', { ...BASE, instructions: 'docs/../../program.md' }, /^instructions: must be a path inside/],
    [
      'unknown proposer',
      { ...BASE, proposer: { kind: 'gpt' } },
      /^proposer\.kind: must be one of auto, mutate, anthropic, command/,
    ],
    ['fractional budget', { ...BASE, budget: { maxExperiments: 1.5 } }, /^budget\.maxExperiments: .*whole number/],
    [
      'metric name with a space',
      { ...BASE, metric: { name: 'val bpb' } },
      /^metric\.name: must be an identifier such as val_bpb/,
    ],
    ['negative minImprovement', { ...BASE, keep: { minImprovement: -1 } }, /^keep\.minImprovement: must be >= 0/],
    [
      'missing run.command',
      { ...BASE, run: { timeoutSec: 5 } },
      /^run\.command: required: the training command \(e\.g\. "uv run train\.py"\)/,
    ],
  ];
  for (const [name, raw, re] of cases) {
    const problems = problemsOf(raw);
    assert.ok(
      problems.some((p) => re.test(p)),
      `${name}: ${JSON.stringify(problems)} should match ${re}`,
    );
  }
});

test('parseConfig: a missing editable list is named', () => {
  const { editable: _e, ...raw } = BASE;
  const problems = problemsOf(raw);
  assert.ok(
    problems.some((p) => p.startsWith('editable: ')),
    JSON.stringify(problems),
  );
});

test('parseConfig: a missing required section says what to write (e.g. ...)', () => {
  const { editable: _e, ...noEditable } = BASE;
  const { run: _r, ...noRun } = BASE;
  const { metric: _m, ...noMetric } = BASE;
  for (const [field, raw] of [
    ['editable', noEditable],
    ['run', noRun],
    ['metric', noMetric],
  ] as const) {
    const p = problemsOf(raw).find((x) => x.startsWith(`${field}: `));
    assert.match(p ?? '', /e\.g\./, `${field}: ${p}`);
  }
});

test('parseConfig: every problem is reported at once, not only the first', () => {
  const problems = problemsOf({
    ...BASE,
    metric: { name: 'val_bpb', direction: 'down' },
    run: { command: 'x', timeoutSec: -1 },
  });
  assert.ok(
    problems.some((p) => p.startsWith('metric.direction')),
    JSON.stringify(problems),
  );
  assert.ok(
    problems.some((p) => p.startsWith('run.timeoutSec')),
    JSON.stringify(problems),
  );
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
  assert.throws(
    () => presetYaml('nope'),
    (e: unknown) =>
      e instanceof ConfigError &&
      /--preset: unknown preset "nope"; choose one of autoresearch, tiny-lm/.test(e.message),
  );
});

test('checkTag: lowercase letters, digits, ".", "_" and "-" only, at most 63 characters', () => {
  for (const ok of ['nov27', 'a', 'run.2_b-c', '0abc', 'x'.repeat(63)]) assert.doesNotThrow(() => checkTag(ok), ok);
  for (const bad of ['Nov27', 'a b', '', '-x', '.x', 'a/b', 'x'.repeat(64), 'tag\n']) {
    assert.throws(
      () => checkTag(bad),
      (e: unknown) => e instanceof ConfigError && e.problems[0].startsWith(`tag: "${bad}" must be lowercase`),
      JSON.stringify(bad),
    );
  }
});
