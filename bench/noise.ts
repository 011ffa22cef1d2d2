// bench/noise: how often does a keep rule keep a change that did nothing, how often does it keep
// one that really helped, and how many runs does it spend to decide? Two simulated trainers, whose
// metric (lower is better) is
//   noise:    the baseline's mean plus Gaussian noise (the change does nothing), and
//   2 sigma:  the baseline's mean minus 2 standard deviations, plus the same noise (a real gain),
// judged against an unchanged baseline by three rules:
//   autoresearch:     one run of the baseline, one run of the change; keep if it is lower at all;
//   nightlab:         the real judgeSequentially of workflows/judging.ts (campaigns started since
//                     the `sequential-judging` patch) with the default policy: after each run of
//                     the change, keep, discard or run it once more, re-running the best beside it
//                     while the best has fewer than bestRuns runs;
//   nightlab-confirm: the real judgeCandidate (the rule of campaigns started before): one run,
//                     then confirmRuns more for a promising change while the best is re-run up to
//                     bestRuns runs.
// Nightlab's baseline runs baselineRuns times, and the campaign's noise estimate (NoiseState:
// the pooled noise, the best's runs) carries from one decision to the next, as in a campaign.
// Each simulated campaign runs its baseline, then judges `--experiments` changes against it (100,
// the default budget; a keep is counted, not adopted: every decision faces the same baseline, and
// the keep's runs join the noise estimate, as a kept best's do once it is replaced);
// `--campaigns` of them per trainer (a campaign's decisions share its baseline's luck, so it takes
// many campaigns for rates to settle within a few tenths of a percent). Runs per experiment count
// the change's runs and the re-runs of the best made while it was judged; `+baseline` adds the
// campaign's baseline runs, shared out.
// The noise estimate is weakest at the start of a campaign (a few baseline runs), so each rule is
// also measured over the first 10 decisions of each campaign.
//
// Last, the bound (bench/bound.ts): the fewest runs per experiment that any rule meeting the false-keep
// rate and 90% detection could spend on these trainers, even knowing the noise exactly, with the best's
// runs beyond the baseline paid for once and shared out over the campaign's experiments (for rules that
// learn the best's figure from its own runs, not from the other candidates').
//
//   npm run bench:noise [-- --campaigns 1000 --experiments 100 --seed 1]
// The noise settings can be changed too (--falseKeep, --detect, --confirmRuns, --bestRuns,
// --baselineRuns), to see what other settings buy.
import { closeGroup } from '../workflows/decisions';
import { optimalTest } from './bound';
import { benchSetup, gaussian, judge, noiseState, rng, type Rule } from './sim';
import { figure } from './harness';

const { args: ARGS, policy, baselineRuns } = benchSetup({ campaigns: 1000, experiments: 100, seed: 1 });
const EARLY = 10;

const MEAN = 1.0; // the baseline's true metric
const SIGMA = 0.01; // run-to-run noise (seeds)
const GAIN = 2 * SIGMA; // the real improvement of the second trainer

type System = 'autoresearch' | 'nightlab' | 'nightlab-confirm';
const RULES: Record<Exclude<System, 'autoresearch'>, Rule> = { nightlab: 'sequential', 'nightlab-confirm': 'confirm' };

interface Tally {
  keeps: number;
  decisions: number;
  runs: number;
  baselineRuns: number;
}
const tally = (): Tally => ({ keeps: 0, decisions: 0, runs: 0, baselineRuns: 0 });

