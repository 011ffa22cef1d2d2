// bench/bound.ts: the floor under bench:noise's runs per experiment, which the docs cite. It must be a
// floor that tests can reach: between what no one-run test can do and what a fixed three-run test does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { optimalTest } from '../bench/bound';

const RATES = { gain: 2, falseKeep: 0.05, detect: 0.9 };

test('the optimal sequential test meets both rates, and its floor lies between one run and a fixed three-run test', () => {
  const known = optimalTest({ ...RATES, bestRuns: Infinity });
  assert.ok(known.falseKeep <= RATES.falseKeep + 1e-3, `false keeps ${known.falseKeep}`);
  assert.ok(known.detection >= RATES.detect - 1e-3, `detection ${known.detection}`);
  // The floor is below the test found (the dual of its weights), and above one run: a single run kept at
  // 5% false keeps (above 1.645 sigmas) detects a 2-sigma gain only 64% of the time.
  assert.ok(known.bound <= known.runs + 1e-9 && known.bound > 1, `floor ${known.bound}, test ${known.runs}`);
  // Three runs, kept when their mean is above 1.645 / sqrt(3): 5% false keeps, 97% detection.
  assert.ok(known.runs < 3, `runs ${known.runs}`);
  // The best's mean on 10 runs is less certain: every test needs more runs.
  const ten = optimalTest({ ...RATES, bestRuns: 10 });
  assert.ok(ten.bound > known.bound + 0.1, `10 runs: ${ten.bound} vs known: ${known.bound}`);
});
