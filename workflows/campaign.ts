// The campaign: autoresearch's program.md loop as a durable workflow.
//
//   the baseline first, run a few times to measure the noise; then, until a budget or a person
//   says stop, keep `parallelism` experiments running and `lookahead` more being proposed:
//     propose an edit on top of the best commit  (or a fix of the last crash)
//     preflight it before any GPU time            (inside `propose`)
//     run it on the GPU task queue                (rebased first if the best moved meanwhile)
//     judge it: keep / discard / crash            (confirmation runs when inside the noise)
//     record it: ledger, results.tsv, git note; on keep the branch fast-forwards
//
// One experiment is workflows/experiment.ts; the activities it schedules, workflows/steps.ts; what
// the workflow holds and shows, workflows/state.ts; the slots, workflows/slots.ts; how a candidate is
// judged, workflows/judging.ts and decisions.ts; what is recorded, workflows/records.ts.
// Deterministic code only: every effect is an activity keyed by tag + experiment (+ run, attempt).
import {
  allHandlersFinished,
  condition,
  makeContinueAsNewFunc,
  patched,
  setHandler,
  setWorkflowOptions,
  workflowInfo,
} from '@temporalio/workflow';
import type { CampaignInput, CampaignSnapshot } from '../common/shared';
import { judgeBaseline, spreadText } from './decisions';
import { experiment, type Lab } from './experiment';
import { pauseSignal, resumeSignal, statusQuery, steerUpdate, stopSignal } from './messages';
import { baselineCrashed, baselineFacts, failureMessage, plural } from './records';
import { Slots } from './slots';
import { WorkflowState, validateSteer } from './state';
import { Steps } from './steps';

/** Continue-as-new well before Temporal's 10k-event warning. */
const HISTORY_EVENTS_LIMIT = 4000;

/** patched() id (docs/upgrading.md): a continued run's first step moves it to the current orchestrator version. */
const VERSIONING = 'versioning';

export interface CampaignOptions {
  /** Continue-as-new after this many history events (tests use a small number). */
  historyEventsLimit?: number;
}

export async function campaign(input: CampaignInput & CampaignOptions): Promise<CampaignSnapshot> {
  const { config, tag } = input;
  const state = new WorkflowState(input);
  const s = state.carry;
  const slots = new Slots(config.parallelism, () => s.paused && !s.stopRequested);
  const steps = new Steps(input, state);
  const lab: Lab = { tag, config, state, slots, steps };
  const { flights } = state;
  // Campaigns started before the default was resolved in the config carry null: P, as then.
  const lookahead = config.lookahead ?? config.parallelism;
  const historyLimit = input.historyEventsLimit ?? HISTORY_EVENTS_LIMIT;
  /** An experiment that cannot go on (the branch was moved by hand) ends the campaign. */
  let fatal: unknown = null;

  setHandler(pauseSignal, () => state.pause());
  setHandler(resumeSignal, () => state.resume());
  setHandler(stopSignal, () => state.stop());
  setHandler(statusQuery, () => state.snapshot());
  setHandler(steerUpdate, (steer) => state.steer(steer), { validator: validateSteer });

  // With Worker Versioning (nightlab worker --build-id), a run never changes version mid-history: a continued
  // run's first step pins it to the current version, which then replays only its start and this step. This
  // step stays first and unchanged in every version (docs/upgrading.md).
  if (input.carry && patched(VERSIONING)) {
    const move = await steps.moveToCurrentVersion();
    if (move?.to) state.announce(`moved from orchestrator version ${move.from} to ${move.to}`);
  }

  if (!input.carry) {
    state.announce('preparing the campaign branch');
    await steps.prepare();
  }

  // 1. The unmodified baseline: experiment 0, run `baselineRuns` times to measure the noise.
  if (!s.best) {
    const k = config.noise.baselineRuns;
    flights.set(0, { experiment: 0, phase: 'train', description: 'baseline' });
    state.announce(`running the baseline (${plural(k, 'run')})`);
    const base = { experiment: 0, sha: input.baseSha, description: 'baseline' };
    const runs = await Promise.all(
      Array.from({ length: k }, (_, run) => slots.hold(() => steps.run({ ...base, run }))),
    );
    const baseline = judgeBaseline(runs);
    await steps.record(baselineFacts(input.baseSha, runs, baseline));
    flights.delete(0);
    if (baseline.kind === 'crash') {
      state.announce(`baseline crashed: ${baseline.evidence}`, 'failed');
      throw baselineCrashed(runs[baseline.failedRun]);
    }
    s.best = { sha: input.baseSha, experiment: 0, group: baseline.group, nextRun: runs.length, pending: 0 };
    s.baselineMetric = baseline.metric;
    state.noteBestCurves(input.baseSha, runs);
    s.next = 1;
    state.announce(`baseline ${config.metric.name} ${baseline.metric.toFixed(6)}${spreadText(baseline.group)}`);
  }

  // 2. Experiments, `parallelism` running and `lookahead` more being proposed, until a budget,
  //    a stop or the history size says to wind down; then the in-flight ones finish.
  for (;;) {
    if (fatal) {
      state.announce(`failed: ${failureMessage(fatal)}`, 'failed');
      throw fatal;
    }
    const blocked = state.blocked();
    const info = workflowInfo();
    const rollover = info.continueAsNewSuggested || info.historyLength > historyLimit;
    if (!blocked && !rollover && !s.stopRequested && !s.paused && flights.size < config.parallelism + lookahead) {
      const n = s.next++;
      flights.set(n, { experiment: n, phase: 'propose', description: '' });
      void experiment(lab, n)
        .catch((e) => (fatal ??= e))
        .finally(() => flights.delete(n));
      continue;
    }

    if (flights.size === 0) {
      if (s.stopRequested) return finish('stopped', 'stopped by request');
      if (blocked) return finish('completed', blocked);
      if (rollover) {
        await condition(allHandlersFinished);
        return continueAsNewOnCurrent({ ...input, carry: s, instructionsOverride: state.instructions });
      }
    }
    if (s.paused && flights.size === 0) state.publish('paused');
    // Wait for something to change (never for a state that already holds: that would spin).
    const [size, paused, stopping] = [flights.size, s.paused, s.stopRequested];
    const changed = () => flights.size !== size || s.paused !== paused || s.stopRequested !== stopping;
    await condition(() => changed() || fatal !== null || (!s.paused && state.blocked() !== blocked));
  }

  function finish(end: 'completed' | 'stopped', message: string): CampaignSnapshot {
    state.announce(message, end);
    return state.snapshot(end);
  }
}

/**
 * Whether this worker runs with Worker Versioning (`nightlab worker --build-id`). An unversioned worker has a
 * version too, with no deployment name: its build id is the SDK's version and a hash of the workflow bundle.
 */
function versionedWorker(): boolean {
  return Boolean(workflowInfo().currentDeploymentVersion?.deploymentName);
}

// A campaign keeps the orchestrator version that started it. Said only on a versioned worker: the server refuses
// a workflow task that names a behaviour from a worker without a deployment.
setWorkflowOptions(() => (versionedWorker() ? { versioningBehavior: 'PINNED' } : {}), campaign);

/**
 * Continue-as-new; on a versioned worker, asking for the new run to start on the current version: servers from
 * 1.30 do, 1.29 ignores it (the continued run's first step moves it instead).
 */
function continueAsNewOnCurrent(next: Parameters<typeof campaign>[0]): Promise<never> {
  const options = versionedWorker() ? { initialVersioningBehavior: 'AUTO_UPGRADE' as const } : {};
  return makeContinueAsNewFunc<typeof campaign>(options)(next);
}
