// The search's pure core: what the engine tries next besides the proposer's idea, and the checks
// that keep a GPU from training what it already trained. Workflow-safe (no Node built-ins, no
// clock, no Math.random): the workflow, lib/ideas.ts (the idea archive) and bench/search.ts call
// the same functions. Three moves of the engine's own, each an experiment with its own evidence:
//   combine(a, b): two discards inside the noise (near misses, or a little worse), tried together on the best;
//   ablate(k):     a kept change removed again, kept out when the campaign is no worse without it;
//   revisit(d):    a promising discard tried again after the best moved.
// A plateau (no keep in `plateau` experiments) multiplies the shares of combine and ablate and
// tells the proposer so, with the near misses. A proposal of files trained before gives its turn to
// a move whatever the shares (fallbackMoves): training the proposal again would teach nothing.
import type { Decision } from './shared';

export type MoveKind = 'combine' | 'ablate' | 'revisit';

/** The `search:` settings: shares of experiments the engine makes itself, and the plateau rule. */
export interface SearchSettings {
  /** Shares (0..1) of experiments made as each move, when one is possible. */
  combine: number;
  ablate: number;
  revisit: number;
  /** No keep in this many experiments: a plateau (0: never). */
  plateau: number;
  /** On a plateau the combine and ablate shares are multiplied by this. */
  plateauBoost: number;
  /** An ablation is kept when it is worse than the best by less than this many noise sigmas. */
  ablateSlack: number;
}

export const DEFAULT_SEARCH: SearchSettings = {
  combine: 0.2,
  ablate: 0.05,
  revisit: 0.1,
  plateau: 15,
  plateauBoost: 3,
  ablateSlack: 0,
};

/** The moves together never take more than this share: the proposer always has the rest. */
const MAX_SHARE = 0.9;
/** Near misses considered for a combine (the strongest): pairs grow as the square. */
const COMBINE_POOL = 8;
/** ... and for a move in place of a proposal of files trained before: more, still bounded. */
const FALLBACK_POOL = 24;
/**
 * A combine also pairs discards that looked worse, down to this many standard errors: each half of
 * a pair of changes that only helps together looks like nothing alone, and on one run it is as
 * likely to look a little worse as a little better (measured in bench:search).
 */
const COMBINE_WITHIN = 2;
/** Times one idea is revisited or one kept change ablated, each on another best. */
const MAX_TRIES = 2;
/** Moves tried in turn, for a drawn move or in place of a proposal trained before, until one can be made (each try is a merge). */
export const FALLBACK_TRIES = 8;
/** Near misses a plateau note lists. */
const NOTE_NEAR_MISSES = 8;

/** One setting an experiment changed (`NAME = literal` in a Python file); null: added or removed. */
export interface SettingChange {
  file: string;
  name: string;
  from: string | null;
  to: string | null;
}

/** What the search needs of one judged experiment (the workflow holds these; so does the archive). */
export interface SearchFact {
  experiment: number;
  status: Decision;
  description: string;
  commit: string;
  /** The best it was built on and judged against. */
  parent: string;
  /** Improvement over that best's figure (positive: better); null for a crash or the baseline. */
  gain: number | null;
  /** One run's noise sigma when it was judged; null when unknown. */
  sigma: number | null;
  runs: number;
  /** What it changed: setting names, or file paths where no setting could be read. */
  touches: string[];
}

/** A fact with what the archive reads from git: the trees, files, settings and the normalised diff. */
export interface IdeaEntry extends SearchFact {
  /** The campaign it was tried in, when not this one (a fork's parent). */
  campaign?: string;
  tree: string;
  parentTree: string;
  files: string[];
  settings: SettingChange[];
  diffHash: string;
  metric: number | null;
  /** One run's standard deviation over the experiment's own runs (null: fewer than two). */
  spread: number | null;
}

export type Move =
  { kind: 'proposer'; note: string | null } | { kind: MoveKind; of: number[]; description: string; evidence: string };

