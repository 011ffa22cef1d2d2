// The campaign: autoresearch's program.md loop as a durable workflow.
//
//   the baseline first, run a few times to measure the noise; then, until a budget or a person
//   says stop, keep `parallelism` experiments training and `lookahead` more being proposed:
//     propose an edit on top of the best commit  (or a fix of the last crash)
//     preflight it before any GPU time            (inside `propose`)
//     train it on the GPU task queue              (rebased first if the best moved meanwhile)
//     judge it: keep / discard / crash            (confirmation runs when inside the noise)
//     record it: ledger, results.tsv, git note; on keep the branch fast-forwards
//
// Deterministic code only: every effect is an activity keyed by tag + experiment (+ run, attempt).
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
  patched,
  setCurrentDetails,
} from '@temporalio/workflow';
import type { OrchestratorActivities } from '../activities';
import type { GpuActivities } from '../gpu-worker/run';
import { GPU_TASK_QUEUE, SA, experimentRef } from '../common/shared';
import type { CampaignCarry, CampaignInput, CampaignSnapshot, ExperimentRecord, Proposal, RunRecord, RunResult } from '../common/shared';
import { groupOf, improvement, initialCarry, launchBlocked, mean, nextFix, noisePolicy, noiseSigma, runFailed, type Group } from './decisions';
import { adoptBest, judgeCandidate, sigma, type NoiseState, type RunLite } from './judging';
import { pauseSignal, resumeSignal, statusQuery, steerUpdate, stopSignal } from './messages';

/** Continue-as-new well before Temporal's 10k-event warning. */
const HISTORY_EVENTS_LIMIT = 4000;
/** Consecutive rejected proposals before the campaign pauses and asks for a person. */
const MAX_REJECTED_IN_A_ROW = 5;
const MAX_NOTES = 20;
const MAX_STEER_CHARS = 16_000;
/** patched() ids: campaigns started by older workers keep their old steps (see README, "Upgrading a running fleet"). */
const REBASE_WHILE_QUEUED = 'rebase-while-queued';
const KEEP_AT_DECISION = 'keep-at-decision';
const SUSPECT_GAINS = 'suspect-gains';

const cpu = proxyActivities<OrchestratorActivities>({
  startToCloseTimeout: '60 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '2 minutes', maximumAttempts: 10 },
});

export interface CampaignOptions {
  /** Continue-as-new after this many history events (tests use a small number). */
  historyEventsLimit?: number;
}

interface Flight {
  experiment: number;
  /**
   * What the experiment is doing. 'train' and 'confirm' only while one of its runs holds a slot;
   * 'judge' between runs: deciding, rebasing, waiting for a slot for a confirmation run, or for
   * the best's re-runs.
   */
  phase: 'propose' | 'queued' | 'train' | 'confirm' | 'judge' | 'record';
  description: string;
}

