// What the campaign workflow holds: the carry (counters, the best, the noise pool, the fix to try,
// a person's notes: all that continue-as-new passes on), the experiments in flight, and how the
// campaign shows itself (the snapshot `nightlab status` reads; search attributes and current details
// in the Temporal Web UI). The message handlers change it here, in one place.
import { setCurrentDetails, upsertSearchAttributes } from '@temporalio/workflow';
import { SA } from '../common/shared';
import type {
  CampaignCarry,
  CampaignInput,
  CampaignSnapshot,
  CampaignState,
  Group,
  NoiseState,
  RunResult,
} from '../common/shared';
import { improvement, initialCarry, launchBlocked, mean, nextEarlyStops, noiseSigma, reopenGroup } from './decisions';
import { adoptBest, sigma } from './judging';
import { oneLine } from './records';
import type { SteerInput } from './messages';

const MAX_NOTES = 20;
/** The best's curves kept for the early stop: enough to measure their spread, few enough for history. */
const MAX_BEST_CURVES = 6;
/** First runs stopped early in a row on one best before one is let through to the end as an audit. */
const MAX_STOPS_IN_A_ROW = 3;
const MAX_STEER_CHARS = 16_000;

/** The best a keep replaced: its commit, experiment, and runs (their mean: `metric`). */
export interface Replaced {
  sha: string;
  experiment: number;
  metric: number;
  group: Group;
}

/** One experiment in flight, as status shows it. */
export interface Flight {
  experiment: number;
  /**
   * What the experiment is doing. 'train' and 'confirm' only while one of its runs holds a slot;
   * 'judge' between runs: deciding, rebasing, waiting for a slot for a confirmation run, or for
   * the best's re-runs.
   */
  phase: 'propose' | 'queued' | 'train' | 'confirm' | 'judge' | 'record' | 'promote';
  description: string;
}

export class WorkflowState {
  readonly carry: CampaignCarry;
  readonly flights = new Map<number, Flight>();
  /** Promoted figures being measured, by commit: a second promotion waits for the first (config `promote`). */
  readonly promoting = new Map<string, Promise<number | null>>();
  /** Instructions given by `nightlab steer --instructions`: passed on as input, not in the carry. */
  instructions: string | undefined;

  constructor(private readonly input: CampaignInput) {
    this.carry = input.carry ?? initialCarry(Date.now());
    this.instructions = input.instructionsOverride;
  }

  /** The state of a campaign whose loop runs. */
  state(): CampaignState {
    return this.carry.paused ? 'paused' : 'running';
  }

  /** Why no new experiment may start now (a budget is reached), or null. */
  blocked(): string | null {
    return launchBlocked(this.carry, this.input.config.budget, Date.now());
  }

  /** The noise state judging reads and writes: the carry's own best and pool (null before the baseline). */
  noise(): NoiseState | null {
    return hasBest(this.carry) ? this.carry : null;
  }

  /** Makes an experiment's commit the best, with the runs that decided it; returns the best it replaced. */
  adopt(
    kept: { sha: string; experiment: number },
    keep: { group: Group; runs: number },
    runs: Pick<RunResult, 'curve' | 'outcome'>[],
  ): Replaced {
    const s = this.carry;
    const noise = this.noise()!;
    const old = {
      sha: noise.best.sha,
      experiment: noise.best.experiment,
      metric: mean(noise.best.group),
      group: noise.best.group,
    };
    s.largestGain = Math.max(
      s.largestGain ?? 0,
      improvement(mean(keep.group), old.metric, this.input.config.metric.direction),
    );
    adoptBest(noise, { sha: kept.sha, experiment: kept.experiment, group: keep.group, nextRun: keep.runs });
    s.kept += 1;
    this.noteBestCurves(kept.sha, runs);
    return old;
  }

  /**
   * Whether the next first run may be stopped early: `watch`; `audit` after MAX_STOPS_IN_A_ROW stops on
   * this best (one run goes to the end, to check that the best's curves tell the truth); `off` once an
   * audited run did not lose (curves that said it would are not believed again on this best).
   */
  earlyStopMode(): 'watch' | 'audit' | 'off' {
    const e = this.carry.earlyStops;
    if (!e || e.sha !== this.carry.best?.sha) return 'watch';
    return e.off ? 'off' : e.inARow >= MAX_STOPS_IN_A_ROW ? 'audit' : 'watch';
  }

  /** Counts a first run on best `sha` for the audit: stopped, or run to the end (`audited`: let through on purpose). */
  noteFirstRun(sha: string, r: Pick<RunResult, 'outcome' | 'metric'>, audited: boolean): void {
    const s = this.carry;
    const noise = this.noise();
    // Not worse than the best by more than two sigmas: the stops before it were not to be trusted.
    const fine =
      noise !== null &&
      noise.best.sha === sha &&
      r.metric !== null &&
      -improvement(r.metric, mean(noise.best.group), this.input.config.metric.direction) <= 2 * (sigma(noise) ?? 0);
    s.earlyStops = nextEarlyStops(s.earlyStops, { sha, stopped: r.outcome === 'stopped', audited, fine });
  }

