// Settings that were removed say so, with what to do, instead of "unknown field".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../common/config';

const BASE = { editable: ['train.py'], run: { command: 'python3 train.py' }, metric: { name: 'val_bpb' } };

test('proposer.maxAttempts: removed, and the error says to delete it (other unknown fields are still named)', () => {
  assert.throws(
    () => parseConfig({ ...BASE, proposer: { kind: 'mutate', maxAttempts: 3, maxAttempt: 1 } }, 'nightlab.yaml'),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.problems.length, 2, e.message);
      assert.match(e.problems[0], /^proposer\.maxAttempts: was removed: .*; delete the line$/);
      assert.match(e.problems[1], /^proposer: unknown field\(s\) "maxAttempt"; check the spelling/);
      return true;
    },
  );
  assert.equal(parseConfig({ ...BASE, proposer: { kind: 'mutate' } }).proposer.kind, 'mutate');
  assert.ok(!('maxAttempts' in parseConfig(BASE).proposer), 'no longer a setting');
});
