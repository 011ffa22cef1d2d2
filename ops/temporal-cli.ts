// Finding (or getting) the official Temporal CLI, whose `server start-dev` is Nightlab's local server.
// Order: $TEMPORAL_CLI → `temporal` on PATH → Nightlab's cached binary → build with Go →
// the official download → a message saying how to install it. Instant once cached.
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  statSync,
  accessSync,
  constants,
  createWriteStream,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';

/** The last CLI release that `go install` can build (1.6+ carries a `replace` directive). */
export const TEMPORAL_CLI_GO_VERSION = '1.5.1';
const GO_PACKAGE = 'github.com/temporalio/cli/cmd/temporal';
const DOWNLOAD_URL = 'https://temporal.download/cli/archive/latest';

export interface TemporalCli {
  path: string;
  version: string;
  source: 'TEMPORAL_CLI' | 'PATH' | 'cache' | 'go install' | 'download';
}

export interface FindOptions {
  /** Build or download when nothing is found (false: only look). */
  install?: boolean;
  cacheDir?: string;
  env?: NodeJS.ProcessEnv;
  downloadUrl?: string;
  log?: (line: string) => void;
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'nightlab');
}

export class TemporalCliMissing extends Error {}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | null {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) return path.join(dir, name);
  }
  return null;
}

export async function cliVersion(bin: string): Promise<string> {
  const r = await execa(bin, ['--version'], { timeout: 15_000, reject: false });
  if (r.exitCode !== 0)
    throw new TemporalCliMissing(
      `${bin} --version failed (${r.stderr || r.exitCode}); it is not a working Temporal CLI`,
    );
  return r.stdout.trim();
}

export async function findTemporalCli(opts: FindOptions = {}): Promise<TemporalCli> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? (() => {});
  const cached = path.join(opts.cacheDir ?? defaultCacheDir(env), 'bin', 'temporal');

  if (env.TEMPORAL_CLI) {
    if (!isExecutable(env.TEMPORAL_CLI))
      throw new TemporalCliMissing(
        `TEMPORAL_CLI=${env.TEMPORAL_CLI} is not an executable file; point it at a Temporal CLI binary or unset it`,
      );
    return { path: env.TEMPORAL_CLI, version: await cliVersion(env.TEMPORAL_CLI), source: 'TEMPORAL_CLI' };
  }
  const fromPath = onPath('temporal', env);
  if (fromPath) return { path: fromPath, version: await cliVersion(fromPath), source: 'PATH' };
  if (isExecutable(cached)) return { path: cached, version: await cliVersion(cached), source: 'cache' };
  if (!opts.install)
    throw new TemporalCliMissing(
      `No Temporal CLI found (looked at $TEMPORAL_CLI, PATH and ${cached}). Run \`nightlab setup\` to build or download it.`,
    );

  const tried: string[] = [];
  const go = onPath('go', env);
  if (go) {
    log(`Building the Temporal CLI ${TEMPORAL_CLI_GO_VERSION} with Go (once; takes a few minutes)...`);
    const gobin = mkdtempSync(path.join(os.tmpdir(), 'nightlab-gobin-'));
    const r = await execa(
      go,
      [
        'install',
        '-ldflags',
        `-X github.com/temporalio/cli/temporalcli.Version=${TEMPORAL_CLI_GO_VERSION}`,
        `${GO_PACKAGE}@v${TEMPORAL_CLI_GO_VERSION}`,
      ],
      {
        env: { ...env, GOBIN: gobin, GOFLAGS: '-mod=mod', CGO_ENABLED: '0' },
        reject: false,
        all: true,
      },
    );
    if (r.exitCode === 0 && isExecutable(path.join(gobin, 'temporal'))) {
      install(path.join(gobin, 'temporal'), cached);
      rmSync(gobin, { recursive: true, force: true });
      return { path: cached, version: await cliVersion(cached), source: 'go install' };
    }
    rmSync(gobin, { recursive: true, force: true });
    tried.push(`go install failed: ${(r.all ?? '').trim().split('\n').slice(-3).join(' | ')}`);
  } else {
    tried.push('Go is not installed');
  }

  const url = `${opts.downloadUrl ?? env.NIGHTLAB_TEMPORAL_DOWNLOAD_URL ?? DOWNLOAD_URL}?platform=${process.platform === 'darwin' ? 'darwin' : 'linux'}&arch=${process.arch === 'arm64' ? 'arm64' : 'amd64'}`;
  try {
    log(`Downloading the Temporal CLI from ${url} ...`);
    const res = await fetch(url, { signal: AbortSignal.timeout(60_000) });
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'nightlab-temporal-'));
    const archive = path.join(dir, 'temporal.tar.gz');
    await pipeline(Readable.fromWeb(res.body as never), createWriteStream(archive));
    await execa('tar', ['-xzf', archive, '-C', dir]);
    install(path.join(dir, 'temporal'), cached);
    rmSync(dir, { recursive: true, force: true });
    return { path: cached, version: await cliVersion(cached), source: 'download' };
  } catch (e) {
    tried.push(
      `download from ${url} failed: ${(e as Error).cause ? ((e as Error).cause as Error).message : (e as Error).message}`,
    );
  }
  throw new TemporalCliMissing(
    `Could not get the Temporal CLI:\n  - ${tried.join('\n  - ')}\nFix one of:\n` +
      `  - install Go >= 1.25 (https://go.dev/dl) and rerun \`nightlab setup\` (it builds temporal ${TEMPORAL_CLI_GO_VERSION});\n` +
      `  - download it from https://temporal.download/cli/archive/latest?platform=linux&arch=amd64 and put \`temporal\` on PATH;\n` +
      `  - or set TEMPORAL_CLI=/path/to/temporal.`,
  );
}

function install(from: string, to: string): void {
  mkdirSync(path.dirname(to), { recursive: true });
  copyFileSync(from, `${to}.tmp`);
  chmodSync(`${to}.tmp`, 0o755);
  // rename is atomic: a concurrent reader never sees half a binary
  renameSync(`${to}.tmp`, to);
}
