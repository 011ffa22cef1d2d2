// One simulated campaign on a target of settings (bench/search and bench/campaigns): a proposer's
// changes on top of the best, judged by a strategy, with an instant trainer whose figure is the
// target's true metric (lower is better) plus Gaussian noise.
// Proposers, on top of the best:
//   random:   one setting to another value, uniformly, sometimes two (the `mutate` proposer's kind);
//             in Nightlab's strategies it draws again a change whose description is among the
//             last HISTORY_LINES experiments' (on any best), as `mutate` does with the history it is shown;
//   scripted: a fixed list of the single changes in a plausible order, and a few of two settings,
//             drawn with Zipf weights (the first idea twice as often as the second...), so it repeats
//             itself as LLMs do; told that an idea is a near duplicate, it draws again 70% of the time.
// With the archive (the strategies below that have it), a proposer sees what was tried, as the engine's
// proposers do in their context: a near duplicate is drawn again (always for random, as `mutate` does
// with the archive, up to 50 draws; 70% for scripted), and the scripted one (an LLM reading the whole
// archive) draws again a tree trained before too. `mutate` checks no trees: its draw of a tree trained
// before (a kept change undone: an earlier best) reaches the engine, which makes a move in its place or
// reuses the result. These draws cost nothing here (an offline proposer's); an LLM's are in its one reply.
// Strategies:
//   autoresearch:     one baseline run; one run per experiment, kept if lower than the best's figure;
//   nightlab:         the real judging (workflows/judging.ts, default policy), no archive;
//   nightlab+archive: also the archive's checks (common/search.ts): the proposer is told of near
//                     duplicates (nearDuplicate) and a tree already trained is not trained again
//                     (sameTree: the experiment reuses the result, 0 runs);
//   nightlab+moves:   also the engine's moves (chooseMoves, default `search:` settings): combine,
//                     ablate (judged with its slack: kept when no worse), revisit, the first of the
//                     drawn kind that applies; and, as the engine does, a move in place of a proposal
//                     trained before (fallbackMoves, the first that applies), the result reused only
//                     when no move can be made. A move applies when it does not conflict with the
//                     best, and its files were not trained before nor are a near duplicate.
// Nightlab's strategies judge with the sequential rule unless told `confirm` (campaigns started
// before it); keeps are adopted as the workflow's state does it.
import {
  chooseMoves,
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
import type { NoisePolicy } from '../workflows/decisions';
import { improvement, mean } from '../workflows/decisions';
import { adoptBest, sigma } from '../workflows/judging';
import { HISTORY_LINES } from '../proposers/context';
import { MAX_DRAWS } from '../proposers/mutate';
import { gaussian, judge, noiseState, rng, type Rule } from './sim';

const HEED = 0.7; // how often the scripted proposer draws again when told of a near duplicate
const TWO_SETTINGS = 0.25; // how often the random proposer changes two settings at once

/** A setting's value per setting. */
export type Vec = number[];
/** What the campaign may know of a target: its shape, and the true metric of any settings. */
export interface Target {
  settings: number;
  values: number;
  truth: (v: Vec) => number;
}
/** A metric that is a sum of effects: one per setting's value, and one per pair set together. */
export interface Landscape {
  /** effect[s][v]: the metric's change when setting s has value v (0 for the default). */
  effect: number[][];
  /** Values whose joint effect is not the sum of their own: `extra` when both are set. */
  pairs: { a: [number, number]; b: [number, number]; extra: number }[];
}

/** The target of a landscape whose effects are in `unit`s above `base`, and its optimum (all settings tried). */
export function additive(l: Landscape, base: number, unit: number): Target & { optimum: number } {
  const settings = l.effect.length;
  const values = l.effect[0].length;
  const truth = (v: Vec) => {
    let m = 0;
    for (let i = 0; i < settings; i++) m += l.effect[i][v[i]];
    for (const p of l.pairs) if (v[p.a[0]] === p.a[1] && v[p.b[0]] === p.b[1]) m += p.extra;
    return base + unit * m;
  };
  let optimum = Infinity;
  for (let code = 0; code < values ** settings; code++)
    optimum = Math.min(
      optimum,
      truth(Array.from({ length: settings }, (_, i) => Math.floor(code / values ** i) % values)),
    );
  return { settings, values, truth, optimum };
}

export type ProposerKind = 'random' | 'scripted';
export type Strategy = 'autoresearch' | 'nightlab' | 'nightlab+archive' | 'nightlab+moves';

/** Where a campaign stands after an experiment: its best's true and reported figures, and its tallies. */
export interface Snapshot {
  truth: number;
  reported: number;
  experiments: number;
  runs: number;
  keeps: number;
  /** Runs of candidates whose settings were trained before. */
  dupRuns: number;
  /** Keeps of a candidate not truly better than the best (for an ablation: truly worse). */
  falseKeeps: number;
  /** Candidates judged that were not truly better (ablations: truly worse). */
  notBetter: number;
}

export interface Campaign {
  strategy: Strategy;
  kind: ProposerKind;
  target: Target;
  /** The run-to-run noise's standard deviation. */
  noise: number;
  seed: number;
  policy: NoisePolicy;
  baselineRuns: number;
  rule?: Rule;
  /** Snapshots taken after the experiments that reach each of these counts... */
  experiments?: number[];
  /** ...or after the experiment whose runs (the baseline's included) reach each of these counts. */
  runs?: number[];
  /** With `runs`: at most this many experiments (reused results cost no run); later snapshots are the last one. */
  maxExperiments?: number;
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

/**
 * A proposal on top of `best`, drawn again (up to MAX_DRAWS times, as `mutate`) when its description
 * is among `tried` (the random proposer's recent history); with the archive, a near duplicate is
 * flagged (heeded by the scripted one HEED of the time), and the scripted one refuses a tree trained before.
 */
function proposal(
  kind: ProposerKind,
  { best, t, u, ideas }: { best: Vec; t: Target; u: () => number; ideas: Idea[] },
  memory: {
    tried?: Set<string>;
    archive?: { flagged: (cs: Change[]) => boolean; refused: (cs: Change[]) => boolean };
  },
): Change[] {
  const draw = (): Change[] => {
    if (kind === 'random') {
      const a = Math.floor(u() * t.settings);
      const b = u() < TWO_SETTINGS ? (a + 1 + Math.floor(u() * (t.settings - 1))) % t.settings : null;
      return [a, ...(b === null ? [] : [b])].map((s) => ({
        s,
        from: best[s],
        to: (best[s] + 1 + Math.floor(u() * (t.values - 1))) % t.values,
      }));
    }
    // Zipf: idea i drawn with weight 1/(i+1); an idea already in the best is no change: the next one.
    const total = ideas.reduce((a, _, i) => a + 1 / (i + 1), 0);
    let r = u() * total;
    let i = 0;
    while ((r -= 1 / (i + 1)) > 0) i++;
    for (let k = 0; k < ideas.length; k++) {
      const changes = ideas[(i + k) % ideas.length]
        .filter((x) => best[x.s] !== x.to)
        .map((x) => ({ s: x.s, from: best[x.s], to: x.to }));
      if (changes.length) return changes;
    }
    return [{ s: 0, from: best[0], to: (best[0] + 1) % t.values }];
  };
  const { tried, archive } = memory;
  const again = (cs: Change[]) =>
    !!tried?.has(describe(cs)) ||
    (!!archive &&
      ((kind === 'scripted' && archive.refused(cs)) || (archive.flagged(cs) && (kind === 'random' || u() < HEED))));
  let cs = draw();
  for (let i = 0; i < MAX_DRAWS && again(cs); i++) cs = draw();
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

/** The scripted proposer's ideas: every single change, and eight of two settings, in a random order. */
function scriptedIdeas(t: Target, u: () => number): Idea[] {
  const singles: Idea[] = Array.from({ length: t.settings * (t.values - 1) }, (_, i) => [
    { s: i % t.settings, to: 1 + Math.floor(i / t.settings) },
  ]);
  const doubles: Idea[] = Array.from({ length: 8 }, () => {
    const [a, b] = [singles[Math.floor(u() * singles.length)][0], singles[Math.floor(u() * singles.length)][0]];
    return a.s === b.s ? [a] : [a, b];
  });
  return [...singles, ...doubles].sort(() => u() - 0.5);
}

/** A campaign from the default settings; one snapshot per count asked for, in order. */
export async function campaign(c: Campaign): Promise<Snapshot[]> {
  const { strategy, kind, target: t, policy } = c;
  const u = rng(c.seed);
  const z = gaussian(rng(c.seed + 7919));
  const run = (v: Vec) => t.truth(v) + c.noise * z();
  const ideas = scriptedIdeas(t, u);
  const archive = strategy === 'nightlab+archive' || strategy === 'nightlab+moves';
  const moves = strategy === 'nightlab+moves';
  let best: Vec = Array(t.settings).fill(0);
  let bestId = 'e0';
  const trained = new Set<string>([tree(best)]);
  const out: Snapshot[] = [];
  const tally = { dupRuns: 0, runs: 0, keeps: 0, falseKeeps: 0, notBetter: 0 };
  // Greedy's state: the best's one figure. Nightlab's: the noise state and the archive.
  let figureOfBest = run(best);
  const state = noiseState(
    'e0',
    Array.from({ length: c.baselineRuns }, () => run(best)),
  );
  tally.runs = strategy === 'autoresearch' ? 1 : c.baselineRuns;
  let largestGain: number | null = null;
  // The archive, as the engine's proposers and moves see it (experiment 0: the baseline).
  const entries: IdeaEntry[] = [
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
  // The archive's checks of changes on the best: a near duplicate (flagged), files trained before (refused).
  const check = {
    flagged: (cs: Change[]) => nearDuplicate(settingsOf(cs), tree(best), entries) !== null,
    refused: (cs: Change[]) => sameTree(tree(applied(best, cs)!), entries) !== null,
  };
  /**
   * A move's candidate on the best; null when it is the proposer's turn, no longer applies (a
   * conflict), or, as the engine's makeMove refuses it, repeats files trained before or is a near duplicate.
   */
  const moveOn = (m: Move): Made | null => {
    if (m.kind === 'proposer') return null;
    const ablate = m.kind === 'ablate';
    const of = m.of.flatMap((k) => changesOf.get(k)!);
    const candidate = applied(best, of, ablate);
    if (!candidate) return null;
    const changes = ablate ? of.map((x) => ({ s: x.s, from: x.to, to: x.from })) : of;
    if (check.refused(changes) || check.flagged(changes)) return null;
    return { move: m, candidate, changes };
  };
  /** The first of `candidates` that can be made on the best, as the engine takes it (null: none). */
  const firstOn = (candidates: Move[]): Made | null => {
    for (const m of candidates) {
      const made = moveOn(m);
      if (made) return made;
    }
    return null;
  };
  const snapshot = (n: number): Snapshot => ({
    truth: t.truth(best),
    reported: strategy === 'autoresearch' ? figureOfBest : mean(state.best.group),
    experiments: n,
    ...tally,
  });
  const wanted = c.experiments ?? c.runs ?? [];
  const last = c.experiments ? Math.max(...c.experiments) : (c.maxExperiments ?? Infinity);

  let done = 0;
  for (let n = 1; out.length < wanted.length && n <= last; n++, done++) {
    // The engine's move when one is drawn and still applies to the best (no conflict); else the
    // proposer's idea; and a move after all when the proposer's files were trained before.
    const drawn = { best: bestId, experiment: n, seed: c.seed, settings: DEFAULT_SEARCH, most: FALLBACK_TRIES };
    let made: Made | null = moves ? firstOn(chooseMoves(entries, drawn)) : null;
    if (!made) {
      // mutate's history check; the scripted proposer repeats itself, and autoresearch has no memory.
      const tried =
        kind === 'random' && strategy !== 'autoresearch'
          ? new Set(entries.slice(-HISTORY_LINES).map((e) => e.description))
          : undefined;
      const proposed = proposal(kind, { best, t, u, ideas }, { tried, archive: archive ? check : undefined });
      if (moves && check.refused(proposed))
        made = firstOn(fallbackMoves(entries, { best: bestId, most: FALLBACK_TRIES, settings: DEFAULT_SEARCH }));
      made ??= { move: null, changes: proposed, candidate: applied(best, proposed)! };
    }
    const { move, changes, candidate } = made;
    changesOf.set(n, changes);
    const fact: SearchFact = {
      experiment: n,
      status: 'discard',
      description: move ? move.description : describe(changes),
      commit: `e${n}`,
      parent: bestId,
      gain: null,
      sigma: null,
      runs: 0,
      touches: changes.map((x) => `S${x.s}`),
    };
    const parentTree = tree(best); // (before a keep moves the best)
    const entry = () =>
      entries.push({
        ...fact,
        tree: tree(candidate),
        parentTree,
        files: [],
        settings: settingsOf(changes),
        diffHash: '',
        metric: null,
        spread: null,
      });
    const duplicate = trained.has(tree(candidate));
    if (archive && sameTree(tree(candidate), entries)) {
      // Trained before: its result is reused, no GPU time; recorded so a move is not made again.
      entry();
    } else if (strategy === 'autoresearch') {
      const x = run(candidate);
      tally.runs += 1;
      if (duplicate) tally.dupRuns += 1;
      if (t.truth(candidate) >= t.truth(best)) tally.notBetter += 1;
      if (x < figureOfBest) {
        if (t.truth(candidate) >= t.truth(best)) tally.falseKeeps += 1;
        [best, figureOfBest] = [candidate, x];
        tally.keeps += 1;
      }
    } else {
      const ablation = move?.kind === 'ablate';
      const credit = ablation ? ablateCredit(sigma(state), DEFAULT_SEARCH) : 0;
      const old = mean(state.best.group);
      const noise = sigma(state);
      const { judgement, bestRuns } = await judge(
        c.rule ?? 'sequential',
        state,
        policy,
        { candidate: () => run(candidate) - credit, best: () => run(best) },
        { largestGain },
      );
      tally.runs += judgement.runs + bestRuns;
      if (duplicate) tally.dupRuns += judgement.runs;
      const worse = ablation ? t.truth(candidate) > t.truth(best) : t.truth(candidate) >= t.truth(best);
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
        [best, bestId] = [candidate, `e${n}`];
        tally.keeps += 1;
      }
      entry();
    }
    trained.add(tree(candidate));
    const reached = c.experiments ? n : tally.runs;
    while (out.length < wanted.length && reached >= wanted[out.length]) out.push(snapshot(n));
  }
  while (out.length < wanted.length) out.push(snapshot(done));
  return out;
}
