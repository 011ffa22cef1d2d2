// The training sandbox: bubblewrap (`bwrap`, Debian package `bubblewrap`) on Linux.
//
// A training run executes code the proposer wrote. Inside the sandbox it:
//   - has no network (a network namespace of its own, with only a loopback nobody listens on);
//   - sees the filesystem read-only, with these hidden (empty): /tmp, NIGHTLAB_HOME (logs, ledgers,
//     the repository cache, other slots), the campaign repository when it is a local path, the
//     usual secret stores in the home directory (~/.ssh, ~/.aws, ~/.netrc, ...), and the held-out
//     data inside its worktree (config evaluate.heldOutPaths);
//   - may write only in its worktree and its run's scratch directory (output + TMPDIR), plus two
//     caches: the slot's compile cache (TRITON_CACHE_DIR, TORCHINDUCTOR_CACHE_DIR point there) and
//     uv's package cache, which `uv run` must lock even when nothing is installed;
//   - finds the worktree's existing .venv read-only, so it cannot plant code that the evaluation
//     (or a later run) would import;
//   - sees only its own processes (a pid namespace: not the worker's /proc/<pid>/environ), and
//     holds no capabilities, so it cannot undo any of this with mount(2), even as root.
// The evaluation runs in the same sandbox with the held-out data visible, the worktree and the
// run's output read-only, and a scratch TMPDIR of its own.
//
// Where bubblewrap is missing or cannot create namespaces (some containers), `auto` runs without a
// sandbox and says so once in the worker's log and in every run's log; `required` refuses to run.
import { existsSync, lstatSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { SandboxMode } from '../common/shared';

export const INSTALL_HINT = 'apt-get install -y bubblewrap';

export type SandboxSupport = { ok: true; bwrap: string } | { ok: false; why: string };

let probed: Promise<SandboxSupport> | null = null;

/** Whether bubblewrap can sandbox a run on this host; probed once per process. */
export function sandboxSupport(): Promise<SandboxSupport> {
  probed ??= probe();
  return probed;
}

/** For tests: forget the probe and the warning (e.g. after changing NIGHTLAB_BWRAP). */
export function resetSandboxProbe(): void {
  probed = null;
  warned = false;
}

async function probe(): Promise<SandboxSupport> {
  if (process.platform !== 'linux') return { ok: false, why: `sandboxing needs Linux (bubblewrap); this is ${process.platform}` };
  // NIGHTLAB_BWRAP names the binary (default: bwrap on PATH); tests point it nowhere to see the fallback.
  const bwrap = process.env.NIGHTLAB_BWRAP ? (existsSync(process.env.NIGHTLAB_BWRAP) ? process.env.NIGHTLAB_BWRAP : null) : findOnPath('bwrap');
  if (!bwrap) return { ok: false, why: `bubblewrap (bwrap) is not installed; install it with \`${INSTALL_HINT}\`` };
  // The same namespaces a run gets: if any of them is refused (no user namespaces, seccomp), say which.
  const r = await execa(bwrap, [...baseArgs(), '--', 'true'], { reject: false, timeout: 15_000, stdin: 'ignore' });
  if (r.exitCode === 0) return { ok: true, bwrap };
  const detail = (r.stderr || r.stdout || `exit ${r.exitCode}`).trim().split('\n').at(-1);
  return { ok: false, why: `bubblewrap cannot create a sandbox here (${detail}); user or network namespaces are probably not allowed in this container` };
}

function findOnPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
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

/** Namespaces and hardening shared by every sandboxed process. */
function baseArgs(): string[] {
  return ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--unshare-net', '--unshare-pid', '--unshare-ipc', '--die-with-parent', '--cap-drop', 'ALL'];
}

/** Secret stores in a home directory that no run has any business reading. */
const HOME_SECRETS = [
  '.ssh', '.gnupg', '.aws', '.azure', '.kube', '.docker', '.netrc', '.git-credentials', '.npmrc', '.pypirc',
  '.config/gcloud', '.config/gh', '.config/anthropic', '.anthropic', '.claude', '.claude.json', '.config/nightlab',
  '.cache/huggingface/token', '.huggingface/token',
];

/** Environments inside a worktree that a training run may use but not change. */
const WORKTREE_ENVS = ['.venv'];

export interface SandboxSpec {
  /** The run's worktree: writable for training, read-only for the evaluation. */
  worktree: string;
  /** Directories the process may write (the run's output and TMPDIR for training; the evaluation's TMPDIR). */
  writable: string[];
  /** Directories visible read-only (the run's output, for the evaluation). */
  readOnly?: string[];
  /** Directories hidden whole: NIGHTLAB_HOME, a local campaign repository. */
  hide: string[];
  /** Paths inside the worktree hidden from this process (held-out data, for training). */
  hideInWorktree: string[];
  /** The evaluation reads the worktree but may not change it. */
  worktreeReadOnly?: boolean;
  /** Caches the process may write, wherever they are (the slot's compile cache). */
  caches?: string[];
  /** The process's environment: its tool paths (PATH, VIRTUAL_ENV, ...) stay visible even inside a hidden directory. */
  env: Record<string, string>;
}

/** bwrap's arguments for one process (the command follows `--`). */
export function bwrapArgs(spec: SandboxSpec): string[] {
  const args = baseArgs();
  // GPUs: the minimal /dev has none of NVIDIA's device nodes.
  for (const dev of nvidiaDevices()) args.push('--dev-bind', dev, dev);
  args.push('--tmpfs', '/dev/shm');
  const hidden = ['/tmp', ...spec.hide.filter((p) => existsSync(p)).map((p) => path.resolve(p))];
  for (const secret of HOME_SECRETS) {
    const p = path.join(os.homedir(), secret);
    if (existsSync(p)) hidden.push(p);
  }
  // A hidden directory becomes an empty tmpfs: what a run writes there vanishes with the sandbox.
  for (const p of hidden) args.push(...(isDir(p) ? ['--tmpfs', p] : ['--ro-bind', '/dev/null', p]));
  // Interpreters and environments that live inside a hidden directory (a venv under /tmp, say).
  const keep = [spec.worktree, ...spec.writable, ...(spec.readOnly ?? []), ...hidden];
  for (const p of toolPaths(spec.env)) {
    const inside = hidden.some((h) => isInside(p, h));
    const holdsSomething = keep.some((k) => k === p || isInside(k, p));
    if (inside && !holdsSomething && existsSync(p)) args.push('--ro-bind', p, p);
  }
  for (const p of [...(spec.caches ?? []), ...uvCache(spec.env)]) if (existsSync(p)) args.push('--bind', p, p);
  args.push(spec.worktreeReadOnly ? '--ro-bind' : '--bind', spec.worktree, spec.worktree);
  if (!spec.worktreeReadOnly) {
    for (const rel of WORKTREE_ENVS) {
      const p = path.join(spec.worktree, rel);
      if (isDir(p)) args.push('--ro-bind', p, p);
    }
  }
  for (const p of spec.readOnly ?? []) args.push('--ro-bind', p, p);
  for (const p of spec.writable) args.push('--bind', p, p);
  for (const rel of spec.hideInWorktree) {
    const p = path.join(spec.worktree, rel);
    if (!existsSync(p)) continue;
    if (isDir(p)) args.push('--tmpfs', p, '--remount-ro', p);
    else args.push('--ro-bind', '/dev/null', p);
  }
  args.push('--chdir', spec.worktree);
  return args;
}

/** How a run is isolated: the sandbox to use, or why there is none (null when it may not run). */
export type SandboxDecision =
  | { kind: 'bwrap'; bwrap: string; header: string }
  | { kind: 'none'; header: string; warning: string | null }
  | { kind: 'refuse'; reason: string };

let warned = false;

/** Applies the config's mode to what this host supports; warns once per process when it falls back. */
export async function decideSandbox(mode: SandboxMode | undefined, warn: (line: string) => void = (l) => console.warn(l)): Promise<SandboxDecision> {
  if (mode === 'off') return { kind: 'none', header: 'sandbox: off (config sandbox: off); the run can reach the network, the held-out data and the whole filesystem', warning: null };
  const s = await sandboxSupport();
  if (s.ok) return { kind: 'bwrap', bwrap: s.bwrap, header: 'sandbox: bubblewrap (no network; held-out data, NIGHTLAB_HOME and secrets hidden; writes only in the worktree and scratch)' };
  if (mode === 'required') return { kind: 'refuse', reason: `sandbox required but unavailable: ${s.why}` };
  const install = s.why.includes(INSTALL_HINT) ? '' : ` Install bubblewrap (${INSTALL_HINT}) where namespaces are allowed.`;
  const warning = `WARNING: training runs are NOT sandboxed: ${s.why}. Runs can reach the network, read the held-out data and write outside their worktree.${install} Set sandbox: off to accept this, or sandbox: required to refuse to run without a sandbox.`;
  if (!warned) {
    warned = true;
    warn(`nightlab gpu-worker: ${warning}`);
  }
  return { kind: 'none', header: `sandbox: NONE — ${s.why}; this run is not isolated (install bubblewrap: ${INSTALL_HINT})`, warning };
}

/** uv's cache directory (as uv finds it), when the process's environment would use one. */
function uvCache(env: Record<string, string>): string[] {
  if (env.UV_CACHE_DIR) return [path.resolve(env.UV_CACHE_DIR)];
  const base = env.XDG_CACHE_HOME || (env.HOME ? path.join(env.HOME, '.cache') : null);
  return base ? [path.join(base, 'uv')] : [];
}

function nvidiaDevices(): string[] {
  try {
    return readdirSync('/dev').filter((d) => d.startsWith('nvidia')).map((d) => path.join('/dev', d));
  } catch {
    return [];
  }
}

function toolPaths(env: Record<string, string>): string[] {
  const list = (v: string | undefined) => (v ?? '').split(path.delimiter).filter((p) => path.isAbsolute(p));
  return [
    ...list(env.PATH), ...list(env.PYTHONPATH), ...list(env.LD_LIBRARY_PATH),
    ...[env.VIRTUAL_ENV, env.CONDA_PREFIX, env.CUDA_HOME, env.CUDA_PATH, env.HF_HOME, env.UV_PYTHON].filter((p): p is string => !!p && path.isAbsolute(p)),
  ].map((p) => path.resolve(p));
}

function isDir(p: string): boolean {
  try {
    return lstatSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** True when `p` is strictly inside directory `dir`. */
function isInside(p: string, dir: string): boolean {
  const rel = path.relative(dir, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}
