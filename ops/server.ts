// The local Temporal server: the official CLI's dev server with SQLite persistence and the Web UI.
// Reuses a server that already answers; refuses a port held by something that is not Temporal.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
const { temporal } = proto;
import { SEARCH_ATTRIBUTES, DEFAULT_NAMESPACE } from '../common/shared';
import { findTemporalCli } from './temporal-cli';
import { openConnection } from './connection';

/** Closed campaigns stay visible in the Web UI this long (the dev server's default is one day). */
export const RETENTION_DAYS = 30;

/**
 * Dynamic config of every server Nightlab starts (deploy/dynamicconfig/nightlab.yaml sets the same
 * for compose).
 * - Eager activity execution: a workflow task that schedules an orchestrator activity gets the
 *   activity back in its reply, instead of the activity waiting in matching for a poll (about
 *   30 ms each time, several times an experiment).
 * - New tasks go to one partition of each task queue: the queues carry a few tasks a second, and
 *   one partition hands them out in order, so on a fleet shared by more runs than it has slots
 *   every queued run waits about the same. Reads stay at the default 4 partitions, so a backlog
 *   written by an older setup still drains (Temporal's rule for shrinking: writes first).
 */
export const SERVER_DYNAMIC_CONFIG: Record<string, unknown> = {
  'system.enableActivityEagerExecution': true,
  'matching.numTaskqueueWritePartitions': 1,
};

export interface ServerOptions {
  cli: string;
  dataDir: string;
  host?: string;
  port?: number;
  uiPort?: number;
  namespace?: string;
  /** A codec server the Web UI decodes payloads through (nightlab codec-server). */
  uiCodecEndpoint?: string;
  /** Extra `--dynamic-config-value K=JSON` settings (tests use a small continue-as-new threshold). */
  dynamicConfig?: Record<string, unknown>;
  log?: (line: string) => void;
  /** Where the server's own output goes (default: a file in dataDir). */
  stdio?: 'inherit' | 'pipe';
}

export interface RunningServer {
  address: string;
  uiUrl: string | null;
  reused: boolean;
  dbFile: string | null;
  /** Stops a server this process started (a reused one is left alone). */
  stop(): Promise<void>;
  exited: Promise<unknown>;
}

export function splitAddress(address: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(address);
  if (!m) throw new Error(`TEMPORAL_ADDRESS "${address}" must be host:port (e.g. 127.0.0.1:7233)`);
  return { host: m[1] || '127.0.0.1', port: Number(m[2]) };
}

/** Something accepts TCP connections on host:port. */
export function portOpen(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** 'temporal' when a Temporal frontend answers, 'other' when the port is held by something else, 'free' otherwise. */
export async function probe(address: string): Promise<'temporal' | 'other' | 'free'> {
  const { host, port } = splitAddress(address);
  if (!(await portOpen(host, port))) return 'free';
  try {
    const c = await Connection.connect({ address, connectTimeout: '3s' });
    try {
      await c.workflowService.getSystemInfo({});
      return 'temporal';
    } finally {
      await c.close();
    }
  } catch {
    return 'other';
  }
}

/** Registers Nightlab's search attributes and a 30-day retention; safe to run again. */
export async function prepareNamespace(address: string, namespace = DEFAULT_NAMESPACE): Promise<void> {
  const c = await Connection.connect({ address, connectTimeout: '5s' });
  try {
    const types = temporal.api.enums.v1.IndexedValueType;
    const wanted: Record<string, number> = {};
    for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES)) {
      wanted[name] =
        type === 'Keyword'
          ? types.INDEXED_VALUE_TYPE_KEYWORD
          : type === 'Int'
            ? types.INDEXED_VALUE_TYPE_INT
            : types.INDEXED_VALUE_TYPE_DOUBLE;
    }
    const existing = await c.operatorService.listSearchAttributes({ namespace });
    const missing = Object.fromEntries(
      Object.entries(wanted).filter(([n]) => !(n in (existing.customAttributes ?? {}))),
    );
    if (Object.keys(missing).length)
      await c.operatorService.addSearchAttributes({ namespace, searchAttributes: missing });
    const ns = await c.workflowService.describeNamespace({ namespace });
    const retention = Number(ns.config?.workflowExecutionRetentionTtl?.seconds ?? 0);
    if (retention < RETENTION_DAYS * 86400) {
      await c.workflowService.updateNamespace({
        namespace,
        config: { workflowExecutionRetentionTtl: { seconds: (RETENTION_DAYS * 86400) as never } },
      });
    }
  } finally {
    await c.close();
  }
}

