// The GPU worker: the host's GPU slots on the GPU task queue, one experiment per slot.
import { Worker, type NativeConnection } from '@temporalio/worker';
import os from 'node:os';
import { execa } from 'execa';
import { GPU_TASK_QUEUE, DEFAULT_NAMESPACE } from '../common/shared';
import { createGpuActivities, type Slot } from './run';

/** `--gpus 0,1` → two slots; `--gpus all` → every GPU nvidia-smi lists; none → one CPU slot. */
export async function resolveSlots(gpus: string | undefined): Promise<Slot[]> {
  let ids: string[];
  if (gpus === undefined || gpus === '' || gpus === 'cpu') ids = [];
  else if (gpus === 'all') ids = await listGpus();
  else ids = gpus.split(',').map((g) => g.trim()).filter(Boolean);
  for (const id of ids) if (!/^\d+$/.test(id) && !/^GPU-[\w-]+$/.test(id)) throw new Error(`--gpus: "${id}" is not a GPU index (use e.g. --gpus 0,1 or --gpus all)`);
  return ids.length ? ids.map((id) => ({ name: `gpu${id}`, devices: id })) : [{ name: 'cpu', devices: null }];
}

export async function listGpus(): Promise<string[]> {
  try {
    const r = await execa('nvidia-smi', ['--query-gpu=index', '--format=csv,noheader'], { timeout: 10_000 });
    return r.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
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
  return [
    await Worker.create({
      connection: opts.connection,
      namespace: opts.namespace ?? DEFAULT_NAMESPACE,
      taskQueue: opts.taskQueue ?? GPU_TASK_QUEUE,
      activities: createGpuActivities({ home: opts.home, slots: opts.slots, host: opts.host }),
      maxConcurrentActivityTaskExecutions: opts.slots.length,
      // A stopping worker cancels its runs; the experiments are retried elsewhere, not recorded as crashes.
      shutdownGraceTime: '10s',
      identity: `${opts.host ?? os.hostname()}/${process.pid}/${opts.slots.map((s) => s.name).join(',')}`,
    }),
  ];
}