/** FNV-1a over the key, then mulberry32: the same draws for the same key, everywhere. */
export function seededRandom(...parts: (string | number)[]): () => number {
  let h = 2166136261;
  for (const ch of parts.join('/')) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 16777619);
  }
  let a = h >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The earliest experiment whose candidate had exactly this tree: training it again teaches nothing.
 * One that ran to a result comes before a crash (which may have been the machine's) of the same tree.
 */
export function sameTree<T extends { tree: string; experiment: number; status?: string }>(
  tree: string,
  archive: T[],
): T | null {
  const same = archive.filter((e) => e.tree === tree).sort((a, b) => a.experiment - b.experiment);
  return same.find((e) => e.status !== 'crash') ?? same[0] ?? null;
}

/**
 * An experiment that set the same settings to the same values on the same parent (by tree), so a
 * proposer can be told before any run. Only whole matches count: a candidate that also changes
 * another setting is another idea.
 */
export function nearDuplicate(
  candidate: SettingChange[],
  parentTree: string,
  archive: IdeaEntry[],
): { experiment: number; text: string } | null {
  if (!candidate.length) return null;
  const key = (changes: SettingChange[]) =>
    changes
      .map((c) => `${c.file}\0${c.name}\0${c.to}`)
      .sort()
      .join('\n');
  const want = key(candidate);
  const hit = archive.find((e) => e.parentTree === parentTree && e.settings.length && key(e.settings) === want);
  if (!hit) return null;
  const what = candidate.map((c) => `${c.name} = ${c.to ?? '(removed)'}`).join(', ');
  const figure = hit.gain === null ? '' : `, ${signed(hit.gain)} over ${hit.runs} run${hit.runs === 1 ? '' : 's'}`;
  return {
    experiment: hit.experiment,
    text: `${what} on this parent was tried in experiment ${hit.experiment} (${hit.status}${figure})`,
  };
}

/** A move's description starts with what it is made of; parsed back from the ledger. */
export function moveOf(description: string): { kind: MoveKind; of: number[] } | null {
  const m = /^(combine|ablate|revisit) #(\d+)(?: \+ #(\d+))?:/.exec(description);
  if (!m) return null;
  return { kind: m[1] as MoveKind, of: [Number(m[2]), ...(m[3] ? [Number(m[3])] : [])] };
}

/** How strongly a discard looked better: its gain in standard errors of its runs (gain alone without noise). */
function strength(f: SearchFact): number {
  if (f.gain === null) return -Infinity;
  return f.sigma ? (f.gain / f.sigma) * Math.sqrt(f.runs) : f.gain;
}

/** The facts of one campaign, read once: the kept changes in the best, what moves were tried. */
interface View {
  byExperiment: Map<number, SearchFact>;
  /** Kept changes (original experiments) present in the best, oldest first. */
  present: SearchFact[];
  /** Keeps of the best's line, oldest first: what ablation can remove. */
  chain: SearchFact[];
  /** Moves tried, with the best they were built on. */
  moves: { kind: MoveKind; of: number[]; parent: string }[];
  /** Judged experiments since the last keep (the baseline counts as one). */
  sinceKeep: number;
}

function view(facts: SearchFact[], best: string): View {
  const byExperiment = new Map(facts.map((f) => [f.experiment, f]));
  const keepOf = new Map(facts.filter((f) => f.status === 'keep').map((f) => [f.commit, f]));
  const chain: SearchFact[] = [];
  for (let k = keepOf.get(best); k && !chain.includes(k); k = keepOf.get(k.parent)) chain.unshift(k);
  // A kept combine or revisit brings its ideas into the best; a kept ablation takes them out.
  const changesOf = (n: number): number[] => {
    const move = moveOf(byExperiment.get(n)?.description ?? '');
    return move && move.kind !== 'ablate' ? move.of : [n];
  };
  const present = new Set<number>();
  for (const k of chain) {
    const move = moveOf(k.description);
    if (move?.kind === 'ablate') for (const n of changesOf(move.of[0])) present.delete(n);
    else for (const n of changesOf(k.experiment)) present.add(n);
  }
  const moves = facts.flatMap((f) => {
    const m = moveOf(f.description);
    return m ? [{ ...m, parent: f.parent }] : [];
  });
  const lastKeep = Math.max(...facts.filter((f) => f.status === 'keep').map((f) => f.experiment), -1);
  return {
    byExperiment,
    present: [...present]
      .sort((a, b) => a - b)
      .map((n) => byExperiment.get(n)!)
      .filter(Boolean),
    chain,
    moves,
    sinceKeep: facts.filter((f) => f.experiment > lastKeep).length,
  };
}

/**
 * Discards that looked better than the best of their time, inside the noise, strongest first; a
 * revisit counts for the idea it revisited. Left out: ideas already in the best, and those whose
 * settings (or files) a later kept change touched (they would undo it or conflict).
 */
export function nearMisses(facts: SearchFact[], best: string): SearchFact[] {
  return nearMissesOf(view(facts, best));
}

/** Near misses; with `within`, also discards that looked worse by less than that many standard errors. */
function nearMissesOf(v: View, within = 0): SearchFact[] {
  const inBest = new Set(v.present.map((p) => p.experiment));
  const inside = (f: SearchFact) => f.gain! > 0 || (within > 0 && !!f.sigma && strength(f) > -within);
  const latest = new Map<number, SearchFact>();
  for (const f of v.byExperiment.values()) {
    // A reused result (no run: the same files as an earlier experiment) is not a second near miss.
    if (f.status !== 'discard' || f.gain === null || !inside(f) || f.runs === 0) continue;
    const move = moveOf(f.description);
    if (move && move.kind !== 'revisit') continue;
    const idea = move ? move.of[0] : f.experiment;
    if (!inBest.has(idea)) latest.set(idea, f);
  }
  const stale = (f: SearchFact) =>
    v.present.some((p) => p.experiment > f.experiment && p.touches.some((t) => f.touches.includes(t)));
  return [...latest.values()]
    .filter((f) => !stale(f))
    .sort((a, b) => strength(b) - strength(a) || a.experiment - b.experiment);
}

/** The idea a fact stands for: a revisit stands for the experiment it revisited. */
function ideaOf(f: SearchFact): number {
  const move = moveOf(f.description);
  return move?.kind === 'revisit' ? move.of[0] : f.experiment;
}

const describe = (f: SearchFact) =>
  `#${ideaOf(f)} (${f.description.replace(/^revisit #\d+: /, '')}: ${f.gain === null ? 'no figure' : signed(f.gain)} over ${f.runs} run${f.runs === 1 ? '' : 's'}${f.sigma ? `, ${strength(f).toFixed(1)} standard errors` : ''})`;

/** Untried pairs of near misses (the `size` strongest) that change different settings, strongest first, at most `most`. */
function combineMoves(v: View, best: string, size: number, most = Infinity): Move[] {
  const pool = nearMissesOf(v, COMBINE_WITHIN).slice(0, size);
  const tried = new Set(v.moves.filter((m) => m.kind === 'combine').map((m) => [...m.of].sort().join('+')));
  const pairs: { a: SearchFact; b: SearchFact; score: number }[] = [];
  for (let i = 0; i < pool.length; i++)
    for (let j = i + 1; j < pool.length; j++) {
      const [a, b] = [pool[i], pool[j]];
      if (a.touches.some((t) => b.touches.includes(t))) continue;
      if (tried.has([ideaOf(a), ideaOf(b)].sort().join('+'))) continue;
      pairs.push({ a, b, score: strength(a) + strength(b) });
    }
  const text = (f: SearchFact) => f.description.replace(/^revisit #\d+: /, '');
  // The texts only for the pairs returned: a long campaign has many pairs.
  return pairs
    .sort((x, y) => y.score - x.score)
    .slice(0, most)
    .map(({ a: x, b: y }) => {
      const [a, b] = [x, y].sort((p, q) => ideaOf(p) - ideaOf(q));
      return {
        kind: 'combine',
        of: [ideaOf(a), ideaOf(b)],
        description: `combine #${ideaOf(a)} + #${ideaOf(b)}: ${text(a)} + ${text(b)}`,
        evidence: `each inside the noise of the best of its time: ${describe(a)}, ${describe(b)}; tried together on best ${best.slice(0, 7)}`,
      };
    });
}

/** Kept changes with others kept after them, not tried out on this best, weakest first. */
function ablateMoves(v: View, best: string): Move[] {
  // Only a change with others kept after it: the question is whether it still helps beside them.
  const tries = (n: number) => v.moves.filter((m) => m.kind === 'ablate' && m.of[0] === n);
  const inBest = (k: SearchFact) => {
    const move = moveOf(k.description);
    return (
      move?.kind !== 'ablate' && (move?.of ?? [k.experiment]).every((n) => v.present.some((p) => p.experiment === n))
    );
  };
  return v.chain
    .slice(0, -1)
    .filter((k) => k.gain !== null && inBest(k))
    .filter((k) => tries(k.experiment).length < MAX_TRIES && !tries(k.experiment).some((m) => m.parent === best))
    .sort((a, b) => strength(a) - strength(b) || a.experiment - b.experiment)
    .map((k) => {
      const later = v.chain.filter((c) => c.experiment > k.experiment).length;
      return {
        kind: 'ablate',
        of: [k.experiment],
        description: `ablate #${k.experiment}: without ${k.description}`,
        evidence: `kept with ${signed(k.gain!)} over ${k.runs} run${k.runs === 1 ? '' : 's'}; ${later} change${later === 1 ? '' : 's'} kept since; kept out if no worse without it (simpler is better)`,
      };
    });
}

/** Near misses judged on another best, not revisited on this one, strongest first. */
function revisitMoves(v: View, best: string): Move[] {
  const tries = (n: number) => v.moves.filter((m) => m.kind === 'revisit' && m.of[0] === n);
  return nearMissesOf(v)
    .filter(
      (f) =>
        f.parent !== best && tries(ideaOf(f)).length < MAX_TRIES && !tries(ideaOf(f)).some((m) => m.parent === best),
    )
    .map((d) => ({
      kind: 'revisit',
      of: [ideaOf(d)],
      description: `revisit #${ideaOf(d)}: ${d.description.replace(/^revisit #\d+: /, '')}`,
      evidence: `looked better inside the noise: ${describe(d)}; the best has moved since, to ${best.slice(0, 7)}`,
    }));
}

/**
 * The next experiment's kind: one of the engine's moves (its share drawn from `seed` and the
 * experiment number, so a replay draws the same) when one is possible, otherwise the proposer's,
 * with a plateau note when no keep came in `settings.plateau` experiments. For a move, up to `most`
 * of the drawn kind, in the order to try them: the caller takes the first that git can make and
 * that was not trained before, so one strongest candidate that cannot be made never blocks its kind.
 */
export function chooseMoves(
  facts: SearchFact[],
  o: { best: string; experiment: number; seed: number; settings: SearchSettings; most: number },
): Move[] {
  const v = view(facts, o.best);
  const s = o.settings;
  const plateau = s.plateau > 0 && v.sinceKeep >= s.plateau;
  const boost = plateau ? s.plateauBoost : 1;
  const shares = { combine: s.combine * boost, ablate: s.ablate * boost, revisit: s.revisit };
  const total = shares.combine + shares.ablate + shares.revisit;
  const scale = total > MAX_SHARE ? MAX_SHARE / total : 1;
  let u = seededRandom('search', o.seed, o.experiment)();
  const make = {
    combine: () => combineMoves(v, o.best, COMBINE_POOL, o.most),
    ablate: () => ablateMoves(v, o.best),
    revisit: () => revisitMoves(v, o.best),
  };
  for (const kind of ['combine', 'ablate', 'revisit'] as const) {
    u -= shares[kind] * scale;
    if (u < 0) {
      const moves = make[kind]().slice(0, o.most);
      if (moves.length) return moves;
      break;
    }
  }
  return [{ kind: 'proposer', note: plateau ? plateauText(v) : null }];
}

/**
 * Moves of every kind whose share is above 0, whatever their size, in the order to try them, at most
 * `most`: for an experiment whose proposal was trained before (training it again would teach
 * nothing). The strongest combines (of the FALLBACK_POOL strongest near misses) fill half, then
 * ablations and revisits, then more combines, so that pairs git cannot make never starve the other
 * moves. The caller takes the first that git can make.
 */
export function fallbackMoves(
  facts: SearchFact[],
  o: { best: string; most: number; settings: SearchSettings },
): Move[] {
  const v = view(facts, o.best);
  const on = (kind: MoveKind) => o.settings[kind] > 0;
  const combines = on('combine') ? combineMoves(v, o.best, FALLBACK_POOL, o.most) : [];
  const half = Math.ceil(o.most / 2);
  const others = [...(on('ablate') ? ablateMoves(v, o.best) : []), ...(on('revisit') ? revisitMoves(v, o.best) : [])];
  return [...combines.slice(0, half), ...others, ...combines.slice(half)].slice(0, o.most);
}

/** What tells the proposer it is on a plateau, with the near misses; null when it is not on one. */
export function plateauNote(facts: SearchFact[], o: { best: string; settings: SearchSettings }): string | null {
  const v = view(facts, o.best);
  return o.settings.plateau > 0 && v.sinceKeep >= o.settings.plateau ? plateauText(v) : null;
}

function plateauText(v: View): string {
  const misses = nearMissesOf(v).slice(0, NOTE_NEAR_MISSES);
  const lines = misses.map((f) => `- ${describe(f)}`);
  return [
    `No keep in the last ${v.sinceKeep} experiments: the campaign is on a plateau. Small variations of what was`,
    'tried are unlikely to help; try a different kind of change, or build on the near misses below',
    '(discarded, but better than the best of their time inside the noise).',
    ...(lines.length ? lines : ['- (none yet)']),
  ].join('\n');
}

/** How much an ablation's runs are credited before the usual judge: "no worse" within the slack. */
export function ablateCredit(sigma: number | null, settings: SearchSettings): number {
  return sigma ? settings.ablateSlack * sigma : 0;
}

export function signed(x: number): string {
  return `${x >= 0 ? '+' : ''}${Number(x.toPrecision(3))}`;
}
