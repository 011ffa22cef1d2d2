// bench/noise: how often does a keep rule keep a change that did nothing, and how often does it
// keep one that really helped? Two simulated trainers, whose metric (lower is better) is
//   noise:    the baseline's mean plus Gaussian noise (the change does nothing), and
//   2 sigma:  the baseline's mean minus 2 standard deviations, plus the same noise (a real gain),
// judged by two rules against an unchanged baseline:
//   autoresearch: one run of the baseline, one run of the change; keep if it is lower at all;
//   nightlab:     the real judgeCandidate of workflows/judging.ts with the default policy
//                 (baseline runs 3, k 1.8, confirmRuns 4, bestRuns 10): the baseline runs 3 times,
//                 a promising change gets confirmation runs with other seeds and the baseline is
//                 re-run, and the campaign's noise estimate (NoiseState) carries from one decision
//                 to the next, as in a campaign.
// Each simulated campaign runs its baseline, then judges `--experiments` changes against it (100,
// the default budget; a keep is counted, not adopted: every decision faces the same baseline);
// `--campaigns` of them. The noise estimate is weakest at the start of a campaign (3 baseline
// runs); a comment line gives nightlab's rates over the first 10 decisions of each campaign too.
//
//   npm run bench:noise [-- --campaigns 200 --experiments 100 --seed 1]
import { parseConfig } from '../common/config';
import { groupOf, noisePolicy } from '../workflows/decisions';
import type { NoiseState } from '../common/shared';
import { judgeCandidate, type RunLite } from '../workflows/judging';
import { figure } from './harness';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i].replace(/^--/, ''), process.argv[i + 1]);
const CAMPAIGNS = Number(args.get('campaigns') ?? 200);
const EXPERIMENTS = Number(args.get('experiments') ?? 100);
const EARLY = 10;
const SEED = Number(args.get('seed') ?? 1);

const MEAN = 1.0; // the baseline's true metric
const SIGMA = 0.01; // run-to-run noise (seeds)
const GAIN = 2 * SIGMA; // the real improvement of the second trainer

// The default policy, from the real config schema.
const config = parseConfig(
  { editable: ['train.py'], run: { command: 'python3 train.py' }, metric: { name: 'val_bpb', direction: 'lower' } },
  'bench',
);
const policy = noisePolicy(config);

/** mulberry32: a small seeded generator, so the figures repeat run after run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(u: () => number): () => number {
  return () => {
    const a = Math.max(u(), Number.EPSILON);
    return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * u());
  };
}

interface Tally {
  keeps: number;
  decisions: number;
  runs: number;
}

const run = (metric: number): RunLite => ({ metric, failed: false, reason: '' });

/** Keep rates of both rules for a trainer whose change shifts the mean by `shift`. */
async function simulate(shift: number, seed: number): Promise<{ autoresearch: Tally; nightlab: Tally; early: Tally }> {
  const z = gaussian(rng(seed));
  const baselineRun = () => MEAN + SIGMA * z();
  const candidateRun = () => MEAN + shift + SIGMA * z();
  const autoresearch: Tally = { keeps: 0, decisions: 0, runs: 0 };
  const nightlab: Tally = { keeps: 0, decisions: 0, runs: 0 };
  const early: Tally = { keeps: 0, decisions: 0, runs: 0 };
  for (let c = 0; c < CAMPAIGNS; c++) {
    // autoresearch: one baseline run; each change kept if its one run is lower.
    const b = baselineRun();
    for (let e = 0; e < EXPERIMENTS; e++) {
      autoresearch.decisions += 1;
      autoresearch.runs += 1;
      if (candidateRun() < b) autoresearch.keeps += 1;
    }
    // nightlab: the baseline `baselineRuns` times, then the real judgement, state carried along.
    const baseline = Array.from({ length: config.noise.baselineRuns }, baselineRun);
    const state: NoiseState = {
      best: { sha: 'baseline', experiment: 0, group: groupOf(baseline), nextRun: baseline.length, pending: 0 },
      pool: { ss: 0, dof: 0 },
    };
    for (let e = 1; e <= EXPERIMENTS; e++) {
      let bestRuns = 0;
      const judgement = await judgeCandidate(run(candidateRun()), state, policy, {
        candidate: async () => run(candidateRun()),
        best: async () => {
          bestRuns += 1;
          return run(baselineRun());
        },
        onBest: () => true,
        rebase: async () => {
          throw new Error('the baseline never moves in this bench');
        },
      });
      for (const t of e <= EARLY ? [nightlab, early] : [nightlab]) {
        t.decisions += 1;
        t.runs += judgement.runs + bestRuns;
        if (judgement.kind === 'keep') t.keeps += 1;
      }
    }
  }
  return { autoresearch, nightlab, early };
}

const pct = (t: Tally) => `${((100 * t.keeps) / t.decisions).toFixed(1)}%`;

const noise = await simulate(0, SEED);
const better = await simulate(-GAIN, SEED + 1);
console.log(
  `# ${CAMPAIGNS} campaigns x ${EXPERIMENTS} experiments per trainer (${noise.nightlab.decisions} decisions each): noise only, and a true gain of 2 sigma; nightlab policy k=${policy.k}, confirmRuns=${policy.confirmRuns}, bestRuns=${policy.bestRuns}, baselineRuns=${config.noise.baselineRuns}`,
);
const runsPer = (a: Tally, b: Tally) => ((a.runs + b.runs) / (a.decisions + b.decisions)).toFixed(2);
for (const rule of ['autoresearch', 'nightlab'] as const) {
  figure(rule, {
    'false-keep': pct(noise[rule]),
    detection: pct(better[rule]),
    'runs/experiment': runsPer(noise[rule], better[rule]),
  });
}
if (EXPERIMENTS > EARLY) {
  console.log(
    `# nightlab over the first ${EARLY} decisions of each campaign only (noise estimated from ${config.noise.baselineRuns} baseline runs so far): false-keep ${pct(noise.early)}  detection ${pct(better.early)}  runs/experiment ${runsPer(noise.early, better.early)}`,
  );
}
