// bench/search: does a search with memory and moves of its own beat hill-climbing with no memory?
// A simulated target has 8 settings of 3 values each (the first, the default); its true metric
// (lower is better) is a sum of effects, in units of the run-to-run noise sigma:
//   - most values do harm (+|N(0, 1.5)|), many help a little, inside the noise (-U(0, 1)), a few a
//     lot (-2 to -4): what one-change-at-a-time hill-climbing finds;
//   - two pairs of values only help together: each alone -0.5 (inside the noise, so a careful judge
//     discards it, and it is left among the near misses), both -5 (combine finds them);
//   - one pair stops helping once the other lands: A alone -2, B alone -3, both -2 (A, kept first,
//     now costs 1 sigma: ablate finds it);
//   - once the single changes are used up, the campaign is on a plateau.
// A run's figure is the true metric plus Gaussian noise (sigma 0.004); the trainer is instant.
// Proposers, on top of the best:
//   random:   one setting to another value, uniformly (the `mutate` proposer's kind of search);
//   scripted: a fixed list of the 16 single changes in a plausible order, drawn with Zipf weights
//             (the first idea twice as often as the second...), so it repeats itself as LLMs do;
//             told that an idea is a near duplicate, it draws again 70% of the time.
// Strategies, each over the same targets and seeds, every experiment counted (budget in experiments):
//   autoresearch:     one baseline run; one run per experiment, kept if lower than the best's figure;
//   nightlab:         the real judgeSequentially (workflows/judging.ts, default policy), no memory;
//   nightlab+archive: also the archive's checks (common/search.ts): the proposer is told of near
//                     duplicates (nearDuplicate) and a tree already trained is not trained again
//                     (sameTree: the experiment reuses the result, 0 runs);
//   nightlab+moves:   also the engine's moves (chooseMove, default `search:` settings): combine,
//                     ablate (judged with its slack: kept when no worse), revisit; and, as the
//                     engine does, a move in place of a proposal trained before (fallbackMoves, the
//                     first that applies), the result reused only when no move can be made.
// Per strategy, proposer and budget (50, 100, 300 experiments): the final best's true regret (its
// true metric minus the optimum, found by trying all 3^8 settings; mean and p90, in noise sigmas),
// GPU runs spent on duplicates (candidates whose settings were trained before, per campaign), runs
// per experiment (the baseline's and the best's re-runs included), and false keeps (keeps of a
// candidate not truly better than the best, or for an ablation truly worse, per such candidate).
//
//   npm run bench:search [-- --campaigns 100 --seed 1]
// and the noise settings, as in bench:noise (--falseKeep, --detect, --confirmRuns, --bestRuns, --baselineRuns).
import {
  chooseMove,
  ablateCredit,
  DEFAULT_SEARCH,
  fallbackMoves,
  FALLBACK_TRIES,
  nearDuplicate,
  sameTree,
  type IdeaEntry,
  type Move,
  type SearchFact,
} from '../common/search';
import { improvement, mean } from '../workflows/decisions';
import { adoptBest, sigma } from '../workflows/judging';
import { benchSetup, gaussian, judge, noiseState, rng } from './sim';
import { figure } from './harness';

const { args: ARGS, policy, baselineRuns } = benchSetup({ campaigns: 100, seed: 1, noise: 1 });

const SETTINGS = 8;
const VALUES = 3;
const BASE = 1.0;
const SIGMA = 0.004; // run-to-run noise; effects are in its units
const HORIZONS = [50, 100, 300];
const HEED = 0.7; // how often the scripted proposer draws again when told of a near duplicate
const REDRAWS = 50;

type Vec = number[];
interface Landscape {
  effect: number[][];
  /** Values whose joint effect is not the sum of their own: `extra` when both are set. */
  pairs: { a: [number, number]; b: [number, number]; extra: number }[];
  optimum: number;
}

