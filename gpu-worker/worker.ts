// The GPU worker: the host's GPU slots on the GPU task queue, one experiment per slot.
import { closeInheritedFds } from '../lib/supervise';
import { Worker, type NativeConnection } from '@temporalio/worker';
import { ApplicationFailure } from '@temporalio/activity';
import os from 'node:os';
import path from 'node:path';
import { readdirSync, readFileSync } from 'node:fs';
import { execa } from 'execa';
import { GPU_TASK_QUEUE, DEFAULT_NAMESPACE, OLD_RUN_ACTIVITY, RUN_ACTIVITY } from '../common/shared';
import type { RunActivities, RunRequest, RunResult } from '../common/shared';
import { createGpuActivities, type GpuActivities, type Slot } from './run';

/** A stopping worker lets a run finish for this long, then cancels it (it is retried on another worker). */
export const SHUTDOWN_GRACE = '10s';
/**
 * Heartbeats reach the server at least this often (the SDK's default is 80% of the 60 s heartbeat
 * timeout, 48 s, which leaves a live run only 12 s of network trouble before it is timed out).
 */
export const HEARTBEAT_THROTTLE = '10s';
/** A run that died of a signal waits this long for its worker's own stop to show before it counts. */
const SETTLE_MS = 2_000;

/** `--gpus 0,1` → two slots; `--gpus all` → every GPU nvidia-smi lists; none → one CPU slot. */
export async function resolveSlots(gpus: string | undefined): Promise<Slot[]> {
  let ids: string[];
  if (gpus === undefined || gpus === '' || gpus === 'cpu') ids = [];
  else if (gpus === 'all') ids = await listGpus();
  else
    ids = gpus
      .split(',')
      .map((g) => g.trim())
      .filter(Boolean);
  for (const id of ids)
    if (!/^\d+$/.test(id) && !/^GPU-[\w-]+$/.test(id))
      throw new Error(`--gpus: "${id}" is not a GPU index (use e.g. --gpus 0,1 or --gpus all)`);
  if (!ids.length) return [{ name: 'cpu', devices: null }];
  const table = await gpuTable();
  return ids.map((id) => ({ name: `gpu${id}`, devices: id, ...slotNodes(id, table) }));
}

/** A GPU as the driver lists it: nvidia-smi's index and UUID, and its device node's minor number. */
export interface GpuEntry {
  index: string;
  uuid: string;
  minor: number | null;
}

const CONTROL_NODES = [
  '/dev/nvidiactl',
  '/dev/nvidia-uvm',
  '/dev/nvidia-uvm-tools',
  '/dev/nvidia-modeset',
  '/dev/nvidia-caps',
];

/**
 * The device nodes a slot's sandbox gets: its own GPU's /dev/nvidiaN and the driver's control
 * nodes, never another slot's GPU. CUDA then numbers the one GPU it can open 0, so the slot names
 * it by UUID. Nothing when the table is unknown (the sandbox then shows every GPU, as before).
 */
export function slotNodes(id: string, gpus: GpuEntry[]): { devices?: string; nodes?: string[] } {
  const gpu = gpus.find((g) => g.index === id || g.uuid === id);
  if (!gpu || gpu.minor === null) return {};
  return { devices: gpu.uuid, nodes: [`/dev/nvidia${gpu.minor}`, ...CONTROL_NODES] };
}

/** nvidia-smi's index and UUID of each GPU, with the minor number from /proc/driver/nvidia. */
export async function gpuTable(procDir = '/proc/driver/nvidia/gpus'): Promise<GpuEntry[]> {
  let listed: string;
  try {
    listed = (await execa('nvidia-smi', ['--query-gpu=index,uuid', '--format=csv,noheader'], { timeout: 10_000 }))
      .stdout;
  } catch {
    return [];
  }
  const minors = new Map<string, number>();
  try {
    for (const bus of readdirSync(procDir)) {
      const info = readFileSync(path.join(procDir, bus, 'information'), 'utf8');
      const uuid = /^GPU UUID:\s*(\S+)/m.exec(info)?.[1];
      const minor = /^Device Minor:\s*(\d+)/m.exec(info)?.[1];
      if (uuid && minor) minors.set(uuid, Number(minor));
    }
  } catch {
    // no /proc/driver/nvidia: minors unknown
  }
  return listed
    .split('\n')
    .map((l) => l.split(',').map((x) => x.trim()))
    .filter(([i, u]) => i && u)
    .map(([index, uuid]) => ({ index, uuid, minor: minors.get(uuid) ?? null }));
}

