// Learning curves: progress lines read as a run streams, kept per run in the ledger, drawn in the
// report; and the early stop on the real tiny-lm target: a clearly worse candidate is stopped part way
// (its process group killed, a discard with its evidence), while the baseline's repeats never are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AUTORESEARCH_PROGRESS, ProgressReader, progressProblem, thinCurve } from '../common/curves';
import { parseConfig } from '../common/config';
import { EARLY_STOP_DEFAULTS } from '../common/early-stop';
import { experiments, readLedger } from '../lib/ledger';
import { experimentCurves, experimentCurvesSvg } from '../client/curves';
import { lab, makeRepo, plannedProposer, TINY_LM, tinyLm } from './helpers';

const SPEC = { pattern: AUTORESEARCH_PROGRESS, name: 'loss', direction: 'lower' as const };

test("progress lines: autoresearch's format, split on \\r and \\n, cut anywhere across chunks", () => {
  const r = new ProgressReader(SPEC);
  assert.deepEqual(r.feed('step 01000 (2.5%) | loss: 3.1 | elapsed 0.2s\nstep 02'), [{ at: 0.025, value: 3.1 }]);
  assert.deepEqual(r.feed('000 (5.0%) | loss: 2.9 | x\r'), [{ at: 0.05, value: 2.9 }]);
  // autoresearch ends its line with \r and no \n: the point counts once the next line starts.
  assert.deepEqual(r.feed('step 00123 (45.2%) | loss: 3.210000 | lrm: 1.00 | dt: 300ms    '), []);
  assert.deepEqual(r.feed('\rnoise\n'), [{ at: 0.452, value: 3.21 }]);
  assert.equal(r.curve.length, 3);
  const steps = new ProgressReader({ ...SPEC, pattern: String.raw`it (?<step>\d+) loss=(?<value>\S+)`, steps: 200 });
  assert.deepEqual(steps.feed('it 50 loss=1.5\nit 400 loss=1.0\n'), [
    { at: 0.25, value: 1.5 },
    { at: 1, value: 1 },
  ]);
});

test('progress patterns are checked before anything starts', () => {
  assert.match(progressProblem('(unclosed')!, /not a regular expression/);
  assert.match(progressProblem(String.raw`(?<pct>\d+)%`)!, /\(\?<value>/);
  assert.match(progressProblem(String.raw`(?<step>\d+) (?<value>\S+)`)!, /progress\.steps/);
  assert.equal(progressProblem(String.raw`(?<step>\d+) (?<value>\S+)`, 100), null);
  const raw = { editable: ['train.py'], run: { command: 'python3 train.py' }, metric: { name: 'val_bpb' } };
  assert.throws(() => parseConfig({ ...raw, progress: { pattern: 'loss (?<value>.*)' } }), /progress\.pattern: must/);
  assert.deepEqual(parseConfig({ ...raw, progress: { earlyStop: true } }).progress.earlyStop, EARLY_STOP_DEFAULTS);
  assert.equal(parseConfig({ ...raw, progress: { earlyStop: { margin: 4 } } }).progress.earlyStop!.margin, 4);
  assert.equal(parseConfig(raw).progress.earlyStop, null, 'the early stop is opt-in');
});

test('curves are thinned evenly and keep their last point', () => {
  const curve = Array.from({ length: 1000 }, (_, i) => ({ at: i / 999, value: 1000 - i }));
  const thin = thinCurve(curve, 64);
  assert.equal(thin.length, 64);
  assert.deepEqual(thin.at(-1), curve.at(-1));
  assert.deepEqual(thin[0], curve[0]);
});

test('tiny-lm: a clearly worse candidate is stopped early; the baseline and a sound one run to the end', async () => {
  const l = await lab();
  try {
    const repo = await makeRepo(TINY_LM);
    const c = await l.start(repo, {
      ...tinyLm(400_000),
      budget: { maxExperiments: 2, maxHours: null, maxCostUsd: null },
      proposer: plannedProposer({
        1: { LEARNING_RATE: 0.00002, desc: 'learning rate 50x lower' },
        2: { LEARNING_RATE: 0.0011, desc: 'learning rate 10% higher' },
      }),
      progress: { earlyStop: true },
    });
    const s = await c.result();
    assert.equal(s.state, 'completed');
    const ledger = readLedger(c.campaignDir);
    const runs = ledger.filter((r) => r.kind === 'run');
    const baseline = runs.filter((r) => r.experiment === 0);
    assert.ok(baseline.length >= 3, 'the baseline runs several times');
    for (const r of baseline) {
      assert.equal(r.outcome, 'ok', `baseline run ${r.run}: ${r.reason}`);
      assert.ok(r.curve && r.curve.length >= 8, `baseline run ${r.run} has its learning curve`);
    }
    const rows = experiments(c.campaignDir);
    const worse = rows.find((r) => r.experiment === 1)!;
    assert.equal(worse.status, 'discard');
    assert.equal(worse.outcome, 'stopped');
    assert.equal(worse.runs, 1, 'a stopped run is never confirmed');
    assert.match(worse.evidence!, /^stopped at \d+%: loss \d\.\d+ vs best \d\.\d+ ± /);
    const stopped = runs.find((r) => r.experiment === 1)!;
    const last = stopped.curve!.at(-1)!.at;
    assert.ok(last < 0.9, `stopped part way (its last progress point at ${last})`);
    const mean = baseline.reduce((a, r) => a + r.seconds, 0) / baseline.length;
    assert.ok(stopped.seconds < mean, `a stopped run spends less than a full one (${stopped.seconds} vs ${mean} s)`);
    const sound = rows.find((r) => r.experiment === 2)!;
    assert.notEqual(sound.outcome, 'stopped', `a sound change runs to the end: ${sound.evidence}`);
    // Drawn beside the best's curves (the baseline's), for the report and the dashboard.
    const curves = experimentCurves(ledger, 1)!;
    assert.equal(curves.runs.length, 1);
    assert.equal(curves.best.length, baseline.length);
    assert.match(experimentCurvesSvg(ledger, 1, 'discard'), /^<svg[^>]*>.*<polyline/);
  } finally {
    await l.close();
  }
});