function landscape(seed: number): Landscape {
  const u = rng(seed);
  const z = gaussian(rng(seed + 1));
  const effect = Array.from({ length: SETTINGS }, () =>
    Array.from({ length: VALUES }, (_, v) => {
      if (v === 0) return 0;
      const r = u();
      if (r < 0.45) return 1.5 * Math.abs(z()); // harm
      if (r < 0.85) return -u(); // a small gain, inside the noise
      return -(2 + 2 * u()); // a large gain
    }),
  );
  // Structure on distinct settings, drawn at random: two synergies and one overlap.
  const order = Array.from({ length: SETTINGS }, (_, i) => i).sort(() => u() - 0.5);
  const at = (i: number): [number, number] => [order[i], 1 + Math.floor(u() * (VALUES - 1))];
  const set = (p: [number, number], x: number) => (effect[p[0]][p[1]] = x);
  const pairs: Landscape['pairs'] = [];
  for (const i of [0, 2]) {
    const [a, b] = [at(i), at(i + 1)];
    [set(a, -0.5), set(b, -0.5)];
    pairs.push({ a, b, extra: -4 });
  }
  const [a, b] = [at(4), at(5)];
  [set(a, -2), set(b, -3)];
  pairs.push({ a, b, extra: 3 });
  const l = { effect, pairs, optimum: 0 };
  let best = Infinity;
  for (let code = 0; code < VALUES ** SETTINGS; code++)
    best = Math.min(
      best,
      truth(
        l,
        Array.from({ length: SETTINGS }, (_, i) => Math.floor(code / VALUES ** i) % VALUES),
      ),
    );
  return { ...l, optimum: best };
}

function truth(l: Omit<Landscape, 'optimum'>, v: Vec): number {
  let m = 0;
  for (let i = 0; i < SETTINGS; i++) m += l.effect[i][v[i]];
  for (const p of l.pairs) if (v[p.a[0]] === p.a[1] && v[p.b[0]] === p.b[1]) m += p.extra;
  return BASE + SIGMA * m;
}

/** One setting's change; an experiment's candidate is the best with its changes applied. */
interface Change {
  s: number;
  from: number;
  to: number;
}
const tree = (v: Vec) => v.join('');
const settingsOf = (cs: Change[]) =>
  cs.map((c) => ({ file: 'sim', name: `S${c.s}`, from: `${c.from}`, to: `${c.to}` }));
const describe = (cs: Change[]) => cs.map((c) => `S${c.s} ${c.from} -> ${c.to}`).join(', ');

/** An experiment's candidate: the move that made it (null: the proposer's), its changes, the settings. */
interface Made {
  move: Extract<Move, { of: number[] }> | null;
  changes: Change[];
  candidate: Vec;
}
/** A scripted idea: settings to set (those already so in the best are left out). */
type Idea = { s: number; to: number }[];
type ProposerKind = 'random' | 'scripted';
type Strategy = 'autoresearch' | 'nightlab' | 'nightlab+archive' | 'nightlab+moves';

/** A proposal on top of `best`; `flagged` (the archive's near-duplicate check) makes it draw again. */
function proposal(
  kind: ProposerKind,
  best: Vec,
  u: () => number,
  ideas: Idea[],
  archive?: { flagged: (cs: Change[]) => boolean; refused: (cs: Change[]) => boolean },
): Change[] {
  const draw = (): Change[] => {
    if (kind === 'random') {
      // As mutate: mostly one setting at a time, sometimes two.
      const a = Math.floor(u() * SETTINGS);
      const b = u() < 0.25 ? (a + 1 + Math.floor(u() * (SETTINGS - 1))) % SETTINGS : null;
      return [a, ...(b === null ? [] : [b])].map((s) => ({
        s,
        from: best[s],
        to: (best[s] + 1 + Math.floor(u() * (VALUES - 1))) % VALUES,
      }));
    }
    // Zipf: idea i drawn with weight 1/(i+1); an idea already in the best is no change: the next one.
    const total = ideas.reduce((a, _, i) => a + 1 / (i + 1), 0);
    let r = u() * total;
    let i = 0;
    while ((r -= 1 / (i + 1)) > 0) i++;
    for (let k = 0; k < ideas.length; k++) {
      const changes = ideas[(i + k) % ideas.length]
        .filter((t) => best[t.s] !== t.to)
        .map((t) => ({ s: t.s, from: best[t.s], to: t.to }));
      if (changes.length) return changes;
    }
    return [{ s: 0, from: best[0], to: (best[0] + 1) % VALUES }];
  };
  // A tree trained before is refused (proposed again); a near duplicate is flagged, and heeded.
  let cs = draw();
  for (let i = 0; archive && i < REDRAWS; i++) {
    if (!archive.refused(cs) && !(archive.flagged(cs) && (kind === 'random' || u() < HEED))) break;
    cs = draw();
  }
  return cs;
}

/** The best with `changes` applied; null when a change no longer applies (a merge conflict). */
function applied(best: Vec, changes: Change[], reverse = false): Vec | null {
  const v = [...best];
  for (const c of changes) {
    const [from, to] = reverse ? [c.to, c.from] : [c.from, c.to];
    if (v[c.s] !== from) return null;
    v[c.s] = to;
  }
  return v;
}

