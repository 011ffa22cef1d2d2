// The GPU worker: one Temporal worker per GPU slot on the GPU task queue, each taking one
// experiment at a time, so a host with N GPUs runs N experiments and never two on one GPU.
import { Worker, type NativeConnection } from '@temporalio/worker';
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

export async function createGpuWorkers(opts: {
  connection: NativeConnection;
  home: string;
  slots: Slot[];
  namespace?: string;
  taskQueue?: string;
  host?: string;
}): Promise<Worker[]> {
  return Promise.all(
    opts.slots.map((slot) =>
      Worker.create({
        connection: opts.connection,
        namespace: opts.namespace ?? DEFAULT_NAMESPACE,
        taskQueue: opts.taskQueue ?? GPU_TASK_QUEUE,
        activities: createGpuActivities({ home: opts.home, slot, host: opts.host }),
        maxConcurrentActivityTaskExecutions: 1,
        // A stopping worker cancels its run; the experiment is retried elsewhere, not recorded as a crash.
        shutdownGraceTime: '10s',
        identity: `${opts.host ?? process.pid}-${slot.name}`,
      }),
    ),
  );
}