export async function campaign(input: CampaignInput & CampaignOptions): Promise<CampaignSnapshot> {
  const { config, tag } = input;
  const s: CampaignCarry = input.carry ?? initialCarry(Date.now());
  let instructionsOverride = input.instructionsOverride;
  const policy = noisePolicy(config);
  const parallelism = config.parallelism;
  // Campaigns started before the default was resolved in the config carry null: P, as then.
  const lookahead = config.lookahead ?? parallelism;
  const flights = new Map<number, Flight>();
  let freeSlots = parallelism;
  /** Branch moves happen one after another, in the order keeps were decided. */
  let branchMoves: Promise<void> = Promise.resolve();
  /** An experiment that cannot go on (the branch was moved by hand) ends the campaign. */
  let fatal: unknown = null;

  const gpu = proxyActivities<GpuActivities>({
    taskQueue: input.gpuTaskQueue ?? GPU_TASK_QUEUE,
    // The run's own limit plus room for checkout and fetch; a silent worker is noticed by heartbeat.
    startToCloseTimeout: `${Math.ceil(config.run.timeoutSec + (config.evaluate?.timeoutSec ?? 0)) + 300} seconds`,
    heartbeatTimeout: '60 seconds',
    retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 5 },
  });

  // The noise state lives in the carry (s.best, s.pool): this view shares it.
  const noise = {
    get best() { return s.best!; },
    set best(b) { s.best = b; },
    get pool() { return s.pool; },
    set pool(p) { s.pool = p; },
  } as NoiseState;

  const state = (): CampaignSnapshot['state'] => (s.paused ? 'paused' : 'running');
  const status = (st: CampaignSnapshot['state'] = state()): CampaignSnapshot => {
    const inFlight = [...flights.values()].map((f) => ({ ...f }));
    return {
      tag,
      state: st,
      message: s.statusMessage,
      experiments: s.experiments,
      kept: s.kept,
      crashes: s.crashes,
      bestMetric: s.best ? mean(s.best.group) : null,
      bestCommit: s.best?.sha ?? null,
      baselineMetric: s.baselineMetric,
      metricName: config.metric.name,
      direction: config.metric.direction,
      costUsd: s.costUsd,
      budget: { ...config.budget },
      startedAt: new Date(s.startedAtMs).toISOString(),
      current: inFlight.find((f) => f.phase === 'train' || f.phase === 'confirm' || f.phase === 'judge' || f.phase === 'record') ?? null,
      inFlight,
      noiseSigma: s.best ? sigma(noise) : null,
      parallelism,
      campaignDir: input.campaignDir,
      branch: input.branch,
    };
  };

  const publish = (st: CampaignSnapshot['state'] = state()) => {
    const best = s.best ? mean(s.best.group) : null;
    upsertSearchAttributes([
      { key: SA.tag, value: tag },
      { key: SA.state, value: st },
      { key: SA.experiments, value: s.experiments },
      { key: SA.kept, value: s.kept },
      { key: SA.cost, value: Math.round(s.costUsd * 1e6) / 1e6 },
      ...(best !== null ? [{ key: SA.best, value: best }] : []),
    ]);
    const bestText = best !== null ? `${config.metric.name} ${best.toFixed(6)} (experiment ${s.best!.experiment})` : 'no baseline yet';
    const running = [...flights.values()].map((f) => `- experiment ${f.experiment}: ${f.phase}${f.description ? ` — ${f.description}` : ''}`).join('\n');
    setCurrentDetails(`**${st}** — ${s.statusMessage}\n\n${s.experiments} experiments, ${s.kept} kept, best ${bestText}${running ? `\n\n${running}` : ''}`);
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
    s.statusMessage = 'stopping after the experiments in flight';
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

  // 1. The unmodified baseline: experiment 0, run `baselineRuns` times to measure the noise.
  if (!s.best) {
    s.statusMessage = `running the baseline (${config.noise.baselineRuns} run${config.noise.baselineRuns > 1 ? 's' : ''})`;
    flights.set(0, { experiment: 0, phase: 'train', description: 'baseline' });
    publish();
    const runs = await Promise.all(Array.from({ length: config.noise.baselineRuns }, (_, i) => withSlot(() => train(0, i, input.baseSha, 'baseline'))));
    const failed = runs.find(runFailed);
    const group = failed ? null : groupOf(runs.map((r) => r.metric!));
    const spread = group && group.n > 1 ? `; noise sigma ${noiseSigma({ ss: 0, dof: 0 }, [group])!.toPrecision(3)} from ${group.n} runs` : '';
    await record({
      n: 0, sha: input.baseSha, parent: input.baseSha, description: 'baseline', runs, decision: failed ? 'crash' : 'keep', metric: group ? mean(group) : null, delta: null,
      evidence: failed ? failed.reason : `baseline: mean of ${runs.length} run${runs.length > 1 ? 's' : ''}${spread}`, fixOf: null, costUsd: 0, bestRuns: [],
    });
    flights.delete(0);
    if (failed) {
      s.statusMessage = `baseline crashed: ${failed.reason}`;
      publish('failed');
      throw ApplicationFailure.nonRetryable(`The baseline run crashed (${failed.outcome}): ${failed.reason}. Its log: ${failed.logPath}. Fix the target so the unmodified code runs, then start a new campaign.`, 'BaselineCrashed');
    }
    s.best = { sha: input.baseSha, experiment: 0, group: group!, nextRun: runs.length, pending: 0 };
    s.baselineMetric = mean(group!);
    s.next = 1;
    s.statusMessage = `baseline ${config.metric.name} ${mean(group!).toFixed(6)}${spread}`;
    publish();
  }

  // 2. Experiments, `parallelism` training and `lookahead` more being proposed, until a budget,
  //    a stop or the history size says to wind down; then the in-flight ones finish.
  for (;;) {
    if (fatal) {
      s.statusMessage = `failed: ${failureMessage(fatal)}`;
      publish('failed');
      throw fatal;
    }
    const blocked = launchBlocked(s, config.budget, Date.now());
    const info = workflowInfo();
    const rollover = info.continueAsNewSuggested || info.historyLength > (input.historyEventsLimit ?? HISTORY_EVENTS_LIMIT);
    if (!blocked && !rollover && !s.stopRequested && !s.paused && flights.size < parallelism + lookahead) {
      const n = s.next++;
      flights.set(n, { experiment: n, phase: 'propose', description: '' });
      void experiment(n)
        .catch((e) => (fatal ??= e))
        .finally(() => flights.delete(n));
      continue;
    }

    if (flights.size === 0) {
      if (s.stopRequested) return finish('stopped', 'stopped by request');
      if (blocked) return finish('completed', blocked);
      if (rollover) {
        await condition(allHandlersFinished);
        return continueAsNew<typeof campaign>({ ...input, carry: s, instructionsOverride });
      }
    }
    if (s.paused && flights.size === 0) publish('paused');
    // Wait for something to change (never for a state that already holds: that would spin).
    const size = flights.size;
    const wasPaused = s.paused;
    const wasStopping = s.stopRequested;
    await condition(() => flights.size !== size || s.paused !== wasPaused || s.stopRequested !== wasStopping || fatal !== null || (!s.paused && launchBlocked(s, config.budget, Date.now()) !== blocked));
  }

  /** One experiment, from proposal to record. Leaves no trace if the campaign stops before it trains. */
  async function experiment(n: number): Promise<void> {
    const fix = s.fix;
    s.fix = null;
    const flight = flights.get(n)!;
    let attempt = 0;
    let costUsd = 0;
    let sha = '';
    let parent = '';
    let description = '';
    let first: RunResult | null = null;
    let slotted = 0; // this experiment's runs holding a slot now
    while (!first) {
      // Proposals until one passes preflight (each rejection is recorded and counted).
      let proposal: Extract<Proposal, { kind: 'candidate' }> | null = null;
      while (!proposal) {
        if (s.stopRequested) return;
        parent = s.best!.sha;
        flight.phase = 'propose';
        flight.description = fix ? `fix of experiment ${fix.experiment}` : '';
        const p = await propose(n, attempt++, parent, fix);
        if (p === 'paused') continue;
        costUsd += p.costUsd;
        if (p.kind === 'candidate') proposal = p;
      }
      ({ sha, description } = proposal);
      flight.description = description;
      flight.phase = 'queued';
      // The first run. A proposal prepared while the best moved is rebased onto the new best;
      // one that conflicts with it is proposed again, on top of it.
      const ran = patched(REBASE_WHILE_QUEUED) ? await firstRunOnBest() : await withSlot(async () => {
        if (s.stopRequested) return 'stopped' as const;
        // The slot is held from here on: status shows it as training, even while rebasing.
        flight.phase = 'train';
        if (parent !== s.best!.sha) {
          const r = await rebase(n, attempt - 1, sha, parent);
          if (!r) return 'conflict' as const;
          ({ sha, parent } = r);
        }
        s.statusMessage = `experiment ${n}: training — ${description}`;
        return inSlot('train', () => train(n, 0, sha, description));
      });
      if (ran === 'stopped') return;
      if (ran === 'conflict') s.statusMessage = `experiment ${n}: its change conflicts with the new best; proposing again`;
      else first = ran;
    }

    /**
     * Runs one of this experiment's runs in the slot the caller holds: the phase says 'train' or
     * 'confirm' only while a run of it holds a slot (status and the dashboard count those as
     * training), and 'judge' once none does.
     */
    async function inSlot(phase: 'train' | 'confirm', run: () => Promise<RunResult>): Promise<RunResult> {
      slotted += 1;
      flight.phase = phase;
      // The first run publishes (its search attributes are in every history): a confirmation does not.
      if (phase === 'train') publish();
      try {
        return await run();
      } finally {
        if (--slotted === 0) flight.phase = 'judge';
      }
    }

    /**
     * A queued candidate is rebased as soon as the best moves, without holding a slot, and a
     * conflicting one is proposed again at once: a freed slot goes to a candidate already on the
     * best, so no GPU waits for a rebase it could skip or for a proposal made after the keep.
     */
    async function firstRunOnBest(): Promise<RunResult | 'stopped' | 'conflict'> {
      for (;;) {
        const took = await takeSlot(() => parent !== s.best!.sha || s.stopRequested);
        if (took && parent === s.best!.sha && !s.stopRequested) {
          try {
            s.statusMessage = `experiment ${n}: training — ${description}`;
            return await inSlot('train', () => train(n, 0, sha, description));
          } finally {
            freeSlots += 1;
          }
        }
        if (took) freeSlots += 1; // the best moved in the same instant: rebase first
        if (s.stopRequested) return 'stopped';
        const r = await rebase(n, attempt - 1, sha, parent);
        if (!r) return 'conflict';
        ({ sha, parent } = r);
      }
    }

    /** Makes this experiment's commit the best; returns the best it replaced. */
    const adoptKeep = (keep: { group: Group; runs: number }) => {
      const old = { sha: s.best!.sha, metric: mean(s.best!.group) };
      s.largestGain = Math.max(s.largestGain ?? 0, improvement(mean(keep.group), old.metric, config.metric.direction));
      adoptBest(noise, { sha, experiment: n, group: keep.group, nextRun: keep.runs });
      s.kept += 1;
      return old;
    };

    const runs: RunResult[] = [first];
    const bestRuns: RunRecord[] = [];
    // The best this experiment replaced, when it is kept (adopted the moment the keep is decided).
    let replaced: { sha: string; metric: number } | null = null;
    const keepAtOnce = patched(KEEP_AT_DECISION);
    // A gain far beyond anything seen is confirmed on clean caches and flagged (older campaigns: not judged so).
    const suspects = patched(SUSPECT_GAINS) ? { largestGain: s.largestGain ?? null } : undefined;
    const judgement = await judgeCandidate(lite(first), noise, policy, {
      candidate: (run, fresh) => withSlot(async () => {
        const r = await inSlot('confirm', () => train(n, run, sha, description, fresh));
        runs.push(r);
        return lite(r);
      }),
      best: (best, run) => withSlot(async () => {
        // On clean caches: what another run left in them could only drag the best's mean down.
        const r = await train(best.experiment, run, best.sha, `re-run of the best (experiment ${best.experiment})`, true);
        bestRuns.push(runRecord(best.experiment, run, best.sha, r));
        return lite(r);
      }),
      onBest: () => parent === s.best!.sha,
      rebase: async () => {
        const r = await rebase(n, attempt - 1, sha, parent);
        if (!r) return false;
        ({ sha, parent } = r);
        return true;
      },
      // Decided: the new best takes effect now, for every experiment in flight.
      ...(keepAtOnce ? { adopt: (keep) => (replaced = adoptKeep(keep)) } : {}),
    }, suspects);

    flight.phase = 'record';
    if (judgement.kind === 'keep' && !replaced) replaced = adoptKeep(judgement);
    const before = replaced?.metric ?? mean(s.best!.group);
    if (judgement.kind === 'keep') {
      const from = replaced!.sha;
      const move = branchMoves.then(() =>
        cpu.advanceBranch.executeWithOptions({ summary: `experiment ${n}: keep — branch to ${sha.slice(0, 7)}` }, [{ repo: input.repo, branch: input.branch, from, to: sha }]),
      );
      branchMoves = move.catch(() => {});
      await move;
    }
    if (judgement.kind === 'crash') {
      s.crashes += 1;
      s.fix = proposerFixes() ? nextFix(fix, { sha, experiment: n }, config.crash.maxFixAttempts) : null;
    }
    const metric = judgement.kind === 'crash' ? null : judgement.metric;
    await record({
      n, sha, parent, description, runs, decision: judgement.kind, metric, delta: judgement.kind === 'crash' ? null : metric! - before,
      evidence: judgement.evidence, fixOf: fix?.experiment ?? null, costUsd, bestRuns, suspect: judgement.suspect,
    });
    s.experiments += 1;
    s.statusMessage = `experiment ${n}: ${judgement.kind} — ${description}`;
    publish();
  }

  /** A proposal for experiment n, attempt a: a candidate, a rejection, or 'paused' when the proposer needs a person. */
  async function propose(n: number, attempt: number, parentSha: string, fix: CampaignCarry['fix']) {
    let p;
    try {
      p = await cpu.propose.executeWithOptions({ summary: `experiment ${n}: propose${fix ? ` a fix of ${fix.experiment}` : ''} (attempt ${attempt})` }, [
        {
          tag, experiment: n, attempt, repo: input.repo, campaignDir: input.campaignDir, config, parentSha,
          fix: fix ? { sha: fix.crashedSha, experiment: fix.experiment } : null,
          notes: s.notes, instructionsOverride: instructionsOverride ?? null,
        },
      ]);
    } catch (err) {
      // A proposer that cannot work without a person (bad key, bad config) pauses instead of burning experiments.
      s.paused = true;
      s.statusMessage = `paused: the proposer failed: ${failureMessage(err)}`;
      log.warn('proposer failed; campaign paused', { experiment: n, error: s.statusMessage });
      publish('paused');
      await condition(() => !s.paused || s.stopRequested);
      return 'paused' as const;
    }
    s.costUsd += p.costUsd;
    if (p.kind === 'rejected') {
      s.rejectedInARow += 1;
      s.statusMessage = `experiment ${n}: proposal rejected: ${p.reason}`;
      if (s.rejectedInARow >= MAX_REJECTED_IN_A_ROW) {
        s.paused = true;
        s.statusMessage = `paused: ${s.rejectedInARow} proposals in a row were rejected (last: ${p.reason}); check the proposer, then resume`;
      }
      publish();
      if (s.paused) await condition(() => !s.paused || s.stopRequested);
      return p;
    }
    s.rejectedInARow = 0;
    return p;
  }

  /** Moves a candidate onto the current best; null when its change conflicts with it (recorded as a rejection). */
  async function rebase(n: number, attempt: number, sha: string, parent: string): Promise<{ sha: string; parent: string } | null> {
    const onto = s.best!;
    const r = await cpu.rebaseCandidate.executeWithOptions({ summary: `experiment ${n}: rebase onto ${onto.sha.slice(0, 7)} (experiment ${onto.experiment})` }, [
      { repo: input.repo, campaignDir: input.campaignDir, tag, experiment: n, attempt, sha, parent, onto: onto.sha, ontoExperiment: onto.experiment },
    ]);
    return r ? { sha: r, parent: onto.sha } : null;
  }

  /** Waits for one of the campaign's `parallelism` slots; none is taken while paused. */
  async function withSlot<T>(fn: () => Promise<T>): Promise<T> {
    await takeSlot();
    try {
      return await fn();
    } finally {
      freeSlots += 1;
    }
  }

  /**
   * Takes a slot (true), or gives up waiting as soon as `instead` holds (false). The slot is taken
   * inside the predicate: waiters are checked one by one in the order they started waiting, so
   * two of them can never both see the same free slot.
   */
  async function takeSlot(instead: () => boolean = () => false): Promise<boolean> {
    let took = false;
    await condition(() => {
      if (instead()) return true;
      if (freeSlots === 0 || (s.paused && !s.stopRequested)) return false;
      freeSlots -= 1;
      took = true;
      return true;
    });
    return took;
  }

  async function train(n: number, run: number, sha: string, description: string, fresh = false): Promise<RunResult> {
    try {
      return await gpu.runExperiment.executeWithOptions({ summary: `experiment ${n}${run ? ` run ${run}` : ''}: ${oneLine(description)}` }, [
        {
          tag, experiment: n, run, remote: config.remote ?? input.repo, ref: experimentRef(tag, n), sha,
          command: config.run.command,
          // The run index is the seed: repeated runs of one commit differ only by it.
          env: { ...config.run.env, [config.noise.seedEnv]: String(run) },
          timeoutSec: config.run.timeoutSec, metric: config.metric, memoryKey: config.memory?.key,
          // The harness: the candidate checked against the base, locked files hash-checked around
          // the run, the sandbox, the locked evaluation. (New optional fields: replay-safe.)
          locked: config.locked, sandbox: config.sandbox ?? 'auto',
          ...(config.evaluate ? { evaluate: config.evaluate } : {}),
          base: input.baseSha, editable: config.editable, ...(input.guard ? { guard: input.guard } : {}),
          persist: config.run.persist ?? [], ...(config.run.setup ? { setup: config.run.setup } : {}), readOnly: config.run.readOnly ?? [],
          ...(config.run.maxLogMb ? { maxLogBytes: Math.round(config.run.maxLogMb * 1024 * 1024) } : {}),
          ...(fresh ? { fresh } : {}),
        },
      ]);
    } catch (err) {
      // Every retry failed (worker lost again and again): the experiment is still recorded.
      return { outcome: 'crash', exitCode: null, metric: null, memoryMb: null, seconds: 0, logPath: '', host: '', slot: '', logTail: '', reason: `run failed on every attempt: ${failureMessage(err)}` };
    }
  }

  /** The record of experiment n: its runs (and the best's re-runs it caused), its decision and the evidence. */
  async function record(r: {
    n: number; sha: string; parent: string; description: string; runs: RunResult[]; decision: ExperimentRecord['status'];
    metric: number | null; delta: number | null; evidence: string; fixOf: number | null; costUsd: number; bestRuns: RunRecord[]; suspect?: string;
  }): Promise<void> {
    const { n, sha, parent, description, runs, decision: statusWord, metric, delta, evidence, fixOf, costUsd, bestRuns } = r;
    const main = runs.find(runFailed) ?? runs[0];
    const memory = Math.max(...runs.map((r) => r.memoryMb ?? 0));
    const row: ExperimentRecord = {
      tag, experiment: n, commit: sha, parent, status: statusWord, outcome: main.outcome,
      // After a keep the best is already this experiment: what it was compared with is metric - delta.
      metric, bestBefore: n === 0 ? null : metric !== null && delta !== null ? metric - delta : s.best ? mean(s.best.group) : null, delta,
      memoryGb: Math.round((memory / 1024) * 10) / 10,
      description, reason: statusWord === 'crash' ? main.reason : evidence, evidence, runs: runs.length,
      seconds: Math.round(runs.reduce((a, r) => a + r.seconds, 0) * 10) / 10, logPath: main.logPath, host: main.host, slot: main.slot,
      costUsd, fixOf, finishedAt: new Date(Date.now()).toISOString(),
      ...(r.suspect ? { suspect: r.suspect } : {}),
    };
    // The held-out figure: the mean over this experiment's runs, for people only (never in the proposer's context).
    const heldOut = runs.map((r) => r.heldOut).filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
    if (heldOut.length) row.heldOut = heldOut.reduce((a, b) => a + b, 0) / heldOut.length;
    const metricText = metric === null ? 'no metric' : `${config.metric.name} ${metric.toFixed(6)}`;
    await cpu.recordExperiment.executeWithOptions({ summary: `experiment ${n}: ${statusWord} — ${metricText}` }, [
      { campaignDir: input.campaignDir, repo: input.repo, record: row, metricName: config.metric.name, logTail: main.logTail, runs: [...runs.map((r, i) => runRecord(n, i, sha, r)), ...bestRuns] },
    ]);
  }

  function runRecord(n: number, run: number, sha: string, r: RunResult): RunRecord {
    return {
      tag, experiment: n, run, commit: sha, outcome: r.outcome, metric: r.metric, memoryMb: r.memoryMb, seconds: r.seconds, logPath: r.logPath, host: r.host, slot: r.slot, reason: r.reason,
      ...(r.heldOut !== undefined ? { heldOut: r.heldOut } : {}),
      ...(r.isolation ? { isolation: r.isolation } : {}),
    };
  }

  function proposerFixes(): boolean {
    // Random search cannot read a traceback; only agents get crash-fix attempts.
    return config.proposer.kind !== 'mutate';
  }

  function finish(st: 'completed' | 'stopped', message: string): CampaignSnapshot {
    s.statusMessage = message;
    publish(st);
    return status(st);
  }
}

function lite(r: RunResult): RunLite {
  return { metric: r.metric, failed: runFailed(r), reason: r.reason || `run ended: ${r.outcome}` };
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
