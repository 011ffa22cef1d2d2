// bench/campaigns: what a researcher gets from a whole campaign, not from one decision. A simulated
// target has 8 settings of 3 values each (the first, the default). Each value other than the
// default changes the metric (lower is better) by an effect of its own: most do harm or little,
// a few help a lot; some pairs interact (two gains that overlap count once; two values that only
// help together). A run's figure is the true metric of the settings plus Gaussian noise, from
// small to as large as the effects. Proposals are random: one setting to another value, sometimes
// two, on top of the best (the mutate proposer's kind of search). Each system spends the same
// number of GPU runs (bench/climb.ts runs the campaigns):
//   autoresearch:     one baseline run; one run per experiment, kept if lower than the best's figure;
//   nightlab:         the real judgeSequentially of workflows/judging.ts, the default policy, alone;
//   nightlab-confirm: the real judgeCandidate (the rule of campaigns started before), alone;
//   nightlab+archive: the sequential rule and the idea archive: the proposer sees what was tried
//                     (as `mutate` does, it draws again when it would repeat it), and a proposal
//                     trained before is not trained again (its result reused);
//   nightlab+moves:   Nightlab as it runs by default: the sequential rule, the idea archive and the
//                     engine's moves (combine, ablate, revisit; the default `search:` settings).
// Nightlab starts no experiment once its runs (baseline and the best's re-runs included) reach the
// budget; the one in flight finishes. A result reused from the archive costs no run, so the
// experiments are capped at 4 per run of the budget. One line per system and noise level: the true
// figure of the final best (and the share of the possible gain it reached), how far the reported
// best is from its truth (overclaim: the mean of truth minus reported, above 0 when the reported
// figure is better than the truth; and the mean absolute error), the runs spent, the experiments
// and the keeps.
//
//   npm run bench:campaigns [-- --campaigns 200 --runs 200 --seed 1]
// and the noise settings, as in bench:noise (--falseKeep, --detect, --confirmRuns, --bestRuns, --baselineRuns).
import { additive, campaign, type Landscape, type Strategy, type Snapshot } from './climb';
import { benchSetup, gaussian, rng, type Rule } from './sim';
import { figure } from './harness';

const { args: ARGS, policy, baselineRuns } = benchSetup({ campaigns: 200, runs: 200, seed: 1 });

const SETTINGS = 8;
const VALUES = 3;
const BASE = 1.0; // the default settings' true metric
const UNIT = 0.01; // a typical effect
const NOISE = [0.1, 0.3, 0.6, 1.0]; // run-to-run noise, in units of UNIT
const EXPERIMENTS_PER_RUN = 4; // the cap on experiments, per run of the budget

/** A target drawn at random: effects of several sizes, a few interacting pairs. */
function landscape(u: () => number, z: () => number): Landscape {
  const effect = Array.from({ length: SETTINGS }, () =>
    Array.from({ length: VALUES }, (_, v) => {
      if (v === 0) return 0;
      const r = u();
      if (r < 0.5) return UNIT * Math.abs(z()); // harm
      if (r < 0.85) return -UNIT * 0.5 * u(); // a small gain
      return -UNIT * (1.5 + 2.5 * u()); // a large gain
    }),
  );
  const pick = (): [number, number] => [Math.floor(u() * SETTINGS), 1 + Math.floor(u() * (VALUES - 1))];
  const pairs = Array.from({ length: 4 }, (_, i) => {
    const [a, b] = [pick(), pick()];
    const [ea, eb] = [effect[a[0]][a[1]], effect[b[0]][b[1]]];
    if (a[0] === b[0]) return { a, b, extra: 0 }; // one setting cannot have both values
    // Two gains that overlap count once (the smaller is taken back); a synergy helps only together.
    const extra = i % 2 ? -UNIT * (1 + u()) : ea < 0 && eb < 0 ? -Math.max(ea, eb) : 0;
    return { a, b, extra };
  });
  return { effect, pairs };
}

const SYSTEMS: Record<string, { strategy: Strategy; rule?: Rule }> = {
  autoresearch: { strategy: 'autoresearch' },
  nightlab: { strategy: 'nightlab' },
  'nightlab-confirm': { strategy: 'nightlab', rule: 'confirm' },
  'nightlab+archive': { strategy: 'nightlab+archive' },
  'nightlab+moves': { strategy: 'nightlab+moves' },
};
const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;

console.log(
  `# ${ARGS.campaigns} campaigns per noise level, ${ARGS.runs} GPU runs each; ${SETTINGS} settings x ${VALUES} values, effects ~${UNIT} (base ${BASE}); nightlab: falseKeep ${policy.falseKeep}, detect ${policy.detect}, confirmRuns ${policy.confirmRuns}, bestRuns ${policy.bestRuns}, baselineRuns ${baselineRuns}`,
);
for (const n of NOISE) {
  const noise = n * UNIT;
  const targets = Array.from({ length: ARGS.campaigns }, (_, c) => {
    const seed = ARGS.seed * 1_000_003 + c;
    return additive(landscape(rng(seed), gaussian(rng(seed + 1))), BASE, 1);
  });
  for (const [system, { strategy, rule }] of Object.entries(SYSTEMS)) {
    const out: Snapshot[] = [];
    for (const [c, target] of targets.entries()) {
      const [last] = await campaign({
        ...{ strategy, rule, kind: 'random', target, noise, seed: ARGS.seed * 7 + c, policy, baselineRuns },
        ...{ runs: [ARGS.runs], maxExperiments: EXPERIMENTS_PER_RUN * ARGS.runs },
      });
      out.push(last);
    }
    const avg = (f: (o: Snapshot, i: number) => number) => out.reduce((a, o, i) => a + f(o, i), 0) / out.length;
    const share = avg((o, i) => (BASE - o.truth) / (BASE - targets[i].optimum));
    figure(system.padEnd(16), {
      noise: `${noise.toFixed(3)}`,
      'true-best': avg((o) => o.truth).toFixed(4),
      'of-possible': `${(100 * share).toFixed(0)}%`,
      overclaim: signed(avg((o) => o.truth - o.reported)),
      '|error|': avg((o) => Math.abs(o.reported - o.truth)).toFixed(4),
      runs: avg((o) => o.runs).toFixed(0),
      experiments: avg((o) => o.experiments).toFixed(0),
      keeps: avg((o) => o.keeps).toFixed(1),
    });
  }
}
