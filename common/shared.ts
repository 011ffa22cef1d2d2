// Names and types shared by the workflow, the workers, the CLI and the tests.
// One name for one thing: these strings are what people see in the Temporal Web UI.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { CampaignConfig } from './config';
import type { Curve, ProgressSpec } from './curves';
import type { EarlyStopSettings } from './early-stop';
import type { MoveKind, SettingChange } from './search';

export const ORCHESTRATOR_TASK_QUEUE = 'nightlab-orchestrator';
export const GPU_TASK_QUEUE = 'nightlab-gpu';
export const CAMPAIGN_WORKFLOW = 'campaign';

export const DEFAULT_ADDRESS = '127.0.0.1:7233';
export const DEFAULT_NAMESPACE = 'default';

/** Search attributes Nightlab upserts, typed for the SDK; `nightlab server` registers them by name. */
export const SA = {
  tag: defineSearchAttributeKey('NightlabTag', SearchAttributeType.KEYWORD),
  state: defineSearchAttributeKey('NightlabStatus', SearchAttributeType.KEYWORD),
  experiments: defineSearchAttributeKey('NightlabExperiments', SearchAttributeType.INT),
  kept: defineSearchAttributeKey('NightlabKept', SearchAttributeType.INT),
  best: defineSearchAttributeKey('NightlabBestMetric', SearchAttributeType.DOUBLE),
  cost: defineSearchAttributeKey('NightlabCostUsd', SearchAttributeType.DOUBLE),
} as const;

/** The same attributes as the server's registration wants them: name -> Temporal type name. */
const TYPE_NAMES: Record<string, string> = { KEYWORD: 'Keyword', INT: 'Int', DOUBLE: 'Double' };
export const SEARCH_ATTRIBUTES: Record<string, string> = Object.fromEntries(
  Object.values(SA).map((k) => [k.name, TYPE_NAMES[k.type]]),
);

export function campaignWorkflowId(tag: string): string {
  return `campaign-${tag}`;
}

/** Ref under which experiment n's commit stays reachable forever, kept or not. */
export function experimentRef(tag: string, n: number): string {
  return `refs/nightlab/${tag}/${n}`;
}

export type CampaignState = 'running' | 'paused' | 'completed' | 'stopped' | 'failed';

/** The states a campaign does not come back from: no controls, no live runs. */
export const ENDED_STATES: readonly CampaignState[] = ['completed', 'stopped', 'failed'];
export function isEnded(state: string): boolean {
  return (ENDED_STATES as readonly string[]).includes(state);
}

/** What the results table says of an experiment (autoresearch's three words). */
export type Decision = 'keep' | 'discard' | 'crash';

/** How a run ended, finer than keep/discard/crash; the reason is kept beside it. */
/** How a run ended; `stopped`: stopped early, losing to the best's curves (a discard, never a crash). */
export type RunOutcome = 'ok' | 'crash' | 'timeout' | 'oom' | 'no-metric' | 'cancelled' | 'stopped';

/**
 * The GPU activity: one run of a commit on a slot (training, then the evaluation). Histories recorded
 * before the vocabulary's rename name it `runExperiment`: GPU workers register both names, and a
 * campaign schedules `run` from the `activity-names` patch on.
 */
export const RUN_ACTIVITY = 'run';
export const OLD_RUN_ACTIVITY = 'runExperiment';
/** Every activity type that is a run (to find runs in a history or among pending activities). */
export const RUN_ACTIVITY_NAMES: readonly string[] = [RUN_ACTIVITY, OLD_RUN_ACTIVITY];
/** What a GPU worker registers: the run under each of its names. */
export type RunActivities = Record<RunActivityName, (req: RunRequest) => Promise<RunResult>>;
type RunActivityName = typeof RUN_ACTIVITY | typeof OLD_RUN_ACTIVITY;

/** What the GPU worker's heartbeat carries; workers before the experiment and run were added send neither. */
export interface RunHeartbeat {
  experiment?: number;
  run?: number;
  elapsedSec?: number;
  timeoutSec?: number;
  lastLine?: string;
  slot?: string;
  host?: string;
}

/** Where a forked campaign comes from: the parent campaign, the experiment whose commit is its base, its records. */
export interface ForkOf {
  tag: string;
  experiment: number;
  campaignDir: string;
}

/** What the campaign asks a proposer for: experiment n's attempt, on top of `parentSha` (or a fix of a crash). */
export interface ProposeArgs {
  tag: string;
  experiment: number;
  attempt: number;
  repo: string;
  campaignDir: string;
  config: CampaignConfig;
  parentSha: string;
  fix: { sha: string; experiment: number } | null;
  notes: string[];
  instructionsOverride: string | null;
  /** A forked campaign's parent: its archive is part of this one's. */
  forkOf?: ForkOf;
}

