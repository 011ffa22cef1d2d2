// bench/fidelity: what early stopping buys in a fixed GPU budget. Simulated campaigns whose runs print a
// learning curve (a checkpoint every 5% of the budget), each system given the same GPU-hours per campaign,
// a run costing its training time (300 s, or the share done when it is stopped) plus 25 s of overhead:
//   autoresearch:  one baseline run; one full run per experiment, kept if lower than the best's figure;
//   nightlab:      the real judgeSequentially (workflows/judging.ts, via bench/sim.ts), default policy;
//   nightlab-stop: the same, and each candidate's first run is watched by the real early-stop rule
//                  (common/early-stop.ts) against the best's runs' curves (when the best has 2 or more);
//                  a stopped run is a discard (its partial figure joins no noise estimate), and the
//                  time it saved goes to more experiments. Further runs and the best's re-runs always
//                  run to the end.
//   ideal-stop:    a bound, not a system: what any rule that reads a curve could do at best. The most a
//                  first run's curve can tell is the idea's true effect and where this run ends (its
//                  seed); given both, the run's chance of a keep is its judgement repeated over other
//                  draws of the further runs. Stops, at `after`, every first run whose chance is at most
//                  --idealChance (0.025: never kept in 40 draws, or once);
//   oracle-stop:   a bound, not a system: nightlab stopping, at `after`, exactly the first runs that its
//                  judge would not keep on the further runs it will actually draw (no rule can know those).
// The model (lower is better; a figure near 1, like val_bpb):
// - A run's curve decays like a power law toward its final figure F:
//     value(t) = F + s x A x g(t),  g(t) = (t + T0)^-ALPHA - (1 + T0)^-ALPHA,  t the share of the budget done,
//   A such that at 30% the curve is still 0.1 above F (10 typical effects); s its learning speed (1 for
//   the baseline).
// - Seed noise: the final figure moves by SIGMA (the judge's run-to-run noise; --noise in units of UNIT);
//   a seed also learns a little faster or slower (SEED_SPEED of the descent), so runs scatter most early;
//   each checkpoint adds its own noise (POINT x SIGMA at the end, larger early, as for a loss measured on
//   a batch): per-run noise shrinks as training goes on.
// - A proposal (experiment n is the same idea in every system, drawn from the campaign's seed) changes the
//   final figure by an effect: 50% harm (|z| x UNIT), 10% a severe harm (2-6 UNIT: a bug, a bad learning
//   rate), 30% a small gain (up to 0.5 UNIT), 10% a large gain (1.5-4 UNIT); gains shrink as the best
//   nears the optimum (OPTIMUM). Half of the effect shows from the start, the rest grows with training.
//   It also changes the learning speed: s x exp(kappa), kappa ~ N(0, 0.1); a fifth of the proposals are
//   slow starters (warm-up, regularisation, another schedule: kappa 0.1-0.7, up to twice as slow at
//   first), whatever their effect, so early rank predicts final rank imperfectly and a slow starter with a
//   gain is a late bloomer: behind for most of its run, ahead at the end.
// One line per system: experiments per GPU-hour, the share of GPU time saved by stops (of what full runs
// would have cost), false stops (stopped runs that would have been kept had they run to the end, judged by
// the same judge on the same draws, as a % of would-be keeps), stops and where they fell, and the true final
// figure of the best reached in the budget.
//
//   npm run bench:fidelity [-- --campaigns 200 --hours 12 --noise 0.5 --seed 1]
// the early-stop settings (--after 0.3 --margin 0.75 --bloom 0.02 --checks 1), --idealChance 0.025; the noise
// settings as in bench:noise.
import { EARLY_STOP_DEFAULTS, firstStop, predictEnd, type EarlyStopSettings } from '../common/early-stop';
import type { Curve } from '../common/curves';
import type { NoiseState } from '../common/shared';
import { adoptBest } from '../workflows/judging';
import { mean } from '../workflows/decisions';
import { benchSetup, gaussian, judge, noiseState, rng } from './sim';
import { figure } from './harness';

const {
  args: ARGS,
  policy,
  baselineRuns,
} = benchSetup({
  campaigns: 200,
  hours: 12,
  noise: 0.5,
  seed: 1,
  idealChance: 0.025,
  ...EARLY_STOP_DEFAULTS,
});
const STOP: EarlyStopSettings = {
  after: ARGS.after,
  margin: ARGS.margin,
  bloom: ARGS.bloom,
  checks: ARGS.checks,
  direction: 'lower',
};

