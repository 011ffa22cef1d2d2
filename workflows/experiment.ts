// One experiment: propose -> first run -> judge -> record.
//
//   propose an edit on top of the best (or a fix of the last crash), until one passes preflight
//   run it once in one of the campaign's slots, on the current best (rebased first if the best moved)
//   judge it: keep / discard / crash (run by run while the evidence is short, the best re-run beside)
//   record it; on keep the branch moves
//
// The candidate is one object: its commit moves onto each new best, and its proposals and runs in
// slots are counted on it. Experiments in flight run concurrently, and which of them reaches its next
// activity or slot first within one workflow task is part of the history: keep the awaits as they are
// (one more or one fewer async step reorders them, and campaigns in flight would no longer replay).
import { condition, log, patched } from '@temporalio/workflow';
import type { CampaignConfig } from '../common/config';
import type { CrashFix, Group, MoveFacts, Proposal, RunRecord, RunResult } from '../common/shared';
import { configuredSequential, judgeStopped, mean, nextFix, noisePolicy, type Judgement } from './decisions';
import { judgeCandidate, judgeSequentially, sigma, type JudgingIO, type RunLite } from './judging';
import { ablateCredit } from '../common/search';
import { failureMessage, lite, runRecord } from './records';
import type { Slots } from './slots';
import { promote } from './promotion';
import type { Flight, Replaced, WorkflowState } from './state';
import type { Steps } from './steps';

/** Consecutive rejected proposals before the campaign pauses and asks for a person. */
const MAX_REJECTED_IN_A_ROW = 5;
/** patched() ids: campaigns started by older workers keep their old steps (docs/upgrading.md). */
const REBASE_WHILE_QUEUED = 'rebase-while-queued';
const KEEP_AT_DECISION = 'keep-at-decision';
const SUSPECT_GAINS = 'suspect-gains';
const SEQUENTIAL_JUDGING = 'sequential-judging';
const SEARCH = 'search';

/** The campaign's parts an experiment works with. */
export interface Lab {
  tag: string;
  config: CampaignConfig;
  state: WorkflowState;
  slots: Slots;
  steps: Steps;
}

/** The experiment's candidate, from its proposal to its record. */
class Candidate {
  sha = '';
  /** The best it is built on. */
  parent = '';
  description = '';
  /** Proposals made so far: the last one is attempt `attempts - 1`. */
  attempts = 0;
  costUsd = 0;
  /** Its runs holding a slot now. */
  slotted = 0;
  /** The best it replaced, once kept. */
  replaced: Replaced | null = null;
  /** A move of the engine's own (config `search`): combine, ablate or revisit. */
  move: MoveFacts | undefined;

  constructor(
    readonly experiment: number,
    readonly flight: Flight,
  ) {}
}

type FirstRun = RunResult | 'stopped' | 'conflict';

