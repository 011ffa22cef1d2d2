// A campaign's records (its ledger's rows) from any machine that reaches the Temporal server. The
// orchestrator worker running a campaign owns its records directory. On that host, or wherever a
// copy of that campaign's directory sits at the same path, they are read from disk; anywhere else,
// through Temporal: the `records` workflow (workflows/records-query.ts), started on the campaign's
// task queue, reads them a page at a time on the orchestrator's host. Records that cannot be reached
// are an error that names where they live, never an empty table.
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { ActivityFailure, TimeoutFailure, WorkflowFailedError, type Client } from '@temporalio/client';
import { campaignWorkflowId, type CampaignInput } from '../common/shared';
import { readLedger, type LedgerRow } from '../lib/ledger';
import { RECORDS_WORKFLOW, type records, type RecordsPage } from '../workflows/records-query';
import { campaignInput } from './live';

/** `auto`: the disk when it holds this campaign's records, else Temporal; `local`: the disk only; `remote`: Temporal only. */
export const RECORDS_MODES = ['auto', 'local', 'remote'] as const;
export type RecordsMode = (typeof RECORDS_MODES)[number];
export const RECORDS_MODE_ENV = 'NIGHTLAB_RECORDS';
/** Seconds the orchestrator has to answer one page (the `records` workflow's execution timeout). */
export const RECORDS_TIMEOUT_ENV = 'NIGHTLAB_RECORDS_TIMEOUT';
const DEFAULT_TIMEOUT_SEC = 30;
/** An orchestrator that did not answer is not asked again for this long: a second reader fails at once. */
const UNREACHABLE_MEMO_MS = 15_000;

export interface CampaignRecords {
  rows: LedgerRow[];
  /** The campaign's records directory, on the orchestrator's host. */
  campaignDir: string;
  /** The host they were read on through Temporal; null when read from this machine's disk. */
  host: string | null;
}

/** The records exist but cannot be read from here: the message says where they live and what to start. */
export class RecordsUnreachable extends Error {
  constructor(
    message: string,
    readonly campaignDir: string,
  ) {
    super(message);
  }
}

export async function campaignRecords(
  client: Client,
  tag: string,
  opts: { input?: CampaignInput; mode?: RecordsMode; timeoutSec?: number; pageRows?: number } = {},
): Promise<CampaignRecords> {
  const mode = opts.mode ?? recordsMode();
  const input = opts.input ?? (await campaignInput(client, tag));
  const campaignDir = input.campaignDir;
  if (mode === 'local') {
    if (!existsSync(campaignDir))
      throw new RecordsUnreachable(`records of campaign ${tag}: ${campaignDir} is not on this machine`, campaignDir);
    return { rows: readLedger(campaignDir), campaignDir, host: null };
  }
  const run = await firstRun(client, tag);
  if (mode === 'auto') {
    const rows = localRows(campaignDir);
    if (rows && belongsTo(rows, { tag, baseSha: input.baseSha, startedAt: run.startTime }))
      return { rows, campaignDir, host: null };
  }
  const key = `${campaignWorkflowId(tag)}/${run.firstRunId}/${campaignDir}`;
  const { rows, host } = await remoteRows(client, {
    tag,
    key,
    campaignDir,
    taskQueue: run.taskQueue,
    timeoutSec: opts.timeoutSec ?? recordsTimeoutSec(),
    pageRows: opts.pageRows,
  });
  return { rows, campaignDir, host };
}

/**
 * Whether ledger rows on this disk are the campaign's own, not an older campaign's with the same tag
 * (the same path on another machine): its baseline ran the campaign's base commit after it started.
 * No baseline yet: unknown, so they are read through Temporal.
 */
export function belongsTo(rows: LedgerRow[], c: { tag: string; baseSha: string; startedAt: Date }): boolean {
  const baseline = rows.find((r) => r.kind === 'experiment' && r.experiment === 0);
  return (
    baseline?.kind === 'experiment' &&
    baseline.tag === c.tag &&
    baseline.commit === c.baseSha &&
    Date.parse(baseline.finishedAt) >= c.startedAt.getTime()
  );
}

/** The ledger on this machine's disk, or null where this machine has no readable one at that path. */
function localRows(campaignDir: string): LedgerRow[] | null {
  if (!existsSync(campaignDir)) return null;
  try {
    return readLedger(campaignDir);
  } catch {
    return null; // unreadable here (another user's): the orchestrator reads it
  }
}

export function recordsMode(env: NodeJS.ProcessEnv = process.env): RecordsMode {
  const mode = env[RECORDS_MODE_ENV] || 'auto';
  if (!(RECORDS_MODES as readonly string[]).includes(mode))
    throw new Error(`${RECORDS_MODE_ENV}=${mode}: use one of ${RECORDS_MODES.join(', ')}`);
  return mode as RecordsMode;
}

