// Process supervision for everything a proposer wrote (training runs, evaluations' model code,
// command proposers): each in its own process group (inside the sandbox when there is one), its
// output streamed to a log whose size is capped, a beat every few seconds, and the whole group
// killed at the timeout or on cancel: SIGTERM, then SIGKILL after a grace period. Nothing it leaves
// behind outlives it: its group is killed when it exits, and in the sandbox its pid namespace too.
// Records and logs are private to the worker's user: files 0600 in folders 0700.
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
  writeFileSync,
  readSync,
} from 'node:fs';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';

const BEAT_MS = 5_000;
/** After SIGTERM, the process group gets this long before SIGKILL. */
export const KILL_GRACE_MS = 5_000;
/** After the process exits, its output pipes get this long to drain. */
const STREAM_GRACE_MS = 2_000;
/** A capped log keeps this much of its end, where the summary block is. */
export const LOG_TAIL_BYTES = 64 * 1024;
/** Default cap of one log (config run.maxLogMb). */
export const DEFAULT_MAX_LOG_BYTES = 64 * 1024 * 1024;

/**
 * Closes the descriptors this process inherited from whatever started it (a supervisor's pipe, an
 * open file): every child would inherit them in turn, sandboxed processes included. Node's own
 * descriptors are close-on-exec; one without that flag came from outside. Called once per worker.
 */
export function closeInheritedFds(): number[] {
  const closed: number[] = [];
  let fds: string[];
  try {
    fds = readdirSync('/proc/self/fd');
  } catch {
    return closed; // no /proc (macOS): nothing to do here
  }
  for (const name of fds) {
    const fd = Number(name);
    if (!(fd > 2) || String(fd) === process.env.NODE_CHANNEL_FD) continue;
    try {
      const flags = /^flags:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
      if (flags && (parseInt(flags, 8) & 0o2000000) === 0) {
        closeSync(fd);
        closed.push(fd);
      }
    } catch {
      // gone already (the directory's own descriptor)
    }
  }
  return closed;
}

/** A directory only the worker's user can enter (made, or tightened when it exists). */
export function privateDir(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    if ((statSync(dir).mode & 0o077) !== 0) chmodSync(dir, 0o700);
  } catch {
    // not ours to change (a shared mount): left as it is
  }
  return dir;
}

