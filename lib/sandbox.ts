// The sandbox: bubblewrap (`bwrap`, Debian package `bubblewrap`) on Linux, built as an allowlist.
//
// Everything a proposer writes is hostile: its command proposer, the training run, and the model
// code an evaluation runs. Each of them runs in a fresh mount namespace that starts empty and gets:
//   - the system read-only: /usr, /bin, /lib*, /etc (less its secrets: shadow, ssh host keys,
//     sudoers), /opt, /sys, /nix/store; nothing of /home, /root, /run, /var, /mnt, /srv, /media;
//   - a private /tmp and /dev/shm, an empty HOME (a tmpfs at the same path, gone with the process);
//   - the tools its environment names, read-only: each PATH directory, the Python interpreter that
//     `python3` resolves to (its prefix), VIRTUAL_ENV, CONDA_PREFIX, CUDA_HOME and the like, unless
//     such a path would expose a home directory, NIGHTLAB_HOME or another protected place;
//   - what the caller mounts: its working directory, scratch, declared caches and read-only paths;
//   - GPU device nodes where asked; no network (a loopback of its own) unless asked; no
//     capabilities; a pid namespace (it cannot see, signal or ptrace the worker, and every process
//     it starts dies with it); no SSH agent, D-Bus, Docker or other sockets of the host.
// Where bubblewrap is missing or cannot create namespaces (some containers), `auto` runs without a
// sandbox and says so once in the worker's log and in every log; `required` refuses to run.
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { SandboxMode } from '../common/shared';
import { runCommand } from './spawn';
import { seccompProgram } from './seccomp';

export const INSTALL_HINT = 'apt-get install -y bubblewrap';

/** System directories visible read-only (those that exist; a merged-/usr symlink stays a symlink). */
const SYSTEM = [
  '/usr',
  '/bin',
  '/sbin',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/etc',
  '/opt',
  '/sys',
  '/nix/store',
  '/gnu/store',
];
/** Secrets of the system that no sandboxed process may read, even as root. */
const SYSTEM_SECRETS = [
  '/etc/shadow',
  '/etc/shadow-',
  '/etc/gshadow',
  '/etc/gshadow-',
  '/etc/ssh',
  '/etc/sudoers',
  '/etc/sudoers.d',
  '/etc/security/opasswd',
  '/etc/ssl/private',
  '/etc/docker',
  '/etc/containerd',
  '/etc/kubernetes',
  '/etc/nightlab',
];
/** Secrets inside tool folders the environment names, wherever those are. */
const TOOL_SECRETS: Record<string, string[]> = { HF_HOME: ['token', 'stored_tokens'] };
/** Secret stores under a home directory, masked wherever a mount exposes them (a declared ~/.cache, say). */
export const HOME_SECRETS = [
  '.ssh',
  '.gnupg',
  '.aws',
  '.azure',
  '.kube',
  '.docker',
  '.netrc',
  '.git-credentials',
  '.npmrc',
  '.pypirc',
  '.config/gcloud',
  '.config/gh',
  '.config/anthropic',
  '.anthropic',
  '.claude',
  '.claude.json',
  '.config/nightlab',
  '.cache/huggingface/token',
  '.cache/huggingface/stored_tokens',
  '.huggingface/token',
  '.cargo/credentials',
  '.cargo/credentials.toml',
  '.env',
  '.bash_history',
  '.zsh_history',
  '.python_history',
];

export type SandboxSupport = { ok: true; bwrap: string } | { ok: false; why: string };

let probed: Promise<SandboxSupport> | null = null;

/** Whether bubblewrap can sandbox a process on this host; probed once per process. */
export function sandboxSupport(): Promise<SandboxSupport> {
  if (!probed || (probedAt < Date.now() - RETRY_PROBE_MS && failed)) {
    probedAt = Date.now();
    probed = probe().then((s) => {
      failed = !s.ok;
      return s;
    });
  }
  return probed;
}

/** A failed probe (a host under load, a moment without namespaces) is tried again after this long. */
const RETRY_PROBE_MS = 60_000;
let probedAt = 0;
let failed = false;

/** For tests: forget the probe and the warning (e.g. after changing NIGHTLAB_BWRAP). */
export function resetSandboxProbe(): void {
  probed = null;
  warned = false;
}

