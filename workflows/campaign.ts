// The campaign: autoresearch's program.md loop as a durable workflow.
//
//   baseline first; then forever (until a budget, or a person, says stop):
//     propose an edit on top of the best commit  (or a fix of the last crash)
//     preflight it before any GPU time            (inside `propose`)
//     train it on the GPU task queue
//     evaluate: keep (branch advances) / discard / crash
//     record it: ledger, results.tsv, search attributes
//
// Deterministic code only: every effect is an activity keyed by tag + experiment number.
import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  continueAsNew,
  allHandlersFinished,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  log,
  setCurrentDetails,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { OrchestratorActivities } from '../activities';
import type { GpuActivities } from '../gpu-worker/run';
import { GPU_TASK_QUEUE, experimentRef } from '../common/shared';
import type { CampaignCarry, CampaignInput, CampaignStatus, ExperimentRecord, RunResult } from '../common/shared';
import { budgetExhausted, decide, initialCarry, nextFix } from './decisions';
import { pauseSignal, resumeSignal, statusQuery, steerUpdate, stopSignal } from './messages';

/** Continue-as-new well before Temporal's 10k-event warning. */
const HISTORY_EVENTS_LIMIT = 4000;
/** Consecutive rejected proposals before the campaign pauses and asks for a person. */
const MAX_REJECTED_IN_A_ROW = 5;
const MAX_NOTES = 20;
const MAX_STEER_CHARS = 16_000;

const SA = {
  tag: defineSearchAttributeKey('NightlabTag', SearchAttributeType.KEYWORD),
  status: defineSearchAttributeKey('NightlabStatus', SearchAttributeType.KEYWORD),
  experiments: defineSearchAttributeKey('NightlabExperiments', SearchAttributeType.INT),
  kept: defineSearchAttributeKey('NightlabKept', SearchAttributeType.INT),
  best: defineSearchAttributeKey('NightlabBestMetric', SearchAttributeType.DOUBLE),
  cost: defineSearchAttributeKey('NightlabCostUsd', SearchAttributeType.DOUBLE),
};

const cpu = proxyActivities<OrchestratorActivities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 10 },
});

export interface CampaignOptions {
  /** Continue-as-new after this many history events (tests use a small number). */
  historyEventsLimit?: number;
}

