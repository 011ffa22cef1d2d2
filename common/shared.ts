// Names and types shared by the workflow, the workers, the CLI and the tests.
// One name for one thing: these strings are what people see in the Temporal Web UI.
import type { CampaignConfig } from './config';

export const ORCHESTRATOR_TASK_QUEUE = 'nightlab-orchestrator';
export const GPU_TASK_QUEUE = 'nightlab-gpu';
export const CAMPAIGN_WORKFLOW = 'campaign';

export const DEFAULT_ADDRESS = '127.0.0.1:7233';
export const DEFAULT_NAMESPACE = 'default';
export const DEFAULT_UI_PORT = 8233;

/** Search attributes Nightlab upserts; registered on the server by `nightlab server`. */
export const SEARCH_ATTRIBUTES = {
  NightlabTag: 'Keyword',
  NightlabStatus: 'Keyword',
  NightlabExperiments: 'Int',
  NightlabKept: 'Int',
  NightlabBestMetric: 'Double',
  NightlabCostUsd: 'Double',
} as const;

export function campaignWorkflowId(tag: string): string {
  return `campaign-${tag}`;
}

/** Ref under which experiment n's commit stays reachable forever, kept or not. */
export function experimentRef(tag: string, n: number): string {
  return `refs/nightlab/${tag}/${n}`;
}

export type CampaignState = 'running' | 'paused' | 'completed' | 'stopped' | 'failed';

/** What the results table says of an experiment (autoresearch's three words). */
export type ExperimentStatus = 'keep' | 'discard' | 'crash';

/** How a run ended, finer than keep/discard/crash; the reason is kept beside it. */
export type RunOutcome = 'ok' | 'crash' | 'timeout' | 'oom' | 'no-metric' | 'cancelled';

export interface RunRequest {
  tag: string;
  experiment: number;
  /** Where the GPU worker fetches the candidate from: a path or a git URL. */
  remote: string;
  ref: string;
  sha: string;
  command: string;
  env: Record<string, string>;
  timeoutSec: number;
  metric: MetricSpec;
  memoryKey?: string;
}

export interface MetricSpec {
  name: string;
  /** Regex with one capture group; default reads `name: <number>` from the summary block. */
  pattern?: string;
  direction: 'lower' | 'higher';
}

export interface RunResult {
  outcome: RunOutcome;
  exitCode: number | null;
  metric: number | null;
  memoryMb: number | null;
  seconds: number;
  logPath: string;
  host: string;
  slot: string;
  /** Last lines of the log, bounded so history stays small. */
  logTail: string;
  reason: string;
}

/** One proposal, as it crosses history: a commit and a line, never file contents. */
export type Proposal =
  | { kind: 'candidate'; sha: string; ref: string; description: string; costUsd: number; usage?: TokenUsage }
  | { kind: 'rejected'; reason: string; description: string; costUsd: number; usage?: TokenUsage };

export interface TokenUsage {
  inputTokens: number;
  cacheWriteTokens: number;
  cacheReadTokens: number;
  outputTokens: number;
}

/** One row of the ledger: every field Nightlab knows of one experiment. */
export interface ExperimentRecord {
  tag: string;
  experiment: number;
  commit: string;
  parent: string;
  status: ExperimentStatus;
  outcome: RunOutcome | 'rejected';
  metric: number | null;
  bestBefore: number | null;
  delta: number | null;
  memoryGb: number;
  description: string;
  reason: string;
  seconds: number;
  logPath: string;
  host: string;
  slot: string;
  costUsd: number;
  fixOf: number | null;
  finishedAt: string;
}

/** Compact state carried across continue-as-new (a few hundred bytes plus the config). */
export interface CampaignCarry {
  next: number;
  experiments: number;
  kept: number;
  crashes: number;
  best: { sha: string; metric: number; experiment: number } | null;
  baselineMetric: number | null;
  fix: { crashedSha: string; experiment: number; attemptsLeft: number } | null;
  /** Proposal attempts for experiment `next`; part of the proposal's idempotency key. */
  attempt: number;
  rejectedInARow: number;
  costUsd: number;
  startedAtMs: number;
  paused: boolean;
  stopRequested: boolean;
  statusMessage: string;
  notes: string[];
}

export interface CampaignInput {
  tag: string;
  config: CampaignConfig;
  /** The repository the campaign branch and experiment refs live in. */
  repo: string;
  branch: string;
  baseSha: string;
  campaignDir: string;
  carry?: CampaignCarry;
  /** The GPU task queue to train on (default nightlab-gpu): separate fleets, or isolated tests. */
  gpuTaskQueue?: string;
  /** Instructions given by `nightlab steer --instructions`, replacing the instructions file. */
  instructionsOverride?: string;
}

export interface CampaignStatus {
  tag: string;
  state: CampaignState;
  message: string;
  experiments: number;
  kept: number;
  crashes: number;
  bestMetric: number | null;
  bestCommit: string | null;
  baselineMetric: number | null;
  metricName: string;
  direction: 'lower' | 'higher';
  costUsd: number;
  budget: { maxExperiments: number | null; maxHours: number | null; maxCostUsd: number | null };
  startedAt: string;
  current: { experiment: number; phase: string; description: string } | null;
  campaignDir: string;
  branch: string;
}
