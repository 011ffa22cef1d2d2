// Every activity the campaign schedules, with its options and the summary the Web UI shows: what goes
// into a campaign's history is read here. The orchestrator's activities (activities/index.ts) and the
// GPU worker's run (gpu-worker/run.ts) do the work.
import { patched, proxyActivities } from '@temporalio/workflow';
import { experimentRef, GPU_TASK_QUEUE, OLD_RUN_ACTIVITY, RUN_ACTIVITY } from '../common/shared';
import type { CampaignInput, CrashFix, PromotionRecord, Proposal, RunActivities } from '../common/shared';
import type { RunRecord, RunRequest, RunResult } from '../common/shared';
import type { OrchestratorActivities } from '../activities';
import type { CampaignConfig } from '../common/config';
import type { ProgressSpec } from '../common/curves';
import type { VersionMove } from '../activities/versioning';
import { experimentRecord, lostRun, oneLine, type ExperimentFacts } from './records';
import type { WorkflowState } from './state';

/** patched() id (docs/upgrading.md): a run is scheduled as `run`, no longer `runExperiment` (GPU workers know both). */
const ACTIVITY_NAMES = 'activity-names';

const cpu = proxyActivities<OrchestratorActivities>({
  startToCloseTimeout: '60 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 10 },
});

/** A run to make: which experiment and run index (the seed), which commit; `fresh`: on clean caches. */
export interface RunOrder {
  experiment: number;
  run: number;
  sha: string;
  description: string;
  fresh?: boolean;
  /** A candidate's first run: stopped early when its curve clearly ends worse (config progress.earlyStop). */
  mayStop?: boolean;
  /** A run at the promoted fidelity (config `promote`): its command, environment and time limit. */
  promote?: boolean;
}

export class Steps {
  private readonly gpu;
  /** Runs at the promoted fidelity, with its time limit (config `promote`). */
  private readonly gpuPromoted;
  /** Branch moves happen one after another, in the order keeps were decided. */
  private branchMoves: Promise<void> = Promise.resolve();