/** One experiment, from proposal to record. Leaves no trace if the campaign stops before it runs. */
export async function experiment(lab: Lab, n: number): Promise<void> {
  const { config, state, steps } = lab;
  const s = state.carry;
  const fix = s.fix;
  s.fix = null;
  const flight = state.flights.get(n)!;
  const c = new Candidate(n, flight);
  let first: RunResult | null = null;
  while (!first) {
    // Proposals until one passes preflight (each rejection is recorded and counted).
    let proposal: Extract<Proposal, { kind: 'candidate' }> | null = null;
    while (!proposal) {
      if (s.stopRequested) return;
      c.parent = s.best!.sha;
      flight.phase = 'propose';
      flight.description = fix ? `fix of experiment ${fix.experiment}` : '';
      const p = await propose(lab, c, fix);
      if (p === 'paused') continue;
      c.costUsd += p.costUsd;
      // Files trained before: the proposal activity recorded the experiment with that result; no run.
      if (p.kind === 'duplicate' && patched(SEARCH)) return reused(lab, n, p);
      if (p.kind === 'candidate') proposal = p;
    }
    c.sha = proposal.sha;
    c.description = proposal.description;
    c.move = proposal.move;
    flight.description = c.description;
    flight.phase = 'queued';
    // The first run. A proposal prepared while the best moved is rebased onto the new best;
    // one that conflicts with it is proposed again, on top of it.
    const ran = patched(REBASE_WHILE_QUEUED) ? await firstRunOnBest(lab, c) : await firstRunInSlot(lab, c);
    if (ran === 'stopped') return;
    if (ran !== 'conflict') first = ran;
    else s.statusMessage = `experiment ${n}: its change conflicts with the new best; proposing again`;
  }

  const runs: RunResult[] = [first];
  const bestReRuns: RunRecord[] = [];
  // Decided keeps take effect at once, for every experiment in flight (older campaigns: once recorded).
  const keepAtOnce = patched(KEEP_AT_DECISION);
  // A gain far beyond anything seen is confirmed on clean caches and flagged (older campaigns: not judged so).
  const suspects = patched(SUSPECT_GAINS) ? { largestGain: s.largestGain ?? null } : undefined;
  // An ablation (a kept change taken out) is kept when no worse than the search's slack: simpler is better.
  const credit = c.move?.kind === 'ablate' && patched(SEARCH) ? ablateCredit(sigma(state.noise()!), config.search) : 0;
  const io = credited(judgingIO(lab, c, { runs, bestReRuns, keepAtOnce }), credit, config.metric.direction);
  // Decided run by run (campaigns started before: one run, then a fixed number of confirmation runs).
  const judge = configuredSequential(config) && patched(SEQUENTIAL_JUDGING) ? judgeSequentially : judgeCandidate;
  // A first run stopped early is a discard: never confirmed, never a keep (config progress.earlyStop).
  const judgement =
    first.outcome === 'stopped'
      ? judgeStopped(first)
      : uncredited(
          await judge(
            creditRun(lite(first), credit, config.metric.direction),
            state.noise()!,
            noisePolicy(config),
            io,
            suspects,
          ),
          credit,
          config.metric.direction,
        );

  flight.phase = 'record';
  if (judgement.kind === 'keep' && !c.replaced) c.replaced = state.adopt(c, judgement, runs);
  const before = c.replaced?.metric ?? mean(s.best!.group);
  if (judgement.kind === 'keep') await steps.moveBranch({ experiment: n, from: c.replaced!.sha, to: c.sha });
  if (judgement.kind === 'crash') {
    s.crashes += 1;
    const fixes = config.proposer.kind !== 'mutate'; // random search cannot read a traceback: only agents fix
    s.fix = fixes ? nextFix(fix, { sha: c.sha, experiment: n }, config.crash.maxFixAttempts) : null;
  }
  await steps.record({ n, candidate: c, runs, judgement, before, fixOf: fix?.experiment ?? null, bestReRuns });
  s.experiments += 1;
  state.announce(`experiment ${n}: ${judgement.kind} — ${c.description}`);
  // Does the keep survive a larger scale? (config `promote`; campaigns without it never ask.)
  if (judgement.kind === 'keep' && config.promote) {
    flight.phase = 'promote';
    await promote(
      lab,
      { experiment: n, sha: c.sha, description: c.description, metric: judgement.metric },
      c.replaced!,
    );
  }
}

