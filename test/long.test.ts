// A long campaign: 1,000 experiments with a near-instant trainer on 4 CPU slots. Every run of the
// workflow stays far below Temporal's history limits (continue-as-new), and the state carried
// across continue-as-new adds up exactly: every experiment once in the ledger, counts that match.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { campaignWorkflowId, experimentRef, type ExperimentRecord } from '../common/shared';
import {
  appendExperiment,
  appendRejection,
  appendRun,
  experiments,
  LEDGER_FILE,
  readLedger,
  readResultsTsv,
} from '../lib/ledger';
import { readRef, git } from '../lib/git';
import { lab, makeRepo } from './helpers';

const N = Number(process.env.NIGHTLAB_LONG_EXPERIMENTS || 1000);
/**
 * The quadratic fixture's loss computed by awk from train.py's settings: a few milliseconds per run
 * instead of a python start, and still a landscape where random search keeps improvements.
 */
const INSTANT_TRAINER = `awk -F' = ' '/^LEARNING_RATE/{lr=$2} /^WIDTH/{w=$2} END{print "---"; printf "val_bpb: %.6f\\n", (lr-0.12)^2+(w-20)^2/400+1}' train.py`;
/** Temporal warns at 10,240 events; each run of the campaign must stay under 10,000. */
const MAX_EVENTS = 10_000;

test(
  `a ${N}-experiment campaign completes; each run's history stays under ${MAX_EVENTS} events; the state carries across continue-as-new exactly`,
  { timeout: 30 * 60_000 },
  async () => {
    const slots = [0, 1, 2, 3].map((i) => ({ name: `cpu${i}`, devices: null }));
    const l = await lab({ slots });
    try {
      const repo = await makeRepo();
      const started = Date.now();
      const c = await l.start(repo, {
        parallelism: 4,
        budget: { maxExperiments: N },
        noise: { baselineRuns: 1 },
        run: { command: INSTANT_TRAINER, timeoutSec: 60 },
        sandbox: 'off',
      });
      const status = await c.result();
      const seconds = (Date.now() - started) / 1000;

      // Every run of the workflow: the first, and each continued as new.
      const runs: { runId: string; events: number }[] = [];
      for await (const wf of l.client.workflow.list({ query: `WorkflowId = '${campaignWorkflowId(c.tag)}'` }))
        runs.push({ runId: wf.runId, events: wf.historyLength });
      const events = runs.reduce((a, r) => a + r.events, 0);
      console.log(
        `# ${N} experiments in ${seconds.toFixed(0)} s (${((seconds * 1000) / N).toFixed(0)} ms each); ${runs.length} runs of the workflow, ${events} events (${(events / N).toFixed(1)} per experiment), largest run ${Math.max(...runs.map((r) => r.events))} events`,
      );
      assert.ok(runs.length >= 2, 'the campaign continued as new');
      for (const r of runs) assert.ok(r.events > 0 && r.events < MAX_EVENTS, `run ${r.runId}: ${r.events} events`);

      // The ledger: experiments 0..N, each once; one run row per experiment.
      const ledger = readLedger(c.campaignDir);
      const rows = ledger.flatMap((r) => (r.kind === 'experiment' ? [r] : []));
      assert.equal(rows.length, N + 1, 'N + 1 experiment rows');
      assert.deepEqual(
        rows.map((r) => r.experiment).sort((a, b) => a - b),
        Array.from({ length: N + 1 }, (_, i) => i),
        'experiments 0..N, each once',
      );
      const runRows = ledger.flatMap((r) => (r.kind === 'run' ? [r] : []));
      assert.equal(new Set(runRows.map((r) => `${r.experiment}/${r.run}`)).size, runRows.length, 'run rows unique');
      assert.equal(readResultsTsv(c.campaignDir).rows.length, N + 1);

      // The carried state agrees with the ledger.
      const kept = rows.filter((r) => r.status === 'keep' && r.experiment > 0);
      const best = rows.filter((r) => r.status === 'keep').reduce((a, b) => (b.metric! < a.metric! ? b : a));
      assert.equal(status.state, 'completed');
      assert.equal(status.experiments, N);
      assert.equal(status.kept, kept.length);
      assert.equal(status.crashes, rows.filter((r) => r.status === 'crash').length);
      assert.equal(status.bestCommit, best.commit);
      assert.equal(status.bestMetric, best.metric);
      assert.equal(status.baselineMetric, rows.find((r) => r.experiment === 0)!.metric);
      assert.equal(await readRef(repo, `refs/heads/${c.branch}`), best.commit);
      const onBranch = (
        await git(repo).raw(['rev-list', `${rows.find((r) => r.experiment === 0)!.commit}..${c.branch}`])
      )
        .split('\n')
        .filter(Boolean);
      assert.equal(onBranch.length, kept.length, 'the branch holds exactly the kept experiments');
      assert.equal(await readRef(repo, experimentRef(c.tag, N)), rows.find((r) => r.experiment === N)!.commit);
      const sa = Object.fromEntries(
        (await l.client.workflow.getHandle(campaignWorkflowId(c.tag)).describe()).typedSearchAttributes
          .getAll()
          .map((p) => [p.key.name, p.value]),
      );
      assert.equal(sa.NightlabExperiments, N);
      assert.equal(sa.NightlabKept, kept.length);
    } finally {
      await l.close();
    }
  },
);

