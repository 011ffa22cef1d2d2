// Validates the docker-compose deployment without a Docker engine: `docker compose config`
// (or docker-compose >= 1.29) checks the file against the Compose schema and prints it
// normalized; we then assert the wiring: PostgreSQL -> schema job -> Temporal -> namespace
// job -> UI and both Nightlab workers, that the API key reaches the orchestrator only, that
// the usage lines name commands and flags that exist, and the settings the workers need in a
// container (the sandbox's namespaces, the GPU worker's stop grace and /dev/shm, the UI link).
// The systemd units in deploy/systemd are checked here too (with systemd-analyze where it is).
import type { Command } from 'commander';
import { SEARCH_ATTRIBUTES } from '../common/shared';
import { buildProgram } from '../cli/main';
import { SHUTDOWN_GRACE } from '../gpu-worker/worker';
import { KILL_GRACE_MS } from '../lib/supervise';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { SERVER_DYNAMIC_CONFIG } from '../ops/server';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const COMPOSE_FILE = path.join(ROOT, 'docker-compose.yml');
const DOCKERFILE = path.join(ROOT, 'Dockerfile');
/** What a stopping GPU worker may still need after its shutdown and kill graces: reporting the cancelled runs. */
const STOP_MARGIN_S = 10;
const API_KEY_SENTINEL = 'sk-ant-compose-test-sentinel-0123456789';

// ---------------------------------------------------------------- running compose config

let composeCmd: string[] | undefined;
function findCompose(): string[] {
  if (composeCmd) return composeCmd;
  const candidates = [['docker', 'compose'], ['docker-compose']];
  for (const c of candidates) {
    const r = spawnSync(c[0], [...c.slice(1), 'version'], { encoding: 'utf8' });
    if (r.status === 0) return (composeCmd = c);
  }
  throw new Error(
    'Neither `docker compose` (Compose v2 plugin) nor `docker-compose` (>= 1.29) is installed, so ' +
      'docker-compose.yml cannot be validated. Install one, e.g. on Debian/Ubuntu: ' +
      '`apt-get install -y docker-compose`.',
  );
}

type Doc = { services: Record<string, Svc>; volumes?: Record<string, unknown> };
type Svc = Record<string, any>;
const configCache = new Map<string, Doc>();

/** `compose config` with a clean environment: no NIGHTLAB_* / TEMPORAL_DB_PASSWORD from the
 *  caller's shell, no ./.env, a sentinel API key, plus the given overrides. */
