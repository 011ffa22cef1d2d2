// Nightlab's own metrics, beside the SDK's: counted by an activity interceptor both workers install, from
// what their activities are given and return (an experiment's record, a proposal, a run's result), so the
// activities themselves stay free of bookkeeping. They go to the SDK runtime's meter: with
// `--metrics-port`, the worker's Prometheus endpoint serves them (ops/metrics.ts); without, they cost
// nothing. The SDK adds the labels activityType, namespace and taskQueue; Nightlab adds campaign (the tag).
// Durations and cost are histograms: their _sum is the total (GPU-slot busy seconds, dollars spent), their
// _count the number (runs, proposals), and counters could not hold fractions.
import type { Context } from '@temporalio/activity';
import type { MetricMeter, MetricTags } from '@temporalio/common';
import type { ActivityExecuteInput, ActivityInterceptorsFactory } from '@temporalio/worker';
import type { ExperimentRecord, Proposal, ProposeArgs, RunRequest, RunResult } from '../common/shared';
import { RUN_ACTIVITY_NAMES } from '../common/shared';

/** Each metric's name, unit and meaning (docs/operations.md, "Metrics and health", lists them). */
export const METRICS = {
  experiments: { name: 'nightlab_experiments_total', help: 'experiments recorded, by campaign and decision' },
  proposalSeconds: { name: 'nightlab_proposal_seconds', help: 'how long each proposal took (a GPU waits on it)' },
  proposalCost: { name: 'nightlab_proposal_cost_usd', help: "each proposal's cost in US dollars" },
  runSeconds: { name: 'nightlab_run_seconds', help: 'how long each run held its GPU slot, by slot and outcome' },
  queueWait: { name: 'nightlab_queue_wait_seconds', help: 'how long a proposal or run waited for a worker' },
  slotsBusy: { name: 'nightlab_gpu_slots_busy', help: "this worker's GPU slots running now" },
} as const;

/** Histogram buckets in seconds (the SDK's defaults are milliseconds) and dollars. */
export const HISTOGRAM_BUCKETS: Record<string, number[]> = {
  [METRICS.proposalSeconds.name]: [1, 5, 15, 30, 60, 120, 300, 600, 1800],
  [METRICS.proposalCost.name]: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5],
  [METRICS.runSeconds.name]: [10, 60, 300, 600, 1800, 3600, 7200, 21600],
  [METRICS.queueWait.name]: [0.1, 1, 5, 15, 60, 300, 900, 3600],
};

const PROPOSE = 'propose';
const RECORD = 'recordExperiment';

/** What one finished activity counts: its arguments, how it ended and its seconds. */
type Count = (m: MetricMeter, args: unknown[], ended: Ended, seconds: number) => void;
type Ended = { ok: true; result: unknown } | { ok: false };

function histogram(m: MetricMeter, metric: { name: string; help: string }, unit: string) {
  return m.createHistogram(metric.name, 'float', unit, metric.help);
}

const countProposal: Count = (m, [args], ended, seconds) => {
  const proposal = ended.ok ? (ended.result as Proposal) : undefined;
  const tags = { campaign: (args as ProposeArgs).tag, kind: proposal?.kind ?? 'failed' };
  histogram(m, METRICS.proposalSeconds, 's').record(seconds, tags);
  if (proposal) histogram(m, METRICS.proposalCost, 'USD').record(Math.max(0, proposal.costUsd), tags);
  // Files trained before: the proposal activity records the experiment itself, with the earlier result.
  if (proposal?.kind === 'duplicate') experimentCounted(m, tags.campaign, proposal.status);
};

function experimentCounted(m: MetricMeter, campaign: string, decision: string): void {
  const { name, help } = METRICS.experiments;
  m.createCounter(name, 'experiments', help).add(1, { campaign, decision });
}

const countExperiment: Count = (m, [args], ended) => {
  if (!ended.ok) return; // not recorded: the workflow retries it
  const record = (args as { record: ExperimentRecord }).record;
  experimentCounted(m, record.tag, record.status);
};

const countRun: Count = (m, [req], ended, seconds) => {
  const r = ended.ok ? (ended.result as RunResult) : undefined;
  const tags = { campaign: (req as RunRequest).tag, slot: r?.slot ?? 'unknown', outcome: r?.outcome ?? 'failed' };
  histogram(m, METRICS.runSeconds, 's').record(seconds, tags);
};

const COUNTS: Record<string, Count> = {
  [PROPOSE]: countProposal,
  [RECORD]: countExperiment,
  ...Object.fromEntries(RUN_ACTIVITY_NAMES.map((n) => [n, countRun])),
};

/** GPU slots running in this process now. */
let slotsBusy = 0;

/** Metrics never fail an activity: a value the meter refuses is dropped. */
function safely(what: () => void): void {
  try {
    what();
  } catch {
    // dropped
  }
}

function campaignOf(activityType: string, args: unknown[]): MetricTags {
  const a = args[0] as { tag?: string; record?: { tag?: string } } | undefined;
  return { campaign: (activityType === RECORD ? a?.record?.tag : a?.tag) ?? 'unknown' };
}

/** The interceptor both workers install (Worker.create `interceptors.activity`). */
export const metricsInterceptor: ActivityInterceptorsFactory = (ctx: Context) => ({
  inbound: {
    async execute(input: ActivityExecuteInput, next) {
      const type = ctx.info.activityType;
      const count = COUNTS[type];
      if (!count) return next(input);
      const m = ctx.metricMeter;
      const started = Date.now();
      const isRun = RUN_ACTIVITY_NAMES.includes(type);
      if (type !== RECORD) {
        const waited = Math.max(0, started - ctx.info.currentAttemptScheduledTimestampMs) / 1000;
        safely(() => histogram(m, METRICS.queueWait, 's').record(waited, campaignOf(type, input.args)));
      }
      const busy = (by: number) => {
        slotsBusy += by;
        safely(() => m.createGauge(METRICS.slotsBusy.name, 'int', 'slots', METRICS.slotsBusy.help).set(slotsBusy));
      };
      if (isRun) busy(1);
      let ended: Ended = { ok: false };
      try {
        const result = await next(input);
        ended = { ok: true, result };
        return result;
      } finally {
        if (isRun) busy(-1);
        safely(() => count(m, input.args, ended, (Date.now() - started) / 1000));
      }
    },
  },
});
