// The search's pure core (common/search.ts): each move chosen when its conditions hold and never
// otherwise, the plateau's shift of shares, and the same choice for the same inputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chooseMoves,
  DEFAULT_SEARCH,
  fallbackMoves,
  moveOf,
  nearDuplicate,
  nearMisses,
  plateauNote,
  sameTree,
  type IdeaEntry,
  type Move,
  type SearchFact,
  type SearchSettings,
} from '../common/search';

/** One judged experiment; `commit` is `c<n>`, `parent` the best it was built on. */
function fact(experiment: number, over: Partial<SearchFact> = {}): SearchFact {
  return {
    experiment,
    status: 'discard',
    description: `idea ${experiment}`,
    commit: `c${experiment}`,
    parent: 'c0',
    gain: -0.01,
    sigma: 0.01,
    runs: 1,
    touches: [`S${experiment}`],
    ...over,
  };
}

const BASELINE = fact(0, { status: 'keep', gain: null, parent: 'none', touches: [] });
const only = (kind: 'combine' | 'ablate' | 'revisit'): SearchSettings => ({
  ...DEFAULT_SEARCH,
  combine: 0,
  ablate: 0,
  revisit: 0,
  plateau: 0,
  [kind]: 1,
});
/** The move, which must be one of the engine's own. */
function made(move: Move): Extract<Move, { of: number[] }> {
  assert.notEqual(move.kind, 'proposer');
  return move as Extract<Move, { of: number[] }>;
}
/** The first candidate chooseMoves gives (what is drawn). */
const chooseMove = (
  facts: SearchFact[],
  o: { best: string; experiment: number; seed: number; settings: SearchSettings },
) => chooseMoves(facts, { ...o, most: 1 })[0];
const choose = (facts: SearchFact[], best: string, settings: SearchSettings, experiment = 100): Move =>
  chooseMove(facts, { best, experiment, seed: 1, settings });