  constructor(
    private readonly input: CampaignInput,
    private readonly state: WorkflowState,
  ) {
    const { config } = input;
    const gpu = (runSec: number) =>
      proxyActivities<RunActivities>({
        taskQueue: input.gpuTaskQueue ?? GPU_TASK_QUEUE,
        // The run's own limit plus room for checkout and fetch; a silent worker is noticed by heartbeat.
        startToCloseTimeout: `${Math.ceil(runSec + (config.evaluate?.timeoutSec ?? 0)) + 300} seconds`,
        heartbeatTimeout: '60 seconds',
        retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 },
      });
    this.gpu = gpu(config.run.timeoutSec);
    this.gpuPromoted = gpu(this.promotedTimeoutSec());
  }

  /** The time limit of a promoted run: the config's, or the run's. */
  private promotedTimeoutSec(): number {
    const { config } = this.input;
    return config.promote?.timeoutSec ?? config.run.timeoutSec;
  }

  /**
   * A continued run's first step: onto the deployment's current version when it is not the run's own (its
   * next workflow task then goes there). What it returns is only told; null for an unversioned campaign.
   */
  moveToCurrentVersion(): Promise<VersionMove | null> {
    return cpu.moveToCurrentVersion.executeWithOptions({ summary: 'onto the current orchestrator version' }, []);
  }

  /** Creates the campaign directory, the campaign branch and experiment 0's ref. */
  prepare(): Promise<void> {
    const { tag, repo, branch, baseSha, campaignDir } = this.input;
    return cpu.prepareCampaign({ tag, repo, branch, baseSha, campaignDir });
  }

  /** A proposal for experiment n (attempt a), on top of `parentSha`, or a fix of a crash. */
  propose(p: { n: number; attempt: number; parentSha: string; fix: CrashFix | null }): Promise<Proposal> {
    const { input, state } = this;
    const summary = `experiment ${p.n}: propose${p.fix ? ` a fix of ${p.fix.experiment}` : ''} (attempt ${p.attempt})`;
    return cpu.propose.executeWithOptions({ summary }, [
      {
        tag: input.tag,
        experiment: p.n,
        attempt: p.attempt,
        repo: input.repo,
        campaignDir: input.campaignDir,
        config: input.config,
        parentSha: p.parentSha,
        fix: p.fix ? { sha: p.fix.crashedSha, experiment: p.fix.experiment } : null,
        notes: state.carry.notes,
        instructionsOverride: state.instructions ?? null,
        ...(input.forkOf ? { forkOf: input.forkOf } : {}),
      },
    ]);
  }

  /**
   * Moves a candidate onto the current best (its sha and parent follow); false when its change
   * conflicts with it (recorded as a rejection of its last proposal).
   */
  async rebase(c: { experiment: number; attempts: number; sha: string; parent: string }): Promise<boolean> {
    const { input } = this;
    const onto = this.state.carry.best!;
    const summary = `experiment ${c.experiment}: rebase onto ${onto.sha.slice(0, 7)} (experiment ${onto.experiment})`;
    const r = await cpu.rebaseCandidate.executeWithOptions({ summary }, [
      {
        repo: input.repo,
        campaignDir: input.campaignDir,
        tag: input.tag,
        experiment: c.experiment,
        attempt: c.attempts - 1,
        sha: c.sha,
        parent: c.parent,
        onto: onto.sha,
        ontoExperiment: onto.experiment,
      },
    ]);
    if (!r) return false;
    c.sha = r;
    c.parent = onto.sha;
    return true;
  }

  /** One run on the GPU task queue; a run whose every attempt failed is a crash. */
  async run(o: RunOrder): Promise<RunResult> {
    try {
      const name = patched(ACTIVITY_NAMES) ? RUN_ACTIVITY : OLD_RUN_ACTIVITY;
      const run = o.promote ? ` promoted run ${o.run}` : o.run ? ` run ${o.run}` : '';
      const summary = `experiment ${o.experiment}${run}: ${oneLine(o.description)}`;
      const gpu = o.promote ? this.gpuPromoted : this.gpu;
      return await gpu[name].executeWithOptions({ summary }, [this.runRequest(o)]);
    } catch (err) {
      return lostRun(err);
    }
  }

  /** The record of an experiment: ledger rows, results.tsv, a git note. */
  async record(facts: ExperimentFacts): Promise<void> {
    const { tag, campaignDir, repo, config } = this.input;
    const args = experimentRecord(facts, { tag, campaignDir, repo, metricName: config.metric.name, nowMs: Date.now() });
    const { metric, status } = args.record;
    const figure = metric === null ? 'no metric' : `${config.metric.name} ${metric.toFixed(6)}`;
    const summary = `experiment ${facts.n}: ${status} — ${figure}`;
    await cpu.recordExperiment.executeWithOptions({ summary }, [args]);
  }

  /**
   * A commit with `to`'s files on top of `keep` (a keep that did not transfer, taken back), under
   * the experiment's ref; the branch does not move here.
   */
  revertCommit(r: { experiment: number; keep: string; to: string; evidence: string }): Promise<string> {
    const { repo, tag } = this.input;
    const summary = `experiment ${r.experiment}: revert (does not transfer)`;
    const message = `Revert experiment ${r.experiment}: it ${r.evidence}`;
    return cpu.revertCommit.executeWithOptions({ summary }, [{ repo, tag, ...r, message }]);
  }

  /** The record of a promotion: its runs' rows and the promotion row. */
  async recordPromotion(record: PromotionRecord, runs: RunRecord[]): Promise<void> {
    const verdict = record.transfers === null ? 'no verdict' : record.transfers ? 'transfers' : 'does not transfer';
    const summary = `experiment ${record.experiment}: promoted, ${verdict}`;
    await cpu.recordPromotion.executeWithOptions({ summary }, [{ campaignDir: this.input.campaignDir, record, runs }]);
  }

  /** A keep: the campaign branch moves from the best it replaced to the kept commit, after the moves before it. */
  moveBranch(m: { experiment: number; from: string; to: string }): Promise<void> {
    const { repo, branch } = this.input;
    const summary = `experiment ${m.experiment}: keep — branch to ${m.to.slice(0, 7)}`;
    const move = this.branchMoves.then(() =>
      cpu.advanceBranch.executeWithOptions({ summary }, [{ repo, branch, from: m.from, to: m.to }]),
    );
    this.branchMoves = move.catch(() => {});
    return move;
  }

  private runRequest(o: RunOrder): RunRequest {
    const { input } = this;
    const { config } = input;
    return {
      tag: input.tag,
      experiment: o.experiment,
      run: o.run,
      remote: config.remote ?? input.repo,
      ref: experimentRef(input.tag, o.experiment),
      sha: o.sha,
      command: (o.promote && config.promote?.command) || config.run.command,
      // The run index is the seed: repeated runs of one commit differ only by it.
      env: { ...config.run.env, ...(o.promote ? config.promote?.env : {}), [config.noise.seedEnv]: String(o.run) },
      timeoutSec: o.promote ? this.promotedTimeoutSec() : config.run.timeoutSec,
      ...(o.promote ? { fidelity: 'promote' as const } : {}),
      metric: config.metric,
      memoryKey: config.memory?.key,
      // The harness: the candidate checked against the base, locked files hash-checked around
      // the run, the sandbox, the locked evaluation. (New optional fields: replay-safe.)
      locked: config.locked,
      sandbox: config.sandbox ?? 'auto',
      ...(config.evaluate ? { evaluate: config.evaluate } : {}),
      base: input.baseSha,
      editable: config.editable,
      ...(input.guard ? { guard: input.guard } : {}),
      persist: config.run.persist ?? [],
      ...(config.run.setup ? { setup: config.run.setup } : {}),
      readOnly: config.run.readOnly ?? [],
      ...(config.run.maxLogMb ? { maxLogBytes: Math.round(config.run.maxLogMb * 1024 * 1024) } : {}),
      ...(o.fresh ? { fresh: o.fresh } : {}),
      // (Absent from configs parsed before learning curves: campaigns started then never send them.)
      ...(config.progress ? { progress: progressOf(config.progress) } : {}),
      ...this.earlyStop(o),
    };
  }

  /** The early stop of a candidate's first run, against the best's curves (two at least, to measure their spread). */
  private earlyStop(o: RunOrder): Pick<RunRequest, 'earlyStop'> {
    const stop = this.input.config.progress?.earlyStop;
    const best = this.state.carry.bestCurves;
    if (!o.mayStop || !stop || best?.sha !== this.state.carry.best?.sha || (best?.curves.length ?? 0) < 2) return {};
    return { earlyStop: { ...stop, reference: best!.curves } };
  }
}

/** How a run reads its progress lines: the config's `progress` without the early stop's settings. */
function progressOf({ earlyStop: _, ...spec }: CampaignConfig['progress']): ProgressSpec {
  return spec;
}