const TRAIN_S = 300; // a run's training budget (autoresearch's 5 minutes)
const OVERHEAD_S = 25; // start, compile, evaluation: paid by every run, stopped or not
const CHECKPOINTS = 20; // progress lines per run
const BASE = 1.0; // the baseline's true final figure
const OPTIMUM = 0.9; // no campaign gets below this
const UNIT = 0.01; // a typical effect
const SIGMA = ARGS.noise * UNIT; // run-to-run noise of the final figure
const ALPHA = 0.5; // the power law's exponent
const T0 = 0.02; // its offset (the first steps)
const g = (t: number) => (t + T0) ** -ALPHA - (1 + T0) ** -ALPHA;
const A = 0.1 / g(0.3); // still 0.1 above the final figure at 30%
const SEED_SPEED = 0.05; // seeds learn up to ~5% faster or slower
const POINT = 0.5; // a checkpoint's own noise at the end, in SIGMA
const SHOW = 0.5; // the share of an effect that shows from the start
const SLOW_SHARE = 0.2; // proposals that start slow

/** Experiment n of a campaign: its effect on the final figure (gains before scaling) and learning speed. */
interface Idea {
  effect: number;
  gain: boolean;
  speed: number;
}

/**
 * One seeded stream per (campaign, what, index): a draw does not depend on the order of the others. The
 * seed is mixed first: XORed in as it is, seeds 1 and 2 drew the same campaigns in another order.
 */
const SEED = Math.imul(ARGS.seed ^ 0x5bd1e995, 0x85ebca6b);
const stream = (...keys: number[]) => rng(keys.reduce((h, k) => Math.imul(h ^ k, 0x9e3779b1) + 0x7f4a7c15, SEED));

function idea(campaign: number, n: number): Idea {
  const u = stream(campaign, 1, n);
  const z = gaussian(stream(campaign, 2, n));
  const r = u();
  const [effect, gain] =
    r < 0.5
      ? [UNIT * Math.abs(z()), false]
      : r < 0.6
        ? [UNIT * (2 + 4 * u()), false]
        : r < 0.9
          ? [-UNIT * 0.5 * u(), true]
          : [-UNIT * (1.5 + 2.5 * u()), true];
  const kappa = u() < SLOW_SHARE ? 0.1 + 0.6 * u() : 0.1 * z();
  return { effect, gain, speed: Math.exp(kappa) };
}

/** A commit as the simulation knows it: its true final figure, its learning speed, how its last effect shows. */
interface Commit {
  id: number;
  final: number;
  speed: number;
  /** The effect of its change over its parent (shows partly early), and the parent's final figure. */
  effect: number;
}

/** The baseline: the commit every campaign starts from. */
const BASELINE: Commit = { id: 0, final: BASE, speed: 1, effect: 0 };

function child(parent: Commit, campaign: number, n: number): Commit {
  const i = idea(campaign, n);
  const effect = i.gain ? (i.effect * (parent.final - OPTIMUM)) / (BASE - OPTIMUM) : i.effect;
  return { id: n, final: parent.final + effect, speed: parent.speed * i.speed, effect };
}

/** Run `run` of a commit (seeded by the campaign, the commit and the run): its curve and final figure. */
function draw(campaign: number, c: Commit, run: number): { curve: Curve; metric: number } {
  const z = gaussian(stream(campaign, 3, c.id, run));
  const [seed, speed] = [SIGMA * z(), c.speed * (1 + SEED_SPEED * z())];
  const value = (t: number) => c.final - (1 - SHOW) * (1 - t) * c.effect + speed * A * g(t) + seed;
  const curve = Array.from({ length: CHECKPOINTS }, (_, i) => {
    const t = (i + 1) / CHECKPOINTS;
    return { at: t, value: value(t) + POINT * SIGMA * Math.sqrt((1 + T0) / (t + T0)) * z() };
  });
  return { curve, metric: c.final + seed };
}

const runCost = (at = 1) => OVERHEAD_S + at * TRAIN_S;

interface Outcome {
  truth: number;
  experiments: number;
  seconds: number;
  keeps: number;
  stops: number;
  stoppedAt: number;
  saved: number;
  wouldKeep: number;
  falseStops: number;
}

type System = 'autoresearch' | 'nightlab' | 'nightlab-stop' | 'ideal-stop' | 'oracle-stop';