export interface RunRequest {
  tag: string;
  experiment: number;
  /** Run index within the experiment (repeated runs use other seeds); names the log. */
  run: number;
  /** Where the GPU worker fetches the candidate from: a path or a git URL. */
  remote: string;
  ref: string;
  sha: string;
  command: string;
  env: Record<string, string>;
  timeoutSec: number;
  metric: MetricSpec;
  memoryKey?: string;
  /** Files verified by content hash before and after the run (config `locked`). */
  locked?: string[];
  /** auto (default): bubblewrap when it works, else a warning; required: no sandbox is a crash; off. */
  sandbox?: SandboxMode;
  /** The locked evaluation run after a training run that exits 0. */
  evaluate?: EvaluateSpec;
  /** The campaign's base commit: a candidate may differ from it only in `editable` files. */
  base?: string;
  editable?: string[];
  /** Object ids of the locked files and held-out paths at the base commit, taken at `start`. */
  guard?: Record<string, string>;
  /** Ignored paths of the workspace kept between runs, read-only inside the sandbox (run.persist). */
  persist?: string[];
  /** Makes the persisted paths, on the base commit, where one is missing (run.setup). */
  setup?: string;
  /** Host paths a run may read besides the system and its tools (run.readOnly; `~` is HOME). */
  readOnly?: string[];
  /** Cap of each log, in bytes (run.maxLogMb). */
  maxLogBytes?: number;
  /** A suspect gain's confirmation: compile caches start empty, so no other run's leftovers count. */
  fresh?: boolean;
  /** A run at the promoted fidelity (config `promote`): its log and its record are named apart. */
  fidelity?: 'promote';
  /** How its progress lines are read into a learning curve (config `progress`). */
  progress?: ProgressSpec;
  /** Stop it early when its curve, extrapolated, clearly ends worse than these of the best's runs (a first run only). */
  earlyStop?: Omit<EarlyStopSettings, 'direction' | 'name'> & { reference: Curve[] };
}

export type SandboxMode = 'auto' | 'required' | 'off';

export interface EvaluateSpec {
  /** The locked scorer. With `model`, it runs apart from any proposer code, on the base commit's files. */
  command: string;
  /** Serves the candidate's model to the scorer over fd 3 (proposer code, run in a sandbox of its own). */
  model?: string;
  /** The evaluator's figure that decides, instead of the trainer's printed metric. */
  metric?: string;
  /** A held-out figure: recorded for people, never given to the proposer. */
  heldOut?: string;
  /** Paths (relative to the repository) that only the evaluation may read. */
  heldOutPaths?: string[];
  timeoutSec?: number;
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
  /** The evaluator's held-out figure (config evaluate.heldOut); never given to the proposer. */
  heldOut?: number | null;
  /** How the run was isolated: `sandbox`, or `none` (no sandbox could run: an alarm for people) or `off` (config). */
  isolation?: 'sandbox' | 'none' | 'off';
  /** Its learning curve (thinned to CURVE_POINTS), when it printed progress lines. */
  curve?: Curve;
}

/** One proposal, as it crosses history: a commit and a line, never file contents. */
export type Proposal =
  | {
      kind: 'candidate';
      sha: string;
      ref: string;
      description: string;
      costUsd: number;
      usage?: TokenUsage;
      /** A candidate the engine made itself (config `search`), not the proposer. */
      move?: MoveFacts;
    }
  // `flagged`: a duplicate sent back to the proposer, which says nothing of the proposer's health.
  | { kind: 'rejected'; reason: string; description: string; costUsd: number; usage?: TokenUsage; flagged?: true }
  // Files an earlier experiment (`of`) trained: recorded with its result, no run.
  | {
      kind: 'duplicate';
      /** The experiment whose result it reuses (-1: a fork's parent's, named in `evidence`). */
      of: number;
      status: Decision;
      description: string;
      costUsd: number;
      usage?: TokenUsage;
      evidence?: string;
    };

export interface TokenUsage {
  inputTokens: number;
  cacheWriteTokens: number;
  cacheReadTokens: number;
  outputTokens: number;
}

/** One run of a commit, as the ledger keeps it (an experiment may have several). */
export interface RunRecord extends Omit<RunResult, 'exitCode' | 'logTail'> {
  tag: string;
  experiment: number;
  run: number;
  commit: string;
  /** A run at the promoted fidelity (config `promote`), apart from the screening runs. */
  fidelity?: 'promote';
}

/**
 * A keep re-run at the promoted fidelity beside the best it replaced (config `promote`): whether the
 * idea transfers, with both scales' figures; `reverted`: the commit that took it back off the branch.
 */
export interface PromotionRecord {
  tag: string;
  experiment: number;
  commit: string;
  parent: string;
  /** Screening figures: the keep's and the best's it replaced. */
  screen: { metric: number; parent: number };
  /** Promoted figures (means over `runs` runs each); null: it crashed there. */
  promoted: { metric: number | null; parent: number | null; runs: number };
  /** null: no verdict (neither side gave a figure at the promoted fidelity). */
  transfers: boolean | null;
  evidence: string;
  reverted: string | null;
  finishedAt: string;
}