/** Keeps, decisions and runs of one system for a trainer whose change shifts the mean by `shift`: all, and early. */
async function simulate(system: System, shift: number, seed: number): Promise<{ all: Tally; early: Tally }> {
  const z = gaussian(rng(seed));
  const baselineRun = () => MEAN + SIGMA * z();
  const candidateRun = () => MEAN + shift + SIGMA * z();
  const all = tally();
  const early = tally();
  const count = (e: number, runs: number, keep: boolean) => {
    for (const t of e <= EARLY ? [all, early] : [all]) {
      t.decisions += 1;
      t.runs += runs;
      if (keep) t.keeps += 1;
    }
  };
  for (let c = 0; c < ARGS.campaigns; c++) {
    if (system === 'autoresearch') {
      // One baseline run; each change kept if its one run is lower.
      const b = baselineRun();
      for (const t of [all, early]) t.baselineRuns += 1;
      for (let e = 1; e <= ARGS.experiments; e++) count(e, 1, candidateRun() < b);
      continue;
    }
    // Nightlab: the baseline `baselineRuns` times, then the real judgement, its state carried along.
    const state = noiseState('baseline', Array.from({ length: baselineRuns }, baselineRun));
    for (const t of [all, early]) t.baselineRuns += baselineRuns;
    for (let e = 1; e <= ARGS.experiments; e++) {
      const { judgement, bestRuns } = await judge(RULES[system], state, policy, {
        candidate: candidateRun,
        best: baselineRun,
      });
      count(e, judgement.runs + bestRuns, judgement.kind === 'keep');
      // A keep's runs join the noise estimate, as in a campaign once a later keep replaces it.
      if (judgement.kind === 'keep') state.pool = closeGroup(state.pool, judgement.group);
    }
  }
  return { all, early };
}

const pct = (t: Tally) => `${((100 * t.keeps) / t.decisions).toFixed(1)}%`;
const per = (runs: number, decisions: number) => (runs / decisions).toFixed(2);

console.log(
  `# ${ARGS.campaigns} campaigns x ${ARGS.experiments} experiments per trainer: noise only, and a true gain of 2 sigma`,
);
console.log(
  `# nightlab policy: falseKeep ${policy.falseKeep}, detect ${policy.detect} sigma, confirmRuns ${policy.confirmRuns}, bestRuns ${policy.bestRuns}, baselineRuns ${baselineRuns}; nightlab-confirm: k ${policy.k}, the same runs`,
);
for (const system of ['autoresearch', 'nightlab', 'nightlab-confirm'] as const) {
  const noise = await simulate(system, 0, ARGS.seed);
  const better = await simulate(system, -GAIN, ARGS.seed + 1);
  for (const stage of ['all', 'early'] as const) {
    if (stage === 'early' && ARGS.experiments <= EARLY) continue;
    const [a, b] = [noise[stage], better[stage]];
    const decisions = a.decisions + b.decisions;
    figure(system, {
      decisions: stage === 'all' ? 'all ' : `1-${EARLY}`,
      'false-keep': pct(a),
      detection: pct(b),
      'runs/experiment': per(a.runs + b.runs, decisions),
      '+baseline': per(a.runs + b.runs + a.baselineRuns + b.baselineRuns, decisions),
    });
  }
}

const DETECTION = 0.9; // the detection a rule must keep (the issue's target)
const test = (bestRuns: number) =>
  optimalTest({ gain: GAIN / SIGMA, falseKeep: policy.falseKeep, detect: DETECTION, bestRuns });
const known = test(Infinity);
const shared = [10, 15, 20, 30].map((m) => ({ m, runs: test(m).bound + (m - baselineRuns) / ARGS.experiments }));
const least = shared.reduce((a, b) => (b.runs < a.runs ? b : a));
console.log(
  `# bound: no rule with <= ${100 * policy.falseKeep}% false keeps and >= ${100 * DETECTION}% detection that learns the best's figure from its own runs spends fewer than ` +
    `${least.runs.toFixed(2)} runs/experiment here, even knowing the noise exactly (the best re-run to ${least.m} runs, ` +
    `shared out: ${shared.map((x) => `${x.m} runs ${x.runs.toFixed(2)}`).join(', ')}); ${known.bound.toFixed(2)} with the best's mean known exactly`,
);
