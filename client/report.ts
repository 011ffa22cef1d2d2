// `nightlab report <tag> [--out dir]`: the progress chart (SVG and PNG, in autoresearch's style)
// and an HTML report with the results table, each experiment's diff from git, its log tail, the
// proposer's cost, GPU-hours, and held-out figures where the ledger has them.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { CampaignSnapshot, ExperimentRecord } from '../common/shared';
import type { LedgerRow } from '../lib/ledger';
import { diffOf } from '../lib/git';
import { chartData, renderPng, renderSvg, type ChartData } from './chart';
import { campaignDirFor, campaignStatus, uiLink } from './campaigns';
import { campaignInput } from './live';
import { campaignRecords } from './records';
import { alarms } from './alarms';
import { compactArchive, recordedIdeas } from '../lib/ideas';
import { experimentCurvesSvg } from './curves';
import { deltaText, figuresText, resultCells, resultRows, resultsLegend } from './results';

export type ReportRow = ExperimentRecord & { logTail?: string; heldOut?: unknown };

export interface ReportInput {
  tag: string;
  metricName: string;
  direction: 'lower' | 'higher';
  /** Every ledger row: experiments and rejected proposals. */
  ledger: LedgerRow[];
  /** The campaign repository, for the diffs; without it the report says why there are none. */
  repo?: string | null;
  status?: CampaignSnapshot | null;
  uiUrl?: string;
  outDir: string;
}

export interface ReportFiles {
  dir: string;
  svg: string;
  png: string;
  html: string;
  chart: ChartData;
}

const DIFF_CHARS = 60_000;

export function experimentRows(ledger: LedgerRow[]): ReportRow[] {
  return ledger
    .filter((r) => r.kind === 'experiment')
    .map((r) => r as unknown as ReportRow)
    .sort((a, b) => a.experiment - b.experiment);
}

/**
 * Totals the report shows: proposer cost (rejections included), training hours (every run: where
 * the ledger keeps `run` rows, repeated runs and confirmations count too), held-out figures.
 */
export function reportTotals(ledger: LedgerRow[]) {
  const rows = experimentRows(ledger);
  const rejected = ledger.filter((r) => r.kind === 'rejected');
  const costUsd = ledger.reduce((sum, r) => sum + ('costUsd' in r ? Number(r.costUsd) || 0 : 0), 0);
  const runRows = ledger.filter((r) => (r.kind as string) === 'run') as unknown as {
    experiment: number;
    seconds: number;
  }[];
  const withRuns = new Set(runRows.map((r) => r.experiment));
  const trainSeconds =
    runRows.reduce((sum, r) => sum + (Number(r.seconds) || 0), 0) +
    rows.filter((r) => !withRuns.has(r.experiment)).reduce((sum, r) => sum + (Number(r.seconds) || 0), 0);
  return {
    experiments: rows.length,
    runs: runRows.length || rows.length,
    rejected: rejected.length,
    costUsd,
    gpuHours: trainSeconds / 3600,
    trainSeconds,
  };
}

/** A held-out figure as text: a number, or an object of named numbers (the field is optional). */
export function heldOutText(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'number') return Number.isFinite(v) ? v.toFixed(6) : String(v);
  if (typeof v === 'object') {
    return Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `${k} ${typeof x === 'number' ? x.toFixed(6) : String(x)}`)
      .join(', ');
  }
  return String(v);
}

const esc = (s: unknown) =>
  String(s ?? '').replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

function diffHtml(diff: string): string {
  return diff
    .split('\n')
    .map((l) => {
      const cls =
        l.startsWith('+++') || l.startsWith('---') || l.startsWith('diff ') || l.startsWith('index ')
          ? 'meta'
          : l.startsWith('+')
            ? 'add'
            : l.startsWith('-')
              ? 'del'
              : l.startsWith('@@')
                ? 'hunk'
                : '';
      return cls ? `<span class="${cls}">${esc(l)}</span>` : esc(l);
    })
    .join('\n');
}

/** The archive's length in the report, in tokens (about 4 characters each): more than a proposer gets. */
const ARCHIVE_TOKENS = 12_000;