interface Snapshot {
  regret: number;
  dupRuns: number;
  runs: number;
  experiments: number;
  falseKeeps: number;
  notBetter: number;
}

async function campaign(strategy: Strategy, kind: ProposerKind, l: Landscape, seed: number): Promise<Snapshot[]> {
  const u = rng(seed);
  const z = gaussian(rng(seed + 7919));
  const run = (v: Vec) => truth(l, v) + ARGS.noise * SIGMA * z();
  // The scripted proposer's ideas: every single change, and eight of two settings, in a random order.
  const singles: Idea[] = Array.from({ length: SETTINGS * (VALUES - 1) }, (_, i) => [
    { s: i % SETTINGS, to: 1 + Math.floor(i / SETTINGS) },
  ]);
  const doubles: Idea[] = Array.from({ length: 8 }, () => {
    const [a, b] = [singles[Math.floor(u() * singles.length)][0], singles[Math.floor(u() * singles.length)][0]];
    return a.s === b.s ? [a] : [a, b];
  });
  const ideas = [...singles, ...doubles].sort(() => u() - 0.5);
  const archive = strategy === 'nightlab+archive' || strategy === 'nightlab+moves';
  let best: Vec = Array(SETTINGS).fill(0);
  let bestId = 'e0';
  const trained = new Set<string>([tree(best)]);
  const out: Snapshot[] = [];
  const tally = { dupRuns: 0, runs: 0, falseKeeps: 0, notBetter: 0 };
  // Greedy's state: the best's one figure. Nightlab's: the noise state, the facts, the archive.
  let figureOfBest = run(best);
  const state = noiseState(
    'e0',
    Array.from({ length: baselineRuns }, () => run(best)),
  );
  tally.runs = strategy === 'autoresearch' ? 1 : baselineRuns;
  let largestGain: number | null = null;
  const facts: SearchFact[] = [
    {
      experiment: 0,
      status: 'keep',
      description: 'baseline',
      commit: 'e0',
      parent: '',
      gain: null,
      sigma: null,
      runs: 0,
      touches: [],
    },
  ];
  const entries: IdeaEntry[] = [
    {
      ...facts[0],
      tree: tree(best),
      parentTree: '',
      files: [],
      settings: [],
      diffHash: '',
      metric: null,
      spread: null,
    },
  ];
  const changesOf = new Map<number, Change[]>();
  /** A move's candidate on the best; null when it is the proposer's turn or no longer applies (a conflict). */
  const moveOn = (on: Vec, m: Move | null): Made | null => {
    if (!m || m.kind === 'proposer') return null;
    const ablate = m.kind === 'ablate';
    const changes = m.of.flatMap((k) => changesOf.get(k)!);
    const candidate = applied(on, changes, ablate);
    if (!candidate) return null;
    return { move: m, candidate, changes: ablate ? changes.map((c) => ({ s: c.s, from: c.to, to: c.from })) : changes };
  };

  for (let n = 1; n <= Math.max(...HORIZONS); n++) {
    // The engine's move when one is drawn and still applies to the best (no conflict); else the
    // proposer's idea; and a move after all when the proposer has nothing new on this best.
    const moves = strategy === 'nightlab+moves';
    let made: Made | null = moves
      ? moveOn(best, chooseMove(facts, { best: bestId, experiment: n, seed, settings: DEFAULT_SEARCH }))
      : null;
    if (!made) {
      const check = {
        flagged: (cs: Change[]) => nearDuplicate(settingsOf(cs), tree(best), entries) !== null,
        refused: (cs: Change[]) => sameTree(tree(applied(best, cs)!), entries) !== null,
      };
      const proposed = proposal(kind, best, u, ideas, archive ? check : undefined);
      if (moves && check.refused(proposed))
        for (const m of fallbackMoves(facts, bestId, FALLBACK_TRIES)) if ((made = moveOn(best, m))) break;
      made ??= { move: null, changes: proposed, candidate: applied(best, proposed)! };
    }
    const { move, changes, candidate } = made;
    changesOf.set(n, changes);
    const description = move ? move.description : describe(changes);
    const fact: SearchFact = {
      experiment: n,
      status: 'discard',
      description,
      commit: `e${n}`,
      parent: bestId,
      gain: null,
      sigma: null,
      runs: 0,
      touches: changes.map((c) => `S${c.s}`),
    };
    const entry = () =>
      entries.push({
        ...fact,
        tree: tree(candidate),
        parentTree: tree(best),
        files: [],
        settings: settingsOf(changes),
        diffHash: '',
        metric: null,
        spread: null,
      });
    const duplicate = trained.has(tree(candidate));
    if (archive && sameTree(tree(candidate), entries)) {
      // Trained before: its result is reused, no GPU time; recorded so a move is not made again.
      facts.push(fact);
      entry();
    } else if (strategy === 'autoresearch') {
      const x = run(candidate);
      tally.runs += 1;
      if (duplicate) tally.dupRuns += 1;
      if (truth(l, candidate) >= truth(l, best)) tally.notBetter += 1;
      if (x < figureOfBest) {
        if (truth(l, candidate) >= truth(l, best)) tally.falseKeeps += 1;
        [best, figureOfBest] = [candidate, x];
      }
    } else {
      const ablation = move?.kind === 'ablate';
      const credit = ablation ? ablateCredit(sigma(state), DEFAULT_SEARCH) : 0;
      const c = candidate;
      const old = mean(state.best.group);
      const noise = sigma(state);
      const { judgement, bestRuns } = await judge(
        'sequential',
        state,
        policy,
        { candidate: () => run(c) - credit, best: () => run(best) },
        { largestGain },
      );
      const spent = judgement.runs + bestRuns;
      tally.runs += spent;
      if (duplicate) tally.dupRuns += judgement.runs;
      const worse = ablation ? truth(l, c) > truth(l, best) : truth(l, c) >= truth(l, best);
      if (worse) tally.notBetter += 1;
      if (judgement.kind === 'discard' || judgement.kind === 'keep') {
        Object.assign(fact, {
          gain: -judgement.delta - credit,
          sigma: noise,
          runs: judgement.runs,
          status: judgement.kind,
        });
      }
      if (judgement.kind === 'keep') {
        if (worse) tally.falseKeeps += 1;
        const group = { ...judgement.group, mean: judgement.group.mean + credit };
        largestGain = Math.max(largestGain ?? 0, improvement(mean(group), old, 'lower'));
        adoptBest(state, { sha: `e${n}`, experiment: n, group, nextRun: judgement.runs });
        [best, bestId] = [c, `e${n}`];
      }
      facts.push(fact);
      entry();
    }
    trained.add(tree(candidate));
    if (HORIZONS.includes(n)) out.push({ regret: (truth(l, best) - l.optimum) / SIGMA, experiments: n, ...tally });
  }
  return out;
}

