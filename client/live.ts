// What the CLI views (report, status --watch, dashboard) read from Temporal beyond the status
// query: the campaign's start input (its repository, config and records directory) and the
// training run in flight with its heartbeat (elapsed time against its timeout).
import type { Client, WorkflowExecutionDescription } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import {
  campaignWorkflowId,
  RUN_ACTIVITY_NAMES,
  type CampaignInput,
  type CampaignSnapshot,
  type RunHeartbeat,
  type RunRequest,
} from '../common/shared';

function fromPayload<T>(client: Client, payload: Payload | null | undefined): T | undefined {
  if (!payload) return undefined;
  const converter = client.options?.loadedDataConverter?.payloadConverter ?? defaultPayloadConverter;
  return converter.fromPayload<T>(payload);
}

/**
 * The input the campaign's current run started with (repo, config, campaignDir...), read from the
 * first event of its history. Continue-as-new carries the same input, so the latest run has it.
 */
export async function campaignInput(client: Client, tag: string): Promise<CampaignInput> {
  const res = await client.workflowService.getWorkflowExecutionHistory({
    namespace: client.options.namespace,
    execution: { workflowId: campaignWorkflowId(tag) },
    maximumPageSize: 1,
  });
  const started = res.history?.events?.[0]?.workflowExecutionStartedEventAttributes;
  const input = fromPayload<CampaignInput>(client, started?.input?.payloads?.[0]);
  if (!input?.repo) throw new Error(`campaign ${tag}: its workflow history has no start input`);
  return input;
}

/** A run in flight, from the GPU activity's heartbeat details (gpu-worker/run.ts). */
export interface RunningRun {
  /** The experiment and run index: from the heartbeat, else from the run's request in the history. */
  experiment?: number;
  run?: number;
  /** Seconds since the run started: the last heartbeat's figure plus the time since it arrived. */
  elapsedSec: number;
  timeoutSec: number | null;
  lastLine: string;
  slot: string;
  host: string;
  attempt: number;
  /** Seconds since the server last heard from the worker (null before any heartbeat). */
  sinceHeartbeatSec: number | null;
  state: string;
}

export async function runningRuns(client: Client, tag: string, now = Date.now()): Promise<RunningRun[]> {
  const desc = await client.workflow.getHandle(campaignWorkflowId(tag)).describe();
  const isRun = (a: PendingActivity) => RUN_ACTIVITY_NAMES.includes(a.activityType?.name ?? '');
  const pending = (desc.raw.pendingActivities ?? []).filter(isRun);
  const beats = pending.map((a) => {
    try {
      return fromPayload<RunHeartbeat>(client, a.heartbeatDetails?.payloads?.[0]);
    } catch {
      return undefined;
    }
  });
  // A run that has not beaten yet, or an older worker's, names no experiment: its request does.
  const unnamed = pending.flatMap((a, i) => (typeof beats[i]?.experiment === 'number' ? [] : [a.activityId ?? '']));
  const requests = unnamed.length
    ? await scheduledRequests(client, tag, desc.runId, new Set(unnamed)).catch(() => new Map<string, RunName>())
    : new Map<string, RunName>();
  return pending.map((a, i) => {
    const details = beats[i];
    const named = typeof details?.experiment === 'number' ? details : requests.get(a.activityId ?? '');
    const beatMs = msOf(a.lastHeartbeatTime);
    const startedMs = msOf(a.lastStartedTime);
    const sinceBeat = beatMs ? Math.max(0, (now - beatMs) / 1000) : null;
    // Heartbeats reach the server throttled (up to tens of seconds apart), so add the time since.
    let elapsed =
      details?.elapsedSec !== undefined && sinceBeat !== null
        ? details.elapsedSec + sinceBeat
        : startedMs
          ? (now - startedMs) / 1000
          : 0;
    const timeoutSec = details?.timeoutSec ?? null;
    if (timeoutSec !== null) elapsed = Math.min(elapsed, timeoutSec);
    const state = proto.temporal.api.enums.v1.PendingActivityState[a.state ?? 0] ?? 'scheduled';
    return {
      ...(typeof named?.experiment === 'number' ? { experiment: named.experiment } : {}),
      ...(typeof named?.run === 'number' ? { run: named.run } : {}),
      elapsedSec: Math.max(0, elapsed),
      timeoutSec,
      lastLine: details?.lastLine ?? '',
      slot: details?.slot ?? '',
      host: details?.host ?? '',
      attempt: a.attempt ?? 1,
      sinceHeartbeatSec: sinceBeat,
      state: state.replace(/^PENDING_ACTIVITY_STATE_/, '').toLowerCase(),
    };
  });
}

