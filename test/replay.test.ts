// Safe upgrades: campaigns run for days, so a worker running new workflow code must replay the
// history of a campaign started by the old code. The fixtures in test/fixtures/histories/ are
// histories of real campaigns (recorded with test/record-history.ts); each is replayed against
// the workflow code of this checkout. A change that would break a running campaign (a new, removed
// or reordered activity, timer or child; a changed branch) fails here: guard it with patched().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  bundleWorkflowCode,
  DefaultLogger,
  Runtime,
  Worker,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { historyFromJSON } from './history-json';
import type { temporal } from '@temporalio/proto';
import { workflowBundle } from '../workers/orchestrator';

// The self-check's replays fail on purpose; the SDK's warnings about each would fill the report.
Runtime.install({
  logger: new DefaultLogger('ERROR'),
  telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } },
});

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const tempDir = (prefix: string) => mkdtempSync(path.join(os.tmpdir(), prefix));
const DIR = path.join(ROOT, 'test', 'fixtures', 'histories');
type History = temporal.api.history.v1.IHistory;

function fixtures(): { name: string; history: History }[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({
      name: f.replace(/\.json$/, ''),
      history: historyFromJSON(JSON.parse(readFileSync(path.join(DIR, f), 'utf8'))),
    }));
}

/** Replays every fixture; returns the failures by fixture name. */
async function replayAll(bundle: WorkflowBundleWithSourceMap): Promise<Record<string, string>> {
  const all = fixtures();
  const failures: Record<string, string> = {};
  const results = Worker.runReplayHistories(
    { workflowBundle: bundle, replayName: 'nightlab-replay' },
    all.map((f) => ({ workflowId: f.name, history: f.history })),
  );
  let seen = 0;
  for await (const r of results) {
    seen += 1;
    if (r.error) failures[r.workflowId] = `${r.error.name}: ${r.error.message}`;
  }
  assert.equal(seen, all.length, 'every fixture was replayed');
  return failures;
}

function payloadText(p: temporal.api.common.v1.IPayload | null | undefined): string {
  return p?.data ? Buffer.from(p.data).toString('utf8') : '';
}

