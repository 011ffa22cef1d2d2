// `nightlab dashboard`: a local web page over the campaigns on the Temporal server. It lists them
// from visibility (the Nightlab* search attributes), shows each one's live progress chart (the
// same Vega-Lite spec as `nightlab report`, rendered in the browser by vega-embed, served from
// node_modules: no CDN), the results table, diffs and log tails, links into the Temporal Web UI,
// and pause / resume / stop / steer controls that send the campaign's signals and update.
// It listens on loopback by default. On any other address (--host 0.0.0.0) it is open to the network,
// so every request must carry a random token, printed in its URL as Jupyter does.
//
//   GET  /api/campaigns                       campaigns, newest first
//   GET  /api/campaigns/:tag                  status, rows, chart spec, running run, estimate
//   GET  /api/campaigns/:tag/experiments/:n   one experiment: its row, log tail and diff
//   POST /api/campaigns/:tag/pause|resume|stop
//   POST /api/campaigns/:tag/steer            {"note": "..."}
import http from 'node:http';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import { readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { TAG_PATTERN } from '../common/config';
import { type CampaignInput, isEnded } from '../common/shared';
import { diffOf } from '../lib/git';
import { CampaignNotFound, campaignStatus, listCampaigns, uiLink } from '../client/campaigns';
import { CampaignEnded, CONTROLS, sendControl, steerCampaign, SteerRefused, type Control } from '../client/control';
import { chartData, chartSpec } from '../client/chart';
import { experimentCurvesSvg } from '../client/curves';
import { campaignInput, inFlightOf, pairRuns, runningRuns } from '../client/live';
import { estimateTimeLeft } from '../client/watch';
import { experimentRows, reportTotals } from '../client/report';
import { resultCells, resultRows, resultsLegend } from '../client/results';
import { campaignRecords, RecordsUnreachable } from '../client/records';

const PUBLIC = fileURLToPath(new URL('./public', import.meta.url));
const require = createRequire(import.meta.url);
const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_PORT = 8234;
const MAX_LISTED = 100;
const MAX_BODY = 64 * 1024;
const TOKEN_BYTES = 24;
/** The names a loopback dashboard answers to, besides its own address. */
const LOCAL_NAMES = ['127.0.0.1', 'localhost', '[::1]'];
const WILDCARDS = ['0.0.0.0', '::', '[::]'];

/** The browser libraries, from node_modules (their UMD builds). */
function vendorFiles(): Record<string, string> {
  const dir = (pkg: string) => path.dirname(require.resolve(pkg));
  return {
    'vega.min.js': path.join(dir('vega'), 'vega.min.js'),
    'vega-lite.min.js': path.join(dir('vega-lite'), 'vega-lite.min.js'),
    'vega-embed.min.js': path.join(dir('vega-embed'), 'vega-embed.min.js'),
  };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};
// Vega compiles its expressions with Function(), hence 'unsafe-eval'; nothing loads from elsewhere.
const CSP =
  "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export interface DashboardOptions {
  client: Client;
  port?: number;
  /** Where to listen (default 127.0.0.1); any other address requires the token. */
  host?: string;
  /** Base of the Temporal Web UI (default NIGHTLAB_UI_URL or http://127.0.0.1:8233). */
  uiBase?: string;
  log?: (line: string) => void;
}

export interface Dashboard {
  /** What to open in a browser: with `?token=` when the dashboard has one. */
  url: string;
  port: number;
  token: string | null;
  server: http.Server;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    public code: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const { client } = opts;
  const namespace = client.options.namespace;
  const link = (tag: string) => uiLink(tag, namespace, opts.uiBase);
  const vendor = vendorFiles();
  const inputs = new Map<string, CampaignInput>();

  async function inputOf(tag: string): Promise<CampaignInput | null> {
    if (inputs.has(tag)) return inputs.get(tag)!;
    const input = await campaignInput(client, tag).catch(() => null);
    if (input) inputs.set(tag, input);
    return input;
  }

  /** The campaign's ledger rows, wherever the records live (an error, 503, where they cannot be reached). */
  async function recordsOf(tag: string, input: CampaignInput | null) {
    return (await campaignRecords(client, tag, input ? { input } : {})).rows;
  }

  async function campaignList() {
    const campaigns = await listCampaigns(client, MAX_LISTED);
    return { campaigns: campaigns.map((c) => ({ ...c, uiUrl: link(c.tag) })), namespace };
  }

