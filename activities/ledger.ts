// The campaign's records on disk: `results.tsv` in autoresearch's exact schema, and a JSONL
// ledger with every field. Appends are keyed (experiment number, proposal attempt) so a
// retried activity never writes a row twice.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ExperimentRecord, RunRecord } from '../common/shared';

export const LEDGER_FILE = 'ledger.jsonl';
export const RESULTS_FILE = 'results.tsv';

export type LedgerRow =
  | ({ kind: 'experiment'; logTail: string } & ExperimentRecord)
  | ({ kind: 'run' } & RunRecord)
  | { kind: 'rejected'; tag: string; experiment: number; attempt: number; description: string; reason: string; costUsd: number; at: string; usage?: unknown };

export function resultsHeader(metricName: string): string {
  return ['commit', metricName, 'memory_gb', 'status', 'description'].join('\t');
}

/** One results.tsv line: 7-char sha, crash rows 0.000000 and 0.0, a description without tabs. */
export function resultsLine(r: Pick<ExperimentRecord, 'commit' | 'metric' | 'memoryGb' | 'status' | 'description'>): string {
  const metric = r.status === 'crash' || r.metric === null ? 0 : r.metric;
  const memory = r.status === 'crash' ? 0 : r.memoryGb;
  return [r.commit.slice(0, 7), metric.toFixed(6), memory.toFixed(1), r.status, cleanDescription(r.description)].join('\t');
}

/** results.tsv is tab-separated and one line per row: no tabs, no newlines, bounded length. */
export function cleanDescription(text: string): string {
  const line = text.replace(/[\t\r\n]+/g, ' ').replace(/\s+/g, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}

export function readLedger(campaignDir: string): LedgerRow[] {
  const file = path.join(campaignDir, LEDGER_FILE);
  if (!existsSync(file)) return [];
  const rows: LedgerRow[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      rows.push(JSON.parse(line));
    } catch {
      // A line cut by a crash mid-write; its activity is retried and writes it whole.
    }
  }
  return rows;
}

export function experiments(campaignDir: string): (ExperimentRecord & { logTail: string })[] {
  return readLedger(campaignDir).filter((r): r is Extract<LedgerRow, { kind: 'experiment' }> => r.kind === 'experiment');
}

function appendLine(file: string, line: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  // A line cut short by a crash is closed first, so the new row stays parseable.
  appendFileSync(file, `${text && !text.endsWith('\n') ? '\n' : ''}${line}\n`);
}

/** Appends the experiment to the ledger and results.tsv, each only if it is not there yet. */
export function appendExperiment(campaignDir: string, record: ExperimentRecord, metricName: string, logTail: string): void {
  const ledger = readLedger(campaignDir);
  if (!ledger.some((r) => r.kind === 'experiment' && r.experiment === record.experiment)) {
    appendLine(path.join(campaignDir, LEDGER_FILE), JSON.stringify({ kind: 'experiment', ...record, logTail }));
  }
  const tsv = path.join(campaignDir, RESULTS_FILE);
  if (!existsSync(tsv)) appendLine(tsv, resultsHeader(metricName));
  const line = resultsLine(record);
  const present = readFileSync(tsv, 'utf8').split('\n').some((l) => l === line);
  if (!present) appendLine(tsv, line);
}

/** Every run of every commit (repeated runs, confirmations, re-runs of the best), once. */
export function appendRun(campaignDir: string, run: RunRecord): void {
  if (readLedger(campaignDir).some((r) => r.kind === 'run' && r.experiment === run.experiment && r.run === run.run)) return;
  appendLine(path.join(campaignDir, LEDGER_FILE), JSON.stringify({ kind: 'run', ...run }));
}

export function appendRejection(campaignDir: string, row: Omit<Extract<LedgerRow, { kind: 'rejected' }>, 'kind'>): void {
  const ledger = readLedger(campaignDir);
  if (ledger.some((r) => r.kind === 'rejected' && r.experiment === row.experiment && r.attempt === row.attempt)) return;
  appendLine(path.join(campaignDir, LEDGER_FILE), JSON.stringify({ kind: 'rejected', ...row }));
}

/** Parses results.tsv back (used by tests and `nightlab results`). */
export function readResultsTsv(campaignDir: string): { header: string[]; rows: string[][] } {
  const lines = readFileSync(path.join(campaignDir, RESULTS_FILE), 'utf8').split('\n').filter(Boolean);
  return { header: lines[0].split('\t'), rows: lines.slice(1).map((l) => l.split('\t')) };
}
