// How Nightlab reaches Temporal: Temporal's environment configuration (a temporal.toml profile, with TEMPORAL_*
// variables over it), so a local dev server, a self-hosted cluster with mTLS and Temporal Cloud (API key or mTLS)
// are each a setting away. With nothing configured: the dev server at 127.0.0.1:7233, namespace "default".
// Every client, worker, CLI command, the dashboard and doctor connect through here; explicit arguments win.
import { Connection, Client, isGrpcServiceError } from '@temporalio/client';
// The worker's native connection is loaded only by workers: the CLI's client commands start faster.
import type { NativeConnection, NativeConnectionOptions } from '@temporalio/worker';
import { loadClientConfig, loadClientConfigProfile, toClientOptions } from '@temporalio/envconfig';
import type { ClientConfigProfile, ConfigDataSource } from '@temporalio/envconfig';
import type { TLSConfig } from '@temporalio/common/lib/internal-non-workflow';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { DEFAULT_ADDRESS, DEFAULT_NAMESPACE } from '../common/shared';
import { dataConverter } from '../lib/codec';

const CONNECT_TIMEOUT_MS = 5_000;
const PROBE_TIMEOUT_MS = 3_000;
const DEFAULT_PROFILE = 'default';
// gRPC status codes a server answers credentials with.
const UNAUTHENTICATED = 16;
const PERMISSION_DENIED = 7;
const NOT_FOUND = 5;

// Each setting a person may have to fix: its environment variable and its field in a temporal.toml profile.
const SETTINGS = {
  address: { env: 'TEMPORAL_ADDRESS', toml: 'address' },
  namespace: { env: 'TEMPORAL_NAMESPACE', toml: 'namespace' },
  apiKey: { env: 'TEMPORAL_API_KEY', toml: 'api_key' },
  clientCert: { env: 'TEMPORAL_TLS_CLIENT_CERT_PATH', toml: 'tls.client_cert_path' },
  clientKey: { env: 'TEMPORAL_TLS_CLIENT_KEY_PATH', toml: 'tls.client_key_path' },
  serverCa: { env: 'TEMPORAL_TLS_SERVER_CA_CERT_PATH', toml: 'tls.server_ca_cert_path' },
  serverName: { env: 'TEMPORAL_TLS_SERVER_NAME', toml: 'tls.server_name' },
} as const;
type Setting = keyof typeof SETTINGS;

/** A connection problem, said as what is wrong and which setting fixes it; never holds a secret. */
export class ConnectionError extends Error {
  constructor(
    readonly problem: string,
    readonly fix: string,
  ) {
    super(`${problem}. ${fix}`);
    this.name = 'ConnectionError';
  }
}

/** The effective connection as a person may see it: no secret, only whether one is set. */
export interface ConnectionSettings {
  address: string;
  namespace: string;
  profile: string;
  /** The temporal.toml the profile came from; null when there is none. */
  configFile: string | null;
  tls: boolean;
  /** The CA that must have signed the server's certificate: a path, "inline", or null for the system's CAs. */
  serverCa: string | null;
  serverName: string | null;
  /** The client certificate (mTLS): a path, "inline", or null. */
  clientCert: string | null;
  apiKey: boolean;
}

interface Loaded {
  settings: ConnectionSettings;
  options: NativeConnectionOptions & { address: string };
  /** Where each setting can be changed, for error messages. */
  where: (s: Setting) => string;
}

/** The environment envconfig sees: an empty variable counts as unset, as it did before profiles. */
function environment(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      (e): e is [string, string] => e[1] !== undefined && (e[1] !== '' || e[0].startsWith('TEMPORAL_GRPC_META_')),
    ),
  );
}

/** Where envconfig looks for temporal.toml (its own rule), to name the file in messages. */
function configFilePath(env: Record<string, string>): string {
  if (env.TEMPORAL_CONFIG_FILE) return env.TEMPORAL_CONFIG_FILE;
  const home = env.HOME ?? os.homedir();
  if (process.platform === 'win32') return path.join(env.APPDATA ?? home, 'temporalio', 'temporal.toml');
  if (process.platform === 'darwin') {
    return path.join(home, 'Library', 'Application Support', 'temporalio', 'temporal.toml');
  }
  return path.join(env.XDG_CONFIG_HOME ?? path.join(home, '.config'), 'temporalio', 'temporal.toml');
}