/** Names of Nightlab's search attributes the namespace lacks. */
export async function missingSearchAttributes(address: string, namespace: string): Promise<string[]> {
  const c = await openConnection(address);
  try {
    const existing = await c.operatorService.listSearchAttributes({ namespace });
    return Object.keys(SEARCH_ATTRIBUTES).filter((n) => !(n in (existing.customAttributes ?? {})));
  } finally {
    await c.close();
  }
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 7233;
  const uiPort = opts.uiPort ?? port + 1000;
  const namespace = opts.namespace ?? DEFAULT_NAMESPACE;
  const address = `${host}:${port}`;
  const log = opts.log ?? (() => {});

  const state = await probe(address);
  if (state === 'temporal') {
    log(`A Temporal server already answers at ${address}; reusing it.`);
    await prepareNamespace(address, namespace);
    return { address, uiUrl: null, reused: true, dbFile: null, stop: async () => {}, exited: new Promise(() => {}) };
  }
  if (state === 'other') {
    throw new Error(
      `Port ${port} on ${host} is in use by something that is not a Temporal server. Stop that process, or choose another port (--port, and TEMPORAL_ADDRESS=${host}:<port> for the other commands).`,
    );
  }
  if (await portOpen(host, uiPort))
    throw new Error(`The Web UI port ${uiPort} is in use; choose another with --ui-port.`);

  mkdirSync(opts.dataDir, { recursive: true });
  const dbFile = path.join(opts.dataDir, 'temporal.db');
  const logFile = path.join(opts.dataDir, 'server.log');
  const args = [
    'server',
    'start-dev',
    '--db-filename',
    dbFile,
    '--ip',
    host,
    '--port',
    String(port),
    '--ui-port',
    String(uiPort),
    '--namespace',
    namespace,
    '--log-level',
    'warn',
  ];
  if (opts.uiCodecEndpoint) args.push('--ui-codec-endpoint', opts.uiCodecEndpoint);
  for (const [k, v] of Object.entries({ ...SERVER_DYNAMIC_CONFIG, ...opts.dynamicConfig }))
    args.push('--dynamic-config-value', `${k}=${JSON.stringify(v)}`);
  const child: ResultPromise = execa(opts.cli, args, {
    reject: false,
    ...(opts.stdio === 'inherit'
      ? { stdio: 'inherit' as const }
      : { stdin: 'ignore' as const, stdout: { file: logFile, append: true }, stderr: { file: logFile, append: true } }),
    cleanup: true,
  });
  const exited = child.then((r) => r);
  let dead = false;
  void exited.then(() => (dead = true));
  const deadline = Date.now() + 90_000;
  while ((await probe(address)) !== 'temporal') {
    if (dead) throw new Error(`The Temporal server exited while starting; see ${logFile}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`The Temporal server did not answer at ${address} within 90 s; see ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  await prepareNamespace(address, namespace);
  return {
    address,
    uiUrl: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${uiPort}`,
    reused: false,
    dbFile,
    exited,
    async stop() {
      if (dead) return;
      child.kill('SIGINT');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * The server a development tool (tests, benchmarks, fixture recording, the red team) runs against: the
 * one TEMPORAL_ADDRESS names when it answers, else a fresh dev server of its own on the first free port
 * from `port`, in a temporary folder removed when it stops. Sets TEMPORAL_ADDRESS for what follows.
 */
export async function serverForTools(opts: { port: number; log?: (line: string) => void }): Promise<{
  address: string;
  describe: string;
  stop: () => Promise<void>;
}> {
  const given = process.env.TEMPORAL_ADDRESS;
  if (given && (await probe(given)) === 'temporal') {
    return { address: given, describe: `the Temporal server already at ${given}`, stop: async () => {} };
  }
  const cli = await findTemporalCli({ install: true, log: opts.log });
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'nightlab-server-'));
  // A port of our own: a server someone else started (and may stop) must not be reused by accident.
  let port = opts.port;
  while ((await probe(`127.0.0.1:${port}`)) !== 'free' || (await probe(`127.0.0.1:${port + 1000}`)) !== 'free')
    port += 1;
  const server = await startServer({ cli: cli.path, dataDir, port, uiPort: port + 1000 });
  process.env.TEMPORAL_ADDRESS = server.address;
  return {
    address: server.address,
    describe: `a fresh Temporal dev server at ${server.address} (${cli.version.split('\n')[0]}, from ${cli.source}; SQLite ${server.dbFile}; UI ${server.uiUrl})`,
    stop: async () => {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
