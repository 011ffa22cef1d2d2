// The campaign's records served to other hosts. The orchestrator worker owns the records directory;
// a client elsewhere starts the `records` workflow on the campaign's task queue (client/records.ts),
// and this activity, run there, returns one page of the ledger. Pages are cut by bytes, since an
// experiment's row carries its log tail, so each stays far under Temporal's 2 MB payload limit.
import { existsSync } from 'node:fs';
import os from 'node:os';
import { ApplicationFailure } from '@temporalio/activity';
import { readLedger, type LedgerRow } from '../lib/ledger';

/** Under the server's 512 KB payload warning with room to spare (a payload codec adds a little). */
export const RECORDS_PAGE_BYTES = 256 * 1024;
export const RECORDS_PAGE_ROWS = 2000;

export interface RecordsRequest {
  campaignDir: string;
  /** The first row wanted (rows are only ever appended, so an index is a stable position). */
  from: number;
  /** At most this many rows (RECORDS_PAGE_ROWS by default). */
  limit?: number;
}

export interface RecordsPage {
  rows: LedgerRow[];
  /** Where the next page starts, or null when this one reached the end. */
  next: number | null;
  /** Rows in the ledger when this page was read. */
  total: number;
  /** The host that read them: where the records live. */
  host: string;
}

/** Rows from `from`, as many as fit in `maxBytes` (always at least one, so a page moves on). */
export function pageOf(
  rows: LedgerRow[],
  from: number,
  limit = RECORDS_PAGE_ROWS,
  maxBytes = RECORDS_PAGE_BYTES,
): Omit<RecordsPage, 'host'> {
  const page: LedgerRow[] = [];
  let bytes = 0;
  for (let i = from; i < rows.length && page.length < limit; i++) {
    const size = Buffer.byteLength(JSON.stringify(rows[i]));
    if (page.length && bytes + size > maxBytes) break;
    page.push(rows[i]);
    bytes += size;
  }
  const end = from + page.length;
  return { rows: page, next: end < rows.length ? end : null, total: rows.length };
}

export async function readRecords(args: RecordsRequest): Promise<RecordsPage> {
  const host = os.hostname();
  // Retrying cannot make a directory appear: the client names the host and the path instead.
  if (!existsSync(args.campaignDir))
    throw ApplicationFailure.nonRetryable(`${args.campaignDir} does not exist on ${host}`, 'RecordsMissing');
  return { ...pageOf(readLedger(args.campaignDir), Math.max(0, args.from), args.limit), host };
}
