// A worker's metrics and health endpoint (`nightlab worker|gpu-worker --metrics-port`): one HTTP port with
//   /metrics  Prometheus text: the SDK runtime's metrics (polls, task latencies, slots) and Nightlab's own
//             (lib/telemetry.ts). The runtime serves them on a loopback port of its own; this relays them.
//   /healthz  200 while every worker of the process runs and the Temporal server answers; 503 otherwise,
//             with the reason (compose's and Kubernetes' health checks).
// The runtime's exporter can only be set when the runtime is made, before any connection or worker: so
// prepareMetrics() comes first, and serve() once the workers exist.
import http from 'node:http';
import net from 'node:net';
import { Runtime, type Logger, type NativeConnection, type Worker } from '@temporalio/worker';
import { HISTOGRAM_BUCKETS } from '../lib/telemetry';
import { closeServer, listen, serverUrl } from './http';

/** Where the endpoint listens unless told: this host only (0.0.0.0 lets a Prometheus elsewhere scrape). */
export const DEFAULT_METRICS_HOST = '127.0.0.1';
/** A health check asks the server at most this often; checks in between get the last answer. */
const SERVER_CHECK_MS = 5_000;
const SERVER_TIMEOUT_MS = 3_000;
const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8';

export interface MetricsEndpoint {
  /** http://host:port */
  url: string;
  close(): Promise<void>;
}

export interface Health {
  ok: boolean;
  workers: { taskQueue: string; state: string }[];
  /** "ok", or why the server did not answer. */
  server: string;
}

/** A free port on loopback for the runtime's own exporter (the OS picks it). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Installs the SDK runtime with its Prometheus exporter (call before any connection or worker: the
 * runtime is made once per process). Returns serve(), which opens the endpoint once the workers exist.
 */
export async function prepareMetrics(opts: { port: number; host?: string; logger?: Logger }): Promise<{
  serve(workers: Worker[], connection: NativeConnection): Promise<MetricsEndpoint>;
}> {
  const bindAddress = `127.0.0.1:${await freePort()}`;
  Runtime.install({
    logger: opts.logger,
    telemetryOptions: { metrics: { prometheus: { bindAddress, histogramBucketOverrides: HISTOGRAM_BUCKETS } } },
  });
  const runtimeMetrics = `http://${bindAddress}/metrics`;
  return {
    serve: (workers, connection) => serveMetrics({ ...opts, runtimeMetrics, health: healthCheck(workers, connection) }),
  };
}

/** The workers' states and, at most every SERVER_CHECK_MS, whether the server answers. */
export function healthCheck(workers: Worker[], connection: NativeConnection): () => Promise<Health> {
  let last: { at: number; server: Promise<string> } | undefined;
  const askServer = () =>
    connection
      .withDeadline(Date.now() + SERVER_TIMEOUT_MS, () => connection.workflowService.getSystemInfo({}))
      .then(
        () => 'ok',
        (e: Error) => `the Temporal server does not answer (${e.message.split('\n')[0]})`,
      );
  return async () => {
    if (!last || Date.now() - last.at > SERVER_CHECK_MS) last = { at: Date.now(), server: askServer() };
    const states = workers.map((w) => ({ taskQueue: w.options.taskQueue, state: w.getState() }));
    const server = await last.server;
    return { ok: server === 'ok' && states.every((s) => s.state === 'RUNNING'), workers: states, server };
  };
}

export async function serveMetrics(opts: {
  port: number;
  host?: string;
  runtimeMetrics: string;
  health: () => Promise<Health>;
}): Promise<MetricsEndpoint> {
  const server = http.createServer((req, res) => {
    const reply = (status: number, type: string, body: string) =>
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'text/plain', 'GET only\n');
    if (path === '/healthz') {
      void opts.health().then(
        (h) => reply(h.ok ? 200 : 503, 'application/json', `${JSON.stringify(h)}\n`),
        (e: Error) => reply(503, 'application/json', `${JSON.stringify({ ok: false, error: e.message })}\n`),
      );
      return;
    }
    if (path === '/metrics') {
      void fetch(opts.runtimeMetrics)
        .then((r) => r.text())
        .then(
          (text) => reply(200, PROMETHEUS_TEXT, text),
          (e: Error) => reply(503, 'text/plain', `the SDK runtime's metrics are unavailable (${e.message})\n`),
        );
      return;
    }
    reply(404, 'text/plain', 'GET /metrics (Prometheus) or /healthz\n');
  });
  const host = opts.host ?? DEFAULT_METRICS_HOST;
  await listen(server, opts.port, host, '--metrics-port');
  return {
    url: serverUrl(server, host),
    close: () => closeServer(server),
  };
}