async function probe(): Promise<SandboxSupport> {
  if (process.platform !== 'linux')
    return { ok: false, why: `sandboxing needs Linux (bubblewrap); this is ${process.platform}` };
  // NIGHTLAB_BWRAP names the binary (default: bwrap on PATH); tests point it nowhere to see the fallback.
  const bwrap = process.env.NIGHTLAB_BWRAP
    ? existsSync(process.env.NIGHTLAB_BWRAP)
      ? process.env.NIGHTLAB_BWRAP
      : null
    : findOnPath('bwrap', process.env.PATH);
  if (!bwrap) return { ok: false, why: `bubblewrap (bwrap) is not installed; install it with \`${INSTALL_HINT}\`` };
  // The same namespaces a run gets: if any of them is refused (no user namespaces, seccomp), say which.
  const r = await execa(bwrap, [...namespaceArgs(false), ...systemArgs(), '--', 'true'], {
    reject: false,
    timeout: 15_000,
    stdin: 'ignore',
    env: { PATH: '/usr/bin:/bin' },
    extendEnv: false,
  });
  if (r.exitCode === 0) return { ok: true, bwrap };
  const detail = (r.stderr || r.stdout || `exit ${r.exitCode}`).trim().split('\n').at(-1);
  return {
    ok: false,
    why: `bubblewrap cannot create a sandbox here (${detail}); user or network namespaces are not allowed here. In a container, allow user namespaces and a fresh /proc (Docker: security_opt seccomp=unconfined, apparmor=unconfined, systempaths=unconfined, as docker-compose.yml sets them); on a host, turn unprivileged user namespaces on (Ubuntu 23.10+: sysctl kernel.apparmor_restrict_unprivileged_userns=0); or set sandbox: off`,
  };
}

/** How a process is isolated: the sandbox to use, or why there is none (refuse: it may not run). */
export type SandboxDecision =
  | { kind: 'bwrap'; bwrap: string; header: string }
  | { kind: 'none'; header: string; warning: string | null }
  | { kind: 'refuse'; reason: string };

let warned = false;

/** Applies the config's mode to what this host supports; warns once per process when it falls back. */
export async function decideSandbox(
  mode: SandboxMode | undefined,
  warn: (line: string) => void = (l) => console.warn(l),
): Promise<SandboxDecision> {
  if (mode === 'off')
    return {
      kind: 'none',
      header:
        'sandbox: off (config sandbox: off); this process can reach the network, the held-out data, the records and the whole filesystem',
      warning: null,
    };
  const s = await sandboxSupport();
  if (s.ok)
    return {
      kind: 'bwrap',
      bwrap: s.bwrap,
      header:
        'sandbox: bubblewrap (allowlist: system read-only, no home, no network, private /tmp; writes only where Nightlab mounts them)',
    };
  if (mode === 'required') return { kind: 'refuse', reason: `sandbox required but unavailable: ${s.why}` };
  const install = s.why.includes(INSTALL_HINT)
    ? ''
    : ` Install bubblewrap (${INSTALL_HINT}) where namespaces are allowed.`;
  const warning = `WARNING: proposers and training runs are NOT sandboxed: ${s.why}. They can reach the network, read the held-out data and write outside their directories.${install} Set sandbox: off to accept this, or sandbox: required to refuse to run without a sandbox.`;
  if (!warned) {
    warned = true;
    warn(`nightlab: ${warning}`);
  }
  return {
    kind: 'none',
    header: `sandbox: NONE — ${s.why}; this process is not isolated (install bubblewrap: ${INSTALL_HINT})`,
    warning,
  };
}

/** A host path visible inside at the same place. */
export interface Mount {
  path: string;
  /** ro: read-only; rw: writable; tmpfs: an empty writable directory, gone with the sandbox. */
  mode: 'ro' | 'rw' | 'tmpfs';
}

export interface SandboxSpec {
  /** Working directory inside (one of the mounts). */
  cwd: string;
  /** Mounted after the system and the tools, in order: a later mount lies on top of an earlier one. */
  mounts: Mount[];
  /** The process's environment: PATH and the tool variables decide which tool directories are visible. */
  env: Record<string, string>;
  /** Places no tool path may expose (NIGHTLAB_HOME, the campaign repository): a PATH entry inside or above one is left out. */
  protect: string[];
  /** Declared host paths the process may read (config), `~` for HOME. */
  readOnly?: string[];
  /** Share the host's network namespace. Default: a loopback of its own and nothing else. */
  network?: boolean;
  /** NVIDIA device nodes: these (a slot's GPU and the control nodes), or every /dev/nvidia* (true). */
  gpus?: boolean | string[];
  /** The process is shown held-out inputs: it may take no file lock (lib/seccomp.ts). */
  noLocks?: boolean;
}

