// The campaign's records on disk: `results.tsv` in autoresearch's exact schema, and a JSONL
// ledger with every field. Appends are keyed (experiment number, proposal attempt) so a
// retried activity never writes a row twice.
import { appendFileSync, chmodSync, closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { privateDir } from './supervise';
import path from 'node:path';
import type { ExperimentRecord, PromotionRecord, RunRecord } from '../common/shared';

export const LEDGER_FILE = 'ledger.jsonl';
export const RESULTS_FILE = 'results.tsv';

export type LedgerRow =
  | ({ kind: 'experiment'; logTail: string } & ExperimentRecord)
  | ({ kind: 'run' } & RunRecord)
  | ({ kind: 'promotion' } & PromotionRecord)
  | {
      kind: 'rejected';
      tag: string;
      experiment: number;
      attempt: number;
      description: string;
      reason: string;
      costUsd: number;
      at: string;
      usage?: unknown;
      /** A duplicate flagged to the proposer (activities/search.ts), not a broken proposal. */
      flagged?: true;
    };

export function resultsHeader(metricName: string): string {
  return ['commit', metricName, 'memory_gb', 'status', 'description'].join('\t');
}

/** One results.tsv line: 7-char sha, crash rows 0.000000 and 0.0, a description without tabs. */
export function resultsLine(
  r: Pick<ExperimentRecord, 'commit' | 'metric' | 'memoryGb' | 'status' | 'description'>,
): string {
  const metric = r.status === 'crash' || r.metric === null ? 0 : r.metric;
  const memory = r.status === 'crash' ? 0 : r.memoryGb;
  return [r.commit.slice(0, 7), metric.toFixed(6), memory.toFixed(1), r.status, cleanDescription(r.description)].join(
    '\t',
  );
}

/** results.tsv is tab-separated and one line per row: no tabs, no newlines, bounded length. */
export function cleanDescription(text: string): string {
  // No tabs or newlines (one line of the table), and no control characters (terminal escapes).
  const line = text
    .replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}

/**
 * Reading the ledger on every append made a campaign O(n²) in its experiments. Each file (the
 * ledger, results.tsv) is parsed once per process and then only its new bytes: a cache remembers
 * what was read up to the last complete line, and is thrown away whenever the file is not simply
 * longer than it was (another inode, shorter, rewritten in place, or its bytes before the cached
 * end changed).
 */
interface GrowingFile<S> {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  /** Bytes parsed: up to and including the last newline. */
  offset: number;
  /** The last bytes before `offset`, checked to tell an append from a rewrite. */
  tail: Buffer;
  /** What the complete lines so far amount to. */
  state: S;
}

const CHECK_BYTES = 64;
const MAX_CACHED = 32;

/**
 * `file`'s state as it stands now: complete lines read since the last call are passed to
 * `addLines`; the text after the last newline (a line still being written, or cut by a crash) is
 * returned as `partial`, not cached.
 */
function readGrowing<S>(
  caches: Map<string, GrowingFile<S>>,
  file: string,
  empty: () => S,
  addLines: (state: S, text: string) => void,
): { state: S; partial: string } {
  const st = statSync(file);
  let c = caches.get(file);
  if (c) {
    const same = c.dev === st.dev && c.ino === st.ino;
    const unchanged = same && st.size === c.size && st.mtimeMs === c.mtimeMs;
    const appended =
      same && st.size > c.size && readBytes(file, c.offset - c.tail.length, c.tail.length).equals(c.tail);
    if (!unchanged && !appended) c = undefined;
  }
  if (!c) c = { dev: st.dev, ino: st.ino, size: 0, mtimeMs: 0, offset: 0, tail: Buffer.alloc(0), state: empty() };
  let partial = '';
  if (st.size > c.offset) {
    const fresh = readBytes(file, c.offset, st.size - c.offset);
    const cut = fresh.lastIndexOf(0x0a) + 1;
    addLines(c.state, fresh.subarray(0, cut).toString('utf8'));
    if (cut > 0) {
      const whole = Buffer.concat([c.tail, fresh.subarray(0, cut)]);
      c.tail = Buffer.from(whole.subarray(Math.max(0, whole.length - CHECK_BYTES)));
      c.offset += cut;
    }
    partial = fresh.subarray(cut).toString('utf8');
  }
  c.size = st.size;
  c.mtimeMs = st.mtimeMs;
  caches.delete(file);
  caches.set(file, c);
  if (caches.size > MAX_CACHED) caches.delete(caches.keys().next().value!);
  return { state: c.state, partial };
}

interface LedgerState {
  rows: LedgerRow[];
  keys: Set<string>;
}
const ledgerCache = new Map<string, GrowingFile<LedgerState>>();

function rowKey(r: LedgerRow): string {
  if (r.kind === 'experiment') return `e/${r.experiment}`;
  if (r.kind === 'run') return runKey(r);
  if (r.kind === 'promotion') return `p/${r.experiment}`;
  return `x/${r.experiment}/${r.attempt}`;
}

function readBytes(file: string, from: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const fd = openSync(file, 'r');
  try {
    let done = 0;
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, from + done);
      if (n === 0) break;
      done += n;
    }
    return done === length ? buf : buf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

function parseLines(text: string, into: (row: LedgerRow) => void): void {
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      into(JSON.parse(line));
    } catch {
      // A line cut by a crash mid-write; its activity is retried and writes it whole.
    }
  }
}