/** A proposal for the candidate's experiment: a candidate, a rejection, or 'paused' (the proposer needs a person). */
async function propose(lab: Lab, c: Candidate, fix: CrashFix | null): Promise<Proposal | 'paused'> {
  const { state } = lab;
  const s = state.carry;
  let p;
  try {
    p = await lab.steps.propose({ n: c.experiment, attempt: c.attempts++, parentSha: c.parent, fix });
  } catch (err) {
    // A proposer that cannot work without a person (bad key, bad config) pauses instead of burning experiments.
    s.paused = true;
    state.announce(`paused: the proposer failed: ${failureMessage(err)}`, 'paused');
    log.warn('proposer failed; campaign paused', { experiment: c.experiment, error: s.statusMessage });
    await condition(() => !s.paused || s.stopRequested);
    return 'paused';
  }
  s.costUsd += p.costUsd;
  if (p.kind === 'rejected') {
    // (A duplicate sent back is no sign of a proposer that needs a person: it does not count.)
    if (!p.flagged) s.rejectedInARow += 1;
    s.statusMessage = `experiment ${c.experiment}: proposal rejected: ${p.reason}`;
    if (s.rejectedInARow >= MAX_REJECTED_IN_A_ROW) {
      s.paused = true;
      const why = `${s.rejectedInARow} proposals in a row were rejected (last: ${p.reason})`;
      s.statusMessage = `paused: ${why}; check the proposer, then resume`;
    }
    state.publish();
    if (s.paused) await condition(() => !s.paused || s.stopRequested);
    return p;
  }
  s.rejectedInARow = 0;
  return p;
}

/** The candidate's first run, as the campaign's steps schedule it. */
function firstRunOf(lab: Lab, c: Candidate): () => Promise<RunResult> {
  const order = () => ({ experiment: c.experiment, run: 0, sha: c.sha, description: c.description });
  // (No async step added where the early stop is off: see the header.)
  if (!lab.config.progress?.earlyStop) return () => lab.steps.run({ ...order(), mayStop: true });
  return async () => {
    const { state } = lab;
    const mode = state.earlyStopMode();
    const best = state.carry.best!.sha;
    const r = await lab.steps.run({ ...order(), mayStop: mode === 'watch' });
    state.noteFirstRun(best, r, mode === 'audit');
    return r;
  };
}

/**
 * A queued candidate is rebased as soon as the best moves, without holding a slot, and a
 * conflicting one is proposed again at once: a freed slot goes to a candidate already on the
 * best, so no GPU waits for a rebase it could skip or for a proposal made after the keep.
 */
async function firstRunOnBest(lab: Lab, c: Candidate): Promise<FirstRun> {
  const { slots } = lab;
  const s = lab.state.carry;
  for (;;) {
    const took = await slots.take(() => c.parent !== s.best!.sha || s.stopRequested);
    if (took && c.parent === s.best!.sha && !s.stopRequested) {
      try {
        s.statusMessage = `experiment ${c.experiment}: training — ${c.description}`;
        return await inSlot(lab, c, 'train', firstRunOf(lab, c));
      } finally {
        slots.release();
      }
    }
    if (took) slots.release(); // the best moved in the same instant: rebase first
    if (s.stopRequested) return 'stopped';
    if (!(await lab.steps.rebase(c))) return 'conflict';
  }
}

/** Before `rebase-while-queued`: a queued candidate waited for a slot, then was rebased in it. */
function firstRunInSlot(lab: Lab, c: Candidate): Promise<FirstRun> {
  const s = lab.state.carry;
  return lab.slots.hold(async (): Promise<FirstRun> => {
    if (s.stopRequested) return 'stopped';
    // The slot is held from here on: status shows it as training, even while rebasing.
    c.flight.phase = 'train';
    if (c.parent !== s.best!.sha && !(await lab.steps.rebase(c))) return 'conflict';
    s.statusMessage = `experiment ${c.experiment}: training — ${c.description}`;
    return inSlot(lab, c, 'train', firstRunOf(lab, c));
  });
}

/**
 * Runs one of the candidate's runs in the slot the caller holds: the phase says 'train' or
 * 'confirm' only while a run of it holds a slot (status and the dashboard count those as
 * training), and 'judge' once none does.
 */
async function inSlot(
  lab: Lab,
  c: Candidate,
  phase: 'train' | 'confirm',
  run: () => Promise<RunResult>,
): Promise<RunResult> {
  c.slotted += 1;
  c.flight.phase = phase;
  // The first run publishes (its search attributes are in every history): a confirmation does not.
  if (phase === 'train') lab.state.publish();
  try {
    return await run();
  } finally {
    if (--c.slotted === 0) c.flight.phase = 'judge';
  }
}