test('the ledger is read incrementally: 1,000 experiments recorded in well under a second of ledger work, the same rows as a full parse', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nightlab-ledger-'));
  try {
    const file = path.join(dir, LEDGER_FILE);
    const full = () =>
      readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l.trim())
        .flatMap((l) => {
          try {
            return [JSON.parse(l)];
          } catch {
            return [];
          }
        });
    const record = (n: number): ExperimentRecord => ({
      tag: 'long',
      experiment: n,
      commit: n.toString(16).padStart(40, 'a'),
      parent: 'f'.repeat(40),
      status: 'discard',
      outcome: 'ok',
      metric: 1 + n / 1e4,
      bestBefore: 1,
      delta: n / 1e4,
      memoryGb: 2,
      description: `experiment ${n}`,
      reason: 'not better',
      evidence: 'not better',
      runs: 1,
      seconds: 0.1,
      logPath: `/logs/${n}-0.log`,
      host: 'h',
      slot: 'cpu0',
      costUsd: 0,
      fixOf: null,
      finishedAt: '2026-01-01T00:00:00.000Z',
    });
    const started = Date.now();
    for (let n = 0; n <= 1000; n++) {
      // As a campaign does: the proposer's context reads the ledger, the record appends (retried once).
      readLedger(dir);
      for (let retry = 0; retry < 2; retry++) {
        appendRun(dir, {
          tag: 'long',
          experiment: n,
          run: 0,
          commit: record(n).commit,
          outcome: 'ok',
          metric: 1,
          memoryMb: 2048,
          seconds: 0.1,
          logPath: '',
          host: 'h',
          slot: 'cpu0',
          reason: '',
        });
        appendExperiment(dir, record(n), 'val_bpb', 'step 1 | loss 3.0\n---\nval_bpb: 1.0\n'.repeat(20));
      }
      if (n % 10 === 0)
        appendRejection(dir, {
          tag: 'long',
          experiment: n,
          attempt: 0,
          description: 'no-op',
          reason: 'no change',
          costUsd: 0,
          at: 'now',
        });
      // Someone else appends (another process), then a crash cuts a line: both are picked up as a full parse would.
      if (n === 400)
        appendFileSync(
          file,
          `${JSON.stringify({ kind: 'rejected', tag: 'long', experiment: 400, attempt: 1, description: 'x', reason: 'y', costUsd: 0, at: 'now' })}\n`,
        );
      if (n === 500) appendFileSync(file, '{"kind":"experiment","experim');
      // A rewrite in place (not an append) is noticed and read again whole.
      if (n === 700) writeFileSync(file, readFileSync(file, 'utf8').replace('"experiment 3"', '"experiment three"'));
    }
    const ms = Date.now() - started;
    console.log(`# 1,001 experiments recorded with incremental ledger reads in ${ms} ms`);
    assert.deepEqual(readLedger(dir), full());
    assert.equal(experiments(dir).length, 1001);
    assert.ok(experiments(dir).some((r) => r.description === 'experiment three'));
    assert.equal(readResultsTsv(dir).rows.length, 1001);
    assert.ok(ms < 10_000, `ledger work stays linear (${ms} ms)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
