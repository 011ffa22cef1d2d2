// What the campaign writes down (workflows/records.ts) and how the baseline is judged: pure functions,
// no server. The ledger's readers (status, results, report, the proposer's context) rely on these rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RunRecord, RunResult } from '../common/shared';
import { judgeBaseline } from '../workflows/decisions';
import { baselineFacts, experimentRecord, type ExperimentFacts } from '../workflows/records';

const PLACE = { tag: 't', campaignDir: '/c', repo: '/r', metricName: 'val_bpb', nowMs: Date.UTC(2026, 0, 2) };

function result(over: Partial<RunResult> = {}): RunResult {
  const r = {
    outcome: 'ok',
    exitCode: 0,
    metric: 1,
    memoryMb: 1024,
    seconds: 10,
    logPath: '/l',
    host: 'h',
    slot: 'cpu',
  };
  return { ...r, logTail: 'tail', reason: '', ...over } as RunResult;
}

function facts(over: Partial<ExperimentFacts>): ExperimentFacts {
  return {
    n: 3,
    candidate: { sha: 'c3', parent: 'c1', description: 'lr up', costUsd: 0.5 },
    runs: [result()],
    judgement: {
      kind: 'discard',
      metric: 1,
      delta: 0,
      evidence: 'not better',
      runs: 1,
      group: { n: 1, mean: 1, m2: 0 },
    },
    before: 0.9,
    fixOf: null,
    bestReRuns: [],
    ...over,
  };
}

test("experimentRecord: a keep is measured against the best before it, with every run and the best's re-runs", () => {
  const runs = [
    result({ metric: 0.8, heldOut: 1.5, memoryMb: 2048 }),
    result({ metric: 0.82, heldOut: 1.7, seconds: 5.04 }),
  ];
  const rerun: RunRecord = {
    tag: 't',
    experiment: 1,
    run: 4,
    commit: 'c1',
    outcome: 'ok',
    metric: 0.9,
    memoryMb: 1,
    seconds: 1,
    logPath: '',
    host: '',
    slot: '',
    reason: '',
  };
  const judgement = {
    kind: 'keep',
    metric: 0.82,
    delta: -0.08,
    evidence: 'better by 0.08',
    runs: 2,
    group: { n: 1, mean: 0.82, m2: 0 },
  } as const;
  const args = experimentRecord(facts({ runs, judgement, bestReRuns: [rerun] }), PLACE);
  const row = args.record;
  assert.equal(row.status, 'keep');
  assert.equal(row.metric, 0.82);
  assert.ok(Math.abs(row.delta! - (0.82 - 0.9)) < 1e-12, 'delta from the best before');
  assert.ok(Math.abs(row.bestBefore! - 0.9) < 1e-12);
  assert.equal(row.reason, 'better by 0.08');
  assert.equal(row.runs, 2);
  assert.equal(row.memoryGb, 2, 'the largest memory of its runs');
  assert.equal(row.seconds, 15, "its runs' seconds, summed");
  assert.equal(row.heldOut, 1.6, 'the held-out figure: the mean over its runs');
  assert.equal(row.finishedAt, '2026-01-02T00:00:00.000Z');
  assert.deepEqual(
    args.runs.map((r) => [r.experiment, r.run, r.commit]),
    [
      [3, 0, 'c3'],
      [3, 1, 'c3'],
      [1, 4, 'c1'],
    ],
  );
  assert.equal(args.runs[0].heldOut, 1.5);
  assert.equal(args.metricName, 'val_bpb');
});

test('experimentRecord: a crash names the run that failed, and has no metric', () => {
  const runs = [
    result({ metric: 0.8 }),
    result({ outcome: 'oom', metric: null, reason: 'out of memory', logPath: '/l1', logTail: 'OOM' }),
  ];
  const judgement = {
    kind: 'crash',
    evidence: 'confirmation run 1 crashed: out of memory',
    runs: 2,
    failedRun: 1,
    suspect: 'suspect gain',
  } as const;
  const args = experimentRecord(facts({ runs, judgement, fixOf: 2 }), PLACE);
  const row = args.record;
  assert.deepEqual([row.status, row.outcome, row.metric, row.delta, row.bestBefore], ['crash', 'oom', null, null, 0.9]);
  assert.equal(row.reason, 'out of memory', "the failed run's own reason");
  assert.equal(row.evidence, 'confirmation run 1 crashed: out of memory');
  assert.deepEqual([row.logPath, args.logTail, row.fixOf, row.suspect], ['/l1', 'OOM', 2, 'suspect gain']);
});

test("the baseline: kept with its runs' mean and spread, recorded as experiment 0 against nothing; or a crash", () => {
  const runs = [result({ metric: 1.0 }), result({ metric: 1.2 }), result({ metric: 1.1 })];
  const kept = judgeBaseline(runs);
  assert.equal(kept.kind, 'keep');
  assert.ok(kept.kind === 'keep' && Math.abs(kept.metric - 1.1) < 1e-12 && kept.group.n === 3);
  assert.match(kept.evidence, /^baseline: mean of 3 runs; noise sigma 0\.100 from 3 runs$/);
  const row = experimentRecord(baselineFacts('base', runs, kept), PLACE).record;
  assert.deepEqual(
    [row.experiment, row.commit, row.parent, row.status, row.delta, row.bestBefore],
    [0, 'base', 'base', 'keep', null, null],
  );
  assert.equal(judgeBaseline([result({ metric: 1 })]).evidence, 'baseline: mean of 1 run');

  const crashed = judgeBaseline([
    result(),
    result({ outcome: 'timeout', metric: null, reason: 'timed out' }),
    result({ outcome: 'crash', metric: null }),
  ]);
  assert.deepEqual(crashed, { kind: 'crash', evidence: 'timed out', runs: 3, failedRun: 1 });
});