const STRATEGIES: Strategy[] = ['autoresearch', 'nightlab', 'nightlab+archive', 'nightlab+moves'];
console.log(
  `# ${ARGS.campaigns} targets x ${SETTINGS} settings of ${VALUES} values (2 synergies, 1 overlap), noise sigma ${SIGMA}; regret in noise sigmas; nightlab: falseKeep ${policy.falseKeep}, detect ${policy.detect}, confirmRuns ${policy.confirmRuns}, bestRuns ${policy.bestRuns}, baselineRuns ${baselineRuns}; search ${JSON.stringify(DEFAULT_SEARCH)}`,
);
const lands = Array.from({ length: ARGS.campaigns }, (_, c) => landscape(ARGS.seed * 1_000_003 + c));
const results = new Map<string, Snapshot[][]>();
for (const kind of ['random', 'scripted'] as const)
  for (const strategy of STRATEGIES) {
    const all: Snapshot[][] = [];
    for (let c = 0; c < lands.length; c++) all.push(await campaign(strategy, kind, lands[c], ARGS.seed * 7 + c));
    results.set(`${kind}/${strategy}`, all);
  }
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.ceil(0.9 * xs.length) - 1];
const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
for (const [h, horizon] of HORIZONS.entries())
  for (const kind of ['random', 'scripted'] as const) {
    for (const strategy of STRATEGIES) {
      const snaps = results.get(`${kind}/${strategy}`)!.map((s) => s[h]);
      const regrets = snaps.map((s) => s.regret);
      figure(strategy.padEnd(16), {
        proposer: kind.padEnd(8),
        experiments: String(horizon).padStart(3),
        regret: avg(regrets).toFixed(2).padStart(5),
        p90: p90(regrets).toFixed(2).padStart(5),
        'duplicate-runs': avg(snaps.map((s) => s.dupRuns))
          .toFixed(1)
          .padStart(5),
        'runs/experiment': avg(snaps.map((s) => s.runs / s.experiments)).toFixed(2),
        'false-keeps': `${((100 * avg(snaps.map((s) => s.falseKeeps))) / Math.max(1e-9, avg(snaps.map((s) => s.notBetter)))).toFixed(1)}%`,
      });
    }
  }