  /**
   * A keep that did not transfer is taken back (config promote.gate): `sha`, a commit with the files of
   * the best it replaced, is the best from now on, with that best's runs (they measured these files).
   */
  revert(sha: string, replaced: Replaced): void {
    const best = this.carry.best!;
    const noise = this.noise()!;
    // The replaced best's runs went into the pool when it was replaced: they are the best's own again.
    noise.pool = reopenGroup(noise.pool, replaced.group);
    adoptBest(noise, { sha, experiment: best.experiment, group: replaced.group, nextRun: best.nextRun });
    this.noteBestCurves(sha, []);
  }

  /**
   * Keeps the curves of runs of the best (`sha`), the most recent MAX_BEST_CURVES: the early stop
   * compares candidates with them. Curves of another commit start the list afresh.
   */
  noteBestCurves(sha: string, runs: Pick<RunResult, 'curve' | 'outcome'>[]): void {
    const s = this.carry;
    if (s.best?.sha !== sha) return; // the best moved on while this ran
    const curves = runs.filter((r) => r.outcome === 'ok' && r.curve?.length).map((r) => r.curve!);
    if (!curves.length && s.bestCurves?.sha === sha) return;
    const before = s.bestCurves?.sha === sha ? s.bestCurves.curves : [];
    s.bestCurves = { sha, curves: [...before, ...curves].slice(-MAX_BEST_CURVES) };
  }

  snapshot(state = this.state()): CampaignSnapshot {
    const { carry: s, input } = this;
    const inFlight = [...this.flights.values()].map((f) => ({ ...f }));
    return {
      tag: input.tag,
      state,
      message: s.statusMessage,
      experiments: s.experiments,
      kept: s.kept,
      crashes: s.crashes,
      bestMetric: s.best ? mean(s.best.group) : null,
      bestCommit: s.best?.sha ?? null,
      baselineMetric: s.baselineMetric,
      metricName: input.config.metric.name,
      direction: input.config.metric.direction,
      costUsd: s.costUsd,
      budget: { ...input.config.budget },
      startedAt: new Date(s.startedAtMs).toISOString(),
      current:
        inFlight.find(
          (f) => f.phase === 'train' || f.phase === 'confirm' || f.phase === 'judge' || f.phase === 'record',
        ) ?? null,
      inFlight,
      noiseSigma: s.best ? noiseSigma(s.pool, [s.best.group]) : null,
      parallelism: input.config.parallelism,
      campaignDir: input.campaignDir,
      branch: input.branch,
    };
  }

  /** Search attributes (for filters) and current details (the Web UI's summary) say where the campaign stands. */
  publish(state = this.state()): void {
    const { carry: s, input } = this;
    const best = s.best ? mean(s.best.group) : null;
    upsertSearchAttributes([
      { key: SA.tag, value: input.tag },
      { key: SA.state, value: state },
      { key: SA.experiments, value: s.experiments },
      { key: SA.kept, value: s.kept },
      { key: SA.cost, value: Math.round(s.costUsd * 1e6) / 1e6 },
      ...(best !== null ? [{ key: SA.best, value: best }] : []),
    ]);
    const bestText =
      best !== null
        ? `${input.config.metric.name} ${best.toFixed(6)} (experiment ${s.best!.experiment})`
        : 'no baseline yet';
    const running = [...this.flights.values()]
      .map((f) => `- experiment ${f.experiment}: ${f.phase}${f.description ? ` — ${f.description}` : ''}`)
      .join('\n');
    const counts = `${s.experiments} experiments, ${s.kept} kept, best ${bestText}`;
    setCurrentDetails(`**${state}** — ${s.statusMessage}\n\n${counts}${running ? `\n\n${running}` : ''}`);
  }

  /** Sets the status message and publishes it. */
  announce(message: string, state = this.state()): void {
    this.carry.statusMessage = message;
    this.publish(state);
  }

  // The messages (workflows/messages.ts).

  pause(): void {
    this.carry.paused = true;
    this.announce('paused by request');
  }

  resume(): void {
    this.carry.paused = false;
    this.carry.rejectedInARow = 0;
    this.announce('resumed');
  }

  stop(): void {
    this.carry.stopRequested = true;
    this.carry.statusMessage = 'stopping after the experiments in flight';
  }

  steer(steer: SteerInput): { notes: number } {
    const s = this.carry;
    if (steer.note) s.notes = [...s.notes, steer.note.trim()].slice(-MAX_NOTES);
    if (steer.instructions) this.instructions = steer.instructions;
    s.statusMessage = steer.note ? `steered: ${oneLine(steer.note)}` : 'instructions replaced';
    return { notes: s.notes.length };
  }
}

/** Refuses empty or oversized steering before it is accepted into history. */
export function validateSteer(steer: SteerInput): void {
  if (!steer.note?.trim() && !steer.instructions?.trim()) throw new Error('give a non-empty --note or --instructions');
  if ((steer.note?.length ?? 0) + (steer.instructions?.length ?? 0) > MAX_STEER_CHARS) {
    throw new Error(`steering text over ${MAX_STEER_CHARS} characters; shorten it`);
  }
}

function hasBest(carry: CampaignCarry): carry is CampaignCarry & NoiseState {
  return carry.best !== null;
}
