// What the CLI views (report, status --watch, dashboard) read from Temporal beyond the status
// query: the campaign's start input (its repository, config and records directory) and the
// training run in flight with its heartbeat (elapsed time against its timeout).
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { optionalTsToMs } from '@temporalio/common/lib/time';
import proto from '@temporalio/proto';
import { campaignWorkflowId, type CampaignInput, type CampaignSnapshot } from '../common/shared';

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

/** A training run in flight, from the GPU activity's heartbeat details (gpu-worker/run.ts). */
export interface RunningRun {
  /** The experiment and run index, where the worker's heartbeat names them (else undefined). */
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

interface HeartbeatDetails { experiment?: number; run?: number; elapsedSec?: number; timeoutSec?: number; lastLine?: string; slot?: string; host?: string }

const TRAIN_ACTIVITY = 'runExperiment';

export async function runningRuns(client: Client, tag: string, now = Date.now()): Promise<RunningRun[]> {
  const desc = await client.workflow.getHandle(campaignWorkflowId(tag)).describe();
  const runs: RunningRun[] = [];
  for (const a of desc.raw.pendingActivities ?? []) {
    if (a.activityType?.name !== TRAIN_ACTIVITY) continue;
    let details: HeartbeatDetails | undefined;
    try {
      details = fromPayload<HeartbeatDetails>(client, a.heartbeatDetails?.payloads?.[0]);
    } catch {
      details = undefined;
    }
    const beatMs = optionalTsToMs(a.lastHeartbeatTime);
    const startedMs = optionalTsToMs(a.lastStartedTime);
    const sinceBeat = beatMs ? Math.max(0, (now - beatMs) / 1000) : null;
    // Heartbeats reach the server throttled (up to tens of seconds apart), so add the time since.
    let elapsed = details?.elapsedSec !== undefined && sinceBeat !== null ? details.elapsedSec + sinceBeat : startedMs ? (now - startedMs) / 1000 : 0;
    const timeoutSec = details?.timeoutSec ?? null;
    if (timeoutSec !== null) elapsed = Math.min(elapsed, timeoutSec);
    runs.push({
      ...(typeof details?.experiment === 'number' ? { experiment: details.experiment } : {}),
      ...(typeof details?.run === 'number' ? { run: details.run } : {}),
      elapsedSec: Math.max(0, elapsed),
      timeoutSec,
      lastLine: details?.lastLine ?? '',
      slot: details?.slot ?? '',
      host: details?.host ?? '',
      attempt: a.attempt ?? 1,
      sinceHeartbeatSec: sinceBeat,
      state: (proto.temporal.api.enums.v1.PendingActivityState[a.state ?? 0] ?? 'scheduled').replace(/^PENDING_ACTIVITY_STATE_/, '').toLowerCase(),
    });
  }
  return runs;
}

type InFlight = CampaignSnapshot['inFlight'][number];
/** Phases whose experiment holds a slot (older workflows said 'training' and 'confirming'). */
const TRAINING = ['train', 'confirm', 'training', 'confirming'];

/** The experiments in flight: `inFlight` where the status has it (parallel campaigns), else `current`. */
export function inFlightOf(s: CampaignSnapshot): InFlight[] {
  const list = (s as { inFlight?: InFlight[] }).inFlight;
  if (Array.isArray(list)) return list;
  return s.current ? [s.current] : [];
}

/**
 * Each experiment in flight with its own run (none while it holds no slot), then the runs no
 * experiment in flight owns: the best's re-runs, more confirmation seeds. A run whose heartbeat
 * names no experiment (a run that has not beaten yet) goes to the one training experiment.
 * `nightlab watch` and the dashboard draw from this.
 */
export function pairRuns(inFlight: InFlight[], runs: RunningRun[]): { flight: InFlight | null; run: RunningRun | null }[] {
  const training = (f: InFlight) => TRAINING.includes(f.phase);
  const shown = new Set<RunningRun>();
  const pairs = inFlight.map((flight) => {
    const run = runs.find((r) => r.experiment === flight.experiment && !shown.has(r))
      ?? (runs.length === 1 && runs[0].experiment === undefined && training(flight) && inFlight.filter(training).length <= 1 ? runs[0] : null);
    if (run) shown.add(run);
    return { flight, run };
  });
  return [...pairs, ...runs.filter((r) => !shown.has(r)).map((run) => ({ flight: null, run }))];
}
