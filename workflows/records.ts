// What the campaign writes down, built from plain facts: the ledger's rows for an experiment and its
// runs, and the one-line texts of summaries and messages. Pure: the same facts give the same record.
import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';
import type { ExperimentRecord, MoveFacts, RunRecord, RunResult } from '../common/shared';
import type { OrchestratorActivities } from '../activities';
import { runFailed, type Verdict } from './decisions';
import type { RunLite } from './judging';

/** What `recordExperiment` is given: the experiment's row, its runs' rows, its log's last lines. */
export type RecordArgs = Parameters<OrchestratorActivities['recordExperiment']>[0];

/** One experiment as it ended: its commit, its runs (and the best's re-runs it caused), its judgement. */
export interface ExperimentFacts {
  n: number;
  /** Its commit (rebased onto the best it ran on), and what its proposals cost. */
  candidate: { sha: string; parent: string; description: string; costUsd: number; move?: MoveFacts };
  runs: RunResult[];
  judgement: Verdict;
  /** The best's mean it was compared with (null for the baseline): its delta is from this. */
  before: number | null;
  fixOf: number | null;
  /** Re-runs of the best made while this experiment was judged (the config's `bestRuns` is their target count). */
  bestReRuns: RunRecord[];
}

/** The baseline as an experiment: number 0, on the base commit, compared with nothing. */
export function baselineFacts(
  sha: string,
  runs: RunResult[],
  judgement: ExperimentFacts['judgement'],
): ExperimentFacts {
  const candidate = { sha, parent: sha, description: 'baseline', costUsd: 0 };
  return { n: 0, candidate, runs, judgement, before: null, fixOf: null, bestReRuns: [] };
}

/** Where the experiment is recorded, and the campaign's figures at the time. */
export interface RecordPlace {
  tag: string;
  campaignDir: string;
  repo: string;
  metricName: string;
  nowMs: number;
}

/** The run of a commit as the ledger keeps it. */
export function runRecord(r: {
  tag: string;
  experiment: number;
  run: number;
  commit: string;
  result: RunResult;
}): RunRecord {
  const x = r.result;
  return {
    tag: r.tag,
    experiment: r.experiment,
    run: r.run,
    commit: r.commit,
    outcome: x.outcome,
    metric: x.metric,
    memoryMb: x.memoryMb,
    seconds: x.seconds,
    logPath: x.logPath,
    host: x.host,
    slot: x.slot,
    reason: x.reason,
    ...(x.heldOut !== undefined ? { heldOut: x.heldOut } : {}),
    ...(x.isolation ? { isolation: x.isolation } : {}),
    ...(x.curve ? { curve: x.curve } : {}),
  };
}

/** The record of an experiment: its row (decision, figures, evidence) and the rows of every run it made. */
export function experimentRecord(f: ExperimentFacts, at: RecordPlace): RecordArgs {
  const { n, runs, judgement: j, candidate: c } = f;
  const decision = j.kind;
  const metric = j.kind === 'crash' ? null : j.metric;
  const delta = metric === null || f.before === null ? null : metric - f.before;
  const main = runs.find(runFailed) ?? runs[0];
  const memory = Math.max(...runs.map((r) => r.memoryMb ?? 0));
  const row: ExperimentRecord = {
    tag: at.tag,
    experiment: n,
    commit: c.sha,
    parent: c.parent,
    status: decision,
    outcome: main.outcome,
    // After a keep the best is already this experiment: what it was compared with is metric - delta.
    metric,
    bestBefore: n === 0 ? null : metric !== null && delta !== null ? metric - delta : f.before,
    delta,
    memoryGb: Math.round((memory / 1024) * 10) / 10,
    description: c.description,
    reason: decision === 'crash' ? main.reason : j.evidence,
    evidence: j.evidence,
    runs: runs.length,
    seconds: Math.round(runs.reduce((a, r) => a + r.seconds, 0) * 10) / 10,
    logPath: main.logPath,
    host: main.host,
    slot: main.slot,
    costUsd: c.costUsd,
    fixOf: f.fixOf,
    finishedAt: new Date(at.nowMs).toISOString(),
    ...(j.suspect ? { suspect: j.suspect } : {}),
    ...(c.move ? { move: c.move } : {}),
  };
  // The held-out figure: the mean over this experiment's runs, for people only (never in the proposer's context).
  const heldOut = runs.map((r) => r.heldOut).filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  if (heldOut.length) row.heldOut = heldOut.reduce((a, b) => a + b, 0) / heldOut.length;
  const runRows = runs.map((result, run) => runRecord({ tag: at.tag, experiment: n, run, commit: c.sha, result }));
  return {
    campaignDir: at.campaignDir,
    repo: at.repo,
    record: row,
    metricName: at.metricName,
    logTail: main.logTail,
    runs: [...runRows, ...f.bestReRuns],
  };
}

/** The campaign's failure when the unmodified code does not run: there is nothing to judge against. */
export function baselineCrashed(run: RunResult): ApplicationFailure {
  const advice = 'Fix the target so the unmodified code runs, then start a new campaign.';
  const what = `The baseline run crashed (${run.outcome}): ${run.reason}. Its log: ${run.logPath}.`;
  return ApplicationFailure.nonRetryable(`${what} ${advice}`, 'BaselineCrashed');
}

/** A run every attempt of which failed (its worker lost again and again): a crash, still recorded. */
export function lostRun(err: unknown): RunResult {
  return {
    outcome: 'crash',
    exitCode: null,
    metric: null,
    memoryMb: null,
    seconds: 0,
    logPath: '',
    host: '',
    slot: '',
    logTail: '',
    reason: `run failed on every attempt: ${failureMessage(err)}`,
  };
}

/** A run as judging sees it: its figure, or why it has none. */
export function lite(r: RunResult): RunLite {
  return { metric: r.metric, failed: runFailed(r), reason: r.reason || `run ended: ${r.outcome}` };
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n > 1 ? 's' : ''}`;
}

export function oneLine(text: string, max = 120): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 3)}...` : line;
}

/** An activity's failure in one line: its cause's message, with room for advice (which key, which models). */
export function failureMessage(err: unknown): string {
  let e = err as Error & { cause?: unknown };
  if (e instanceof ActivityFailure && e.cause) e = e.cause as Error & { cause?: unknown };
  return oneLine(e?.message ?? String(err), 400);
}