function dataSource(d: { path: string } | { data: unknown } | undefined): string | null {
  return d === undefined ? null : 'path' in d ? d.path : 'inline';
}

function readProfile(env: Record<string, string>, file: string, profile: string): ClientConfigProfile {
  try {
    return loadClientConfigProfile({ overrideEnvVars: env });
  } catch (e) {
    const message = (e as Error).message;
    if (!/^Profile '.*' not found/.test(message)) {
      throw new ConnectionError(
        `Cannot use the Temporal configuration file ${file} (${message.split('\n')[0]})`,
        'Fix the file, or point TEMPORAL_CONFIG_FILE at another',
      );
    }
    const known = existsSync(file) ? Object.keys(loadClientConfig({ overrideEnvVars: env }).profiles) : [];
    const there = !existsSync(file)
      ? `there is no ${file}`
      : `${file} has ${known.length ? `profiles ${known.join(', ')}` : 'no profile'}`;
    throw new ConnectionError(
      `No Temporal profile "${profile}" (TEMPORAL_PROFILE): ${there}`,
      `Set TEMPORAL_PROFILE to one of its profiles, add [profile.${profile}] to the file, ` +
        'or point TEMPORAL_CONFIG_FILE at the file that has it',
    );
  }
}

/** Certificate files must be readable, and a client certificate comes with its key. */
function checkTlsFiles(profile: ClientConfigProfile, where: (s: Setting) => string): void {
  const files: [Setting, string, ConfigDataSource | undefined][] = [
    ['clientCert', 'client certificate', profile.tls?.clientCert],
    ['clientKey', 'client key', profile.tls?.clientKey],
    ['serverCa', 'server CA certificate', profile.tls?.serverCACert],
  ];
  for (const [setting, what, source] of files) {
    if (!source || !('path' in source)) continue;
    try {
      readFileSync(source.path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new ConnectionError(`Cannot read the ${what} ${source.path} (${code})`, `Fix ${where(setting)}`);
    }
  }
  const { clientCert, clientKey } = profile.tls ?? {};
  if (clientCert && !clientKey) {
    throw new ConnectionError('A client certificate is set without its key', `Set ${where('clientKey')} as well`);
  }
  if (clientKey && !clientCert) {
    throw new ConnectionError('A client key is set without its certificate', `Set ${where('clientCert')} as well`);
  }
}

/** Reads the profile and the environment once per call: settings change between tests and between commands. */
function load(address?: string, namespace?: string): Loaded {
  const env = environment();
  const profileName = env.TEMPORAL_PROFILE ?? DEFAULT_PROFILE;
  const file = configFilePath(env);
  const configFile = existsSync(file) ? file : null;
  const profile = readProfile(env, file, profileName);
  const t = profile.tls;
  const values: Record<Setting, unknown> = {
    address: profile.address,
    namespace: profile.namespace,
    apiKey: profile.apiKey,
    clientCert: t?.clientCert,
    clientKey: t?.clientKey,
    serverCa: t?.serverCACert,
    serverName: t?.serverName,
  };
  // Where a person changes setting s: the variable that set it, else the profile field that did, else both names.

  const where = (s: Setting): string => {
    const { env: name, toml } = SETTINGS[s];
    if (s === 'address' && address) return 'the address given';
    const set = [name, name.replace(/_PATH$/, '_DATA')].find((n) => env[n] !== undefined);
    if (set) return set;
    const v = values[s];
    const field = typeof v === 'object' && v !== null && 'data' in v ? toml.replace(/_path$/, '_data') : toml;
    if (v !== undefined && configFile) return `${field} in profile "${profileName}" of ${configFile}`;
    return `${name} (profile field ${field})`;
  };
  checkTlsFiles(profile, where);
  const { connectionOptions, namespace: ns } = toClientOptions(profile);
  const tlsOption = connectionOptions.tls;
  return {
    settings: {
      address: address || connectionOptions.address || DEFAULT_ADDRESS,
      namespace: namespace || ns || DEFAULT_NAMESPACE,
      profile: profileName,
      configFile,
      tls: !!tlsOption,
      serverCa: tlsOption ? dataSource(t?.serverCACert) : null,
      serverName: (tlsOption && t?.serverName) || null,
      clientCert: tlsOption ? dataSource(t?.clientCert) : null,
      apiKey: connectionOptions.apiKey !== undefined,
    },
    options: { ...connectionOptions, address: address || connectionOptions.address || DEFAULT_ADDRESS },
    where,
  };
}

/** The connection as configured; throws a ConnectionError for an unknown profile or an unreadable certificate. */
export function connectionSettings(address?: string, namespace?: string): ConnectionSettings {
  return load(address, namespace).settings;
}

/** One line for people (doctor, the CLI): where, namespace, profile and which credentials, never their values. */
export function describeConnection(s: ConnectionSettings = connectionSettings()): string {
  const from = s.configFile ? `profile ${s.profile} from ${s.configFile}` : `profile ${s.profile}, no temporal.toml`;
  const ca = s.serverCa ? `server CA ${s.serverCa}` : 'system CAs';
  const tlsText = s.tls ? `TLS on (${ca}${s.serverName ? `, server name ${s.serverName}` : ''})` : 'TLS off';
  const cert = s.clientCert ? `client certificate ${s.clientCert}` : 'no client certificate';
  const key = s.apiKey ? 'API key set' : 'no API key';
  return `${s.address}, namespace ${s.namespace} (${from}); ${tlsText}, ${cert}, ${key}`;
}

// Display-only callers (log lines, links) must not fail on a broken profile: connecting reports it.
export function temporalAddress(): string {
  try {
    return load().settings.address;
  } catch {
    return process.env.TEMPORAL_ADDRESS || DEFAULT_ADDRESS;
  }
}
export function temporalNamespace(): string {
  try {
    return load().settings.namespace;
  } catch {
    return process.env.TEMPORAL_NAMESPACE || DEFAULT_NAMESPACE;
  }
}

/** Nightlab's data directory: server database, campaign records, GPU worktrees and logs. */
export function nightlabHome(): string {
  return path.resolve(process.env.NIGHTLAB_HOME || path.join(os.homedir(), '.nightlab'));
}

async function connectionFor(c: Loaded): Promise<Connection> {
  try {
    return await Connection.connect({ ...c.options, connectTimeout: CONNECT_TIMEOUT_MS });
  } catch (e) {
    throw await explain(e, c);
  }
}

/** A gRPC connection for the client API (what doctor and the server tools need), failures explained. */
export async function openConnection(address?: string): Promise<Connection> {
  return connectionFor(load(address));
}

/** A client as configured; it encrypts and decrypts payloads when a key is set (lib/codec.ts). */
export async function connectClient(address?: string, namespace?: string): Promise<Client> {
  const c = load(address, namespace);
  const converter = dataConverter();
  return new Client({ connection: await connectionFor(c), namespace: c.settings.namespace, dataConverter: converter });
}

/**
 * A worker's connection. With `waitSec`, a server that does not answer yet (it is still starting:
 * `nightlab server &` then `nightlab worker &`) is waited for, with one line saying so; a server
 * that answers and refuses (a certificate, a key) fails at once.
 */
export async function connectWorker(
  address?: string,
  opts: { waitSec?: number; log?: (line: string) => void } = {},
): Promise<NativeConnection> {
  const c = load(address);
  const { NativeConnection } = await import('@temporalio/worker');
  const deadline = Date.now() + (opts.waitSec ?? 0) * 1000;
  for (let said = false; ; said = true) {
    try {
      return await NativeConnection.connect(c.options);
    } catch (e) {
      const err = await explain(e, c);
      if (!/^Cannot reach/.test(err.message) || Date.now() >= deadline) throw err;
      if (!said) opts.log?.(`Waiting up to ${opts.waitSec} s for the Temporal server at ${c.settings.address}...`);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

/**
 * Doctor's check: connects as configured and asks for the namespace. `detail` describes the connection;
 * `fix` names the setting to change when it fails.
 */
export async function checkConnection(): Promise<{ ok: boolean; detail: string; fix?: string }> {
  try {
    const c = load();
    const connection = await connectionFor(c);
    try {
      await connection.workflowService.describeNamespace({ namespace: c.settings.namespace });
    } catch (e) {
      throw isGrpcServiceError(e) && e.code === NOT_FOUND
        ? new ConnectionError(
            `The server at ${c.settings.address} has no namespace "${c.settings.namespace}"`,
            `Fix ${c.where('namespace')}, or create it (temporal operator namespace create -n ${c.settings.namespace})`,
          )
        : await explain(e, c);
    } finally {
      await connection.close();
    }
    return { ok: true, detail: describeConnection(c.settings) };
  } catch (e) {
    const err =
      e instanceof ConnectionError
        ? e
        : new ConnectionError((e as Error).message, 'Check the TEMPORAL_* variables and the temporal.toml profile');
    return { ok: false, detail: err.problem, fix: err.fix };
  }
}

/** What a failed connection threw, as the problem and the setting to fix (for callers that connect themselves). */
export async function explainConnectionError(error: unknown, address?: string): Promise<ConnectionError> {
  return explain(error, load(address));
}

/** The gRPC status in an error from either client: grpc-js's code, or the Rust core's words for it. */
function grpcCode(e: unknown): number | undefined {
  const cause = (e as { cause?: unknown }).cause;
  if (isGrpcServiceError(e)) return e.code;
  if (isGrpcServiceError(cause)) return cause.code;
  const m = (e as Error)?.message ?? '';
  if (/valid authentication credentials|Unauthenticated/.test(m)) return UNAUTHENTICATED;
  if (/permission to execute|PermissionDenied/.test(m)) return PERMISSION_DENIED;
  return undefined;
}

async function explain(error: unknown, c: Loaded): Promise<ConnectionError> {
  if (error instanceof ConnectionError) return error;
  const { address, namespace } = c.settings;
  const code = grpcCode(error);
  if (code === UNAUTHENTICATED) {
    return c.settings.apiKey
      ? new ConnectionError(
          `The server at ${address} refused the API key (UNAUTHENTICATED)`,
          `Check ${c.where('apiKey')}: the key may be wrong, expired or revoked`,
        )
      : new ConnectionError(
          `The server at ${address} requires credentials (UNAUTHENTICATED)`,
          `Set an API key, ${c.where('apiKey')}, or a client certificate, ${c.where('clientCert')} with its key`,
        );
  }
  if (code === PERMISSION_DENIED) {
    return new ConnectionError(
      `The server at ${address} denied access to namespace "${namespace}" (PERMISSION_DENIED)`,
      `Check ${c.where('namespace')}, and that the API key or certificate grants access to it`,
    );
  }
  return diagnose(c, redact((error as Error)?.message ?? String(error), c).split('\n')[0]);
}

/** Error text from a library may echo what it was given; the API key never leaves this module. */
function redact(text: string, c: Loaded): string {
  const key = c.options.apiKey;
  return key ? text.split(key).join('<API key>') : text;
}

/** Whether `address` is this machine: doctor needs the Temporal CLI (a dev server) only for such an address. */
export function isLocalAddress(address: string): boolean {
  return /^(127\.|localhost:|\[::1\]:|0\.0\.0\.0:)/.test(address);
}

/** A failed connection says little (grpc-js: "deadline"); a handshake of our own tells which setting is wrong. */
async function diagnose(c: Loaded, original: string): Promise<ConnectionError> {
  const s = c.settings;
  const { address } = s;
  const tcp = await probe(address, null);
  if (tcp !== 'ok') {
    return new ConnectionError(
      `Cannot reach the Temporal server at ${address} (${tcp})`,
      isLocalAddress(address)
        ? 'Start one with `nightlab server`, or set TEMPORAL_ADDRESS to a running server'
        : `Check the address and the network, or set TEMPORAL_ADDRESS to a running server (now ${c.where('address')})`,
    );
  }
  const other = new ConnectionError(
    `Cannot connect to the Temporal server at ${address} (${original})`,
    `Check that ${c.where('address')} names a Temporal server`,
  );
  const tlsOption = c.options.tls;
  if (!tlsOption) {
    if ((await probe(address, {}, false)) !== 'ok') return other;
    return new ConnectionError(
      `The server at ${address} requires TLS, and TLS is off`,
      `Set TEMPORAL_TLS=true (or add a [profile.${s.profile}.tls] table), with the server's CA and your credentials`,
    );
  }
  const r = await probe(address, tlsOption === true ? {} : tlsOption);
  if (r === 'ok') return other;
  if (/SELF_SIGNED|UNABLE_TO_(VERIFY|GET_ISSUER)|CERT_UNTRUSTED|CERT_SIGNATURE_FAILURE/.test(r)) {
    const ca = s.serverCa ? `the CA in ${s.serverCa}` : 'a CA this machine trusts';
    return new ConnectionError(
      `The server's certificate at ${address} is not signed by ${ca} (${r})`,
      `Set ${c.where('serverCa')} to the CA that signed the server's certificate`,
    );
  }
  if (/ALTNAME|HOSTNAME/.test(r)) {
    const name = s.serverName ?? address.replace(/:\d+$/, '');
    return new ConnectionError(
      `The server's certificate at ${address} is not for the name ${name} (${r})`,
      `Set ${c.where('serverName')} to a name the certificate holds, or connect by that name`,
    );
  }
  if (/CERT_HAS_EXPIRED|CERT_NOT_YET_VALID/.test(r)) {
    return new ConnectionError(
      `The server's certificate at ${address} is not valid now (${r})`,
      "Renew the server's certificate, or check this machine's clock",
    );
  }
  if (/WRONG_VERSION_NUMBER|PACKET_LENGTH|HTTP_REQUEST|UNKNOWN_PROTOCOL/.test(r)) {
    return new ConnectionError(
      `The server at ${address} does not speak TLS, and TLS is on (${r})`,
      `Turn TLS off (TEMPORAL_TLS=false, or remove the tls settings), or fix ${c.where('address')}`,
    );
  }
  // Anything else is the server refusing our side of the handshake: with TLS 1.3, a client certificate refused
  // shows only after the handshake, as an alert.
  if (!s.clientCert) {
    return new ConnectionError(
      `The server at ${address} requires a client certificate (mTLS), and none is set (${r})`,
      `Set ${c.where('clientCert')} and ${c.where('clientKey')} to the certificate the cluster issued you`,
    );
  }
  return new ConnectionError(
    `The server at ${address} refused the client certificate ${s.clientCert} (${r})`,
    `Set ${c.where('clientCert')} and ${c.where('clientKey')} to a certificate signed by a CA the server trusts`,
  );
}

// The HTTP/2 client preface and an empty SETTINGS frame.
const HTTP2_PREFACE = Buffer.concat([
  Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
  Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]),
]);

/**
 * Connects to `address` over TCP (t null) or TLS and says "ok" or why not (an errno or OpenSSL code). TLS 1.3
 * delivers a refused client certificate after the handshake, so over TLS "ok" means the server answered HTTP/2.
 * `verify` false asks only whether the server speaks TLS at all.
 */
function probe(address: string, t: TLSConfig | null, verify = true): Promise<string> {
  const m = /^\[?(.*?)\]?:(\d+)$/.exec(address);
  if (!m) return Promise.resolve('the address is not host:port');
  const [host, port] = [m[1], Number(m[2])];
  const pem = (b?: Uint8Array) => (b ? Buffer.from(b) : undefined);
  return new Promise((resolve) => {
    const socket = t
      ? tls.connect({
          host,
          port,
          ALPNProtocols: ['h2'],
          rejectUnauthorized: verify,
          servername: t.serverNameOverride ?? (net.isIP(host) ? undefined : host),
          ca: pem(t.serverRootCACertificate),
          cert: pem(t.clientCertPair?.crt),
          key: pem(t.clientCertPair?.key),
        })
      : net.connect({ host, port });
    const done = (why: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done(`no answer within ${PROBE_TIMEOUT_MS / 1000} s`), PROBE_TIMEOUT_MS);
    socket.on('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
    socket.on('close', () => done('the server closed the connection'));
    socket.on('data', () => done('ok'));
    // An HTTP/2 server answers the preface with its own SETTINGS frame.
    if (t) socket.on('secureConnect', () => (verify ? socket.write(HTTP2_PREFACE) : done('ok')));
    else socket.on('connect', () => done('ok'));
  });
}
