// Short commands (git, the preflight's compile) started through a small helper process.
//
// Why: Node starts a child by forking the whole worker, and a fork costs more the more memory the
// worker maps: about 3 ms at 50 MB, 10-20 ms at 200-400 MB (an orchestrator with many campaigns,
// a GPU worker). An experiment runs about fifteen such commands, most of them on the way from one
// run to the next. The helper (spawn-helper.py: python3, a few MB) starts them for us in 1-2 ms.
// Where python3 cannot start it, or it dies, commands are started directly, as before.
// Training runs never go through here: they need process groups, streaming and signals (execa).
import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

const HELPER = fileURLToPath(new URL('./spawn-helper.py', import.meta.url));
/** After this many helper deaths, this process starts its commands directly. */
const MAX_HELPER_STARTS = 5;
const MAX_OUTPUT = 512 * 1024 * 1024;

export interface CommandResult {
  /** Exit status; null when a signal ended the command. */
  code: number | null;
  stdout: Buffer;
  stderr: Buffer;
}

export interface CommandOptions {
  cwd: string;
  /** The command's whole environment (nothing is inherited). */
  env: Record<string, string>;
  input?: string;
}

/** PATH, HOME and LANG of this process: enough for git and python. */
export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'LANG']) if (process.env[k]) env[k] = process.env[k]!;
  return env;
}

let interpreter: Promise<string> | undefined;
/** The interpreter behind `python3` on PATH, resolved once: a pyenv or asdf shim costs ~100 ms a call. */
export function pythonExecutable(): Promise<string> {
  interpreter ??= runCommand(['python3', '-I', '-S', '-c', 'import sys; print(sys.executable)'], {
    cwd: process.cwd(),
    env: baseEnv(),
  }).then(
    (r) => (r.code === 0 && r.stdout.toString('utf8').trim()) || 'python3',
    () => 'python3',
  );
  return interpreter;
}

/** Runs `argv` to completion. Rejects only when it cannot be started (e.g. ENOENT), like execFile. */
export function runCommand(argv: string[], opts: CommandOptions): Promise<CommandResult> {
  const h = helper();
  return h ? h.run(argv, opts) : runDirect(argv, opts);
}

function runDirect(argv: string[], opts: CommandOptions): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      argv[0],
      argv.slice(1),
      { cwd: opts.cwd, env: opts.env, encoding: 'buffer', maxBuffer: MAX_OUTPUT },
      (err, stdout, stderr) => {
        const code = (err as { code?: unknown } | null)?.code;
        if (err && typeof code !== 'number' && !(err as { signal?: unknown }).signal) reject(err);
        else resolve({ code: err ? (typeof code === 'number' ? code : null) : 0, stdout, stderr });
      },
    );
    if (opts.input !== undefined) {
      child.stdin?.on('error', () => {}); // a command exiting early is reported by its exit status
      child.stdin?.end(opts.input);
    }
  });
}

interface Pending {
  argv: string[];
  opts: CommandOptions;
  resolve: (r: CommandResult) => void;
  reject: (e: Error) => void;
}

class Helper {
  private pending = new Map<number, Pending>();
  get pid(): number | undefined {
    return this.child.pid;
  }
  private nextId = 1;
  private buffered = '';
  dead = false;

  constructor(private child: ChildProcessByStdio<Writable, Readable, null>) {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => this.onData(chunk));
    child.stdin.on('error', () => {}); // reported by 'exit'
    // No pid: python3 could not be started, so nothing ran yet.
    child.on('error', (e) => this.die(e, child.pid === undefined));
    child.on('exit', (code, signal) => this.die(new Error(`the command helper exited (${signal ?? code})`)));
    child.stdout.on('close', () => this.die(new Error('the command helper exited (its output closed)')));
    this.setRef();
  }

  run(argv: string[], opts: CommandOptions): Promise<CommandResult> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { argv, opts, resolve, reject });
      this.setRef();
      const input = opts.input === undefined ? null : Buffer.from(opts.input).toString('base64');
      this.child.stdin.write(`${JSON.stringify({ id, argv, cwd: opts.cwd, env: opts.env, input })}\n`);
    });
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      const reply = JSON.parse(line) as {
        id: number;
        code?: number;
        out?: string;
        err?: string;
        error?: string;
        errno?: number;
      };
      const p = this.pending.get(reply.id);
      if (!p) continue;
      this.pending.delete(reply.id);
      if (reply.error !== undefined) {
        p.reject(Object.assign(new Error(reply.error), { code: reply.errno === 2 ? 'ENOENT' : 'ESPAWN' }));
      } else {
        // Python reports death by signal N as -N.
        const code = reply.code! < 0 ? null : reply.code!;
        p.resolve({ code, stdout: Buffer.from(reply.out!, 'base64'), stderr: Buffer.from(reply.err!, 'base64') });
      }
    }
    this.setRef();
  }

  private die(err: Error, neverStarted = false): void {
    if (this.dead) return;
    this.dead = true;
    if (neverStarted) starts = MAX_HELPER_STARTS; // no python3 here: start commands directly from now on
    for (const p of this.pending.values()) {
      // Before the helper ran, nothing ran: start the commands directly. Later, a command in
      // flight may or may not have run: its caller fails, and the activity is retried.
      if (neverStarted) runDirect(p.argv, p.opts).then(p.resolve, p.reject);
      else p.reject(err);
    }
    this.pending.clear();
  }

  /** A helper with commands in flight keeps the worker's event loop alive; an idle one never does. */
  private setRef(): void {
    const out = this.child.stdout as unknown as Socket;
    if (this.pending.size) {
      this.child.ref();
      out.ref();
    } else {
      this.child.unref();
      out.unref();
    }
    (this.child.stdin as unknown as Socket).unref();
  }
}

let current: Helper | null = null;
let starts = 0;

/** The helper's pid, once one runs (tests kill it to see a death handled). */
export function helperPid(): number | undefined {
  return current && !current.dead ? current.pid : undefined;
}

function helper(): Helper | null {
  if (current && !current.dead) return current;
  if (process.env.NIGHTLAB_DIRECT_SPAWN === '1' || starts >= MAX_HELPER_STARTS) return null;
  starts += 1;
  // -I -S: none of the environment's Python settings, no site packages. Its own environment is
  // minimal: each command gets the environment its caller gives.
  try {
    // Its stderr is the worker's: a traceback there is a bug in the helper.
    current = new Helper(
      spawn('python3', ['-I', '-S', '-u', HELPER], { env: baseEnv(), stdio: ['pipe', 'pipe', 'inherit'] }),
    );
  } catch {
    current = null;
  }
  return current;
}