  async function campaignView(tag: string) {
    const now = Date.now();
    const status = await campaignStatus(client, tag);
    const input = await inputOf(tag);
    const { metricName, direction } = status;
    const ledger = await recordsOf(tag, input);
    // The same rows and cells as `nightlab results` and the report: each experiment with all its runs.
    const results = resultRows(ledger);
    const rows = results.map((r) => ({ ...r, cells: resultCells(r) }));
    const chart = chartData(results, { metricName, direction, tag });
    const ended = isEnded(status.state);
    const runs = ended ? [] : await runningRuns(client, tag, now).catch(() => []);
    return {
      tag,
      status,
      ended,
      rows,
      legend: resultsLegend(metricName),
      rejected: ledger.filter((r) => r.kind === 'rejected'),
      totals: reportTotals(ledger),
      chart,
      spec: chartSpec(chart),
      runs,
      // What the page's run blocks draw: each experiment in flight with its run, then the others.
      inFlightRuns: pairRuns(inFlightOf(status), runs),
      estimate: estimateTimeLeft(status, rows, now),
      uiUrl: link(tag),
      repo: input?.repo ?? null,
      now: new Date(now).toISOString(),
    };
  }

  async function experimentView(tag: string, n: number) {
    await campaignStatus(client, tag); // an unknown tag is a 404
    const input = await inputOf(tag);
    const ledger = await recordsOf(tag, input);
    const row = experimentRows(ledger).find((r) => r.experiment === n);
    if (!row) throw new HttpError(404, `campaign ${tag} has no experiment ${n} in its ledger`);
    let diff = '';
    if (row.parent && row.parent !== row.commit) {
      if (!input?.repo) diff = '(diff unavailable: the campaign repository is unknown)';
      else
        diff = await diffOf(input.repo, row.parent, row.commit, 60_000).catch(
          (e: Error) => `(diff unavailable: ${e.message.split('\n')[0]})`,
        );
    }
    return { tag, row, diff, curves: experimentCurvesSvg(ledger, n, row.status), uiUrl: link(tag) };
  }

  async function control(tag: string, action: string, body: Record<string, unknown>) {
    if (action === 'steer') {
      const note = typeof body.note === 'string' ? body.note.trim() : '';
      const instructions = typeof body.instructions === 'string' ? body.instructions : undefined;
      const { notes } = await steerCampaign(client, tag, { note: note || undefined, instructions });
      return { ok: true, action, notes };
    }
    if (!CONTROLS.includes(action as Control)) throw new HttpError(404, `unknown action ${action}`);
    await sendControl(client, tag, action as Control);
    return { ok: true, action };
  }