test('the fixtures cover a crash, a keep, a fix, a rebase, a conflict, confirmations, messages, continue-as-new and both sides of each patch', () => {
  const all = fixtures();
  assert.ok(all.length >= 3, `fixtures in ${DIR}: run \`npx tsx test/record-history.ts\``);
  const events = all.flatMap((f) => f.history.events ?? []);
  const summaries = events.map((e) => payloadText(e.userMetadata?.summary));
  assert.ok(
    summaries.some((s) => /: crash — /.test(s)),
    'a crashed experiment is recorded',
  );
  assert.ok(
    summaries.some((s) => /^"experiment [1-9]\d*: keep — /.test(s)),
    'a kept experiment is recorded',
  );
  assert.ok(
    summaries.some((s) => /propose a fix of/.test(s)),
    'a fix proposal',
  );
  assert.ok(
    summaries.some((s) => /: rebase onto /.test(s)),
    'a proposal rebased onto a new best',
  );
  assert.ok(
    summaries.some((s) => /propose \(attempt [1-9]/.test(s)),
    'a proposal made again (after a rebase conflict)',
  );
  assert.ok(
    summaries.some((s) => /^"experiment [1-9]\d* run [1-9]\d*: (?!re-run)/.test(s)),
    'a confirmation run',
  );
  assert.ok(
    summaries.some((s) => /re-run of the best/.test(s)),
    'a re-run of the best',
  );
  assert.ok(
    events.some((e) =>
      (e.activityTaskScheduledEventAttributes?.input?.payloads ?? []).some((p) =>
        /"suspect":"suspect gain/.test(payloadText(p)),
      ),
    ),
    'a suspect gain recorded',
  );
  assert.ok(
    events.some((e) => e.workflowExecutionContinuedAsNewEventAttributes),
    'a run that continued as new',
  );
  assert.ok(
    events.some((e) => e.workflowExecutionStartedEventAttributes?.continuedExecutionRunId),
    'a run that started from a carry',
  );
  assert.ok(
    events.some((e) => e.workflowExecutionOptionsUpdatedEventAttributes?.versioningOverride?.pinned),
    'a run moved to another orchestrator version (Worker Versioning)',
  );
  assert.ok(
    events.some((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'pause'),
    'a pause signal',
  );
  assert.ok(
    events.some((e) => e.workflowExecutionUpdateAcceptedEventAttributes),
    'a steer update',
  );
  // Both sides of each patch: histories from before it (no marker) and from after it.
  const patchesOf = (f: { history: History }) =>
    (f.history.events ?? []).flatMap((e) =>
      e.markerRecordedEventAttributes?.markerName === 'core_patch'
        ? [JSON.parse(payloadText(e.markerRecordedEventAttributes.details?.['patch-data']?.payloads?.[0])).id as string]
        : [],
    );
  for (const id of [
    'rebase-while-queued',
    'keep-at-decision',
    'suspect-gains',
    'activity-names',
    'sequential-judging',
    'search',
    'versioning',
  ]) {
    assert.ok(
      all.some((f) => patchesOf(f).includes(id)),
      `a history recorded with the ${id} patch`,
    );
    assert.ok(
      all.some((f) => !patchesOf(f).includes(id)),
      `a history from before ${id}`,
    );
  }
  // `versioning` acts in continued runs only: one continued before it, one after.
  const continued = all.filter(
    (f) => f.history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId,
  );
  assert.ok(
    continued.some((f) => patchesOf(f).includes('versioning')),
    'a continued run with the versioning patch',
  );
  assert.ok(
    continued.some((f) => !patchesOf(f).includes('versioning')),
    'a continued run from before versioning',
  );
  for (const f of all) assert.ok((f.history.events?.length ?? 0) < 10_000, `${f.name} is a small history`);
});

test('recorded campaign histories replay against the current workflow code', async () => {
  const failures = await replayAll(await workflowBundle());
  assert.deepEqual(
    failures,
    {},
    'a change to workflows/ would break running campaigns: guard it with patched() (docs/upgrading.md)',
  );
});

test('self-check: workflow code that schedules one more command fails the replay', async () => {
  // A copy of the workflow sources with one extra timer at the top of the campaign: exactly the
  // kind of change that breaks every campaign in flight.
  const dir = tempDir('nightlab-replay-mutant-');
  try {
    for (const d of ['workflows', 'common']) mkdirSync(path.join(dir, d));
    for (const f of readdirSync(path.join(ROOT, 'workflows')))
      cpSync(path.join(ROOT, 'workflows', f), path.join(dir, 'workflows', f));
    for (const f of readdirSync(path.join(ROOT, 'common')))
      cpSync(path.join(ROOT, 'common', f), path.join(dir, 'common', f));
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    const file = path.join(dir, 'workflows', 'campaign.ts');
    const source = readFileSync(file, 'utf8');
    const marker = 'const { config, tag } = input;';
    assert.ok(source.includes(marker), 'the campaign function still starts as the self-check expects');
    writeFileSync(
      file,
      source
        .replace(marker, `${marker}\n  await sleep(1);`)
        .replace(
          "from '@temporalio/workflow';",
          "from '@temporalio/workflow';\nimport { sleep } from '@temporalio/workflow';",
        ),
    );
    const mutant = await bundleWorkflowCode({
      workflowsPath: path.join(dir, 'workflows', 'index.ts'),
      logger: {
        trace() {},
        debug() {},
        info() {},
        log() {},
        warn() {},
        error: (m: string) => console.error(m),
      } as never,
    });
    const failures = await replayAll(mutant);
    assert.deepEqual(
      Object.keys(failures).sort(),
      fixtures()
        .map((f) => f.name)
        .sort(),
      'every fixture fails',
    );
    for (const why of Object.values(failures)) assert.match(why, /Determinism|[Nn]ondetermin/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
