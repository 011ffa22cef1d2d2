// Records from anywhere: a real campaign runs with its orchestrator worker (its records under the lab's
// NIGHTLAB_HOME), then `nightlab` is run as a second machine would run it. Faithfully: the CLI runs in a
// mount namespace (bubblewrap) where an empty tmpfs covers the orchestrator's NIGHTLAB_HOME, so the
// campaign directory's absolute path does not exist for it at all, and its own NIGHTLAB_HOME is
// elsewhere. It must print the same rows as the orchestrator's disk holds, read through Temporal (the
// `records` workflow); with NIGHTLAB_RECORDS=remote the same holds without the namespace. With the
// directory gone, or no orchestrator worker running, it must fail naming where the records live.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readLedger, type LedgerRow } from '../lib/ledger';
import { resultRows } from '../client/results';
import { chartData } from '../client/chart';
import { belongsTo, campaignRecords, RECORDS_MODE_ENV, RECORDS_TIMEOUT_ENV } from '../client/records';
import { watchCampaign } from '../client/watch';
import { pageOf } from '../activities/records';
import { startDashboard } from '../dashboard/server';
import { sandboxSupport } from '../lib/sandbox';
import { ADDRESS, lab, makeRepo, ROOT, tempDir } from './helpers';

const BIN = path.join(ROOT, 'bin', 'nightlab.mjs');

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `nightlab <args>` as another machine runs it: its own NIGHTLAB_HOME, and with `hide` the given
 * folder covered by an empty tmpfs (bubblewrap), so nothing under it exists for the CLI.
 */