export async function listGpus(): Promise<string[]> {
  try {
    const r = await execa('nvidia-smi', ['--query-gpu=index', '--format=csv,noheader'], { timeout: 10_000 });
    return r.stdout
      .split('\n')
      .map((s) => s.trim())
      .filter(Boolean);
  } catch {
    return [];
  }
}

/**
 * One Temporal worker per host on the GPU task queue, running at most one experiment per slot:
 * a host with N GPUs trains N experiments at once and never two on one GPU.
 */
export async function createGpuWorkers(opts: {
  connection: NativeConnection;
  home: string;
  slots: Slot[];
  namespace?: string;
  taskQueue?: string;
  host?: string;
}): Promise<Worker[]> {
  // What this process inherited would reach every proposer and run it starts.
  closeInheritedFds();
  let worker: Worker | undefined;
  const stopping = () => worker !== undefined && worker.getState() !== 'RUNNING';
  const gpu = retryWhenStopping(createGpuActivities({ home: opts.home, slots: opts.slots, host: opts.host }), stopping);
  const run = gpu.run;
  // The run under both of its names: campaigns started before the rename schedule `runExperiment`.
  const activities: RunActivities = { [RUN_ACTIVITY]: run, [OLD_RUN_ACTIVITY]: run };
  worker = await Worker.create({
    connection: opts.connection,
    namespace: opts.namespace ?? DEFAULT_NAMESPACE,
    taskQueue: opts.taskQueue ?? GPU_TASK_QUEUE,
    activities,
    maxConcurrentActivityTaskExecutions: opts.slots.length,
    // A stopping worker (Ctrl-C, SIGTERM) gives its runs this long, then cancels them: their
    // process groups are killed and the attempts fail as "worker shutting down", so Temporal
    // retries them on another worker at once instead of waiting for the heartbeat timeout.
    shutdownGraceTime: SHUTDOWN_GRACE,
    maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    identity: `${opts.host ?? os.hostname()}/${process.pid}/${opts.slots.map((s) => s.name).join(',')}`,
  });
  return [worker];
}

/**
 * A run that ended badly while its worker was stopping died with the worker, not of its code: the
 * same SIGTERM reached both (systemd stops a unit's whole cgroup; a cluster drains a node), or the
 * run was cut short by the stop. It is not a crash of the candidate: the attempt fails and Temporal
 * runs it again on a worker that stays up. A run that dies of a signal just before its worker hears
 * of the stop gets a moment for the stop to show.
 */
export function retryWhenStopping(
  activities: GpuActivities,
  stopping: () => boolean,
  settleMs = SETTLE_MS,
): GpuActivities {
  return {
    ...activities,
    async run(req: RunRequest): Promise<RunResult> {
      const r = await activities.run(req);
      if (r.outcome === 'ok') return r;
      if (!stopping() && diedOfSignal(r)) {
        const until = Date.now() + settleMs;
        while (!stopping() && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      if (!stopping()) return r;
      throw ApplicationFailure.retryable(
        `the GPU worker was stopping when experiment ${req.experiment} run ${req.run} ended (${r.outcome}: ${r.reason}); it runs again on another worker`,
        'WorkerStopping',
      );
    },
  };
}

/** Killed by a signal: no exit code, or a shell's 128 + signal number. */
function diedOfSignal(r: RunResult): boolean {
  return r.exitCode === null || r.exitCode > 128;
}