function composeConfig(overrides: Record<string, string> = {}): Doc {
  const key = JSON.stringify(overrides);
  const cached = configCache.get(key);
  if (cached) return cached;
  const cmd = findCompose();
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || /^(NIGHTLAB_|COMPOSE_|TEMPORAL_DB_PASSWORD$|ANTHROPIC_)/.test(k)) continue;
    env[k] = v;
  }
  Object.assign(env, { ANTHROPIC_API_KEY: API_KEY_SENTINEL }, overrides);
  const dir = mkdtempSync(path.join(tmpdir(), 'nightlab-compose-'));
  const emptyEnvFile = path.join(dir, 'empty.env');
  writeFileSync(emptyEnvFile, '');
  try {
    const r = spawnSync(cmd[0], [...cmd.slice(1), '--env-file', emptyEnvFile, '-f', COMPOSE_FILE, 'config'], {
      cwd: ROOT,
      env,
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, `\`${cmd.join(' ')} config\` rejected docker-compose.yml:\n${r.stderr}${r.stdout}`);
    const doc = YAML.parse(r.stdout) as Doc;
    assert.ok(doc && typeof doc.services === 'object', `no services in normalized config:\n${r.stdout}`);
    configCache.set(key, doc);
    return doc;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- normalizers (v1 and v2 output)

function envOf(svc: Svc): Record<string, string | null> {
  const e = svc.environment ?? {};
  if (Array.isArray(e)) {
    return Object.fromEntries(
      e.map((item: string) => {
        const i = item.indexOf('=');
        return i < 0 ? [item, null] : [item.slice(0, i), item.slice(i + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v === null ? null : String(v)]));
}

function argv(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v.map(String);
  return String(v).trim().split(/\s+/);
}

function dependsOf(svc: Svc): Record<string, string> {
  const d = svc.depends_on ?? {};
  if (Array.isArray(d)) return Object.fromEntries(d.map((n: string) => [n, 'service_started']));
  return Object.fromEntries(Object.entries(d).map(([n, v]: [string, any]) => [n, v?.condition ?? 'service_started']));
}

type Port = { hostIp?: string; published: string; target: string };
function portsOf(svc: Svc): Port[] {
  return (svc.ports ?? []).map((p: any): Port => {
    if (typeof p === 'object') return { hostIp: p.host_ip, published: String(p.published), target: String(p.target) };
    const parts = String(p)
      .replace(/\/\w+$/, '')
      .split(':');
    const target = parts.pop()!;
    const published = parts.pop() ?? target;
    return { hostIp: parts.pop(), published, target };
  });
}

type Mount = { source?: string; target: string; readOnly: boolean };
function mountsOf(svc: Svc): Mount[] {
  return (svc.volumes ?? []).map((v: any): Mount => {
    if (typeof v === 'object') return { source: v.source, target: v.target, readOnly: v.read_only === true };
    const parts = String(v).split(':');
    if (parts.length === 1) return { target: parts[0], readOnly: false };
    return { source: parts[0], target: parts[1], readOnly: (parts[2] ?? '').split(',').includes('ro') };
  });
}

function mountAt(svc: Svc, target: string): Mount {
  const m = mountsOf(svc).find((x) => x.target === target);
  assert.ok(m, `expected a volume mounted at ${target}, got ${JSON.stringify(svc.volumes)}`);
  return m;
}

/** Host path of a file the container sees at `containerPath`, through its bind mounts. */
function hostPathOf(svc: Svc, containerPath: string): string {
  const m = mountsOf(svc)
    .filter(
      (x) =>
        x.source &&
        path.isAbsolute(x.source) &&
        (containerPath === x.target || containerPath.startsWith(x.target + '/')),
    )
    .sort((a, b) => b.target.length - a.target.length)[0];
  assert.ok(m, `${containerPath} is not on a bind mount from this repository: ${JSON.stringify(svc.volumes)}`);
  return path.join(m.source!, path.relative(m.target, containerPath));
}

function isNamedVolume(doc: Doc, m: Mount): boolean {
  return !!m.source && !path.isAbsolute(m.source) && Object.keys(doc.volumes ?? {}).includes(m.source);
}

function find(doc: Doc, what: string, pred: (name: string, svc: Svc) => boolean): [string, Svc] {
  const hits = Object.entries(doc.services).filter(([n, s]) => pred(n, s));
  assert.equal(
    hits.length,
    1,
    `expected exactly one ${what} service, found ${hits.map(([n]) => n).join(', ') || 'none'}`,
  );
  return hits[0];
}

const usesScript = (svc: Svc, script: string) =>
  [...argv(svc.entrypoint), ...argv(svc.command)].some((a) => a.endsWith(script));
const isAdminTools = (svc: Svc) => /^temporalio\/admin-tools:/.test(svc.image ?? '');

function services(doc: Doc) {
  const postgres = find(doc, 'postgres', (_, s) => /^postgres:/.test(s.image ?? ''));
  const schema = find(doc, 'schema setup', (_, s) => isAdminTools(s) && usesScript(s, 'setup-postgres.sh'));
  const server = find(doc, 'temporal server', (_, s) => /^temporalio\/server:/.test(s.image ?? ''));
  const namespace = find(doc, 'namespace setup', (_, s) => isAdminTools(s) && usesScript(s, 'setup-namespace.sh'));
  const ui = find(doc, 'temporal ui', (_, s) => /^temporalio\/ui:/.test(s.image ?? ''));
  const orchestrator = find(doc, 'orchestrator worker', (_, s) => argv(s.command)[0] === 'worker');
  const gpu = find(doc, 'gpu worker', (_, s) => argv(s.command)[0] === 'gpu-worker');
  return { postgres, schema, server, namespace, ui, orchestrator, gpu };
}

/** Go-style duration ("720h", "30d", "1h30m", "1m0s") in hours. */
function durationHours(s: string): number {
  const units: Record<string, number> = { d: 24, h: 1, m: 1 / 60, s: 1 / 3600 };
  const parts = [...s.matchAll(/(\d+(?:\.\d+)?)([dhms])/g)];
  assert.ok(parts.length > 0 && parts.map((p) => p[0]).join('') === s, `not a duration: ${s}`);
  return parts.reduce((h, p) => h + Number(p[1]) * units[p[2]], 0);
}

/** A Compose byte size ("16gb", "512m", or bytes as Compose v2 normalizes it) in bytes. */
function bytesOf(v: string | number): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)b?$/i.exec(String(v));
  assert.ok(m, `not a size: ${v}`);
  return Number(m[1]) * 1024 ** ' kmg'.indexOf((m[2] || ' ').toLowerCase());
}

/** The comment lines of a file joined across trailing backslashes, `#` and indentation dropped. */
function commentCommands(file: string): string[] {
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('#'))
    .map((l) => l.replace(/^#\s*/, ''));
  return lines.join('\n').replace(/\\\n/g, ' ').split('\n');
}

/** The lines of a Markdown file's fenced code blocks, joined across trailing backslashes. */
function codeBlockLines(file: string): string[] {
  const blocks = readFileSync(file, 'utf8').split(/^```.*$/m);
  return blocks
    .filter((_, i) => i % 2 === 1)
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n');
}

/** A `docker compose run|exec` line's service, its options and the command it gives the container. */
interface ComposeCall {
  text: string;
  verb: 'run' | 'exec';
  service: string;
  options: Record<string, string | true>;
  args: string[];
}

/** Options of `docker compose run` / `exec` that take a value (the rest used here are switches). */
const VALUED = new Set(['--entrypoint', '-w', '--workdir', '-e', '--env', '-u', '--user']);

function composeCalls(lines: string[]): ComposeCall[] {
  const calls: ComposeCall[] = [];
  for (const text of lines) {
    const m = /docker compose (run|exec) (.*)$/.exec(text);
    if (!m) continue;
    const words = m[2].trim().split(/\s+/);
    const options: Record<string, string | true> = {};
    while (words[0]?.startsWith('-')) {
      const flag = words.shift()!;
      options[flag] = VALUED.has(flag) ? words.shift()! : true;
    }
    const [service, ...args] = words;
    calls.push({ text, verb: m[1] as 'run' | 'exec', service, options, args });
  }
  return calls;
}

/** Asserts `args` is a nightlab command line that the CLI's command tree accepts (command and long flags). */
function assertNightlab(args: string[], where: string): void {
  const program = buildProgram() as Command;
  const command = program.commands.find((c) => c.name() === args[0]);
  assert.ok(command, `${where}: \`nightlab ${args[0]}\` is not a nightlab command`);
  const flags = command.options.flatMap((o) => [o.long, o.short]).filter(Boolean);
  for (const flag of args.filter((a) => a.startsWith('--')))
    assert.ok(flags.includes(flag.split('=')[0]), `${where}: \`nightlab ${args[0]}\` has no ${flag}`);
}

/** A systemd unit's [Service] settings (the last value of each key) and its whole text. */
function unitOf(name: string): { service: Record<string, string>; env: Record<string, string>; text: string } {
  const text = readFileSync(path.join(ROOT, 'deploy/systemd', name), 'utf8');
  const service: Record<string, string> = {};
  const env: Record<string, string> = {};
  let section = '';
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (!line || line.startsWith('#')) continue;
    if (line.startsWith('[')) section = line;
    else if (section === '[Service]') {
      const [key, value] = [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)];
      if (key === 'Environment') env[value.slice(0, value.indexOf('='))] = value.slice(value.indexOf('=') + 1);
      else service[key] = value;
    }
  }
  return { service, env, text };
}

// ---------------------------------------------------------------- tests

test('compose config accepts docker-compose.yml', () => {
  const doc = composeConfig();
  assert.ok(Object.keys(doc.services).length >= 7, `services: ${Object.keys(doc.services).join(', ')}`);
});

test('postgres 16 keeps its data on a named volume and has a healthcheck', () => {
  const doc = composeConfig();
  const [, pg] = services(doc).postgres;
  assert.match(pg.image, /^postgres:16(\.|-|$)/);
  const data = mountAt(pg, '/var/lib/postgresql/data');
  assert.ok(isNamedVolume(doc, data), `postgres data must be a named volume, got ${data.source}`);
  assert.ok(argv(pg.healthcheck?.test).join(' ').includes('pg_isready'), 'postgres healthcheck should run pg_isready');
});

test('schema job waits for a healthy postgres and sets up both databases', () => {
  const doc = composeConfig();
  const {
    postgres: [pgName],
    schema: [, schema],
    server: [, server],
  } = services(doc);
  assert.equal(dependsOf(schema)[pgName], 'service_healthy');
  assert.equal(envOf(schema).POSTGRES_SEEDS, pgName);
  // admin-tools must match the server version (schema versions ship with the tools).
  const serverVersion = server.image.split(':')[1];
  assert.ok(schema.image.split(':')[1].startsWith(serverVersion), `${schema.image} does not match ${server.image}`);

  const script = readFileSync(
    hostPathOf(
      schema,
      argv(schema.command).find((a) => a.endsWith('setup-postgres.sh'))!,
    ),
    'utf8',
  );
  assert.match(script, /--plugin postgres12/);
  for (const cmd of ['create-database', 'setup-schema -v 0.0', 'update-schema'])
    assert.ok(script.includes(cmd), `schema script lacks ${cmd}`);
  // Both databases, each with its own versioned schema directory.
  assert.match(script, /SCHEMA_DIR=\/etc\/temporal\/schema\/postgresql\/v12$/m);
  assert.match(script, /update-schema -d "\$\{SCHEMA_DIR\}\/\$\{kind\}\/versioned"/);
  assert.match(script, /for pair in "\$\{DBNAME\}:temporal" "\$\{VISIBILITY_DBNAME\}:visibility"/);
  assert.equal(envOf(schema).DBNAME, 'temporal');
  assert.equal(envOf(schema).VISIBILITY_DBNAME, 'temporal_visibility');
});

test('temporal server 1.29.x on postgres12 starts after the schema job completes', () => {
  const doc = composeConfig();
  const {
    postgres: [pgName],
    schema: [schemaName],
    server: [, server],
  } = services(doc);
  assert.match(server.image, /^temporalio\/server:1\.29\.\d+$/);
  assert.equal(dependsOf(server)[schemaName], 'service_completed_successfully');
  const env = envOf(server);
  assert.equal(env.DB, 'postgres12');
  assert.equal(env.POSTGRES_SEEDS, pgName);
  assert.equal(env.BIND_ON_IP, '0.0.0.0');
  assert.ok(
    portsOf(server).some((p) => p.published === '7233' && p.target === '7233'),
    'frontend 7233 must be published',
  );
  assert.ok(server.healthcheck?.test, 'server needs a healthcheck (the namespace job and UI wait on it)');
  // DYNAMIC_CONFIG_FILE_PATH is relative to /etc/temporal and must exist through the mount.
  const dc = hostPathOf(server, path.posix.join('/etc/temporal', env.DYNAMIC_CONFIG_FILE_PATH!));
  assert.ok(existsSync(dc), `dynamic config ${dc} is missing`);
  // The settings Nightlab's own dev server runs with (eager activity execution) hold here too.
  const settings = YAML.parse(readFileSync(dc, 'utf8'));
  for (const [key, value] of Object.entries(SERVER_DYNAMIC_CONFIG))
    assert.deepEqual(settings[key], [{ value, constraints: {} }], key);
});

test('namespace job registers all six search attributes with >= 30 days retention', () => {
  const doc = composeConfig();
  const {
    server: [serverName, server],
    namespace: [, ns],
  } = services(doc);
  assert.equal(dependsOf(ns)[serverName], 'service_healthy');
  assert.ok(
    ns.image.split(':')[1].startsWith(server.image.split(':')[1]),
    'admin-tools should match the server version',
  );
  const env = envOf(ns);
  assert.equal(env.TEMPORAL_ADDRESS, `${serverName}:7233`);
  assert.equal(env.NAMESPACE, 'default');
  assert.ok(durationHours(env.NAMESPACE_RETENTION!) >= 30 * 24, `retention ${env.NAMESPACE_RETENTION} < 30d`);
  const attrs = Object.fromEntries(
    env
      .NIGHTLAB_SEARCH_ATTRIBUTES!.trim()
      .split(/\s+/)
      .map((p) => p.split('=')),
  );
  assert.deepEqual(attrs, SEARCH_ATTRIBUTES);

  const script = readFileSync(
    hostPathOf(
      ns,
      argv(ns.command).find((a) => a.endsWith('setup-namespace.sh'))!,
    ),
    'utf8',
  );
  for (const s of [
    'for pair in $NIGHTLAB_SEARCH_ATTRIBUTES',
    'temporal operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type "$type"',
    'temporal operator namespace create --namespace "$NAMESPACE" --retention "$NAMESPACE_RETENTION"',
    'temporal operator namespace update --namespace "$NAMESPACE" --retention "$NAMESPACE_RETENTION"',
  ])
    assert.ok(script.includes(s), `namespace script lacks: ${s}`);
});

test('deploy scripts are valid sh', () => {
  for (const f of ['deploy/setup-postgres.sh', 'deploy/setup-namespace.sh']) {
    const r = spawnSync('sh', ['-n', path.join(ROOT, f)], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${f}: ${r.stderr}`);
  }
});

test('ui 2.42+ serves 8080 and points at the server', () => {
  const doc = composeConfig();
  const {
    server: [serverName],
    ui: [, ui],
  } = services(doc);
  // At least the UI the tests' dev server serves (Temporal CLI 1.5.1: UI 2.42.1); worker deployments need 2.38.
  const minor = /^temporalio\/ui:2\.(\d+)\.\d+$/.exec(ui.image)?.[1];
  assert.ok(minor !== undefined && Number(minor) >= 42, `temporalio/ui 2.42 or newer, got ${ui.image}`);
  assert.ok(
    portsOf(ui).some((p) => p.published === '8080' && p.target === '8080'),
    'ui must publish 8080',
  );
  assert.equal(envOf(ui).TEMPORAL_ADDRESS, `${serverName}:7233`);
});

test('published ports default to loopback and can be opened for GPU hosts', () => {
  for (const p of [...portsOf(services(composeConfig()).server[1]), ...portsOf(services(composeConfig()).ui[1])])
    assert.equal(p.hostIp, '127.0.0.1');
  const open = services(composeConfig({ NIGHTLAB_PUBLISH_IP: '0.0.0.0' }));
  assert.ok(portsOf(open.server[1]).some((p) => p.published === '7233' && p.hostIp === '0.0.0.0'));
});

test('orchestrator worker runs `worker` against the temporal service with the API key', () => {
  const doc = composeConfig();
  const {
    server: [serverName],
    namespace: [nsName],
    orchestrator: [, orch],
  } = services(doc);
  assert.deepEqual(argv(orch.command), ['worker']);
  const env = envOf(orch);
  assert.equal(env.TEMPORAL_ADDRESS, `${serverName}:7233`);
  assert.equal(env.TEMPORAL_NAMESPACE, 'default');
  assert.equal(env.NIGHTLAB_HOME, '/data');
  assert.equal(env.ANTHROPIC_API_KEY, API_KEY_SENTINEL, 'the orchestrator gets ANTHROPIC_API_KEY from the host env');
  assert.equal(dependsOf(orch)[nsName], 'service_completed_successfully', 'workers start once search attributes exist');
  assert.ok(isNamedVolume(doc, mountAt(orch, '/data')), '/data (NIGHTLAB_HOME) should be a named volume');
  assert.equal(mountAt(orch, '/campaigns').readOnly, false, 'the orchestrator writes campaign repos');
  assert.equal(path.resolve(orch.build?.context ?? orch.build), ROOT);
});

test('gpu worker reserves NVIDIA GPUs and never sees the API key', () => {
  const doc = composeConfig();
  const {
    server: [serverName],
    orchestrator: [, orch],
    gpu: [, gpu],
  } = services(doc);
  const args = argv(gpu.command);
  assert.equal(args[0], 'gpu-worker');
  assert.equal(args[args.indexOf('--gpus') + 1], 'all');
  assert.equal(args[args.indexOf('--gpus-per-slot') + 1], '1');
  assertNightlab(args, 'the gpu-worker service');
  const devices: any[] = gpu.deploy?.resources?.reservations?.devices ?? [];
  assert.ok(
    devices.some((d) => d.driver === 'nvidia' && (d.capabilities ?? []).flat().includes('gpu')),
    `no nvidia gpu reservation: ${JSON.stringify(devices)}`,
  );
  // `count: all` (Compose v2 normalizes it to -1): `--gpus all` needs every GPU in the container.
  assert.ok(
    devices.some((d) => d.count === 'all' || d.count === -1),
    `reserve all GPUs: ${JSON.stringify(devices)}`,
  );
  const env = envOf(gpu);
  assert.ok(!('ANTHROPIC_API_KEY' in env), 'the GPU worker must not get ANTHROPIC_API_KEY');
  assert.equal(gpu.env_file, undefined, 'no env_file on the GPU worker (it could carry the API key)');
  assert.ok(!JSON.stringify(gpu).includes(API_KEY_SENTINEL), 'the API key leaked into the gpu-worker service');
  assert.equal(env.TEMPORAL_ADDRESS, `${serverName}:7233`);
  assert.equal(env.NIGHTLAB_HOME, '/data');
  const data = mountAt(gpu, '/data');
  assert.ok(isNamedVolume(doc, data));
  assert.notEqual(data.source, mountAt(orch, '/data').source, 'the GPU worker has its own data volume');
  const campaigns = mountAt(gpu, '/campaigns');
  assert.equal(campaigns.source, mountAt(orch, '/campaigns').source, 'both workers see the same campaign repos');
  assert.equal(campaigns.readOnly, true, 'the GPU worker only fetches from /campaigns');
});

test('gpu worker can run alone on another host via env overrides', () => {
  const doc = composeConfig({
    NIGHTLAB_TEMPORAL_ADDRESS: 'gpu-server.lan:7233',
    NIGHTLAB_GPUS: '0,1,2,3',
    NIGHTLAB_GPUS_PER_SLOT: '2',
    NIGHTLAB_CAMPAIGNS: '/mnt/nightlab-campaigns',
  });
  const [, gpu] = services(doc).gpu;
  assert.equal(envOf(gpu).TEMPORAL_ADDRESS, 'gpu-server.lan:7233');
  assert.deepEqual(argv(gpu.command), ['gpu-worker', '--gpus', '0,1,2,3', '--gpus-per-slot', '2']);
  const campaigns = mountAt(gpu, '/campaigns');
  assert.equal(campaigns.source, '/mnt/nightlab-campaigns');
  assert.equal(campaigns.readOnly, true);
  assert.ok(gpu.build, 'the GPU host builds the image itself (`up --no-deps --build gpu-worker`)');
});

test('Dockerfile builds the nightlab image without secrets and runs bin/nightlab.mjs', () => {
  const file = path.join(ROOT, 'Dockerfile');
  assert.ok(existsSync(file), 'Dockerfile is missing');
  const text = readFileSync(file, 'utf8');
  const instructions = text.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const body = instructions.join('\n');
  assert.match(body, /^ARG (NODE_IMAGE|BASE_IMAGE)=node:20-bookworm-slim$/m);
  assert.match(body, /^ARG BASE_IMAGE=/m, 'BASE_IMAGE build arg lets users build on a CUDA image');
  assert.match(body, /COPY package\.json package-lock\.json/);
  assert.match(body, /npm ci --omit=dev/);
  for (const pkg of ['git', 'python3', 'python3-venv', 'python3-numpy'])
    assert.match(body, new RegExp(`\\s${pkg}(\\s|$)`), `installs ${pkg}`);
  assert.ok(!/ANTHROPIC/.test(body), 'no ANTHROPIC_* ARG/ENV in the image');
  const entry = instructions.find((l) => l.startsWith('ENTRYPOINT'));
  assert.ok(entry, 'no ENTRYPOINT');
  const argvEntry = JSON.parse(entry.replace(/^ENTRYPOINT\s+/, '')) as string[];
  // Absolute: `docker compose run -w /campaigns/<repo>` starts it in another folder.
  assert.ok(argvEntry.includes('node') && argvEntry.at(-1) === '/app/bin/nightlab.mjs', `ENTRYPOINT ${entry}`);
  assert.match(body, /^WORKDIR \/app$/m);
  assert.ok(existsSync(path.join(ROOT, 'bin/nightlab.mjs')));
  // `npm ci --omit=dev` must still install tsx: bin/nightlab.mjs runs the sources through it.
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  assert.ok(pkg.dependencies?.tsx, 'tsx must be a runtime dependency');
  assert.ok(existsSync(path.join(ROOT, 'package-lock.json')), 'npm ci needs package-lock.json');
});

test('.dockerignore keeps local state, git and secrets out of the build context', () => {
  const file = path.join(ROOT, '.dockerignore');
  assert.ok(existsSync(file), '.dockerignore is missing');
  const lines = readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim());
  for (const p of ['node_modules', '.git', '.nightlab', 'test-artifacts', '.env'])
    assert.ok(lines.includes(p), `.dockerignore lacks ${p}`);
});

test('the usage lines clone a repository into /campaigns and run nightlab commands that exist', () => {
  const doc = composeConfig();
  const {
    orchestrator: [orchName, orch],
  } = services(doc);
  const calls = composeCalls(commentCommands(COMPOSE_FILE));
  const documented = composeCalls(codeBlockLines(path.join(ROOT, 'docs/operations.md')));
  assert.ok(documented.length >= 4, 'docs/operations.md shows the compose commands');
  for (const call of [...calls, ...documented]) {
    const svc = doc.services[call.service];
    assert.ok(svc, `${call.text}: no service ${call.service}`);
    const workdir = call.options['-w'];
    if (typeof workdir === 'string')
      assert.ok(
        mountsOf(svc).some((m) => workdir.startsWith(m.target + '/')),
        `${call.text}: -w is not on a volume`,
      );
    if (call.options['--entrypoint']) continue;
    // `run` gives its words to the image's entrypoint (nightlab); `exec` runs a program, here `nightlab`.
    const args = call.verb === 'exec' ? call.args.slice(1) : call.args;
    if (call.verb === 'exec') assert.equal(call.args[0], 'nightlab', call.text);
    assertNightlab(args, call.text);
  }
  const byCommand = (c: string) => calls.find((x) => x.service === orchName && x.args[0] === c && x.verb === 'run');
  const clone = calls.find((x) => x.options['--entrypoint'] === 'git' && x.args[0] === 'clone');
  assert.ok(clone && clone.service === orchName, 'a `git clone` into /campaigns from the orchestrator container');
  assert.match(clone.args.at(-1)!, /^\/campaigns\/[\w.-]+$/);
  assert.equal(mountAt(orch, '/campaigns').readOnly, false);
  const init = byCommand('init');
  assert.equal(init?.options['-w'], clone.args.at(-1), '`nightlab init` in the cloned repository');
  const start = byCommand('start');
  assert.ok(start, 'a `docker compose run --rm orchestrator start ...` line');
  assert.equal(start.options['--rm'], true);
  assert.equal(start.args[start.args.indexOf('--config') + 1], `${clone.args.at(-1)}/nightlab.yaml`);
  // `exec ... nightlab` needs it on PATH in the image.
  assert.match(readFileSync(DOCKERFILE, 'utf8'), /^RUN ln -s \/app\/bin\/nightlab\.mjs \/usr\/local\/bin\/nightlab$/m);
});

test('both workers may make the sandbox namespaces in their containers, with no added privilege', () => {
  const { orchestrator, gpu } = services(composeConfig());
  for (const [name, svc] of [orchestrator, gpu]) {
    // bubblewrap's namespaces (seccomp, AppArmor) and its fresh /proc (Docker's masked /proc paths forbid it).
    for (const opt of ['seccomp=unconfined', 'apparmor=unconfined', 'systempaths=unconfined'])
      assert.ok((svc.security_opt ?? []).includes(opt), `${name} lacks security_opt ${opt}`);
    assert.ok(!svc.privileged, `${name} must not be privileged`);
    assert.equal(svc.cap_add, undefined, `${name} adds no capabilities`);
    assert.equal(svc.user, undefined, `${name} runs as the image's user`);
  }
  const body = readFileSync(DOCKERFILE, 'utf8');
  assert.match(body, /^USER 1000:1000$/m);
  assert.match(body, /apt-get install [^\n]*\n?[^\n]*\sbubblewrap(\s|$)/m, 'the image installs bubblewrap');
  // uv pinned, in a system folder that every sandbox shows (the autoresearch preset's `uv sync` / `uv run`).
  const uv = /^ARG UV_VERSION=(\d+\.\d+\.\d+)$/m.exec(body);
  assert.ok(uv, 'a pinned UV_VERSION');
  assert.match(body, /pip install [^\n]*"uv==\$\{UV_VERSION\}"/);
  assert.match(body, /install -m 0755 \S+\/uv \S+\/uvx \/usr\/local\/bin\//);
});

test('the GPU worker outlasts its own shutdown grace and has room in /dev/shm for data loaders', () => {
  const [, gpu] = services(composeConfig()).gpu;
  const needed = durationHours(SHUTDOWN_GRACE) * 3600 + KILL_GRACE_MS / 1000 + STOP_MARGIN_S;
  assert.ok(gpu.stop_grace_period, 'stop_grace_period (Docker kills after 10 s by default)');
  const grace = durationHours(String(gpu.stop_grace_period)) * 3600;
  assert.ok(grace >= needed, `stop_grace_period ${gpu.stop_grace_period} < ${needed}s`);
  assert.ok(gpu.ipc === 'host' || bytesOf(gpu.shm_size ?? 0) >= 1024 ** 3, `shm_size ${gpu.shm_size} < 1 GiB`);
  const small = services(composeConfig({ NIGHTLAB_SHM_SIZE: '2gb' })).gpu[1];
  assert.equal(bytesOf(small.shm_size), 2 * 1024 ** 3);
  // The cache runs read (datasets, the Hugging Face and uv caches) survives a new container.
  const cache = mountAt(gpu, '/home/nightlab/.cache');
  assert.ok(isNamedVolume(composeConfig(), cache) && !cache.readOnly);
  const body = readFileSync(DOCKERFILE, 'utf8');
  assert.match(body, /HOME=\/home\/nightlab\b/);
  assert.match(body, /chown 1000:1000 [^\n]*\/home\/nightlab\/\.cache/, 'the volume takes its owner from the image');
});

test('both workers serve metrics and a health endpoint that compose checks', () => {
  const { orchestrator, gpu } = services(composeConfig());
  for (const [name, svc] of [orchestrator, gpu]) {
    const env = svc.environment as Record<string, string>;
    const port = env.NIGHTLAB_METRICS_PORT;
    assert.match(String(port ?? ''), /^\d+$/, `${name} sets NIGHTLAB_METRICS_PORT`);
    const check = (svc.healthcheck?.test ?? []).join(' ');
    assert.ok(check.includes(`127.0.0.1:${port}/healthz`), `${name}'s healthcheck asks /healthz on its metrics port`);
    assert.ok(svc.healthcheck?.start_period, `${name} gets a start period (the orchestrator bundles first)`);
  }
});

test("the Web UI links point at the UI compose publishes, and can be set to the host's name", () => {
  const {
    ui: [, ui],
    orchestrator: [, orch],
  } = services(composeConfig());
  const published = portsOf(ui).find((p) => p.target === '8080')!.published;
  assert.equal(envOf(orch).NIGHTLAB_UI_URL, `http://localhost:${published}`);
  const named = services(composeConfig({ NIGHTLAB_UI_URL: 'http://lab-server:8080' })).orchestrator[1];
  assert.equal(envOf(named).NIGHTLAB_UI_URL, 'http://lab-server:8080');
});

test('the systemd units stop their workers gracefully, as a dedicated user, with secrets on the orchestrator only', () => {
  const needed = durationHours(SHUTDOWN_GRACE) * 3600 + KILL_GRACE_MS / 1000 + STOP_MARGIN_S;
  const orch = unitOf('nightlab-worker.service');
  const gpu = unitOf('nightlab-gpu-worker.service');
  for (const [unit, command] of [
    [orch, 'worker'],
    [gpu, 'gpu-worker'],
  ] as const) {
    const s = unit.service;
    assert.match(s.ExecStart, new RegExp(`^/\\S+/node /\\S+/bin/nightlab\\.mjs ${command}$`));
    assertNightlab([command], `ExecStart of ${command}`);
    assert.ok(s.User && s.User !== 'root', 'a dedicated user');
    // SIGTERM to the worker alone: it stops its runs itself, after its grace; systemd kills the rest later.
    assert.equal(s.KillMode, 'mixed');
    assert.equal(s.Restart, 'always');
    assert.equal(unit.env.NIGHTLAB_HOME, '/var/lib/nightlab');
    assert.ok(!/RestrictNamespaces=|PrivateUsers=/.test(unit.text.replace(/#.*$/gm, '')), 'bwrap needs namespaces');
    assert.ok(!('ANTHROPIC_API_KEY' in unit.env), 'no secret in a unit file (world-readable)');
  }
  assert.ok(
    Number(gpu.service.TimeoutStopSec) >= needed,
    `GPU TimeoutStopSec ${gpu.service.TimeoutStopSec} < ${needed}`,
  );
  assert.equal(orch.service.EnvironmentFile, '/etc/nightlab/worker.env', 'the API key comes from a root-only file');
  assert.notEqual(gpu.service.EnvironmentFile?.replace(/^-/, ''), orch.service.EnvironmentFile);
  // Flags given through the environment are the CLI's own (commander's .env()).
  const gpuOptions = (buildProgram() as Command).commands.find((c) => c.name() === 'gpu-worker')!.options;
  for (const key of Object.keys(gpu.env).filter((k) => /^NIGHTLAB_GPUS/.test(k)))
    assert.ok(
      gpuOptions.some((o) => o.envVar === key),
      `${key} is not a gpu-worker option's environment variable`,
    );

  // systemd's own parser, where it is installed: every key known, every value parsed.
  const r = spawnSync(
    'systemd-analyze',
    ['verify', '--man=no', 'nightlab-worker.service', 'nightlab-gpu-worker.service'],
    {
      cwd: path.join(ROOT, 'deploy/systemd'),
      encoding: 'utf8',
    },
  );
  if (r.error) return;
  const problems = r.stderr
    .split('\n')
    .filter((l) => l.trim() && !/is not executable|Cannot add dependency|user.*nightlab/i.test(l));
  assert.deepEqual(problems, [], r.stderr);
});