/** The ledger's rows and keys as the file stands now; `partial` is a last line without its newline. */
function loadLedger(file: string): { cache: LedgerState | null; partial: LedgerRow[] } {
  let read;
  try {
    read = readGrowing(
      ledgerCache,
      file,
      () => ({ rows: [], keys: new Set<string>() }),
      (st, text) =>
        parseLines(text, (row) => {
          st.rows.push(row);
          st.keys.add(rowKey(row));
        }),
    );
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    ledgerCache.delete(file);
    return { cache: null, partial: [] };
  }
  const { state, partial } = read;
  // Not cached: the next append closes this line (or a later read finds its newline).
  const rows: LedgerRow[] = [];
  parseLines(partial, (row) => rows.push(row));
  return { cache: state, partial: rows };
}

function hasRow(file: string, key: string): boolean {
  const { cache, partial } = loadLedger(file);
  return (cache?.keys.has(key) ?? false) || partial.some((r) => rowKey(r) === key);
}

export function readLedger(campaignDir: string): LedgerRow[] {
  const { cache, partial } = loadLedger(path.join(campaignDir, LEDGER_FILE));
  // Copies: callers may change what they get without touching the cache.
  return [...(cache?.rows ?? []), ...partial].map((r) => ({ ...r }));
}

/** The screening runs (what decisions were made on): every run row but those at the promoted fidelity. */
export function screeningRuns(ledger: readonly LedgerRow[]): Extract<LedgerRow, { kind: 'run' }>[] {
  return ledger.filter((r): r is Extract<LedgerRow, { kind: 'run' }> => r.kind === 'run' && r.fidelity !== 'promote');
}

export function experiments(campaignDir: string): (ExperimentRecord & { logTail: string })[] {
  return readLedger(campaignDir).filter(
    (r): r is Extract<LedgerRow, { kind: 'experiment' }> => r.kind === 'experiment',
  );
}

/** Records are the worker's user's alone: files 0600 in folders 0700 (tightened once per process). */
const tightened = new Set<string>();

function appendLine(file: string, line: string): void {
  if (!tightened.has(file)) {
    privateDir(path.dirname(file));
    if (existsSync(file)) chmodSync(file, 0o600);
    tightened.add(file);
  }
  const size = existsSync(file) ? statSync(file).size : 0;
  // A line cut short by a crash is closed first, so the new row stays parseable.
  const open = size > 0 && readBytes(file, size - 1, 1)[0] !== 0x0a;
  appendFileSync(file, `${open ? '\n' : ''}${line}\n`, { mode: 0o600 });
}

/** results.tsv's lines, read once per process and then only as the file grows. */
const tsvCache = new Map<string, GrowingFile<Set<string>>>();

function tsvHas(file: string, line: string): boolean {
  const { state, partial } = readGrowing(
    tsvCache,
    file,
    () => new Set<string>(),
    (lines, text) => {
      for (const l of text.split('\n')) lines.add(l);
    },
  );
  return state.has(line) || partial === line;
}

/** Appends the experiment to the ledger and results.tsv, each only if it is not there yet. */
export function appendExperiment(
  campaignDir: string,
  record: ExperimentRecord,
  metricName: string,
  logTail: string,
): void {
  const ledger = path.join(campaignDir, LEDGER_FILE);
  if (!hasRow(ledger, `e/${record.experiment}`))
    appendLine(ledger, JSON.stringify({ kind: 'experiment', ...record, logTail }));
  const tsv = path.join(campaignDir, RESULTS_FILE);
  if (!existsSync(tsv)) appendLine(tsv, resultsHeader(metricName));
  const line = resultsLine(record);
  if (!tsvHas(tsv, line)) appendLine(tsv, line);
}

/** Every run of every commit (repeated runs, confirmations, re-runs of the best), once. */
export function appendRun(campaignDir: string, run: RunRecord): void {
  const ledger = path.join(campaignDir, LEDGER_FILE);
  if (hasRow(ledger, runKey(run))) return;
  appendLine(ledger, JSON.stringify({ kind: 'run', ...run }));
}

/** A run's key: promoted runs are numbered apart from the screening runs of the same experiment. */
function runKey(r: Pick<RunRecord, 'experiment' | 'run' | 'fidelity'>): string {
  return `r/${r.experiment}/${r.fidelity === 'promote' ? 'p' : ''}${r.run}`;
}

export function appendPromotion(campaignDir: string, row: PromotionRecord): void {
  const ledger = path.join(campaignDir, LEDGER_FILE);
  if (hasRow(ledger, `p/${row.experiment}`)) return;
  appendLine(ledger, JSON.stringify({ kind: 'promotion', ...row }));
}

export function appendRejection(
  campaignDir: string,
  row: Omit<Extract<LedgerRow, { kind: 'rejected' }>, 'kind'>,
): void {
  const ledger = path.join(campaignDir, LEDGER_FILE);
  if (hasRow(ledger, `x/${row.experiment}/${row.attempt}`)) return;
  appendLine(ledger, JSON.stringify({ kind: 'rejected', ...row }));
}

/** Parses results.tsv back (used by tests and `nightlab results`). */
export function readResultsTsv(campaignDir: string): { header: string[]; rows: string[][] } {
  const lines = readFileSync(path.join(campaignDir, RESULTS_FILE), 'utf8').split('\n').filter(Boolean);
  return { header: lines[0].split('\t'), rows: lines.slice(1).map((l) => l.split('\t')) };
}