  const readBody = (req: http.IncomingMessage) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      let size = 0;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) reject(new HttpError(413, 'request body too large'));
        else chunks.push(c);
      });
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (!text) return resolve({});
        try {
          const v = JSON.parse(text);
          resolve(v && typeof v === 'object' ? v : {});
        } catch {
          reject(new HttpError(400, 'the body must be JSON'));
        }
      });
      req.on('error', reject);
    });

  const send = (res: http.ServerResponse, code: number, body: string | Buffer, type: string) => {
    res.writeHead(code, {
      'content-type': type,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'content-security-policy': CSP,
      'referrer-policy': 'no-referrer',
    });
    res.end(body);
  };
  const json = (res: http.ServerResponse, code: number, v: unknown) =>
    send(res, code, JSON.stringify(v), 'application/json; charset=utf-8');

  function staticFile(res: http.ServerResponse, file: string) {
    if (!existsSync(file)) throw new HttpError(404, 'not found');
    send(res, 200, readFileSync(file), TYPES[path.extname(file)] ?? 'application/octet-stream');
  }

  async function route(req: http.IncomingMessage, res: http.ServerResponse, url: URL) {
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (req.method === 'GET' && (url.pathname === '/' || url.pathname === '/index.html'))
      return staticFile(res, path.join(PUBLIC, 'index.html'));
    if (req.method === 'GET' && parts.length === 1 && /^[\w.-]+\.(js|css)$/.test(parts[0]))
      return staticFile(res, path.join(PUBLIC, parts[0]));
    if (req.method === 'GET' && parts[0] === 'vendor' && parts.length === 2 && vendor[parts[1]])
      return staticFile(res, vendor[parts[1]]);
    if (parts[0] !== 'api' || parts[1] !== 'campaigns') throw new HttpError(404, 'not found');
    if (parts.length === 2 && req.method === 'GET') return json(res, 200, await campaignList());
    const tag = parts[2];
    if (!tag || !TAG_PATTERN.test(tag)) throw new HttpError(400, 'bad campaign tag');
    if (parts.length === 3 && req.method === 'GET') return json(res, 200, await campaignView(tag));
    if (parts.length === 5 && parts[3] === 'experiments' && req.method === 'GET') {
      const n = Number(parts[4]);
      if (!Number.isInteger(n) || n < 0) throw new HttpError(400, 'bad experiment number');
      return json(res, 200, await experimentView(tag, n));
    }
    if (parts.length === 4 && req.method === 'POST') {
      // Only this page may press the buttons: a JSON body (a cross-site form cannot send one
      // without a preflight we never answer) from this origin.
      if (!String(req.headers['content-type'] ?? '').startsWith('application/json'))
        throw new HttpError(415, 'send JSON');
      const origin = req.headers.origin;
      if (origin && origin !== `http://${req.headers.host}`) throw new HttpError(403, 'cross-origin request refused');
      return json(res, 200, await control(tag, parts[3], await readBody(req)));
    }
    throw new HttpError(404, 'not found');
  }

  const host = opts.host ?? DEFAULT_HOST;
  const gate: Gate = {
    host,
    token: isLoopback(host) ? null : randomBytes(TOKEN_BYTES).toString('base64url'),
    cookie: '',
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    if (!admitted(req, url, gate)) {
      const why = gate.token
        ? 'this dashboard needs its token: open the URL `nightlab dashboard` printed'
        : 'unknown host';
      return json(res, 403, { error: why });
    }
    if (gate.token) res.setHeader('set-cookie', `${gate.cookie}=${gate.token}; HttpOnly; SameSite=Strict; Path=/`);
    route(req, res, url).catch((e) => {
      const code = httpCode(e);
      if (code === 500) opts.log?.(`dashboard: ${req.method} ${url.pathname}: ${(e as Error).stack ?? e}`);
      if (!res.headersSent) json(res, code, { error: (e as Error).message });
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? DEFAULT_PORT, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  gate.cookie = `nightlab-token-${port}`; // one per port: two dashboards on one host keep their own
  // A wildcard address is no place to browse to: the URL names this machine instead.
  const shown = WILDCARDS.includes(host) ? os.hostname() : host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}/${gate.token ? `?token=${gate.token}` : ''}`,
    port,
    token: gate.token,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Who may in. Open to the network (a token): requests that carry it, as ?token= (the printed URL),
 * the cookie that sets, or an `Authorization: Bearer` header. On loopback: requests whose Host
 * names this host, so that a foreign site's name rebound to 127.0.0.1 (DNS rebinding) is refused.
 */
interface Gate {
  host: string;
  token: string | null;
  /** The cookie's name, set once the port is known. */
  cookie: string;
}

function admitted(req: http.IncomingMessage, url: URL, gate: Gate): boolean {
  const { token, cookie } = gate;
  if (!token) return [...LOCAL_NAMES, gate.host].includes(String(req.headers.host ?? '').replace(/:\d+$/, ''));
  const bearer = /^Bearer (\S+)$/i.exec(String(req.headers.authorization ?? ''))?.[1];
  const cookies = String(req.headers.cookie ?? '')
    .split(/;\s*/)
    .filter((c) => c.startsWith(`${cookie}=`));
  const carried = [url.searchParams.get('token'), bearer, ...cookies.map((c) => c.slice(cookie.length + 1))];
  return carried.some(
    (t) => typeof t === 'string' && t.length === token.length && timingSafeEqual(Buffer.from(t), Buffer.from(token)),
  );
}

function isLoopback(host: string): boolean {
  return /^(localhost|127(\.\d{1,3}){3}|::1|\[::1\])$/.test(host);
}

function httpCode(e: unknown): number {
  if (e instanceof HttpError) return e.code;
  if (e instanceof CampaignNotFound || e instanceof WorkflowNotFoundError) return 404;
  if (e instanceof CampaignEnded) return 409;
  if (e instanceof RecordsUnreachable) return 503;
  if (e instanceof SteerRefused) return 400;
  return 500;
}