test('combine: the two strongest near misses with different settings, once per pair', () => {
  const facts = [
    BASELINE,
    fact(1, { gain: 0.004 }),
    fact(2, { gain: -0.02 }), // worse: not a near miss
    fact(3, { gain: 0.008, runs: 2 }),
    fact(4, { gain: 0.002 }),
    fact(5, { status: 'crash', gain: null }),
  ];
  const move = made(choose(facts, 'c0', only('combine')));
  assert.equal(move.kind, 'combine');
  assert.deepEqual(move.of, [1, 3]);
  assert.match(move.description, /^combine #1 \+ #3: idea 1 \+ idea 3$/);
  assert.match(move.evidence, /#3 \(idea 3: \+0\.008 over 2 runs, 1\.1 standard errors\)/);
  // Once tried (and discarded), that pair is not tried again: the next strongest pair is.
  const tried = [...facts, fact(6, { description: 'combine #1 + #3: idea 1 + idea 3', gain: -0.001 })];
  assert.deepEqual((choose(tried, 'c0', only('combine')) as { of: number[] }).of, [3, 4]);
  // One near miss, or two changing the same setting: no combine.
  assert.equal(choose(facts.slice(0, 3), 'c0', only('combine')).kind, 'proposer');
  const sameSetting = [BASELINE, fact(1, { gain: 0.004, touches: ['LR'] }), fact(2, { gain: 0.003, touches: ['LR'] })];
  assert.equal(choose(sameSetting, 'c0', only('combine')).kind, 'proposer');
});

test('near misses: ideas in the best and those a later keep touched are left out', () => {
  const facts = [
    BASELINE,
    fact(1, { gain: 0.004, touches: ['LR'] }),
    fact(2, { gain: 0.003 }),
    fact(3, { status: 'keep', gain: 0.03, touches: ['LR'] }), // LR changed since 1: 1 would undo it
    fact(4, { gain: 0.002, parent: 'c3' }),
  ];
  assert.deepEqual(
    nearMisses(facts, 'c3').map((f) => f.experiment),
    [2, 4],
  );
  // A reused result (the same files proposed again: no run) is the earlier experiment, not a second near miss.
  const reused = [...facts, fact(5, { gain: 0.004, parent: 'c3', runs: 0, sigma: null })];
  assert.deepEqual(
    nearMisses(reused, 'c3').map((f) => f.experiment),
    [2, 4],
  );
  // A kept combine brings its ideas into the best: they are no longer near misses.
  const combined = [...facts, fact(5, { status: 'keep', gain: 0.01, parent: 'c3', description: 'combine #2 + #4: x' })];
  assert.deepEqual(nearMisses(combined, 'c5'), []);
});

test('ablate: the weakest kept change with others kept after it, once per best', () => {
  const chain = [
    BASELINE,
    fact(1, { status: 'keep', gain: 0.03, runs: 3 }),
    fact(2, { status: 'keep', gain: 0.01, parent: 'c1' }),
    fact(3, { gain: -0.01, parent: 'c2' }),
    fact(4, { status: 'keep', gain: 0.005, parent: 'c2' }), // the last keep: nothing kept after it
  ];
  const move = choose(chain, 'c4', only('ablate'));
  assert.deepEqual(move.kind === 'ablate' && move.of, [2]);
  assert.match(move.kind === 'ablate' ? move.description : '', /^ablate #2: without idea 2$/);
  assert.match(move.kind === 'ablate' ? move.evidence : '', /1 change kept since/);
  // Tried on this best: the next weakest; a lone keep (only the baseline before it) is never ablated.
  const tried = [...chain, fact(5, { parent: 'c4', description: 'ablate #2: without idea 2' })];
  assert.deepEqual((choose(tried, 'c4', only('ablate')) as { of: number[] }).of, [1]);
  assert.equal(choose(chain.slice(0, 2), 'c1', only('ablate')).kind, 'proposer');
  // A kept ablation takes the change out of the best: not ablated again (4 now has a keep after it).
  const ablated = [...chain, fact(5, { status: 'keep', gain: 0.001, parent: 'c4', description: 'ablate #2: without' })];
  assert.deepEqual((choose(ablated, 'c5', only('ablate')) as { of: number[] }).of, [4]);
});

test('revisit: a near miss once the best has moved, never on the best it was judged on', () => {
  const facts = [BASELINE, fact(1, { gain: 0.004 }), fact(2, { status: 'keep', gain: 0.02, touches: ['OTHER'] })];
  assert.equal(choose(facts.slice(0, 2), 'c0', only('revisit')).kind, 'proposer', 'the best has not moved');
  const move = choose(facts, 'c2', only('revisit'));
  assert.deepEqual(move.kind === 'revisit' && move.of, [1]);
  assert.match(move.kind === 'revisit' ? move.evidence : '', /the best has moved since, to c2/);
  // Revisited on this best already: not again; the revisit's own discard stands for the idea.
  const again = [...facts, fact(3, { parent: 'c2', description: 'revisit #1: idea 1', gain: 0.001 })];
  assert.equal(choose(again, 'c2', only('revisit')).kind, 'proposer');
  assert.deepEqual(
    nearMisses(again, 'c2').map((f) => f.experiment),
    [3],
  );
});

test('plateau: no keep in K experiments shifts the share to combine and ablate, and says so', () => {
  const misses = [fact(1, { gain: 0.004 }), fact(2, { gain: 0.003 })];
  const settings = { ...DEFAULT_SEARCH, combine: 0.1, ablate: 0, revisit: 0, plateau: 5, plateauBoost: 3 };
  const flat = [BASELINE, ...misses, ...[3, 4, 5].map((n) => fact(n))];
  const recent = [...flat, fact(6, { status: 'keep', gain: 0.01 })];
  const share = (facts: SearchFact[], best: string) => {
    let combines = 0;
    for (let n = 1000; n < 3000; n++)
      if (chooseMove(facts, { best, experiment: n, seed: 3, settings }).kind === 'combine') combines++;
    return combines / 2000;
  };
  const [on, off] = [share(flat, 'c0'), share(recent, 'c6')];
  assert.ok(Math.abs(off - 0.1) < 0.03, `off a plateau about the share: ${off}`);
  assert.ok(Math.abs(on - 0.3) < 0.04, `on a plateau three times it: ${on}`);
  const note = plateauNote(flat, { best: 'c0', settings });
  assert.match(note ?? '', /No keep in the last 5 experiments/);
  assert.match(note ?? '', /#1 \(idea 1: \+0\.004/);
  assert.equal(plateauNote(recent, { best: 'c6', settings }), null);
  const proposer = chooseMove(flat, { best: 'c0', experiment: 7, seed: 3, settings: { ...settings, combine: 0 } });
  assert.deepEqual(proposer, { kind: 'proposer', note });
});

test('chooseMove: the same inputs give the same choice; zero shares always leave it to the proposer', () => {
  const facts = [BASELINE, fact(1, { gain: 0.004 }), fact(2, { gain: 0.003 })];
  const settings = { ...DEFAULT_SEARCH, combine: 0.5 };
  const kinds = Array.from({ length: 50 }, (_, n) =>
    chooseMove(facts, { best: 'c0', experiment: n, seed: 9, settings }),
  );
  const again = Array.from({ length: 50 }, (_, n) =>
    chooseMove(facts, { best: 'c0', experiment: n, seed: 9, settings }),
  );
  assert.deepEqual(kinds, again);
  assert.ok(kinds.some((k) => k.kind === 'combine') && kinds.some((k) => k.kind === 'proposer'));
  // A drawn kind comes with its next candidates, strongest first, so one that cannot be made (a
  // conflict, or files trained before) gives way to the next instead of blocking its kind.
  const three = [...facts, fact(3, { gain: 0.002 })];
  const all = { best: 'c0', experiment: 1, seed: 9, settings: only('combine') };
  assert.deepEqual(
    chooseMoves(three, { ...all, most: 8 }).map((m) => made(m).of.join('+')),
    ['1+2', '1+3', '2+3'],
  );
  assert.deepEqual(
    chooseMoves(three, { ...all, most: 2 }).map((m) => made(m).of.join('+')),
    ['1+2', '1+3'],
  );
  const off = { ...DEFAULT_SEARCH, combine: 0, ablate: 0, revisit: 0, plateau: 0 };
  for (let n = 0; n < 50; n++)
    assert.deepEqual(chooseMove(facts, { best: 'c0', experiment: n, seed: 9, settings: off }), {
      kind: 'proposer',
      note: null,
    });
});

test('duplicates: the same tree, and the same settings to the same values on the same parent', () => {
  const entry = (experiment: number, over: Partial<IdeaEntry>): IdeaEntry => ({
    ...fact(experiment),
    tree: `t${experiment}`,
    parentTree: 'p',
    files: ['train.py'],
    settings: [],
    diffHash: '',
    metric: 1,
    spread: null,
    ...over,
  });
  const lr = (to: string) => ({ file: 'train.py', name: 'LR', from: '0.04', to });
  const depth = { file: 'train.py', name: 'DEPTH', from: '8', to: '10' };
  const archive = [
    entry(3, { settings: [lr('0.05')], tree: 'x' }),
    entry(5, { settings: [lr('0.05'), depth], tree: 'y' }),
    entry(1, { settings: [lr('0.06')], tree: 'x' }),
  ];
  assert.equal(sameTree('x', archive)?.experiment, 1, 'the earliest with the tree');
  const crashedFirst = [
    { tree: 't', experiment: 5, status: 'crash' },
    { tree: 't', experiment: 9, status: 'discard' },
  ];
  assert.equal(sameTree('t', crashedFirst)?.experiment, 9, 'a result before a crash of the same tree');
  assert.equal(sameTree('t', crashedFirst.slice(0, 1))?.experiment, 5, 'a crash when nothing else');
  assert.equal(sameTree('z', archive), null);
  const hit = nearDuplicate([lr('0.05')], 'p', archive);
  assert.equal(hit?.experiment, 3);
  assert.match(hit?.text ?? '', /^LR = 0\.05 on this parent was tried in experiment 3 \(discard, -0\.01 over 1 run\)$/);
  assert.equal(nearDuplicate([depth, lr('0.05')], 'p', archive)?.experiment, 5, 'order does not matter');
  assert.equal(nearDuplicate([lr('0.05')], 'q', archive), null, 'another parent');
  assert.equal(nearDuplicate([lr('0.07')], 'p', archive), null, 'another value');
  assert.equal(nearDuplicate([], 'p', archive), null);
  assert.deepEqual(moveOf('combine #3 + #12: a + b'), { kind: 'combine', of: [3, 12] });
  assert.deepEqual(moveOf('ablate #4: without x'), { kind: 'ablate', of: [4] });
  assert.equal(moveOf('LR 0.04 -> 0.05'), null);
});

test('fallbackMoves: every possible move of the kinds turned on, whatever their shares, in the order to try them, or none', () => {
  const on = (most: number, settings = DEFAULT_SEARCH) => ({ most, settings });
  const facts = [
    BASELINE,
    fact(1, { gain: 0.004 }),
    fact(2, { gain: 0.003 }),
    fact(3, { gain: -0.015 }), // looked worse, inside 2 standard errors: one half of a pair that only helps together
    fact(4, { gain: -0.03 }), // clearly worse: never combined
  ];
  const pairs = fallbackMoves(facts, { best: 'c0', ...on(8) }).map((m) => made(m).of.join('+'));
  assert.deepEqual(pairs, ['1+2', '1+3', '2+3']);
  assert.deepEqual(
    fallbackMoves(facts, { best: 'c0', ...on(2) }).map((m) => made(m).of.join('+')),
    ['1+2', '1+3'],
  );
  assert.deepEqual(fallbackMoves(facts.slice(0, 2), { best: 'c0', ...on(8) }), []);
  // Combines fill half the tries, then the other moves: pairs git cannot make never starve an ablation.
  const chain = [
    BASELINE,
    fact(1, { status: 'keep', gain: 0.03 }),
    fact(2, { status: 'keep', gain: 0.02, parent: 'c1' }),
    ...[3, 4, 5].map((n) => fact(n, { gain: 0.004, parent: 'c2' })),
  ];
  assert.deepEqual(
    fallbackMoves(chain, { best: 'c2', ...on(2) }).map((m) => `${m.kind} ${made(m).of.join('+')}`),
    ['combine 3+4', 'ablate 1'],
  );
  // A share of 0 turns a kind off here too: a proposer repeating itself cannot summon it.
  const wider = [...chain, fact(6, { gain: 0.004, parent: 'c1' })]; // a near miss of the best before: a revisit
  const kinds = (settings: typeof DEFAULT_SEARCH) =>
    [...new Set(fallbackMoves(wider, { best: 'c2', ...on(8, settings) }).map((m) => m.kind))].sort();
  assert.deepEqual(kinds(DEFAULT_SEARCH), ['ablate', 'combine', 'revisit']);
  assert.deepEqual(kinds({ ...DEFAULT_SEARCH, ablate: 0 }), ['combine', 'revisit']);
  assert.deepEqual(kinds({ ...DEFAULT_SEARCH, combine: 0, revisit: 0 }), ['ablate']);
  assert.deepEqual(kinds({ ...DEFAULT_SEARCH, combine: 0, ablate: 0, revisit: 0 }), []);
});