/** Writes a file only the worker's user can read. */
export function writePrivate(file: string, data: string | Buffer): void {
  privateDir(path.dirname(file));
  writeFileSync(file, data, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/**
 * A log file capped at `maxBytes` per attempt: the first part is written as it comes; past the cap
 * only the last LOG_TAIL_BYTES are kept (in memory), written at the end after a marker, so the
 * final summary block always survives. Opened in append mode: a retried attempt follows the last.
 */
export class CappedLog {
  private fd: number;
  private written = 0;
  private dropped = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private closed = false;
  constructor(
    readonly file: string,
    private readonly maxBytes = DEFAULT_MAX_LOG_BYTES,
  ) {
    privateDir(path.dirname(file));
    this.fd = openSync(file, 'a', 0o600);
    chmodSync(file, 0o600);
  }

  write(chunk: Buffer | string): void {
    if (this.closed) return;
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const room = Math.max(0, this.maxBytes - LOG_TAIL_BYTES - this.written);
    if (room > 0) {
      const head = buf.subarray(0, room);
      writeSync(this.fd, head);
      this.written += head.length;
    }
    const rest = buf.subarray(Math.min(room, buf.length));
    if (!rest.length) return;
    this.tail.push(rest);
    this.tailBytes += rest.length;
    while (this.tailBytes - this.tail[0].length >= LOG_TAIL_BYTES) {
      this.tailBytes -= this.tail[0].length;
      this.dropped += this.tail.shift()!.length;
    }
  }

  /** Writes what was held back (after a marker if anything was dropped) and closes the file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    let tail = Buffer.concat(this.tail);
    if (tail.length > LOG_TAIL_BYTES) {
      this.dropped += tail.length - LOG_TAIL_BYTES;
      tail = tail.subarray(tail.length - LOG_TAIL_BYTES);
    }
    if (this.dropped)
      writeSync(
        this.fd,
        `\n=== nightlab: log capped at ${this.maxBytes} bytes: ${this.dropped} bytes left out here; the last ${tail.length} follow ===\n`,
      );
    if (tail.length) writeSync(this.fd, tail);
    closeSync(this.fd);
  }
}

export interface ProcessRun {
  exitCode: number | null;
  signal: string | null;
  /** Why Nightlab killed it: its hard timeout, a cancel, or an early stop (`stop`). */
  killedFor: KillReason | null;
  seconds: number;
  /** The last line it printed (200 characters at most). */
  lastLine: string;
}

export type KillReason = 'timeout' | 'cancelled' | 'stopped';

export interface SuperviseOptions {
  /** The program and its arguments (bwrap ... -- /bin/sh -c command, or /bin/sh -c command). */
  argv: string[];
  cwd: string;
  /** Its whole environment: nothing of the worker's is inherited. */
  env: Record<string, string>;
  timeoutSec: number;
  /** Cancels the process (its whole group is killed). */
  signal?: AbortSignal;
  /** Where its stdout and stderr go. */
  log: CappedLog;
  /** Records the group while it runs, so a worker that dies leaves an orphan the next one can reap. */
  pidFile?: string;
  /** Called every few seconds and once at the start, with the last line it printed. */
  onBeat?: (elapsedSec: number, lastLine: string) => void;
  /** Every chunk of its output as it comes (progress lines are read from it). */
  onOutput?: (chunk: string) => void;
  /** Extra pipes at fd 3, 4, ...: handed back in `child.stdio`. */
  extraPipes?: number;
  /** Bytes written into some of those pipes as the process starts, then closed (a seccomp filter). */
  feed?: { fd: number; data: Buffer }[];
}

/** Starts a supervised process; `done` settles when it has exited and its group is gone. */
export function supervise(o: SuperviseOptions): {
  child: ResultPromise;
  done: Promise<ProcessRun>;
  /** Kills its whole group now (an early stop); `done` then reports `killedFor: 'stopped'`. */
  stop: () => void;
} {
  const started = Date.now();
  const fds = Math.max(o.extraPipes ?? 0, ...(o.feed ?? []).map((f) => f.fd - 2));
  const extra = Array.from({ length: fds }, () => 'pipe' as const);
  const child = execa(o.argv[0], o.argv.slice(1), {
    cwd: o.cwd,
    env: o.env,
    extendEnv: false,
    detached: true, // its own process group, so the whole tree can be killed
    reject: false,
    buffer: false,
    stdio: ['ignore', 'pipe', 'pipe', ...extra],
  });
  for (const f of o.feed ?? []) {
    const pipe = child.stdio[f.fd] as unknown as NodeJS.WritableStream & { on(e: 'error', l: () => void): void };
    pipe.on('error', () => {}); // a process that died at once is reported by its exit
    pipe.end(f.data);
  }
  if (o.pidFile) writePrivate(o.pidFile, pidRecord(child.pid!));
  let lastLine = '';
  const onData = (chunk: Buffer) => {
    o.log.write(chunk);
    const text = chunk.toString();
    o.onOutput?.(text);
    const lines = text.split(/[\r\n]+/).filter((l) => l.trim());
    if (lines.length) lastLine = lines.at(-1)!.slice(0, 200);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);

  let killedFor: ProcessRun['killedFor'] = null;
  let exited = false;
  const killGroup = (why: KillReason) => {
    // A process that has exited is not killed for anything (output read after its exit stops nothing).
    if (killedFor || exited) return;
    killedFor = why;
    signalGroup(child.pid!, 'SIGTERM');
    setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), KILL_GRACE_MS).unref();
  };
  const timer = setTimeout(() => killGroup('timeout'), o.timeoutSec * 1000);
  const onCancel = () => killGroup('cancelled');
  if (o.signal?.aborted) onCancel();
  o.signal?.addEventListener('abort', onCancel);
  const beat = o.onBeat
    ? setInterval(() => o.onBeat!(Math.round((Date.now() - started) / 1000), lastLine), BEAT_MS)
    : null;
  o.onBeat?.(0, 'started');

  const done = (async (): Promise<ProcessRun> => {
    // Over when the process exits, not when its pipes close: a child that escaped the group
    // (setsid) could hold them open for ever.
    const streamsClosed = child.then(
      () => undefined,
      () => undefined,
    );
    const exit = await new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      child.once('exit', (code, signal) => {
        exited = true;
        resolve({ code, signal });
      });
      child.once('error', () => resolve({ code: null, signal: null }));
    });
    clearTimeout(timer);
    if (beat) clearInterval(beat);
    o.signal?.removeEventListener('abort', onCancel);
    // Stragglers (children that outlived the shell) go with the group.
    signalGroup(child.pid!, 'SIGKILL');
    await Promise.race([streamsClosed, new Promise((r) => setTimeout(r, STREAM_GRACE_MS))]);
    child.stdout?.destroy();
    child.stderr?.destroy();
    if (o.pidFile) rmSync(o.pidFile, { force: true });
    return { exitCode: exit.code, signal: exit.signal, killedFor, seconds: (Date.now() - started) / 1000, lastLine };
  })();
  return { child, done, stop: () => killGroup('stopped') };
}

