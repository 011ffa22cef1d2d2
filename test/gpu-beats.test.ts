// The GPU worker's run activity heartbeats for the whole run: while the locked evaluation runs too,
// which may take longer than the 60 s heartbeat timeout (its own timeout is 120 s by default). Called
// directly, with a context that records the heartbeats.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { asyncLocalStorage, type Context } from '@temporalio/activity';
import { createGpuActivities } from '../gpu-worker/run';
import { experimentRef, type RunHeartbeat } from '../common/shared';
import { readRef, setRef } from '../lib/git';
import { makeRepo, tempDir } from './helpers';

test('the run activity heartbeats while the evaluation runs, and says no more of it than that', async () => {
  const repo = await makeRepo();
  const sha = (await readRef(repo, 'HEAD'))!;
  const ref = experimentRef('beats', 1);
  await setRef(repo, ref, sha);
  const beats: RunHeartbeat[] = [];
  const context = {
    info: { attempt: 1 },
    heartbeat: (d: RunHeartbeat) => beats.push(d),
    cancellationSignal: new AbortController().signal,
  } as unknown as Context;
  const { run } = createGpuActivities({ home: tempDir('nightlab-beats-'), slots: [{ name: 'cpu', devices: null }] });
  const result = await asyncLocalStorage.run(context, () =>
    run({
      ...{ tag: 'beats', experiment: 1, run: 0, remote: repo, ref, sha, command: 'python3 train.py', env: {} },
      ...{ timeoutSec: 60, metric: { name: 'val_bpb', direction: 'lower' }, sandbox: 'off' },
      // An evaluation of 12 s: beats every 5 s while it runs, none naming what it prints.
      evaluate: {
        command: 'echo secret-line; sleep 12; echo "---"; echo "score: 0.25"',
        metric: 'score',
      },
    }),
  );
  assert.equal(result.outcome, 'ok', result.reason);
  assert.equal(result.metric, 0.25);
  const during = beats.filter((b) => b.lastLine === '(evaluation)');
  assert.ok(during.length >= 2, JSON.stringify(beats));
  assert.ok(Math.max(...during.map((b) => b.elapsedSec ?? 0)) >= 10);
  assert.ok(during.every((b) => b.experiment === 1 && b.run === 0 && b.slot === 'cpu'));
  assert.ok(!beats.some((b) => b.lastLine?.includes('secret')));
});
