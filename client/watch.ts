// `nightlab status <tag> --watch`: a live view of a campaign in the terminal. The running
// experiment with a progress bar (elapsed against its timeout, from the GPU worker's heartbeats),
// the last results, the budgets and an estimate of the time left. `renderWatch` is pure.
import type { Client } from '@temporalio/client';
import type { CampaignSnapshot, ExperimentRecord } from '../common/shared';
import { isEnded } from '../common/shared';
import { campaignStatus } from './campaigns';
import { campaignRecords } from './records';
import { inFlightOf, pairRuns, runningRuns, type RunningRun } from './live';

export interface WatchSnapshot {
  status: CampaignSnapshot;
  /** The ledger's experiment rows (all of them; the view shows the last few). */
  rows: ExperimentRecord[];
  runs: RunningRun[];
  now: number;
  /** Why the records could not be read (then `rows` is empty), and where they live. */
  recordsError?: string;
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${String(m % 60).padStart(2, '0')}m`;
}

export function progressBar(fraction: number, width = 30): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${String(Math.round(f * 100)).padStart(3)}%`;
}

/**
 * Time left before a budget ends the campaign: the hours budget directly, the experiments budget
 * at the pace so far (wall time per finished experiment). Null when no budget bounds it.
 */
export function estimateTimeLeft(
  s: CampaignSnapshot,
  rows: Pick<ExperimentRecord, 'experiment'>[],
  now: number,
): { seconds: number; basis: string } | null {
  if (isEnded(s.state)) return { seconds: 0, basis: s.state };
  const elapsed = Math.max(0, (now - Date.parse(s.startedAt)) / 1000);
  const options: { seconds: number; basis: string }[] = [];
  if (s.budget.maxHours !== null)
    options.push({ seconds: Math.max(0, s.budget.maxHours * 3600 - elapsed), basis: `${s.budget.maxHours} h budget` });
  if (s.budget.maxExperiments !== null) {
    const done = rows.length; // the baseline included: it took time too
    const left = Math.max(0, s.budget.maxExperiments - s.experiments);
    if (done > 0)
      options.push({
        seconds: (elapsed / done) * left,
        basis: `${left} experiments left at ${formatDuration(elapsed / done)} each`,
      });
  }
  if (!options.length) return null;
  return options.reduce((a, b) => (b.seconds < a.seconds ? b : a));
}

function metricText(v: number | null): string {
  return v === null ? '-' : v.toFixed(6);
}

export function renderWatch(snap: WatchSnapshot, opts: { last?: number; width?: number } = {}): string {
  const { status: s, rows, runs, now } = snap;
  const width = opts.width ?? 100;
  const cut = (line: string) => (line.length > width ? `${line.slice(0, width - 1)}…` : line);
  const lines: string[] = [];
  const elapsed = (now - Date.parse(s.startedAt)) / 1000;
  lines.push(`campaign ${s.tag}: ${s.state.toUpperCase()} — ${s.message}`);
  const gain =
    s.bestMetric !== null && s.baselineMetric !== null
      ? ` (${s.bestMetric - s.baselineMetric >= 0 ? '+' : ''}${(s.bestMetric - s.baselineMetric).toFixed(6)})`
      : '';
  lines.push(
    `  ${s.metricName} (${s.direction} is better): baseline ${metricText(s.baselineMetric)}, best ${metricText(s.bestMetric)}${gain}${s.bestCommit ? ` at ${s.bestCommit.slice(0, 7)}` : ''}`,
  );
  lines.push(
    `  ${s.experiments} experiments, ${s.kept} kept, ${s.crashes} crashed; running for ${formatDuration(elapsed)}`,
  );

  // Budgets, each with a bar where it has a limit.
  const budgets: string[] = [];
  if (s.budget.maxExperiments !== null)
    budgets.push(
      `  experiments ${progressBar(s.experiments / s.budget.maxExperiments, 20)} ${s.experiments}/${s.budget.maxExperiments}`,
    );
  if (s.budget.maxHours !== null)
    budgets.push(
      `  hours       ${progressBar(elapsed / 3600 / s.budget.maxHours, 20)} ${(elapsed / 3600).toFixed(2)}/${s.budget.maxHours} h`,
    );
  if (s.budget.maxCostUsd !== null)
    budgets.push(
      `  cost        ${progressBar(s.costUsd / s.budget.maxCostUsd, 20)} $${s.costUsd.toFixed(2)}/$${s.budget.maxCostUsd.toFixed(2)}`,
    );
  else if (s.costUsd > 0) budgets.push(`  cost        $${s.costUsd.toFixed(4)} (no cost budget)`);
  if (budgets.length) lines.push('', 'budgets', ...budgets);
  const left = estimateTimeLeft(s, rows, now);
  if (left && !isEnded(s.state)) lines.push(`  estimated time left: ${formatDuration(left.seconds)} (${left.basis})`);
  else if (!isEnded(s.state)) lines.push('  estimated time left: unbounded (no experiments or hours budget)');

  // The experiments in flight, each training one with its bar.
  lines.push('');
  const inFlight = inFlightOf(s);
  if (!inFlight.length && !isEnded(s.state)) {
    lines.push(s.state === 'paused' ? 'now: paused (resume with `nightlab resume`)' : 'now: between experiments');
  }
  for (const { flight: f, run } of pairRuns(inFlight, runs)) {
    lines.push(
      cut(
        f
          ? `now: experiment ${f.experiment} ${f.phase}${f.description ? ` — ${f.description}` : ''}`
          : `now: a run${run!.experiment !== undefined ? ` of experiment ${run!.experiment}` : ''}`,
      ),
    );
    if (run) lines.push(...runLines(run, cut));
  }

  // The last results.
  if (snap.recordsError) lines.push('', `no results: ${snap.recordsError}`);
  const last = rows.slice(-(opts.last ?? 8));
  if (last.length) {
    lines.push('', `last results (${rows.length} in the ledger)`);
    lines.push(
      `  ${'#'.padStart(4)}  ${'status'.padEnd(7)}  ${s.metricName.padEnd(10)}  ${'delta'.padEnd(10)}  time     description`,
    );
    for (const r of last) {
      const delta = r.delta === null ? '' : `${r.delta >= 0 ? '+' : ''}${r.delta.toFixed(6)}`;
      lines.push(
        cut(
          `  ${String(r.experiment).padStart(4)}  ${r.status.padEnd(7)}  ${metricText(r.metric).padEnd(10)}  ${delta.padEnd(10)}  ${formatDuration(r.seconds).padEnd(7)}  ${r.description}`,
        ),
      );
    }
  }
  return lines.join('\n');
}