/** Bytes to write into the child's fd `fd` as it starts (bubblewrap reads its seccomp filter there). */
export interface Feed {
  fd: number;
  data: Buffer;
}

/**
 * bwrap's arguments for one process (its command follows `--`), the environment to give it, and
 * what to write into its fd `fdBase` (the seccomp filter; the caller's own pipes come before it).
 */
export async function sandboxArgs(
  spec: SandboxSpec,
  fdBase = 3,
): Promise<{ args: string[]; env: Record<string, string>; feed: Feed[] }> {
  const env = { ...spec.env };
  const args = [...namespaceArgs(spec.network ?? false)];
  const program = seccompProgram({ noLocks: spec.noLocks ?? false });
  const feed = program ? [{ fd: fdBase, data: program }] : [];
  if (program) args.push('--seccomp', String(fdBase));
  const devices = spec.gpus === true ? nvidiaDevices() : spec.gpus || [];
  for (const dev of devices) if (existsSync(dev)) args.push('--dev-bind', dev, dev);
  args.push(...systemArgs());
  // An empty home at the usual place: tools that write ~/.cache or ~/.config still work, and
  // nothing of the real one is there (the account's home too, when HOME names another place).
  const account = os.homedir();
  const given = env.HOME && path.isAbsolute(env.HOME) ? path.resolve(env.HOME) : null;
  const home = given && given !== '/' && !isSystem(given) ? given : '/home/nightlab';
  env.HOME = home;
  const homes = [...new Set([home, ...(account && account !== '/' && !isSystem(account) ? [account] : [])])];
  for (const h of homes) args.push('--tmpfs', h);
  const python = await interpreter(env);
  if (python) env.PATH = [python.bin, ...(env.PATH ?? '').split(':').filter((p) => p && p !== python.bin)].join(':');
  const exposed: string[] = [];
  const protect = spec.protect.map((p) => path.resolve(p));
  const forbidden = [...protect, ...homes];
  // A tool or declared path may not expose what it would contain or sit inside: "/" or "~" on PATH binds nothing.
  const allowed = (p: string) =>
    !forbidden.some((f) => f === p || isInside(f, p)) && !protect.some((f) => isInside(p, f));
  for (const p of [...toolPaths(env), ...(python?.prefixes ?? []), ...expandAll(spec.readOnly ?? [], home)]) {
    if (isSystem(p) || exposed.includes(p) || !existsSync(p) || !allowed(p)) continue;
    args.push('--ro-bind', p, p);
    exposed.push(p);
  }
  // A protected place that a system folder would show (NIGHTLAB_HOME under /opt, say) is hidden;
  // the caller's mounts inside it (the workspace) come after, on top.
  for (const p of protect)
    if (isDir(p) && (isSystem(p) || exposed.some((e) => isInside(p, e)))) args.push('--tmpfs', p);
  for (const m of spec.mounts) {
    if (m.mode === 'tmpfs') args.push('--tmpfs', m.path);
    else if (existsSync(m.path)) args.push(m.mode === 'rw' ? '--bind' : '--ro-bind', m.path, m.path);
  }
  // Secrets that a tool path or a declared path would expose (a declared ~/.cache holding a token).
  const secrets = [
    ...homes.flatMap((h) => HOME_SECRETS.map((rel) => path.join(h, rel))),
    ...Object.entries(TOOL_SECRETS).flatMap(([name, rels]) =>
      env[name] && path.isAbsolute(env[name]) ? rels.map((rel) => path.join(env[name], rel)) : [],
    ),
  ];
  for (const p of secrets) if (exposed.some((e) => e === p || isInside(p, e)) && existsSync(p)) args.push(...mask(p));
  args.push('--chdir', spec.cwd);
  return { args, env, feed };
}

/** Namespaces and hardening shared by every sandboxed process. */
function namespaceArgs(network: boolean): string[] {
  return [
    '--unshare-pid',
    '--unshare-ipc',
    '--unshare-uts',
    '--unshare-cgroup-try',
    ...(network ? [] : ['--unshare-net']),
    '--die-with-parent',
    '--cap-drop',
    'ALL',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--tmpfs',
    '/dev/shm',
    '--tmpfs',
    '/tmp',
    '--tmpfs',
    '/var/tmp',
  ];
}

let systemCache: string[] | null = null;
/** The system allowlist as bwrap arguments (computed once: these do not change under a worker). */
function systemArgs(): string[] {
  if (systemCache) return systemCache;
  const args: string[] = [];
  for (const p of SYSTEM) {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) args.push('--symlink', readlinkSync(p), p);
    else if (st.isDirectory()) args.push('--ro-bind', p, p);
  }
  for (const p of SYSTEM_SECRETS) if (existsSync(p)) args.push(...mask(p));
  systemCache = args;
  return args;
}

