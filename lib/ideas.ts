// The idea archive: every experiment's change as a structured record (files, settings old -> new,
// a normalised diff hash, the candidate's tree), read from the ledger and git, and compacted for a
// proposer within a token budget. Pure functions first; the I/O (git, the ledger) is at the end.
// What git says of a commit never changes, so it is read once per process and commit.
import { createHash } from 'node:crypto';
import type { IdeaEntry, SettingChange } from '../common/search';
import { signed } from '../common/search';
import { git, showFiles, treesOf } from './git';
import type { ExperimentRecord, IdeaFacts } from '../common/shared';
import { readLedger, screeningRuns, type LedgerRow } from './ledger';

/** A proposer's token is about this many characters of this kind of text. */
const CHARS_PER_TOKEN = 4;
/** One group's line at most (its values beyond are counted, not listed). */
const GROUP_CHARS = 600;
const NEAR_MISS_LINES = 10;
const DESCRIPTION_CHARS = 80;
/** The line that counts the groups left out, at its shortest. */
const LAST_LINE_CHARS = 70;

/** Comment starts by file type; the normalised diff ignores what follows them (and whitespace). */
const HASH_COMMENTS = /\.(py|sh|bash|ya?ml|toml|r|pl|rb|cfg|ini|conf)$|(^|\/)(Makefile|Dockerfile)$/i;
const SLASH_COMMENTS = /\.(js|mjs|cjs|ts|c|cc|cpp|h|hpp|cu|cuh|go|rs|java|kt|swift|scala)$/i;
/** A module-level setting: `NAME = literal` at the start of a line. */
const ASSIGNMENT = /^([A-Z][A-Z0-9_]*)\s*=\s*(.+)$/;

/** `line` without its comment (a comment marker inside a string literal is not one). */
function stripComment(line: string, marker: string | null): string {
  if (!marker) return line;
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote) {
      if (ch === '\\') i++;
      else if (ch === quote) quote = null;
    } else if (ch === '"' || ch === "'" || ch === '`') quote = ch;
    else if (line.startsWith(marker, i)) return line.slice(0, i);
  }
  return line;
}

function commentMarker(file: string): string | null {
  return HASH_COMMENTS.test(file) ? '#' : SLASH_COMMENTS.test(file) ? '//' : null;
}

/** A line as the normalised diff sees it: no comment, whitespace collapsed (outside nothing else). */
function normaliseLine(line: string, file: string): string {
  return stripComment(line, commentMarker(file)).replace(/\s+/g, ' ').trim();
}

