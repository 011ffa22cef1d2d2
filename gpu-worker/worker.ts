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
import { dataConverter } from '../lib/codec';
import { metricsInterceptor } from '../lib/telemetry';

/** A stopping worker lets a run finish for this long, then cancels it (it is retried on another worker). */
export const SHUTDOWN_GRACE = '10s';
/**
 * Heartbeats reach the server at least this often (the SDK's default is 80% of the 60 s heartbeat
 * timeout, 48 s, which leaves a live run only 12 s of network trouble before it is timed out).
 */
export const HEARTBEAT_THROTTLE = '10s';
/** A run that died of a signal waits this long for its worker's own stop to show before it counts. */
const SETTLE_MS = 2_000;

/**
 * The host's GPU slots, from `--gpus` and `--gpus-per-slot` within the GPUs the worker inherited.
 *
 * - An inherited CUDA_VISIBLE_DEVICES (a scheduler's allocation, a shell's export) bounds what the
 *   worker may use: with no `--gpus` it uses those; `--gpus all` means all of those; `--gpus 0,1`
 *   counts within them, as CUDA does (with CUDA_VISIBLE_DEVICES=2,3, `--gpus 0` is GPU 2).
 * - Indexes are nvidia-smi's (PCI bus order, which CUDA follows with CUDA_DEVICE_ORDER=PCI_BUS_ID);
 *   a slot names its GPUs by UUID, so no ordering can move a run onto another slot's GPU.
 * - `--gpus-per-slot N` groups the GPUs N at a time (torchrun over N GPUs); N must divide them.
 * - No GPU asked for: one CPU slot. `--gpus all` where nvidia-smi lists none is an error, not a CPU slot.
 */
export async function resolveSlots(
  gpus: string | undefined,
  perSlot = 1,
  visible = process.env.CUDA_VISIBLE_DEVICES,
): Promise<Slot[]> {
  const cpuOnly = gpus?.trim() === 'cpu' || (!gpus?.trim() && visible === undefined);
  return planSlots({ gpus, perSlot, visible }, cpuOnly ? [] : await gpuTable());
}

/** What the operator asked for: the worker's flags and the CUDA_VISIBLE_DEVICES it inherited. */
export interface SlotRequest {
  /** `--gpus`: nvidia-smi indexes or UUIDs (comma separated), all, cpu, or nothing. */
  gpus?: string;
  /** `--gpus-per-slot`: the GPUs each slot gets (default 1). */
  perSlot?: number;
  /** The inherited CUDA_VISIBLE_DEVICES, undefined when unset ("" or -1: no GPU). */
  visible?: string;
}

/** A request that cannot be met as written: a usage error, found before the worker connects. */
export class SlotsError extends Error {}

/** The slots for a request, given the host's GPU table (empty when nvidia-smi is not there): pure. */
export function planSlots(req: SlotRequest, table: GpuEntry[]): Slot[] {
  const perSlot = req.perSlot ?? 1;
  const ids = chosenGpus(req, table);
  if (!ids.length) {
    if (perSlot > 1)
      throw new SlotsError(`--gpus-per-slot ${perSlot}: this worker has no GPU to group (name them with --gpus)`);
    return [{ name: 'cpu', devices: null }];
  }
  if (ids.length % perSlot !== 0)
    throw new SlotsError(
      `--gpus-per-slot ${perSlot}: ${ids.length} GPU(s) (${ids.join(', ')}) do not divide into slots of ${perSlot}; ` +
        `use a count that divides ${ids.length}, or name a multiple of ${perSlot} GPUs with --gpus`,
    );
  const slots: Slot[] = [];
  for (let i = 0; i < ids.length; i += perSlot) slots.push(slotOf(ids.slice(i, i + perSlot), table));
  return slots;
}

/** The GPUs the worker uses, each by its nvidia-smi index where the table has it, else as written. */
function chosenGpus(req: SlotRequest, table: GpuEntry[]): string[] {
  const gpus = req.gpus?.trim();
  if (gpus === 'cpu') return [];
  const visible = req.visible === undefined ? null : visibleGpus(req.visible, table);
  const hidden = `CUDA_VISIBLE_DEVICES="${req.visible}" hides every GPU from this worker`;
  let ids: string[];
  if (!gpus) ids = visible ?? [];
  else if (gpus === 'all') {
    ids = visible ?? table.map((g) => g.index);
    if (visible?.length === 0) throw new SlotsError(`--gpus all: ${hidden}`);
    if (!ids.length)
      throw new Error(
        '--gpus all: nvidia-smi lists no GPU on this host (is the NVIDIA driver loaded? in a container, are GPUs ' +
          'reserved for it?); use --gpus cpu for a CPU slot',
      );
  } else {
    if (visible?.length === 0) throw new SlotsError(`--gpus ${gpus}: ${hidden}`);
    ids = gpus
      .split(',')
      .map((g) => g.trim())
      .filter(Boolean)
      .map((id) => pick(id, visible, req.visible, table));
  }
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice !== undefined) throw new SlotsError(`--gpus: GPU ${twice} is named twice (a GPU belongs to one slot)`);
  return ids;
}