type PendingActivity = NonNullable<WorkflowExecutionDescription['raw']['pendingActivities']>[number];
/** Which run of which experiment an activity is. */
type RunName = Pick<RunRequest, 'experiment' | 'run'>;

/** How many history events one page of the backwards search reads; the runs in flight were scheduled lately. */
const HISTORY_PAGE = 200;

/**
 * The experiment and run of pending runs (by activity id), from the requests they were scheduled
 * with: the history read from its end, until every one is found.
 */
async function scheduledRequests(client: Client, tag: string, runId: string, ids: Set<string>) {
  const found = new Map<string, RunName>();
  let nextPageToken: Uint8Array | undefined;
  do {
    const res = await client.workflowService.getWorkflowExecutionHistoryReverse({
      namespace: client.options.namespace,
      execution: { workflowId: campaignWorkflowId(tag), runId },
      maximumPageSize: HISTORY_PAGE,
      nextPageToken,
    });
    for (const e of res.history?.events ?? []) {
      const a = e.activityTaskScheduledEventAttributes;
      if (!a?.activityId || !ids.has(a.activityId)) continue;
      const req = fromPayload<RunRequest>(client, a.input?.payloads?.[0]);
      if (typeof req?.experiment === 'number') found.set(a.activityId, { experiment: req.experiment, run: req.run });
    }
    nextPageToken = res.nextPageToken?.length ? res.nextPageToken : undefined;
  } while (nextPageToken && found.size < ids.size);
  return found;
}

type InFlight = CampaignSnapshot['inFlight'][number];
/** An experiment in flight and its run; either may be missing (a judging experiment, a best's re-run). */
export interface RunPair {
  flight: InFlight | null;
  run: RunningRun | null;
}
/** Phases whose experiment holds a slot (older workflows said 'training' and 'confirming'). */
const TRAINING = ['train', 'confirm', 'training', 'confirming'];

/** The experiments in flight: `inFlight` where the status has it (parallel campaigns), else `current`. */
export function inFlightOf(s: CampaignSnapshot): InFlight[] {
  const list = (s as { inFlight?: InFlight[] }).inFlight;
  if (Array.isArray(list)) return list;
  return s.current ? [s.current] : [];
}

/**
 * Each experiment in flight with its run (none while it holds no slot), then the runs no
 * experiment in flight owns: the best's re-runs, more confirmation seeds. Runs are paired by the
 * experiment their heartbeat (or request) names; a lone run that names none goes to the one
 * experiment training. `status --watch` and the dashboard draw from this.
 */
export function pairRuns(inFlight: InFlight[], runs: RunningRun[]): RunPair[] {
  const training = (f: InFlight) => TRAINING.includes(f.phase);
  const lone = runs.length === 1 && runs[0].experiment === undefined && inFlight.filter(training).length === 1;
  const guess = lone ? runs[0] : null;
  const shown = new Set<RunningRun>();
  const pairs = inFlight.map((flight) => {
    const own = runs.find((r) => r.experiment === flight.experiment && !shown.has(r));
    const run = training(flight) ? (own ?? guess) : null;
    if (run) shown.add(run);
    return { flight, run };
  });
  return [...pairs, ...runs.filter((r) => !shown.has(r)).map((run) => ({ flight: null, run }))];
}

/** A protobuf timestamp as milliseconds (undefined when absent). */
function msOf(ts: { seconds?: number | Long | null; nanos?: number | null } | null | undefined): number | undefined {
  if (!ts) return undefined;
  return Number(ts.seconds ?? 0) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6);
}