function autoresearch(campaign: number, budget: number): Outcome {
  let best = BASELINE;
  let figure = draw(campaign, best, 0).metric;
  const out = { ...tally(), seconds: runCost() };
  while (out.seconds < budget) {
    const c = child(best, campaign, ++out.experiments);
    const x = draw(campaign, c, 0).metric;
    out.seconds += runCost();
    if (x < figure) [best, figure, out.keeps] = [c, x, out.keeps + 1];
  }
  return { ...out, truth: best.final };
}

const tally = () => ({ experiments: 0, keeps: 0, stops: 0, stoppedAt: 0, saved: 0, wouldKeep: 0, falseStops: 0 });

/** Nightlab's campaign, with or without early stop: the real sequential judging, runs on the GPU clock. */
async function nightlab(campaign: number, budget: number, stop: boolean | 'oracle' | 'ideal'): Promise<Outcome> {
  let best = BASELINE;
  const baseline = Array.from({ length: baselineRuns }, (_, r) => draw(campaign, best, r));
  const state = noiseState(
    '0',
    baseline.map((r) => r.metric),
  );
  let bestCurves = baseline.map((r) => r.curve);
  const out = { ...tally(), seconds: baselineRuns * runCost() };
  let largestGain: number | null = null;
  while (out.seconds < budget) {
    const c = child(best, campaign, ++out.experiments);
    const first = draw(campaign, c, 0);
    const verdict =
      stop === 'oracle'
        ? await oracle(state, campaign, { best, c, first: first.metric }, largestGain)
        : stop === 'ideal'
          ? await ideal(state, campaign, { best, c, first: first.metric }, largestGain)
          : stop && bestCurves.length >= 2
            ? firstStop(first.curve, bestCurves, STOP)
            : null;
    if (verdict) {
      out.seconds += runCost(verdict.at);
      out.saved += (1 - verdict.at) * TRAIN_S;
      out.stops += 1;
      out.stoppedAt += verdict.at;
      // Would it have been kept had it run to the end? The same judge on the same draws, on a copy.
      const would = await judgeOn(structuredClone(state), campaign, { best, c, first: first.metric }, largestGain);
      if (would.judgement.kind === 'keep') [out.wouldKeep, out.falseStops] = [out.wouldKeep + 1, out.falseStops + 1];
      continue;
    }
    const { judgement, bestRuns, curves, reRuns } = await judgeOn(
      state,
      campaign,
      { best, c, first: first.metric },
      largestGain,
    );
    out.seconds += (judgement.runs + bestRuns) * runCost();
    bestCurves = [...bestCurves, ...reRuns];
    if (judgement.kind !== 'keep') continue;
    out.keeps += 1;
    out.wouldKeep += 1;
    largestGain = Math.max(largestGain ?? 0, mean(state.best.group) - mean(judgement.group));
    adoptBest(state, { sha: String(c.id), experiment: c.id, group: judgement.group, nextRun: judgement.runs });
    [best, bestCurves] = [c, [first.curve, ...curves]];
  }
  return { ...out, truth: best.final };
}

/** The bound no rule stopping at `after` can beat: every first run that would not be kept stops there. */
async function oracle(
  state: NoiseState,
  campaign: number,
  o: Parameters<typeof judgeOn>[2],
  largestGain: number | null,
) {
  const would = await judgeOn(structuredClone(state), campaign, o, largestGain);
  return would.judgement.kind === 'keep' ? null : { at: STOP.after };
}

/**
 * The bound for any rule that reads a curve (see above): stops, at `after`, a first run whose chance of a
 * keep, given its true effect and its own final figure, is at most --idealChance: its judgement repeated
 * on a copy of the state over IDEAL_DRAWS other draws of the further runs (the candidate's, the best's).
 */
async function ideal(
  state: NoiseState,
  campaign: number,
  o: Parameters<typeof judgeOn>[2],
  largestGain: number | null,
) {
  let keeps = 0;
  for (let k = 1; k <= IDEAL_DRAWS; k++) {
    const would = await judgeOn(structuredClone(state), campaign, o, largestGain, k * 1000);
    if (would.judgement.kind === 'keep') keeps += 1;
  }
  return keeps / IDEAL_DRAWS <= ARGS.idealChance ? { at: STOP.after } : null;
}
const IDEAL_DRAWS = 40;