const GPU_ID = /^(\d+|(GPU|MIG)-[\w/-]+)$/;

/** One `--gpus` entry: an index counts within the visible GPUs when CUDA_VISIBLE_DEVICES is set. */
function pick(id: string, visible: string[] | null, raw: string | undefined, table: GpuEntry[]): string {
  if (!GPU_ID.test(id)) throw new SlotsError(`--gpus: "${id}" is not a GPU index (use e.g. --gpus 0,1 or --gpus all)`);
  if (visible === null) return identify(id, table, '--gpus');
  const within = `the ${visible.length} GPU(s) that CUDA_VISIBLE_DEVICES=${raw} makes visible to this worker`;
  if (/^\d+$/.test(id)) {
    if (Number(id) < visible.length) return visible[Number(id)];
    throw new SlotsError(
      `--gpus: ${id} is not among ${within} (--gpus counts within them: 0 to ${visible.length - 1})`,
    );
  }
  const gpu = identify(id, table, '--gpus');
  if (!visible.includes(gpu)) throw new SlotsError(`--gpus: ${id} is not among ${within}`);
  return gpu;
}

/** The GPUs an inherited CUDA_VISIBLE_DEVICES leaves this worker ("", -1 and NoDevFiles: none). */
function visibleGpus(raw: string, table: GpuEntry[]): string[] {
  if (['', '-1', 'NoDevFiles'].includes(raw.trim())) return [];
  return raw.split(',').map((entry) => {
    const id = entry.trim();
    if (!GPU_ID.test(id))
      throw new SlotsError(`CUDA_VISIBLE_DEVICES="${raw}": "${id}" is not a GPU index or UUID (unset it, or fix it)`);
    return identify(id, table, `CUDA_VISIBLE_DEVICES="${raw}"`);
  });
}

/** A GPU's nvidia-smi index, found by index, UUID or a unique UUID prefix (as CUDA accepts). */
function identify(id: string, table: GpuEntry[], source: string): string {
  if (!table.length || id.startsWith('MIG-')) return id;
  const exact = table.find((g) => g.index === id || g.uuid === id);
  const prefixed = table.filter((g) => !/^\d+$/.test(id) && g.uuid.startsWith(id));
  const gpu = exact ?? (prefixed.length === 1 ? prefixed[0] : undefined);
  if (gpu) return gpu.index;
  throw new SlotsError(
    `${source}: no GPU ${id} on this host (nvidia-smi lists ${table.map((g) => g.index).join(', ')})`,
  );
}

/** A slot of one or more GPUs: named by their indexes, given by UUID, with their device nodes. */
function slotOf(ids: string[], table: GpuEntry[]): Slot {
  const name = `gpu${ids.join('+')}`.replace(/[^\w.+-]/g, '_');
  const devices = ids.map((id) => table.find((g) => g.index === id)?.uuid ?? id).join(',');
  return { name, devices, ...slotNodes(ids, table) };
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
 * The device nodes a slot's sandbox gets: its own GPUs' /dev/nvidiaN and the driver's control
 * nodes, never another slot's GPU. CUDA then numbers the GPUs it can open from 0, so the slot names
 * them by UUID. Nothing when the table does not know them all (the sandbox then shows every GPU, as before).
 */
export function slotNodes(ids: string | string[], gpus: GpuEntry[]): { devices?: string; nodes?: string[] } {
  const group = ([] as string[]).concat(ids).map((id) => gpus.find((g) => g.index === id || g.uuid === id));
  const known = group.filter((g): g is GpuEntry & { minor: number } => g !== undefined && g.minor !== null);
  if (!group.length || known.length < group.length) return {};
  return {
    devices: known.map((g) => g.uuid).join(','),
    nodes: [...known.map((g) => `/dev/nvidia${g.minor}`), ...CONTROL_NODES],
  };
}

/**
 * nvidia-smi's index and UUID of each GPU, with the minor number from /proc/driver/nvidia. nvidia-smi
 * numbers GPUs in PCI bus order whatever CUDA_DEVICE_ORDER says: the order slot indexes follow.
 */
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
    // Payloads encrypted when a key is configured; Nightlab's metrics counted as runs finish.
    dataConverter: dataConverter(),
    interceptors: { activity: [metricsInterceptor] },
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
