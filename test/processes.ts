// Real processes for fault injection: a private Temporal dev server (its own port and SQLite file,
// killable with any signal and restartable on the same database), `nightlab worker` and
// `nightlab gpu-worker` as subprocesses, and a training wrapper that reports its pid and can be
// held mid-run, so a test kills things at a moment it chooses. Used by test/faults.test.ts,
// bench/recovery.ts and test/record-history.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTemporalCli } from '../ops/temporal-cli';
import { portOpen, prepareNamespace, probe } from '../ops/server';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'nightlab.mjs');

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A child process we started: its output, its exit, and kill-by-pid. */
export interface Proc {
  name: string;
  pid: number;
  child: ChildProcess;
  output(): string;
  exited: Promise<Exit>;
  alive(): boolean;
  /** Sends the signal and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<Exit>;
}

function track(name: string, child: ChildProcess, logFile?: string): Proc {
  let out = '';
  let dead = false;
  const onData = (d: Buffer) => {
    out = (out + d.toString()).slice(-200_000);
    if (logFile) appendFileSync(logFile, d);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<Exit>((resolve) =>
    child.on('exit', (code, signal) => {
      dead = true;
      resolve({ code, signal });
    }),
  );
  return {
    name,
    pid: child.pid!,
    child,
    output: () => out,
    exited,
    alive: () => !dead,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (!dead) child.kill(signal);
      return exited;
    },
  };
}

/** True while a process (or, with group, its process group) exists. */
export function pidAlive(pid: number, group = false): boolean {
  try {
    process.kill(group ? -pid : pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A port (and the next one) nobody listens on, from a range no other suite uses. */
export async function freePort(from = 40_000, span = 8_000): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = from + Math.floor(Math.random() * span);
    if (!(await portOpen('127.0.0.1', port, 300))) return port;
  }
  throw new Error('no free port found');
}

/**
 * A Temporal dev server of one test's own: SQLite in `dir`, headless, on a free port. `kill()` and
 * `start()` take it down and bring it back on the same database and port.
 */
export class PrivateServer {
  proc: Proc | null = null;
  readonly dbFile: string;
  readonly address: string;
  private constructor(
    readonly cli: string,
    readonly dir: string,
    readonly port: number,
    readonly dynamicConfig: Record<string, unknown>,
  ) {
    this.dbFile = path.join(dir, 'temporal.db');
    this.address = `127.0.0.1:${port}`;
  }

  static async create(
    dir: string,
    opts: { port?: number; dynamicConfig?: Record<string, unknown> } = {},
  ): Promise<PrivateServer> {
    const cli = await findTemporalCli({ install: true });
    mkdirSync(dir, { recursive: true });
    const s = new PrivateServer(cli.path, dir, opts.port ?? (await freePort()), opts.dynamicConfig ?? {});
    await s.start();
    return s;
  }

  async start(timeoutMs = 120_000): Promise<void> {
    if (this.proc?.alive()) throw new Error('server already running');
    const args = [
      'server',
      'start-dev',
      '--db-filename',
      this.dbFile,
      '--ip',
      '127.0.0.1',
      '--port',
      String(this.port),
      '--headless',
      '--namespace',
      'default',
      '--log-level',
      'warn',
    ];
    for (const [k, v] of Object.entries(this.dynamicConfig))
      args.push('--dynamic-config-value', `${k}=${JSON.stringify(v)}`);
    const proc = track(
      'temporal',
      spawn(this.cli, args, { stdio: ['ignore', 'pipe', 'pipe'] }),
      path.join(this.dir, 'server.log'),
    );
    this.proc = proc;
    const deadline = Date.now() + timeoutMs;
    while ((await probe(this.address)) !== 'temporal') {
      if (!proc.alive()) throw new Error(`the Temporal server exited while starting: ${proc.output().slice(-2000)}`);
      if (Date.now() > deadline) {
        await proc.kill('SIGKILL');
        throw new Error(`the Temporal server did not answer at ${this.address} within ${timeoutMs / 1000} s`);
      }
      await sleep(200);
    }
    await prepareNamespace(this.address);
  }

  /** SIGKILL (a crash) or SIGINT (a clean stop); waits for the process to be gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.proc) return;
    const proc = this.proc;
    const t = signal === 'SIGKILL' ? null : setTimeout(() => proc.child.kill('SIGKILL'), 15_000);
    await proc.kill(signal);
    if (t) clearTimeout(t);
    this.proc = null;
  }

  async close(removeData = true): Promise<void> {
    await this.kill('SIGINT');
    if (removeData) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `nightlab <args>` as a subprocess with its own environment (TEMPORAL_ADDRESS, NIGHTLAB_HOME, ...). */
export function nightlab(args: string[], env: Record<string, string>, logFile?: string): Proc {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return track(`nightlab ${args[0]}`, child, logFile);
}

const READY = { worker: /Orchestrator worker on/, 'gpu-worker': /GPU worker on/ } as const;

/** Starts `nightlab worker` or `nightlab gpu-worker` and waits until it polls (its "... worker on" line). */
export async function startWorker(
  kind: keyof typeof READY,
  env: Record<string, string>,
  args: string[] = [],
  logFile?: string,
): Promise<Proc> {
  const p = nightlab([kind, ...args], env, logFile);
  const deadline = Date.now() + 180_000;
  while (!READY[kind].test(p.output())) {
    if (!p.alive()) throw new Error(`nightlab ${kind} exited while starting:\n${p.output().slice(-3000)}`);
    if (Date.now() > deadline) {
      await p.kill('SIGKILL');
      throw new Error(`nightlab ${kind} did not start within 180 s:\n${p.output().slice(-3000)}`);
    }
    await sleep(100);
  }
  return p;
}

/**
 * A training wrapper around `python3 train.py`: the python process appends its pid to $NL_PIDS and,
 * while the file $NL_HOLD exists, writes its pid to $NL_HELD and waits before training. A test
 * creates the hold file, waits for the held pid, and kills whatever it likes mid-run.
 */
export class TrainingHold {
  readonly pids: string;
  readonly hold: string;
  readonly held: string;
  readonly script: string;
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    this.pids = path.join(dir, 'pids');
    this.hold = path.join(dir, 'hold');
    this.held = path.join(dir, 'held');
    this.script = path.join(dir, 'hold.py');
    writeFileSync(
      this.script,
      `import os, runpy, sys, time
pid = os.getpid()
with open(os.environ["NL_PIDS"], "a") as f:
    f.write(f"{pid}\\n")
hold = os.environ["NL_HOLD"]
if os.path.exists(hold):
    with open(os.environ["NL_HELD"], "w") as f:
        f.write(str(pid))
    while os.path.exists(hold):
        time.sleep(0.1)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
`,
    );
  }

  /** The run config: `python3 hold.py train.py` with the hold's files in its environment. */
  run(env: Record<string, string> = {}, timeoutSec = 300) {
    return {
      command: `exec python3 ${this.script} train.py`,
      env: { ...env, NL_PIDS: this.pids, NL_HOLD: this.hold, NL_HELD: this.held },
      timeoutSec,
    };
  }

  /** From now on, runs wait before training. */
  engage(): void {
    rmSync(this.held, { force: true });
    writeFileSync(this.hold, '');
  }

  /** Lets waiting runs (and later ones) train. */
  release(): void {
    rmSync(this.hold, { force: true });
  }

  /** The pid of the run that is waiting (after `engage`). */
  async heldPid(timeoutMs = 120_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (existsSync(this.held)) {
        const pid = Number(readFileSync(this.held, 'utf8'));
        if (pid > 0) return pid;
      }
      if (Date.now() > deadline) throw new Error('no run reached the hold');
      await sleep(100);
    }
  }

  /** Every training process started so far, in order. */
  startedPids(): number[] {
    return existsSync(this.pids) ? readFileSync(this.pids, 'utf8').split('\n').filter(Boolean).map(Number) : [];
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