const fmt = (v: number | null | undefined, digits = 6) => (v === null || v === undefined ? '-' : v.toFixed(digits));

export async function buildReportHtml(
  input: ReportInput,
  chart: ChartData,
  svg: string,
  diffs: Map<number, string>,
): Promise<string> {
  const rows = experimentRows(input.ledger);
  const results = resultRows(input.ledger);
  const totals = reportTotals(input.ledger);
  const s = input.status;
  const haveHeldOut = rows.some((r) => r.heldOut !== undefined && r.heldOut !== null);
  const promotions = results.filter((r) => r.promotion);
  const promotionOf = (n: number) => promotions.find((r) => r.experiment === n)?.promotion;
  const baseline = results.find((r) => r.experiment === 0);
  // The best now, at its current estimate (its re-runs included), against the baseline's.
  const best = results.find((r) => r.best);
  const [from, to] = [baseline?.figures.mean, best?.figures.mean];
  const improvement = from != null && to != null ? to - from : null;
  const rejected = input.ledger.filter((r): r is Extract<LedgerRow, { kind: 'rejected' }> => r.kind === 'rejected');

  const summary = [
    ['state', s ? `${s.state} — ${s.message}` : 'unknown (no status from the server)'],
    [
      `${input.metricName} (${input.direction} is better)`,
      [
        `baseline ${baseline ? figuresText(baseline.figures) : '-'}, best ${best ? figuresText(best.figures) : '-'}`,
        improvement !== null ? ` (${deltaText(improvement)})` : '',
        best
          ? ` at experiment ${best.experiment}, ${best.commit.slice(0, 7)}; each the mean of every run of its commit`
          : '',
      ].join(''),
    ],
    [
      'experiments',
      `${chart.counts.experiments} after the baseline: ${chart.counts.kept} kept, ${chart.counts.discarded} discarded, ${chart.counts.crashed} crashed; ${totals.rejected} proposals rejected before training`,
    ],
    [
      'training time',
      `${totals.gpuHours.toFixed(3)} GPU-hours (${Math.round(totals.trainSeconds)} s over ${totals.runs} runs, the baseline included)`,
    ],
    [
      'proposer cost',
      `$${totals.costUsd.toFixed(4)}${s?.budget.maxCostUsd != null ? ` of a $${s.budget.maxCostUsd.toFixed(2)} budget` : ''}`,
    ],
    [
      'held-out',
      haveHeldOut
        ? `baseline ${heldOutText(baseline?.heldOut) || '-'}, best kept ${heldOutText(best?.heldOut) || '-'}`
        : 'no held-out figures in the ledger for this campaign',
    ],
    ...(promotions.length
      ? [
          [
            'promotion',
            `${promotions.filter((r) => r.promotion!.transfers).length} of ${promotions.length} keeps transfer to the promoted fidelity${
              promotions.some((r) => r.promotion!.reverted)
                ? `; reverted: experiment ${promotions
                    .filter((r) => r.promotion!.reverted)
                    .map((r) => r.experiment)
                    .join(', ')}`
                : ''
            }`,
          ],
        ]
      : []),
    ...(s?.branch ? [['branch', `${s.branch} (records in ${s.campaignDir})`]] : []),
    ...(input.repo ? [['repository', input.repo]] : []),
  ];

  const table = results
    .map((r) => ({ r, c: resultCells(r) }))
    .map(
      ({ r, c }) => `<tr class="${esc(r.status)}">
<td><a href="#exp-${r.experiment}">${r.experiment}</a></td><td><code>${esc(r.commit.slice(0, 7))}</code></td>
<td class="num">${c.metric}</td><td class="num">${c.vsBest}</td>
<td class="num">${c.delta}</td><td class="num">${esc(c.runs)}</td>
${haveHeldOut ? `<td class="num">${esc(heldOutText(r.heldOut))}</td>` : ''}
<td class="num">${r.memoryGb.toFixed(1)}</td><td class="status">${esc(c.status)}</td><td>${esc(r.outcome)}</td>
${promotions.length ? `<td class="num" title="${esc(r.promotion?.evidence ?? '')}">${esc(c.promoted)}</td>` : ''}
<td class="num">${r.seconds.toFixed(1)}</td><td class="num">${r.costUsd ? `$${r.costUsd.toFixed(4)}` : ''}</td><td>${esc(r.description)}</td></tr>`,
    )
    .join('\n');

  const details = rows
    .map((r) => {
      const diff = diffs.get(r.experiment) ?? '';
      const curves = experimentCurvesSvg(input.ledger, r.experiment, r.status);
      return `<details id="exp-${r.experiment}" class="${esc(r.status)}"${r.status === 'keep' ? ' open' : ''}>
<summary><b>experiment ${r.experiment}</b> <span class="status">${esc(r.status)}</span> ${esc(fmt(r.metric))}${typeof r.heldOut === 'number' ? ` (held-out ${esc(fmt(r.heldOut))})` : ''} — ${esc(r.description)}</summary>
<p>${esc(r.reason)}</p>${r.suspect ? `<p class="meta"><b>suspect</b>: ${esc(r.suspect)}</p>` : ''}${promotionOf(r.experiment) ? `<p class="meta"><b>promotion</b>: ${esc(promotionOf(r.experiment)!.evidence)}</p>` : ''}${(r as { evidence?: string }).evidence ? `<p class="meta">evidence: ${esc((r as { evidence?: string }).evidence)}</p>` : ''}
<p class="meta">commit <code>${esc(r.commit)}</code>, parent <code>${esc(r.parent)}</code>; outcome ${esc(r.outcome)}; ${r.seconds.toFixed(1)} s on ${esc([r.host, r.slot].filter(Boolean).join('/') || '-')}; log ${esc(r.logPath)}${r.fixOf !== null && r.fixOf !== undefined ? `; a fix of experiment ${r.fixOf}` : ''}${input.uiUrl ? `; <a href="${esc(input.uiUrl)}">Temporal Web UI</a>` : ''}</p>
${curves ? `<h4>learning curve</h4><div class="curves">${curves}</div>` : ''}
<h4>diff</h4><pre class="diff">${diff ? diffHtml(diff) : '<i>(no diff)</i>'}</pre>
<h4>log tail</h4><pre class="log">${esc(r.logTail ?? '') || '<i>(empty)</i>'}</pre>
</details>`;
    })
    .join('\n');

  const raised = alarms(input.ledger, input.direction);
  const alarmsHtml = raised.length
    ? `<h2>Alarms</h2><p class="meta">For people only: never shown to the proposer.</p><ul class="alarms">${raised.map((a) => `<li><b>${esc(a.kind)}</b>: <a href="#exp-${a.experiment}">experiment ${a.experiment}</a>: ${esc(a.text)}</li>`).join('')}</ul>`
    : '';
  // The idea archive, as the proposer sees it: every experiment grouped by what it changed.
  const archive = compactArchive(recordedIdeas(input.ledger, input.direction), ARCHIVE_TOKENS);
  const archiveHtml = archive
    ? `<h2>Idea archive</h2><p class="meta">Every experiment, grouped by the setting or file it changed, as the proposer is shown it.</p><pre class="archive">${esc(archive)}</pre>`
    : '';
  const rejectedHtml = rejected.length
    ? `<h2>Rejected proposals</h2><table><tr><th>#</th><th>attempt</th><th>description</th><th>reason</th></tr>${rejected.map((r) => `<tr><td>${r.experiment}</td><td>${r.attempt}</td><td>${esc(r.description)}</td><td>${esc(r.reason)}</td></tr>`).join('')}</table>`
    : '';

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Nightlab report: ${esc(input.tag)}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "DejaVu Sans", sans-serif; margin: 24px auto; max-width: 1280px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; } h2 { margin-top: 32px; } h4 { margin: 12px 0 4px; }
.chart svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 4px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.keep td.status, details.keep .status { color: #1b7f1b; font-weight: bold; }
tr.crash td.status, details.crash .status { color: #c62828; font-weight: bold; }
tr.discard td.status, details.discard .status { color: #777; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; } dt { font-weight: bold; }
details { border: 1px solid #e4e4e4; border-radius: 6px; padding: 6px 12px; margin: 8px 0; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; max-height: 480px; }
pre .add { color: #1b7f1b; } pre .del { color: #c62828; } pre .hunk { color: #6a1b9a; } pre .meta { color: #555; font-weight: bold; }
p.meta { color: #555; font-size: 12px; }
</style></head>
<body>
<h1>Nightlab report: ${esc(input.tag)}</h1>
<p>Generated ${esc(new Date().toISOString())}.${input.uiUrl ? ` <a href="${esc(input.uiUrl)}">The campaign in the Temporal Web UI</a>.` : ''} Chart files: <a href="progress.svg">progress.svg</a>, <a href="progress.png">progress.png</a>.</p>
<dl>${summary.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>
${alarmsHtml}
<h2>Progress</h2>
<div class="chart">${svg.replace(/^<\?xml[^>]*>/, '')}</div>
<h2>Results</h2>
<table><tr><th>#</th><th>commit</th><th>${esc(input.metricName)}</th><th>vs best</th><th>delta</th><th>all runs</th>
${haveHeldOut ? '<th>held-out</th>' : ''}<th>mem GB</th><th>status</th><th>outcome</th>${promotions.length ? '<th>promoted</th>' : ''}<th>seconds</th><th>cost</th><th>description</th></tr>
${table}
</table>
<p class="meta">${resultsLegend(input.metricName, promotions.length > 0)
    .map(([k, text]) => `<b>${esc(k)}</b>: ${esc(text)}`)
    .join('; ')}.</p>
${archiveHtml}
${rejectedHtml}
<h2>Experiments</h2>
${details}
</body></html>
`;
}

/** Writes progress.svg, progress.png and report.html under `outDir`. Needs no Temporal server. */
export async function writeReport(input: ReportInput): Promise<ReportFiles> {
  const rows = experimentRows(input.ledger);
  const { metricName, direction, tag } = input;
  const chart = chartData(resultRows(input.ledger), { metricName, direction, tag });
  const svg = await renderSvg(chart);
  const png = await renderPng(svg);
  const diffs = new Map<number, string>();
  for (const r of rows) {
    if (!r.parent || r.parent === r.commit) continue;
    if (!input.repo) {
      diffs.set(r.experiment, '(diff unavailable: the campaign repository is unknown; pass --repo)');
      continue;
    }
    try {
      diffs.set(r.experiment, await diffOf(input.repo, r.parent, r.commit, DIFF_CHARS));
    } catch (e) {
      diffs.set(r.experiment, `(diff unavailable: ${(e as Error).message.split('\n')[0]})`);
    }
  }
  const html = await buildReportHtml(input, chart, svg, diffs);
  mkdirSync(input.outDir, { recursive: true });
  const files = {
    dir: input.outDir,
    svg: path.join(input.outDir, 'progress.svg'),
    png: path.join(input.outDir, 'progress.png'),
    html: path.join(input.outDir, 'report.html'),
  };
  writeFileSync(files.svg, svg);
  writeFileSync(files.png, png);
  writeFileSync(files.html, html);
  return { ...files, chart };
}

/**
 * What `nightlab report <tag>` calls: status and start input from Temporal (the repository comes from
 * the workflow's start input in its history), the records from wherever they live (client/records.ts).
 */
export async function reportCampaign(
  client: Client,
  tag: string,
  opts: { out?: string; repo?: string; namespace?: string } = {},
): Promise<ReportFiles> {
  const status = await campaignStatus(client, tag);
  const input = await campaignInput(client, tag).catch(() => null);
  const records = await campaignRecords(client, tag, input ? { input } : {});
  const { campaignDir, rows: ledger } = records;
  if (!ledger.some((r) => r.kind === 'experiment'))
    throw new Error(`campaign ${tag}: no experiments recorded yet in ${campaignDir}`);
  return writeReport({
    tag,
    metricName: input?.config.metric.name ?? status.metricName,
    direction: input?.config.metric.direction ?? status.direction,
    ledger,
    repo: opts.repo ?? input?.repo ?? null,
    status,
    uiUrl: uiLink(tag, opts.namespace ?? client.options.namespace),
    // Beside the records on their host; read from another host, under this one's NIGHTLAB_HOME.
    outDir: path.resolve(opts.out ?? path.join(records.host ? campaignDirFor(tag) : campaignDir, 'report')),
  });
}