/** What judging the candidate runs and asks: its confirmation runs, the best's re-runs, its rebases, its keep. */
function judgingIO(
  lab: Lab,
  c: Candidate,
  o: { runs: RunResult[]; bestReRuns: RunRecord[]; keepAtOnce: boolean },
): JudgingIO {
  const { tag, state, slots, steps } = lab;
  return {
    candidate: (run, fresh) =>
      slots.hold(async () => {
        const r = await inSlot(lab, c, 'confirm', () =>
          steps.run({ experiment: c.experiment, run, sha: c.sha, description: c.description, fresh }),
        );
        o.runs.push(r);
        return lite(r);
      }),
    best: (best, run) =>
      slots.hold(async () => {
        // On clean caches: what another run left in them could only drag the best's mean down.
        const description = `re-run of the best (experiment ${best.experiment})`;
        const r = await steps.run({ experiment: best.experiment, run, sha: best.sha, description, fresh: true });
        o.bestReRuns.push(runRecord({ tag, experiment: best.experiment, run, commit: best.sha, result: r }));
        state.noteBestCurves(best.sha, [r]);
        return lite(r);
      }),
    onBest: () => c.parent === state.carry.best!.sha,
    // (An async step of its own, as the recorded histories have it: see the header.)
    rebase: async () => await steps.rebase(c),
    // Decided: the new best takes effect now, for every experiment in flight.
    ...(o.keepAtOnce ? { adopt: (keep) => void (c.replaced = state.adopt(c, keep, o.runs)) } : {}),
  };
}

/** A proposal whose files an earlier experiment trained: already recorded with its result, no run. */
function reused(lab: Lab, n: number, p: Extract<Proposal, { kind: 'duplicate' }>): void {
  const s = lab.state.carry;
  s.experiments += 1;
  if (p.status === 'crash') s.crashes += 1;
  lab.state.announce(
    `experiment ${n}: ${p.status} — ${p.evidence ?? `the same files as experiment ${p.of}, its result reused`}`,
  );
}

/** A figure moved `credit` the better way (an ablation's slack); failed runs stay as they are. */
function creditRun(r: RunLite, credit: number, direction: 'lower' | 'higher'): RunLite {
  if (!credit || r.metric === null) return r;
  return { ...r, metric: r.metric + (direction === 'lower' ? -credit : credit) };
}

/** Judging's runs of the candidate, credited (the best's runs are not). */
function credited(io: JudgingIO, credit: number, direction: 'lower' | 'higher'): JudgingIO {
  if (!credit) return io;
  const back = (keep: { group: Group; runs: number }) => ({
    ...keep,
    group: uncreditGroup(keep.group, credit, direction),
  });
  return {
    ...io,
    candidate: async (run, fresh) => creditRun(await io.candidate(run, fresh), credit, direction),
    ...(io.adopt ? { adopt: (keep) => io.adopt!(back(keep)) } : {}),
  };
}

/** The judgement with the credit taken back out of its figures: the records show what was measured. */
function uncredited<J extends Judgement>(j: J, credit: number, direction: 'lower' | 'higher'): J {
  if (!credit || (j.kind !== 'keep' && j.kind !== 'discard')) return j;
  const shift = direction === 'lower' ? credit : -credit;
  const evidence = `${j.evidence}; an ablation, judged with ${credit.toFixed(6)} of slack (search.ablateSlack sigmas)`;
  return {
    ...j,
    metric: j.metric + shift,
    delta: j.delta + shift,
    group: uncreditGroup(j.group, credit, direction),
    evidence,
  };
}

function uncreditGroup(g: Group, credit: number, direction: 'lower' | 'higher'): Group {
  return { ...g, mean: g.mean + (direction === 'lower' ? credit : -credit) };
}