export async function campaign(input: CampaignInput & CampaignOptions): Promise<CampaignStatus> {
  const { config, tag } = input;
  const s: CampaignCarry = input.carry ?? initialCarry(Date.now());
  let current: CampaignStatus['current'] = null;
  let instructionsOverride = input.instructionsOverride;

  const gpu = proxyActivities<GpuActivities>({
    taskQueue: input.gpuTaskQueue ?? GPU_TASK_QUEUE,
    // The run's own limit plus room for checkout and fetch; a silent worker is noticed by heartbeat.
    startToCloseTimeout: `${Math.ceil(config.run.timeoutSec) + 300} seconds`,
    heartbeatTimeout: '60 seconds',
    retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 },
  });

  const status = (state: CampaignStatus['state'] = s.paused ? 'paused' : 'running'): CampaignStatus => ({
    tag,
    state,
    message: s.statusMessage,
    experiments: s.experiments,
    kept: s.kept,
    crashes: s.crashes,
    bestMetric: s.best?.metric ?? null,
    bestCommit: s.best?.sha ?? null,
    baselineMetric: s.baselineMetric,
    metricName: config.metric.name,
    direction: config.metric.direction,
    costUsd: s.costUsd,
    budget: { ...config.budget },
    startedAt: new Date(s.startedAtMs).toISOString(),
    current,
    campaignDir: input.campaignDir,
    branch: input.branch,
  });

  const publish = (state: CampaignStatus['state'] = s.paused ? 'paused' : 'running') => {
    upsertSearchAttributes([
      { key: SA.tag, value: tag },
      { key: SA.status, value: state },
      { key: SA.experiments, value: s.experiments },
      { key: SA.kept, value: s.kept },
      { key: SA.cost, value: Math.round(s.costUsd * 1e6) / 1e6 },
      ...(s.best ? [{ key: SA.best, value: s.best.metric }] : []),
    ]);
    const best = s.best ? `${config.metric.name} ${s.best.metric.toFixed(6)} (experiment ${s.best.experiment})` : 'no baseline yet';
    setCurrentDetails(`**${state}** — ${s.statusMessage}\n\n${s.experiments} experiments, ${s.kept} kept, best ${best}`);
  };

  setHandler(pauseSignal, () => {
    s.paused = true;
    s.statusMessage = 'paused by request';
    publish();
  });
  setHandler(resumeSignal, () => {
    s.paused = false;
    s.rejectedInARow = 0;
    s.statusMessage = 'resumed';
    publish();
  });
  setHandler(stopSignal, () => {
    s.stopRequested = true;
    s.statusMessage = 'stopping after the current experiment';
  });
  setHandler(statusQuery, () => status());
  setHandler(
    steerUpdate,
    (steer) => {
      if (steer.note) s.notes = [...s.notes, steer.note.trim()].slice(-MAX_NOTES);
      if (steer.instructions) instructionsOverride = steer.instructions;
      s.statusMessage = steer.note ? `steered: ${oneLine(steer.note)}` : 'instructions replaced';
      return { notes: s.notes.length };
    },
    {
      validator: (steer) => {
        if (!steer.note?.trim() && !steer.instructions?.trim()) throw new Error('give a non-empty --note or --instructions');
        if ((steer.note?.length ?? 0) + (steer.instructions?.length ?? 0) > MAX_STEER_CHARS) throw new Error(`steering text over ${MAX_STEER_CHARS} characters; shorten it`);
      },
    },
  );

  if (!input.carry) {
    s.statusMessage = 'preparing the campaign branch';
    publish();
    await cpu.prepareCampaign({ tag, repo: input.repo, branch: input.branch, baseSha: input.baseSha, campaignDir: input.campaignDir });
  }

  // 1. The unmodified baseline: experiment 0, the branch's starting commit.
  if (!s.best) {
    s.statusMessage = 'running the baseline';
    publish();
    const run = await train(0, input.baseSha, 'baseline');
    const decision = decide(run, null, config);
    await record(0, input.baseSha, input.baseSha, 'baseline', run, decision.status, null, decision.reason, null);
    if (decision.status === 'crash') {
      s.statusMessage = `baseline crashed: ${run.reason}`;
      publish('failed');
      throw ApplicationFailure.nonRetryable(`The baseline run crashed (${run.outcome}): ${run.reason}. Its log: ${run.logPath}. Fix the target so the unmodified code runs, then start a new campaign.`, 'BaselineCrashed');
    }
    s.best = { sha: input.baseSha, metric: run.metric!, experiment: 0 };
    s.baselineMetric = run.metric;
    s.next = 1;
    s.statusMessage = `baseline ${config.metric.name} ${run.metric}`;
    publish();
  }

  // 2. Experiments, until a budget or a person ends the campaign.
  for (;;) {
    const exhausted = budgetExhausted(s, config.budget, Date.now());
    if (exhausted) return finish('completed', exhausted);
    if (s.stopRequested) return finish('stopped', 'stopped by request');
    if (s.paused) {
      publish('paused');
      await condition(() => !s.paused || s.stopRequested);
      continue;
    }
    const info = workflowInfo();
    if (info.continueAsNewSuggested || info.historyLength > (input.historyEventsLimit ?? HISTORY_EVENTS_LIMIT)) {
      await condition(allHandlersFinished);
      return continueAsNew<typeof campaign>({ ...input, carry: s, instructionsOverride });
    }
    await experiment(s.next);
  }

  async function experiment(n: number): Promise<void> {
    const best = s.best!;
    const fix = s.fix;
    current = { experiment: n, phase: 'propose', description: fix ? `fix of experiment ${fix.experiment}` : '' };
    s.statusMessage = `experiment ${n}: proposing`;
    publish();
    let proposal;
    try {
      proposal = await cpu.propose.executeWithOptions({ summary: `experiment ${n}: propose${fix ? ` a fix of ${fix.experiment}` : ''} (attempt ${s.attempt})` }, [
        {
          tag,
          experiment: n,
          attempt: s.attempt,
          repo: input.repo,
          campaignDir: input.campaignDir,
          config,
          parentSha: best.sha,
          fix: fix ? { sha: fix.crashedSha, experiment: fix.experiment } : null,
          notes: s.notes,
          instructionsOverride: instructionsOverride ?? null,
        },
      ]);
    } catch (err) {
      // A proposer that cannot work without a person (bad key, bad config) pauses instead of burning experiments.
      s.paused = true;
      s.statusMessage = `paused: the proposer failed: ${failureMessage(err)}`;
      log.warn('proposer failed; campaign paused', { experiment: n, error: s.statusMessage });
      current = null;
      publish('paused');
      return;
    }
    s.costUsd += proposal.costUsd;
    s.attempt += 1;
    if (proposal.kind === 'rejected') {
      s.rejectedInARow += 1;
      s.statusMessage = `experiment ${n}: proposal rejected: ${proposal.reason}`;
      if (s.rejectedInARow >= MAX_REJECTED_IN_A_ROW) {
        s.paused = true;
        s.fix = null;
        s.statusMessage = `paused: ${s.rejectedInARow} proposals in a row were rejected (last: ${proposal.reason}); check the proposer, then resume`;
      }
      current = null;
      publish();
      return;
    }
    s.rejectedInARow = 0;
    current = { experiment: n, phase: 'train', description: proposal.description };
    s.statusMessage = `experiment ${n}: training — ${proposal.description}`;
    publish();
    const run = await train(n, proposal.sha, proposal.description);
    current = { experiment: n, phase: 'evaluate', description: proposal.description };
    const decision = decide(run, best.metric, config);
    if (decision.status === 'keep') {
      await cpu.advanceBranch.executeWithOptions({ summary: `experiment ${n}: keep — branch to ${proposal.sha.slice(0, 7)}` }, [
        { repo: input.repo, branch: input.branch, from: best.sha, to: proposal.sha },
      ]);
    }
    await record(n, proposal.sha, best.sha, proposal.description, run, decision.status, decision.delta, decision.reason, fix?.experiment ?? null, proposal.costUsd);
    s.experiments += 1;
    s.next = n + 1;
    s.attempt = 0;
    if (decision.status === 'keep') {
      s.kept += 1;
      s.best = { sha: proposal.sha, metric: run.metric!, experiment: n };
      s.fix = null;
    } else if (decision.status === 'crash') {
      s.crashes += 1;
      s.fix = proposerFixes() ? nextFix(fix, { sha: proposal.sha, experiment: n }, config.crash.maxFixAttempts) : null;
    } else {
      s.fix = null;
    }
    s.statusMessage = `experiment ${n}: ${decision.status} — ${proposal.description}`;
    current = null;
    publish();
  }

  async function train(n: number, sha: string, description: string): Promise<RunResult> {
    try {
      return await gpu.runExperiment.executeWithOptions({ summary: `experiment ${n}: ${oneLine(description)}` }, [
        {
          tag,
          experiment: n,
          remote: input.repo,
          ref: experimentRef(tag, n),
          sha,
          command: config.run.command,
          env: config.run.env,
          timeoutSec: config.run.timeoutSec,
          metric: config.metric,
          memoryKey: config.memory?.key,
        },
      ]);
    } catch (err) {
      // Every retry failed (worker lost again and again): the experiment is still recorded.
      return { outcome: 'crash', exitCode: null, metric: null, memoryMb: null, seconds: 0, logPath: '', host: '', slot: '', logTail: '', reason: `run failed on every attempt: ${failureMessage(err)}` };
    }
  }

  async function record(
    n: number, sha: string, parent: string, description: string, run: RunResult,
    statusWord: ExperimentRecord['status'], delta: number | null, reason: string, fixOf: number | null, costUsd = 0,
  ): Promise<void> {
    const row: ExperimentRecord = {
      tag, experiment: n, commit: sha, parent, status: statusWord, outcome: run.outcome,
      metric: run.metric, bestBefore: n === 0 ? null : s.best?.metric ?? null, delta,
      memoryGb: run.memoryMb === null ? 0 : Math.round((run.memoryMb / 1024) * 10) / 10,
      description, reason, seconds: run.seconds, logPath: run.logPath, host: run.host, slot: run.slot,
      costUsd, fixOf, finishedAt: new Date(Date.now()).toISOString(),
    };
    const metricText = run.metric === null ? 'no metric' : `${config.metric.name} ${run.metric.toFixed(6)}`;
    await cpu.recordExperiment.executeWithOptions({ summary: `experiment ${n}: ${statusWord} — ${metricText}` }, [
      { campaignDir: input.campaignDir, repo: input.repo, record: row, metricName: config.metric.name, logTail: run.logTail },
    ]);
  }

  function proposerFixes(): boolean {
    // Random search cannot read a traceback; only agents get crash-fix attempts.
    return config.proposer.kind !== 'mutate';
  }

  function finish(state: 'completed' | 'stopped', message: string): CampaignStatus {
    s.statusMessage = message;
    current = null;
    publish(state);
    return status(state);
  }
}

function oneLine(text: string, max = 120): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 3)}...` : line;
}

function failureMessage(err: unknown): string {
  let e = err as Error & { cause?: unknown };
  if (e instanceof ActivityFailure && e.cause) e = e.cause as Error & { cause?: unknown };
  // Pause and failure reasons carry advice (which key, which models): keep room for it.
  return oneLine(e?.message ?? String(err), 400);
}