/** Hides a path: an empty read-only directory over a directory, /dev/null over anything else. */
function mask(p: string): string[] {
  return isDir(p) ? ['--tmpfs', p, '--remount-ro', p] : ['--ro-bind', '/dev/null', p];
}

function isSystem(p: string): boolean {
  return SYSTEM.some((s) => p === s || isInside(p, s));
}

/** `~` and `~/x` against HOME; other paths as given (absolute only). */
function expandAll(paths: string[], home: string | null): string[] {
  return paths
    .map((p) => (p === '~' ? home : p.startsWith('~/') ? (home ? path.join(home, p.slice(2)) : null) : p))
    .filter((p): p is string => !!p && path.isAbsolute(p))
    .map((p) => path.resolve(p));
}

/** Directories the environment's tools live in: PATH, library and interpreter variables. */
function toolPaths(env: Record<string, string>): string[] {
  const list = (v: string | undefined) => (v ?? '').split(path.delimiter).filter((p) => path.isAbsolute(p));
  return [
    ...list(env.PATH),
    ...list(env.PYTHONPATH),
    ...list(env.LD_LIBRARY_PATH),
    ...[env.VIRTUAL_ENV, env.CONDA_PREFIX, env.CUDA_HOME, env.CUDA_PATH, env.HF_HOME, env.UV_PYTHON].filter(
      (p): p is string => !!p && path.isAbsolute(p),
    ),
  ].map((p) => path.resolve(p));
}

const interpreters = new Map<string, Promise<{ bin: string; prefixes: string[] } | null>>();
/**
 * The Python that `python3` names on this PATH, resolved outside the sandbox: its bin directory
 * goes first on the sandbox's PATH and its prefixes are mounted, so a shim (pyenv, asdf) that
 * would need the rest of a home directory is never needed.
 */
function interpreter(env: Record<string, string>): Promise<{ bin: string; prefixes: string[] } | null> {
  const key = env.PATH ?? '';
  let found = interpreters.get(key);
  if (!found) {
    found = runCommand(
      ['python3', '-I', '-S', '-c', 'import sys; print(sys.executable); print(sys.prefix); print(sys.base_prefix)'],
      { cwd: '/', env: { PATH: key, ...(env.HOME ? { HOME: env.HOME } : {}) } },
    ).then(
      (r) => {
        const [exe, prefix, base] = r.stdout.toString('utf8').trim().split('\n');
        if (r.code !== 0 || !exe || !path.isAbsolute(exe)) return null;
        return {
          bin: path.dirname(exe),
          prefixes: [...new Set([prefix, base].filter((p) => p && path.isAbsolute(p)))],
        };
      },
      () => null,
    );
    interpreters.set(key, found);
  }
  return found;
}

/** A virtualenv's interpreter installation (pyvenv.cfg `home`), which its python symlinks into. */
export function venvHome(venv: string): string | null {
  try {
    const cfg = readFileSync(path.join(venv, 'pyvenv.cfg'), 'utf8');
    const home = /^home\s*=\s*(.+)$/m.exec(cfg)?.[1].trim();
    // home is the interpreter's bin directory: its installation is the parent.
    return home && path.isAbsolute(home) ? path.dirname(path.resolve(home)) : null;
  } catch {
    return null;
  }
}

function nvidiaDevices(): string[] {
  try {
    return readdirSync('/dev')
      .filter((d) => d.startsWith('nvidia'))
      .map((d) => path.join('/dev', d));
  } catch {
    return [];
  }
}

export function findOnPath(name: string, pathVar: string | undefined): string | null {
  for (const dir of (pathVar ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

export function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** True when `p` is strictly inside directory `dir`. */
export function isInside(p: string, dir: string): boolean {
  const rel = path.relative(dir, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/** The command line for `command` (a shell string) as the decision allows: inside bwrap, or bare. */
export async function confined(
  decision: SandboxDecision,
  spec: SandboxSpec,
  command: string,
  fdBase = 3,
): Promise<{ argv: string[]; env: Record<string, string>; feed: Feed[] }> {
  if (decision.kind !== 'bwrap') return { argv: ['/bin/sh', '-c', command], env: spec.env, feed: [] };
  const { args, env, feed } = await sandboxArgs(spec, fdBase);
  return { argv: [decision.bwrap, ...args, '--', '/bin/sh', '-c', command], env, feed };
}