function runLines(r: RunningRun, cut: (l: string) => string): string[] {
  const budget = r.timeoutSec ?? null;
  const bar = budget ? progressBar(r.elapsedSec / budget) : '[running]';
  const where = [r.host, r.slot].filter(Boolean).join('/');
  const lines = [
    `  ${bar} ${formatDuration(r.elapsedSec)}${budget ? ` of ${formatDuration(budget)} timeout` : ''}${where ? ` on ${where}` : ''}${r.attempt > 1 ? ` (attempt ${r.attempt})` : ''}`,
  ];
  if (r.lastLine) lines.push(cut(`  last line: ${r.lastLine}`));
  if (r.sinceHeartbeatSec !== null && r.sinceHeartbeatSec > 90)
    lines.push(`  no heartbeat for ${formatDuration(r.sinceHeartbeatSec)}: is the GPU worker alive?`);
  return lines;
}

export async function watchSnapshot(client: Client, tag: string, now = Date.now()): Promise<WatchSnapshot> {
  const status = await campaignStatus(client, tag);
  // A view that redraws does not die on one failed read: it says why the records are missing.
  const records = await campaignRecords(client, tag).catch((e: Error) => e);
  const rows = records instanceof Error ? [] : records.rows.filter((r) => r.kind === 'experiment');
  const runs = isEnded(status.state) ? [] : await runningRuns(client, tag, now).catch(() => []);
  return { status, rows, runs, now, ...(records instanceof Error ? { recordsError: records.message } : {}) };
}

/**
 * What `nightlab status <tag> --watch` calls: redraws the view every `intervalMs` until the campaign
 * ends (or once, with `once`), and returns its last status.
 */
export async function watchCampaign(
  client: Client,
  tag: string,
  opts: { intervalMs?: number; once?: boolean; write?: (text: string) => void; clear?: boolean } = {},
): Promise<CampaignSnapshot> {
  const write = opts.write ?? ((t: string) => process.stdout.write(t));
  const clear = opts.clear ?? Boolean(process.stdout.isTTY);
  for (;;) {
    const snap = await watchSnapshot(client, tag);
    const width = process.stdout.columns ? Math.max(60, process.stdout.columns) : 100;
    write(
      `${clear ? '\x1b[2J\x1b[H' : ''}${renderWatch(snap, { width })}\n${clear ? '\n(Ctrl-C to leave; the campaign goes on)\n' : ''}`,
    );
    if (opts.once || isEnded(snap.status.state)) return snap.status;
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 2000));
  }
}