async function nightlab(args: string[], opts: { env?: Record<string, string>; hide?: string } = {}): Promise<Ran> {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    TEMPORAL_ADDRESS: ADDRESS,
    NIGHTLAB_HOME: tempDir('nightlab-elsewhere-'),
    ...opts.env,
  };
  delete env.NODE_TEST_CONTEXT; // the child is a CLI, not a test file
  delete env.ANTHROPIC_API_KEY;
  const support = await sandboxSupport();
  if (opts.hide && !support.ok) throw new Error(`bubblewrap is needed to hide a folder: ${support.why}`);
  const argv = opts.hide
    ? [support.ok ? support.bwrap : '', '--dev-bind', '/', '/', '--tmpfs', opts.hide, '--', process.execPath, BIN]
    : [process.execPath, BIN];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], [...argv.slice(1), ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    // A hang is a failure (the code is null then), not a test that waits forever.
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** JSON's view of a value (what a --json command prints of it). */
const asJson = (v: unknown) => JSON.parse(JSON.stringify(v));

test('a page of the ledger is cut by bytes, at least one row, and says where the next starts', () => {
  const row = (n: number, tail: number) => ({ kind: 'experiment', experiment: n, logTail: 'x'.repeat(tail) });
  const rows = [row(0, 10), row(1, 600), row(2, 600), row(3, 5000)] as unknown as LedgerRow[];
  assert.deepEqual(
    [pageOf(rows, 0, 100, 1000), pageOf(rows, 1, 100, 1000), pageOf(rows, 3, 100, 1000)].map((p) => [
      p.rows.map((r) => r.experiment),
      p.next,
    ]),
    [
      [[0, 1], 2],
      [[1], 2],
      [[3], null], // one row bigger than a page still goes, alone
    ],
  );
  assert.deepEqual(pageOf(rows, 0, 2).next, 2);
  assert.deepEqual(pageOf(rows, 9).rows, []);
});

test('records on this disk are read only when they are this campaign’s own', () => {
  const baseline = { kind: 'experiment', experiment: 0, tag: 't', commit: 'abc', finishedAt: '2030-01-02T00:00:00Z' };
  const rows = [baseline] as unknown as LedgerRow[];
  const c = { tag: 't', baseSha: 'abc', startedAt: new Date('2030-01-01T00:00:00Z') };
  assert.equal(belongsTo(rows, c), true);
  assert.equal(belongsTo(rows, { ...c, startedAt: new Date('2030-01-03T00:00:00Z') }), false); // an older campaign's
  assert.equal(belongsTo(rows, { ...c, baseSha: 'def' }), false);
  assert.equal(belongsTo([], c), false); // no baseline yet: cannot tell
});

test(
  'results, status, watch, report and the dashboard read a campaign’s records from another machine',
  {
    timeout: 420_000,
  },
  async (t) => {
    const l = await lab();
    let closed = false;
    try {
      const c = await l.start(await makeRepo(), { budget: { maxExperiments: 3 } });
      const final = await c.result();
      assert.equal(final.state, 'completed');
      const local = readLedger(c.campaignDir);
      const experiments = local.filter((r) => r.kind === 'experiment');
      assert.ok(
        experiments.length >= 3 && local.some((r) => r.kind === 'run'),
        'the campaign recorded its experiments',
      );
      const expected = asJson(resultRows(local));
      const hide = l.home; // the orchestrator's NIGHTLAB_HOME: the campaign directory is under it

      await t.test('results on a machine where the campaign directory does not exist', async () => {
        const probe = await nightlab(['results', c.tag], { hide, env: { NIGHTLAB_RECORDS: 'nonsense' } });
        assert.equal(probe.code, 1);
        assert.match(probe.stderr, /NIGHTLAB_RECORDS=nonsense: use one of auto, local, remote/);
        // The namespace hides it: this is the second machine's view.
        const support = await sandboxSupport();
        assert.ok(support.ok, `bubblewrap hides the orchestrator's folder from the CLI: ${support.ok || support.why}`);
        const seen = await new Promise<number | null>((resolve, reject) =>
          spawn(support.bwrap, ['--dev-bind', '/', '/', '--tmpfs', hide, '--', 'test', '-e', c.campaignDir])
            .on('close', resolve)
            .on('error', reject),
        );
        assert.equal(seen, 1, `${c.campaignDir} does not exist for the CLI`);

        const json = await nightlab(['results', c.tag, '--json'], { hide });
        assert.equal(json.code, 0, json.stderr);
        assert.deepEqual(JSON.parse(json.stdout), expected);
        const text = await nightlab(['results', c.tag], { hide });
        assert.equal(text.code, 0, text.stderr);
        for (const r of experiments) assert.ok(text.stdout.includes(r.description), r.description);
        // Read through Temporal on the orchestrator's host, and said so.
        assert.ok(text.stdout.includes(`results.tsv: ${path.join(c.campaignDir, 'results.tsv')} on ${os.hostname()}`));
      });

      await t.test('NIGHTLAB_RECORDS=remote reads through Temporal even where the directory is local', async () => {
        const forced = await nightlab(['results', c.tag, '--json'], { env: { [RECORDS_MODE_ENV]: 'remote' } });
        assert.equal(forced.code, 0, forced.stderr);
        assert.deepEqual(JSON.parse(forced.stdout), expected);
        // A page at a time: with pages of two rows, the same rows come back in order.
        const paged = await campaignRecords(l.client, c.tag, { mode: 'remote', pageRows: 2 });
        assert.deepEqual(asJson(paged.rows), asJson(local));
        assert.equal(paged.host, os.hostname());
        const here = await campaignRecords(l.client, c.tag);
        assert.equal(here.host, null, 'on the orchestrator’s own host the disk is read');
      });

      await t.test('status, status --watch and report from the other machine', async () => {
        const status = await nightlab(['status', c.tag, '--json'], { hide });
        assert.equal(status.code, 0, status.stderr);
        const snapshot = JSON.parse(status.stdout);
        assert.equal(snapshot.recordsError, undefined);
        assert.ok(Array.isArray(snapshot.alarms));

        // The campaign has ended: --watch draws once and returns.
        const watch = await nightlab(['status', c.tag, '--watch'], { hide });
        assert.equal(watch.code, 0, watch.stderr);
        assert.match(watch.stdout, new RegExp(`last results \\(${experiments.length} in the ledger\\)`));
        assert.ok(watch.stdout.includes(experiments.at(-1)!.description));

        const out = tempDir('nightlab-report-');
        const report = await nightlab(['report', c.tag, '--json', '--out', out], { hide });
        assert.equal(report.code, 0, report.stderr);
        const r = JSON.parse(report.stdout);
        const chart = chartData(resultRows(local), { metricName: 'val_bpb', direction: 'lower', tag: c.tag });
        assert.equal(r.experiments, chart.counts.experiments);
        const html = readFileSync(r.html, 'utf8');
        for (const e of experiments) assert.ok(html.includes(e.commit.slice(0, 7)), e.commit);
      });

      await t.test('the dashboard’s campaign view, through the same records', async () => {
        const dash = await withRecordsEnv({ [RECORDS_MODE_ENV]: 'remote' }, () =>
          startDashboard({ client: l.client, port: 0 }),
        );
        try {
          const view = await withRecordsEnv({ [RECORDS_MODE_ENV]: 'remote' }, async () => {
            const res = await fetch(`${dash.url}api/campaigns/${c.tag}`);
            assert.equal(res.status, 200);
            return (await res.json()) as { rows: { experiment: number; commit: string }[] };
          });
          assert.deepEqual(
            view.rows.map((r) => [r.experiment, r.commit]),
            expected.map((r: { experiment: number; commit: string }) => [r.experiment, r.commit]),
          );
        } finally {
          await dash.close();
        }
      });

      await t.test('a campaign directory gone from the orchestrator’s host is an error naming it', async () => {
        const moved = `${c.campaignDir}.moved`;
        renameSync(c.campaignDir, moved);
        try {
          const gone = await nightlab(['results', c.tag], { hide });
          assert.equal(gone.code, 1);
          assert.equal(gone.stdout, '', 'no empty table');
          assert.ok(gone.stderr.includes(`${c.campaignDir} does not exist on ${os.hostname()}`), gone.stderr);
        } finally {
          renameSync(moved, c.campaignDir);
        }
      });

      // The orchestrator worker stops (and its records with the lab): nothing answers for them any more.
      await l.close();
      closed = true;
      assert.ok(!existsSync(c.campaignDir));

      await t.test('with no orchestrator worker running: an error naming where the records live, no hang', async () => {
        const env = { [RECORDS_TIMEOUT_ENV]: '3' };
        const where = `records of campaign ${c.tag} live in ${c.campaignDir} on the orchestrator's host ${os.hostname()}`;
        const results = await nightlab(['results', c.tag], { env });
        assert.equal(results.code, 1, results.stderr);
        assert.equal(results.stdout, '', 'no empty table');
        assert.ok(results.stderr.includes(where), results.stderr);
        assert.match(
          results.stderr,
          new RegExp(`no orchestrator worker on task queue ${l.taskQueue} answered within 3 s`),
        );
        assert.match(results.stderr, /nightlab worker/);

        // status still shows the campaign, and says why its records are missing.
        const status = await nightlab(['status', c.tag, '--json'], { env });
        assert.equal(status.code, 0, status.stderr);
        const snapshot = JSON.parse(status.stdout);
        assert.equal(snapshot.state, 'completed');
        assert.ok(snapshot.recordsError.includes(where), snapshot.recordsError);

        const report = await nightlab(['report', c.tag, '--out', tempDir('nightlab-report-')], { env });
        assert.equal(report.code, 1);
        assert.ok(report.stderr.includes(where), report.stderr);

        // The live view says so in place of its results.
        let drawn = '';
        await withRecordsEnv(env, async () => {
          const { connectClient } = await import('../ops/connection');
          const client = await connectClient(ADDRESS);
          try {
            await watchCampaign(client, c.tag, { once: true, clear: false, write: (s) => (drawn += s) });
            const dash = await startDashboard({ client, port: 0 });
            try {
              const res = await fetch(`${dash.url}api/campaigns/${c.tag}`);
              assert.equal(res.status, 503);
              assert.ok(((await res.json()) as { error: string }).error.includes(where));
            } finally {
              await dash.close();
            }
          } finally {
            await client.connection.close();
          }
        });
        assert.ok(drawn.includes(`no results: ${where}`), drawn);
      });
    } finally {
      if (!closed) await l.close();
    }
  },
);

/** Runs `fn` with the given environment variables set in this process, restored afterwards. */
async function withRecordsEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
