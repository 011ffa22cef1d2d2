// The offline proposer: random search over numeric hyperparameters, autoresearch without an LLM.
// It perturbs module-level UPPER_CASE = <number> assignments of the editable Python files.
// The RNG is seeded by (seed, tag, experiment, attempt): a retried activity proposes the same edit.
import { nearDuplicate, seededRandom, type SettingChange } from '../common/search';
import type { Proposer } from './context';

/** Multiplicative steps: big enough to matter, small enough to stay near a working setting. */
const FACTORS = [0.5, 0.67, 0.8, 1.25, 1.5, 2];
/** Names that only move the noise, never the model: changing them "improves" by luck. */
const SKIP = /SEED|TIME_BUDGET|EVAL/;
const ASSIGNMENT = /^([A-Z][A-Z0-9_]*)(\s*=\s*)(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(\s*(?:#.*)?)$/;

export interface Knob {
  file: string;
  line: number;
  name: string;
  value: string;
}

export function findKnobs(files: { path: string; content: string }[]): Knob[] {
  const knobs: Knob[] = [];
  for (const f of files) {
    if (!f.path.endsWith('.py')) continue;
    f.content.split('\n').forEach((text, line) => {
      const m = ASSIGNMENT.exec(text);
      if (m && !SKIP.test(m[1])) knobs.push({ file: f.path, line, name: m[1], value: m[3] });
    });
  }
  return knobs;
}

/** A new literal for `value`: same kind (int stays int), always different from the old one. */
export function perturb(value: string, factor: number): string {
  const isInt = /^-?\d+$/.test(value);
  const x = Number(value);
  if (isInt) {
    let y = Math.round(x * factor);
    if (y === x) y = x + (factor > 1 ? 1 : -1);
    if (x > 0 && y < 1) y = 1;
    if (y === x) y = x + 1;
    if (x >= 0 && y < 0) y = x + 1; // a count or size never turns negative
    return String(y);
  }
  if (x === 0) return factor > 1 ? '0.01' : '0.001';
  // A float stays a float literal, so it is never mistaken for an integer setting later.
  const y = String(Number((x * factor).toPrecision(3)));
  return /[.eE]/.test(y) ? y : `${y}.0`;
}

export const mutateProposer: Proposer = async (ctx) => {
  const knobs = findKnobs(ctx.editable);
  if (!knobs.length)
    throw new Error(
      `the mutate proposer found no UPPER_CASE = <number> settings in ${ctx.editable.map((f) => f.path).join(', ')}; use another proposer`,
    );
  const random = seededRandom(ctx.seed, ctx.tag, ctx.experiment, ctx.attempt);
  // Settings an experiment in flight is changing are left to it while others remain: parallel
  // experiments then test different things, and a keep of one never conflicts with the others.
  const busy = new Set(ctx.inFlight.flatMap((f) => settingsIn(f.description)));
  const free = knobs.filter((k) => !busy.has(k.name));
  const pool = free.length ? free : knobs;
  // A change already tried teaches nothing new: the same description (on this best or an earlier
  // one), or the same settings to the same values on this best (the archive): draw again.
  const tried = new Set(ctx.history.map((h) => h.description));
  const repeated = (p: Proposal) =>
    tried.has(p.description) ||
    (ctx.archive !== undefined && nearDuplicate(p.settings, ctx.archive.parentTree, ctx.archive.entries) !== null);
  let proposal = draw(pool, ctx, random);
  for (let i = 0; i < MAX_DRAWS && repeated(proposal); i++) proposal = draw(pool, ctx, random);
  return { description: proposal.description, files: proposal.files };
};

/** The setting names a mutate description changes ("WIDTH 8 -> 16, DEPTH 4 -> 3"). */
export function settingsIn(description: string): string[] {
  return [...description.matchAll(/(?:^|, )([A-Z][A-Z0-9_]*) \S+ -> /g)].map((m) => m[1]);
}

/** Draws before a repeated proposal is returned anyway (the engine then reuses its result or makes a move). */
export const MAX_DRAWS = 50;

interface Proposal {
  description: string;
  files: Record<string, string>;
  settings: SettingChange[];
}

function draw(knobs: Knob[], ctx: Parameters<Proposer>[0], random: () => number): Proposal {
  // Mostly one change at a time, so a keep says which setting helped; sometimes two.
  const count = Math.min(knobs.length, random() < 0.75 ? 1 : 2);
  const chosen: Knob[] = [];
  while (chosen.length < count) {
    const k = knobs[Math.floor(random() * knobs.length)];
    if (!chosen.includes(k)) chosen.push(k);
  }
  const files: Record<string, string> = {};
  const changes: string[] = [];
  const settings: SettingChange[] = [];
  for (const k of chosen) {
    const next = perturb(k.value, FACTORS[Math.floor(random() * FACTORS.length)]);
    const lines = (files[k.file] ?? ctx.editable.find((f) => f.path === k.file)!.content).split('\n');
    lines[k.line] = lines[k.line].replace(ASSIGNMENT, (_m, name, eq, _v, rest) => `${name}${eq}${next}${rest}`);
    files[k.file] = lines.join('\n');
    changes.push(`${k.name} ${k.value} -> ${next}`);
    settings.push({ file: k.file, name: k.name, from: k.value, to: next });
  }
  return { description: changes.join(', '), files, settings };
}