/** A literal a setting can hold: numbers and arithmetic on them, strings, True/False/None, tuples, lists. */
function isLiteral(value: string): boolean {
  const rest = value.replace(/(["'])(?:\\.|(?!\1).)*\1/g, '0').replace(/\b(True|False|None)\b/g, '0');
  return /^[-+*/%().,[\]\s\deE_]*$/.test(rest) && /[\d]/.test(rest) && balanced(rest);
}

function balanced(text: string): boolean {
  let depth = 0;
  for (const ch of text) {
    if ('([{'.includes(ch)) depth++;
    if (')]}'.includes(ch) && --depth < 0) return false;
  }
  return depth === 0;
}

/** The longest setting value kept as it is: a longer one (a 4 MB string) is kept as its hash, records stay small. */
const MAX_VALUE_CHARS = 200;

/** Whether a value is a long one's stand-in (its length and hash), not the literal. */
export function isCapped(value: string): boolean {
  return /^<\d+ characters, sha256 [0-9a-f]{16}>$/.test(value);
}

function capped(value: string): string {
  if (value.length <= MAX_VALUE_CHARS) return value;
  return `<${value.length} characters, sha256 ${createHash('sha256').update(value).digest('hex').slice(0, 16)}>`;
}

/** A Python file's module-level `NAME = literal` settings, values normalised (no comment, single spaces). */
export function readSettings(content: string): Map<string, string> {
  const settings = new Map<string, string>();
  for (const line of content.split('\n')) {
    const m = ASSIGNMENT.exec(line) && ASSIGNMENT.exec(normaliseLine(line, 'x.py'));
    if (m && isLiteral(m[2])) settings.set(m[1], capped(m[2]));
  }
  return settings;
}

/**
 * `content` with the named module-level settings set to new literals, each line's comment kept; null
 * when a setting is not there. (Two changes to adjacent setting lines conflict in a three-way merge:
 * applied as settings, they combine.)
 */
export function withSettings(content: string, values: Map<string, string>): string | null {
  const left = new Set(values.keys());
  const lines = content.split('\n').map((line) => {
    const name = ASSIGNMENT.exec(line)?.[1];
    if (!name || !values.has(name) || !left.delete(name)) return line;
    const value = ASSIGNMENT.exec(stripComment(line, '#'))![2].trimEnd();
    const at = line.indexOf(value, line.indexOf('=') + 1);
    return `${line.slice(0, at)}${values.get(name)}${line.slice(at + value.length)}`;
  });
  return left.size ? null : lines.join('\n');
}

/** The settings that differ between a file's two versions (null: absent on that side). */
export function settingChanges(file: string, before: string | null, after: string | null): SettingChange[] {
  if (!file.endsWith('.py')) return [];
  const [a, b] = [readSettings(before ?? ''), readSettings(after ?? '')];
  const names = [...new Set([...a.keys(), ...b.keys()])];
  return names
    .filter((n) => a.get(n) !== b.get(n))
    .map((name) => ({ file, name, from: a.get(name) ?? null, to: b.get(name) ?? null }));
}

/**
 * A unified diff (`git diff -U0`) with whitespace and comments taken out: per file, the removed
 * and added lines normalised, those on both sides cancelled (a line only re-indented or
 * re-commented is no change), the rest in order. Equal for two diffs that differ only in those.
 */
export function normalisedDiff(diff: string): Map<string, string[]> {
  const files = new Map<string, string[]>();
  let file = '';
  for (const line of diff.split('\n')) {
    const header = /^diff --git a\/.* b\/(.*)$/.exec(line);
    if (header) {
      file = header[1];
      files.set(file, []);
    } else if (/^(---|\+\+\+) /.test(line) || !file) continue;
    else if (/^[-+]/.test(line)) {
      const text = normaliseLine(line.slice(1), file);
      if (text) files.get(file)!.push(`${line[0]}${text}`);
    } else if (line.startsWith('Binary files')) files.get(file)!.push(line);
  }
  for (const [f, lines] of files) {
    const count = (sign: string, text: string) => lines.filter((l) => l === `${sign}${text}`).length;
    const cancel = new Map<string, number>();
    for (const l of lines)
      if (l[0] === '-') cancel.set(l.slice(1), Math.min(count('-', l.slice(1)), count('+', l.slice(1))));
    const skipped = new Map<string, number>();
    files.set(
      f,
      lines.filter((l) => {
        const done = skipped.get(l) ?? 0;
        if (!/^[-+]/.test(l) || done >= (cancel.get(l.slice(1)) ?? 0)) return true;
        skipped.set(l, done + 1);
        return false;
      }),
    );
  }
  return files;
}

/** The normalised diff's hash (sha256, hex): the same idea written again has the same hash. */
export function diffHash(diff: string): string {
  const text = [...normalisedDiff(diff)]
    .filter(([, lines]) => lines.length)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([f, lines]) => `${f}\n${lines.join('\n')}`)
    .join('\n');
  return createHash('sha256').update(text).digest('hex');
}

/**
 * What an experiment touched, for grouping and for telling moves apart: its settings; and the
 * files it changed beyond setting lines (then their settings are no longer the whole idea).
 */
export function touchesOf(diff: string, settings: SettingChange[]): string[] {
  const names = new Set(settings.map((s) => s.name));
  const files = [...normalisedDiff(diff)].filter(([, lines]) =>
    lines.some((l) => !names.has(ASSIGNMENT.exec(l.slice(1))?.[1] ?? '')),
  );
  return [...names, ...files.map(([f]) => f)].sort();
}

/** How one group of experiments is rendered: what they changed, and each one's value and outcome. */
interface Group {
  key: string;
  entries: IdeaEntry[];
  keeps: number;
  nearMisses: number;
}

const isNearMiss = (e: IdeaEntry) => e.status === 'discard' && (e.gain ?? 0) > 0;

/** What one entry tried, within its group: the settings' new values, or its description. */
function valueOf(e: IdeaEntry): string {
  const values = e.settings.map((s) => s.to ?? '(removed)').join(', ');
  const files = e.touches.some((t) => e.files.includes(t));
  const text = `"${e.description.length > DESCRIPTION_CHARS ? `${e.description.slice(0, DESCRIPTION_CHARS - 3)}...` : e.description}"`;
  return files ? (values ? `${values} with ${text}` : text) : values;
}

function outcome(e: IdeaEntry): string {
  return e.status === 'keep' && e.gain !== null ? `keep ${signed(e.gain)}` : e.status;
}

/** How an entry is named: `#12`, or `nov27#12` for one tried in a fork's parent campaign. */
export function ideaRef(e: Pick<IdeaEntry, 'experiment' | 'campaign'>): string {
  return `${e.campaign ?? ''}#${e.experiment}`;
}

/** An entry in a sentence: `experiment 12`, or `experiment nov27#12` (a fork's parent's). */
export function experimentName(e: Pick<IdeaEntry, 'experiment' | 'campaign'>): string {
  return `experiment ${e.campaign ? ideaRef(e) : e.experiment}`;
}

/** One group as a line: "LR (4 tried: 1 keep, 3 discard; best +0.004 in #31): 0.02 (discard), ...". */
function groupLine(g: Group, chars: number): string {
  const byValue = new Map<string, IdeaEntry[]>();
  for (const e of g.entries) byValue.set(valueOf(e), [...(byValue.get(valueOf(e)) ?? []), e]);
  const item = (value: string, es: IdeaEntry[]) => {
    const counts = new Map<string, number>();
    for (const e of es) counts.set(outcome(e), (counts.get(outcome(e)) ?? 0) + 1);
    const outcomes = [...counts].map(([o, n]) => (n > 1 ? `${o} x${n}` : o)).join(', ');
    return `${value} (${outcomes}${es.some(isNearMiss) ? ', near miss' : ''})`;
  };
  const tally = ['keep', 'discard', 'crash']
    .map((s) => [s, g.entries.filter((e) => e.status === s).length] as const)
    .filter(([, n]) => n)
    .map(([s, n]) => `${n} ${s}`)
    .join(', ');
  const best = g.entries.filter((e) => e.gain !== null).sort((a, b) => b.gain! - a.gain!)[0];
  const head = `${g.key} (${g.entries.length} tried: ${tally}${best ? `; best ${signed(best.gain!)} in ${ideaRef(best)}` : ''}): `;
  // Kept and near-miss values first, then the most recent, as many as fit; shown in value order.
  const rank = (es: IdeaEntry[]) => (es.some((e) => e.status === 'keep') ? 2 : es.some(isNearMiss) ? 1 : 0);
  const values = [...byValue].sort(
    ([, a], [, b]) =>
      rank(b) - rank(a) || Math.max(...b.map((e) => e.experiment)) - Math.max(...a.map((e) => e.experiment)),
  );
  const shown: [string, IdeaEntry[]][] = [];
  let length = head.length;
  for (const v of values) {
    const text = item(...v);
    if (length + text.length + 2 > chars - 20 && shown.length) break;
    shown.push(v);
    length += text.length + 2;
  }
  const numeric = shown.every(([v]) => Number.isFinite(Number(v)));
  shown.sort(([a, ea], [b, eb]) => (numeric ? Number(a) - Number(b) : ea[0].experiment - eb[0].experiment));
  const more = values.length - shown.length;
  return `${head}${shown.map((v) => item(...v)).join(', ')}${more ? `, ... (${more} more values)` : ''}`;
}

/**
 * The whole archive for a proposer, within `tokenBudget` (about 4 characters a token): a count
 * line, the near misses (discards that looked better than the best of their time, inside the
 * noise), then one line per group of experiments that changed the same settings (or files), the
 * most informative first (keeps, then near misses, then the most tried), with every value tried
 * and its outcome. Groups that do not fit are named and counted at the end.
 */
export function compactArchive(entries: IdeaEntry[], tokenBudget: number): string {
  const budget = tokenBudget * CHARS_PER_TOKEN;
  const tried = entries.filter((e) => e.touches.length);
  if (!tried.length) return '(no experiments yet)';
  const count = (s: string) => tried.filter((e) => e.status === s).length;
  const lines = [
    `${tried.length} experiment${tried.length === 1 ? '' : 's'} (${count('keep')} keep, ${count('discard')} discard, ${count('crash')} crash), grouped by what they changed; gains are over the best of their time (+ is better).`,
  ];
  let used = lines[0].length;
  // Room is kept for the last line, which names what did not fit.
  const add = (line: string, reserve = LAST_LINE_CHARS) => {
    if (used + line.length + 1 + reserve > budget) return false;
    lines.push(line);
    used += line.length + 1;
    return true;
  };
  const misses = tried
    .filter(isNearMiss)
    .sort((a, b) => b.gain! - a.gain!)
    .slice(0, NEAR_MISS_LINES);
  const missLines = misses.map(
    (e) => `- ${ideaRef(e)} ${e.description}: ${signed(e.gain!)} over ${e.runs} run${e.runs === 1 ? '' : 's'}`,
  );
  const missHead = 'Near misses (discarded, but better than the best of their time inside the noise):';
  if (missLines.length && add(`${missHead}\n${missLines[0]}`)) for (const line of missLines.slice(1)) add(line);
  const groups = new Map<string, Group>();
  for (const e of tried) {
    const key = e.touches.join(' + ');
    const g = groups.get(key) ?? { key, entries: [], keeps: 0, nearMisses: 0 };
    g.entries.push(e);
    if (e.status === 'keep') g.keeps++;
    if (isNearMiss(e)) g.nearMisses++;
    groups.set(key, g);
  }
  const ordered = [...groups.values()].sort(
    (a, b) =>
      b.keeps - a.keeps ||
      b.nearMisses - a.nearMisses ||
      b.entries.length - a.entries.length ||
      b.entries.at(-1)!.experiment - a.entries.at(-1)!.experiment,
  );
  add('By what was changed:');
  const left: Group[] = [];
  for (const g of ordered) {
    const room = Math.min(GROUP_CHARS, budget - used - 1 - LAST_LINE_CHARS);
    if (room < 80 || !add(groupLine(g, room))) left.push(g);
  }
  if (left.length) {
    const n = left.reduce((s, g) => s + g.entries.length, 0);
    const names = left.map((g) => g.key).join('; ');
    const line = `... ${left.length} more groups (${n} experiments) left out for length`;
    if (!add(`${line}: ${names}`, 0)) add(line, 0);
  }
  return lines.join('\n');
}

/** What git says of one candidate: never changes, so read once per process (and kept in its record). */
export type CommitFacts = IdeaFacts;

const factsCache = new Map<string, Promise<CommitFacts>>();

/** A candidate's trees, files, settings and normalised diff against its parent (git, cached per commit). */
export function commitFacts(repo: string, commit: string, parent: string): Promise<CommitFacts> {
  const key = `${repo}\0${parent}\0${commit}`;
  let facts = factsCache.get(key);
  if (!facts) {
    facts = readCommitFacts(repo, commit, parent);
    factsCache.set(key, facts);
    facts.catch(() => factsCache.delete(key));
  }
  return facts;
}

async function readCommitFacts(repo: string, commit: string, parent: string): Promise<CommitFacts> {
  const g = git(repo);
  const [tree, parentTree] = await treesOf(repo, [commit, parent]);
  const diffArgs = ['diff', '--no-ext-diff', '--no-textconv', '--no-color', '--no-renames'];
  const files = (await g.text([...diffArgs, '--name-only', '-z', parent, commit])).split('\0').filter(Boolean);
  const diff = files.length ? await g.text([...diffArgs, '-U0', parent, commit]) : '';
  const py = files.filter((f) => f.endsWith('.py'));
  const [before, after] = await Promise.all([showFiles(repo, parent, py), showFiles(repo, commit, py)]);
  const settings = py.flatMap((f, i) => settingChanges(f, before[i], after[i]));
  return { tree, parentTree, files, settings, diffHash: diffHash(diff), touches: touchesOf(diff, settings) };
}

/** Each experiment's spread: one run's standard deviation over its runs that gave a figure. */
function runSpreads(ledger: LedgerRow[]): Map<number, number> {
  const runs = new Map<number, number[]>();
  for (const r of screeningRuns(ledger))
    if (r.metric !== null && r.outcome === 'ok') runs.set(r.experiment, [...(runs.get(r.experiment) ?? []), r.metric]);
  const spreads = new Map<number, number>();
  for (const [n, xs] of runs) {
    if (xs.length < 2) continue;
    const m = xs.reduce((a, b) => a + b, 0) / xs.length;
    spreads.set(n, Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1)));
  }
  return spreads;
}