export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/**
 * What a pid file holds: the process group, and what tells that process apart from a later one
 * given the same number (after a reboot, or once pids wrap): this boot's id and the leader's start
 * time, both from /proc (null where there is none, as on macOS).
 */
interface PidRecord {
  pid: number;
  boot: string | null;
  start: string | null;
}

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/** The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat); null when it is gone or there is no /proc. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

export function pidRecord(pid: number): string {
  return JSON.stringify({ pid, boot: bootId(), start: startTime(pid) } satisfies PidRecord);
}

/**
 * A process group left behind by a worker that died: killed before its slot is reused. Only when
 * it is that group: a pid file that outlived a reboot, or whose number now belongs to another
 * process, is dropped without a signal (a blind SIGKILL there could hit anything).
 */
export function reapOrphan(pidFile: string): number | null {
  if (!existsSync(pidFile)) return null;
  const text = readFileSync(pidFile, 'utf8').trim();
  rmSync(pidFile, { force: true });
  // A bare number: written by a version before the record (no way to check; the old behaviour).
  const rec: PidRecord = /^\d+$/.test(text) ? { pid: Number(text), boot: null, start: null } : parseRecord(text);
  if (!Number.isInteger(rec.pid) || rec.pid <= 1) return null;
  if (rec.boot !== null && rec.boot !== bootId()) return null;
  // The leader may be gone while the rest of its group lives on; the kernel does not hand out a
  // pid still in use as a group id, so a leader that exists must be the one recorded.
  const start = startTime(rec.pid);
  if (rec.start !== null && start !== null && start !== rec.start) return null;
  try {
    process.kill(-rec.pid, 0);
  } catch {
    return null;
  }
  signalGroup(rec.pid, 'SIGKILL');
  return rec.pid;
}

function parseRecord(text: string): PidRecord {
  try {
    const r = JSON.parse(text) as Partial<PidRecord>;
    return { pid: Number(r.pid), boot: r.boot ?? null, start: r.start ?? null };
  } catch {
    return { pid: NaN, boot: null, start: null };
  }
}

/** The last `bytes` of a file (a log's summary block is at its end). */
export function readEnd(file: string, bytes: number): string {
  const size = statSync(file).size;
  const fd = openSync(file, 'r');
  try {
    const length = Math.min(size, bytes);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** `text` cut to `max` characters with a marker saying how much was left out. */
export function bounded(text: string, max: number): string {
  if (text.length <= max) return text;
  const marker = ` … [cut: ${text.length - max} more characters]`;
  return text.slice(0, Math.max(0, max - marker.length)) + marker;
}