function recordsTimeoutSec(env: NodeJS.ProcessEnv = process.env): number {
  const text = env[RECORDS_TIMEOUT_ENV];
  if (!text) return DEFAULT_TIMEOUT_SEC;
  const sec = Number(text);
  if (!(sec > 0)) throw new Error(`${RECORDS_TIMEOUT_ENV}=${text}: give a number of seconds above 0`);
  return sec;
}

/** The campaign's first run (continue-as-new keeps its id): its id, start time and task queue. */
async function firstRun(client: Client, tag: string) {
  const handle = client.workflow.getHandle(campaignWorkflowId(tag));
  const latest = await handle.describe();
  const firstRunId = latest.raw.workflowExecutionInfo?.firstRunId || latest.runId;
  const first =
    firstRunId === latest.runId ? latest : await client.workflow.getHandle(handle.workflowId, firstRunId).describe();
  return { firstRunId, startTime: first.startTime, taskQueue: latest.taskQueue };
}

/** Rows already read through Temporal, per campaign: rows are only appended, so later reads ask for the rest. */
const fetched = new Map<string, { rows: LedgerRow[]; host: string }>();
const unreachable = new Map<string, { error: RecordsUnreachable; until: number }>();

async function remoteRows(
  client: Client,
  c: { tag: string; key: string; campaignDir: string; taskQueue: string; timeoutSec: number; pageRows?: number },
): Promise<{ rows: LedgerRow[]; host: string }> {
  const memo = unreachable.get(c.key);
  if (memo && memo.until > Date.now()) throw memo.error;
  let { rows, host } = fetched.get(c.key) ?? { rows: [] as LedgerRow[], host: '' };
  try {
    for (let from = rows.length; ;) {
      const page = await readPage(client, { ...c, from });
      host = page.host;
      if (page.total < from) {
        // The ledger is shorter than what was read before: it was rewritten, so read it all again.
        rows = [];
        from = 0;
        continue;
      }
      rows = [...rows, ...page.rows];
      if (page.next === null) break;
      from = page.next;
    }
  } catch (e) {
    if (!(e instanceof WorkflowFailedError)) throw e;
    const error = await unreachableError(client, c, e);
    unreachable.set(c.key, { error, until: Date.now() + UNREACHABLE_MEMO_MS });
    throw error;
  }
  unreachable.delete(c.key);
  fetched.set(c.key, { rows, host });
  // Copies: callers may change what they get without touching what is kept here.
  return { rows: rows.map((r) => ({ ...r })), host };
}

/** One page: a `records` workflow whose execution timeout bounds the wait for an orchestrator. */
async function readPage(
  client: Client,
  c: { tag: string; campaignDir: string; taskQueue: string; timeoutSec: number; from: number; pageRows?: number },
): Promise<RecordsPage> {
  const handle = await client.workflow.start<typeof records>(RECORDS_WORKFLOW, {
    workflowId: `records-${c.tag}-${randomUUID().slice(0, 8)}`,
    taskQueue: c.taskQueue,
    args: [{ campaignDir: c.campaignDir, from: c.from, limit: c.pageRows }],
    workflowExecutionTimeout: `${c.timeoutSec} seconds`,
    staticSummary: `Nightlab records of campaign ${c.tag}, from row ${c.from}`,
  });
  return handle.result();
}

/** Why the records could not be read, and where they live (the host of the worker that last ran the campaign). */
async function unreachableError(
  client: Client,
  c: { tag: string; campaignDir: string; taskQueue: string; timeoutSec: number },
  e: WorkflowFailedError,
): Promise<RecordsUnreachable> {
  const where = await orchestratorOf(client, c.tag).catch(() => null);
  const place = `${c.campaignDir} on ${where ? `the orchestrator's host ${where}` : "the orchestrator's host"}`;
  const head = `records of campaign ${c.tag} live in ${place} and cannot be read from here`;
  if (e.cause instanceof TimeoutFailure) {
    const why =
      `no orchestrator worker on task queue ${c.taskQueue} answered within ${c.timeoutSec} s ` +
      `(none runs, or it is older than this client and has no \`${RECORDS_WORKFLOW}\` workflow)`;
    const fix = `start its orchestrator worker (\`nightlab worker\`) there, or raise ${RECORDS_TIMEOUT_ENV} (seconds)`;
    return new RecordsUnreachable(`${head}: ${why}; ${fix}`, c.campaignDir);
  }
  const cause = e.cause instanceof ActivityFailure ? e.cause.cause : e.cause;
  return new RecordsUnreachable(`${head}: ${cause?.message ?? e.message}`, c.campaignDir);
}

/** The host in the identity (`pid@host`) of the worker that last completed a workflow task of the campaign. */
async function orchestratorOf(client: Client, tag: string): Promise<string | null> {
  const res = await client.workflowService.getWorkflowExecutionHistoryReverse({
    namespace: client.options.namespace,
    execution: { workflowId: campaignWorkflowId(tag) },
    maximumPageSize: 100,
  });
  for (const event of res.history?.events ?? []) {
    const identity = event.workflowTaskCompletedEventAttributes?.identity;
    if (identity) return identity.replace(/^\d+@/, '');
  }
  return null;
}