/** One row of the ledger: every field Nightlab knows of one experiment. */
export interface ExperimentRecord {
  tag: string;
  experiment: number;
  commit: string;
  parent: string;
  status: Decision;
  outcome: RunOutcome;
  metric: number | null;
  bestBefore: number | null;
  delta: number | null;
  memoryGb: number;
  description: string;
  reason: string;
  /** How the decision was reached: the figures compared, the margin, the runs. */
  evidence: string;
  /** Runs of this experiment's candidate (first run plus confirmations). */
  runs: number;
  seconds: number;
  logPath: string;
  host: string;
  slot: string;
  costUsd: number;
  fixOf: number | null;
  finishedAt: string;
  /** Mean held-out figure over the experiment's runs that have one; never given to the proposer. */
  heldOut?: number | null;
  /** Why the first run's gain looked too good to be true (for people; confirmed on clean caches). */
  suspect?: string;
  /** What the change is, read from git when it was recorded (the idea archive, lib/ideas.ts). */
  idea?: IdeaFacts;
  /** A move of the engine's own (config `search`): which, of which experiments, and why. */
  move?: MoveFacts;
  /** A proposal whose files an earlier experiment had already trained: its result, reused (no run). */
  duplicateOf?: number;
}

/** An experiment's change as the archive keeps it: files, settings old -> new, normalised diff hash, trees. */
export interface IdeaFacts {
  tree: string;
  parentTree: string;
  files: string[];
  settings: SettingChange[];
  diffHash: string;
  touches: string[];
}

/** A candidate the engine made itself: combine, ablate or revisit, of the experiments named. */
export interface MoveFacts {
  kind: MoveKind;
  of: number[];
  evidence: string;
}

/** Runs of one commit, summarised (Welford): count, mean, and squared deviations from the mean. */
export interface Group {
  n: number;
  mean: number;
  m2: number;
}

/** Pooled within-group squares of every closed group of runs: the campaign's noise estimate. */
export interface Pool {
  ss: number;
  dof: number;
}

/** The best commit and its runs, re-run to sharpen its mean. */
export interface BestState {
  sha: string;
  experiment: number;
  group: Group;
  /** Next run index (and seed) for the best's experiment. */
  nextRun: number;
  /** Re-runs of the best in flight. */
  pending: number;
}

/** The campaign's live noise state, shared by every experiment in flight (judging reads and writes it). */
export interface NoiseState {
  best: BestState;
  pool: Pool;
}

/** A crashed experiment the next proposals try to fix, while attempts are left. */
export interface CrashFix {
  crashedSha: string;
  experiment: number;
  attemptsLeft: number;
}

/** Compact state carried across continue-as-new (a few hundred bytes plus the config). */
export interface CampaignCarry {
  next: number;
  experiments: number;
  kept: number;
  crashes: number;
  /** The best commit and its runs; null until the baseline has run. */
  best: BestState | null;
  pool: Pool;
  baselineMetric: number | null;
  fix: CrashFix | null;
  rejectedInARow: number;
  costUsd: number;
  startedAtMs: number;
  paused: boolean;
  stopRequested: boolean;
  statusMessage: string;
  notes: string[];
  /** The largest gain a keep has brought (a gain far beyond it is suspect); absent in older carries. */
  largestGain?: number;
  /** Learning curves of the best's runs, the early stop's reference (config `progress`); absent in older carries. */
  bestCurves?: { sha: string; curves: Curve[] };
  /**
   * The early stop's audit of the best's curves (they are the best's own output): first runs stopped in a
   * row on this best, and whether stopping is off for it (a run let through to the end did not lose).
   */
  earlyStops?: { sha: string; inARow: number; off: boolean };
  /** Promoted figures by commit (config `promote`; null: it crashed there); absent in older carries. */
  promoted?: Record<string, number | null>;
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
  /** Object ids of the locked files and held-out paths at baseSha, taken at `start` (see RunRequest.guard). */
  guard?: Record<string, string>;
  /** A fork (`nightlab fork`): the campaign and experiment it starts from; its archive starts with theirs. */
  forkOf?: ForkOf;
}

export interface CampaignSnapshot {
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
  /** The first experiment in flight that is training or being recorded, if any. */
  current: { experiment: number; phase: string; description: string } | null;
  /** Every experiment in flight: proposing, queued for a GPU slot, training or confirming. */
  inFlight: { experiment: number; phase: string; description: string }[];
  /** Run-to-run noise (standard deviation) estimated from repeated runs; null before any. */
  noiseSigma: number | null;
  parallelism: number;
  campaignDir: string;
  branch: string;
}