/**
 * The real judgement of candidate `c` whose first run gave `first`: further runs of `c` and re-runs of
 * the best are drawn by run index (the best's from its runs so far; `offset` draws others), so a copy of
 * the state judged again sees the same runs. Returns the curves of the candidate's further runs and of
 * the best's re-runs.
 */
async function judgeOn(
  state: NoiseState,
  campaign: number,
  o: { best: Commit; c: Commit; first: number },
  largestGain: number | null,
  offset = 0,
) {
  const curves: Curve[] = [];
  const reRuns: Curve[] = [];
  let [candidateRun, bestRun] = [offset, state.best.nextRun + offset];
  const run = (c: Commit, r: number, into: Curve[]) => {
    const d = draw(campaign, c, r);
    into.push(d.curve);
    return d.metric;
  };
  const io = {
    candidate: () => (candidateRun++ === offset ? o.first : run(o.c, candidateRun - 1, curves)),
    best: () => run(o.best, bestRun++, reRuns),
  };
  return { ...(await judge('sequential', state, policy, io, { largestGain })), curves, reRuns };
}

console.log(
  `# ${ARGS.campaigns} campaigns, ${ARGS.hours} GPU-hours each (a run ${TRAIN_S} s + ${OVERHEAD_S} s); ` +
    `noise ${SIGMA} (effects ~${UNIT}); early stop: after ${STOP.after}, margin ${STOP.margin}, ` +
    `bloom ${STOP.bloom}, checks ${STOP.checks}; nightlab: falseKeep ${policy.falseKeep}, detect ${policy.detect}, ` +
    `baselineRuns ${baselineRuns}`,
);
const budget = ARGS.hours * 3600;
const STOPS = { nightlab: false, 'nightlab-stop': true, 'ideal-stop': 'ideal', 'oracle-stop': 'oracle' } as const;
for (const system of ['autoresearch', 'nightlab', 'nightlab-stop', 'ideal-stop', 'oracle-stop'] as System[]) {
  const out: Outcome[] = [];
  for (let c = 0; c < ARGS.campaigns; c++) {
    out.push(system === 'autoresearch' ? autoresearch(c, budget) : await nightlab(c, budget, STOPS[system]));
  }
  const sum = (f: (o: Outcome) => number) => out.reduce((a, o) => a + f(o), 0);
  const stops = sum((o) => o.stops);
  figure(system, {
    'experiments/GPU-hour': (sum((o) => o.experiments) / (sum((o) => o.seconds) / 3600)).toFixed(2),
    saved: `${((100 * sum((o) => o.saved)) / (sum((o) => o.seconds) + sum((o) => o.saved))).toFixed(1)}%`,
    'false-stops': `${(
      (100 * sum((o) => o.falseStops)) /
      Math.max(
        1,
        sum((o) => o.wouldKeep),
      )
    ).toFixed(1)}%`,
    stops: `${((100 * stops) / sum((o) => o.experiments)).toFixed(0)}%`,
    'stopped-at': stops ? `${((100 * sum((o) => o.stoppedAt)) / stops).toFixed(0)}%` : '-',
    'true-best': (sum((o) => o.truth) / out.length).toFixed(4),
    keeps: (sum((o) => o.keeps) / out.length).toFixed(1),
  });
}

// How well does a curve tell its end? The rule's prediction (the baseline runs' mean curve, stretched and
// shifted: predictEnd) from a first run's points up to `at`, over the first 50 ideas of each campaign on
// the baseline: the root mean square of its miss of where the curve ends, in noise sigmas
// (bench:real-curves prints the same of real curves).
const misses = [0.2, 0.3, 0.5].map((at) => {
  let [sum, n] = [0, 0];
  for (let campaign = 0; campaign < ARGS.campaigns; campaign++) {
    const reference = Array.from({ length: baselineRuns }, (_, r) => draw(campaign, BASELINE, r).curve);
    for (let i = 1; i <= 50; i++) {
      const { curve } = draw(campaign, child(BASELINE, campaign, i), 0);
      const end = predictEnd(
        curve.filter((p) => p.at <= at + 1e-9),
        reference,
      )?.end;
      sum += ((end ?? NaN) - curve[curve.length - 1].value) ** 2;
      n += 1;
    }
  }
  return `${(Math.sqrt(sum / n) / SIGMA).toFixed(2)} at ${100 * at}%`;
});
console.log(`# the rule's predicted end misses where a first run's curve ends by ${misses.join(', ')} (sigmas)`);