/** The campaign's archive, one entry per recorded experiment, oldest first (the baseline touches nothing). */
export async function ideaEntries(o: {
  repo: string;
  campaignDir: string;
  direction: 'lower' | 'higher';
}): Promise<IdeaEntry[]> {
  const ledger = readLedger(o.campaignDir);
  const spreads = runSpreads(ledger);
  const entries: IdeaEntry[] = [];
  for (const r of experimentsOf(ledger))
    entries.push(ideaEntry(r, r.idea ?? (await commitFacts(o.repo, r.commit, r.parent)), o.direction, spreads));
  return entries;
}

/**
 * The archive from the records alone (their `idea` facts, written when each was recorded), for readers
 * without the repository: `results`, the report. Records written before the archive are left out.
 */
export function recordedIdeas(ledger: LedgerRow[], direction: 'lower' | 'higher'): IdeaEntry[] {
  const spreads = runSpreads(ledger);
  return experimentsOf(ledger).flatMap((r) => (r.idea ? [ideaEntry(r, r.idea, direction, spreads)] : []));
}

function experimentsOf(ledger: LedgerRow[]): ExperimentRecord[] {
  return ledger
    .filter((r): r is Extract<LedgerRow, { kind: 'experiment' }> => r.kind === 'experiment')
    .sort((a, b) => a.experiment - b.experiment);
}

function ideaEntry(
  r: ExperimentRecord,
  facts: IdeaFacts,
  direction: 'lower' | 'higher',
  spreads: Map<number, number>,
): IdeaEntry {
  const sigma = /sigma ([-+.\deE]+) from/.exec(r.evidence)?.[1];
  return {
    ...facts,
    experiment: r.experiment,
    status: r.status,
    description: r.description,
    commit: r.commit,
    parent: r.parent,
    metric: r.metric,
    gain: r.delta === null || r.status === 'crash' ? null : direction === 'lower' ? -r.delta : r.delta,
    sigma: sigma ? Number(sigma) : null,
    runs: r.runs,
    spread: spreads.get(r.experiment) ?? null,
  };
}
