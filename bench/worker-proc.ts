// A Nightlab worker in a process of its own, for bench:scale (so its memory can be read apart from
// the bench's, and because the SDK allows one worker per task queue per process):
//
//   node --import tsx bench/worker-proc.ts '<json>'
//     { "role": "orchestrator" | "gpu", "address": "...", "taskQueue": "...", "home": "...",
//       "slots": 32, "proposerLatencyMs": 0, "activities": 8 }
// `activities` (orchestrator only) overrides the orchestrator worker's DEFAULT_MAX_ACTIVITIES
// concurrent activities, to measure what that limit costs.
//
// Prints "ready" when polling; shuts down cleanly on SIGTERM or SIGINT.
import { createOrchestratorWorker } from '../workers/orchestrator';
import { createGpuWorkers } from '../gpu-worker/worker';
import { benchConnections, slotNames, slowMutate } from './lib';

interface Spec {
  role: 'orchestrator' | 'gpu';
  address: string;
  taskQueue: string;
  home: string;
  slots?: number;
  proposerLatencyMs?: number;
  activities?: number;
}

const spec: Spec = JSON.parse(process.argv[2] ?? '{}');
const conn = await benchConnections(spec.address);
const deps = { proposers: slowMutate(spec.proposerLatencyMs ?? 0) };
const workers =
  spec.role === 'gpu'
    ? await createGpuWorkers({
        connection: conn.connection,
        home: spec.home,
        slots: slotNames(spec.slots ?? 1),
        taskQueue: spec.taskQueue,
      })
    : [
        await createOrchestratorWorker({
          connection: conn.connection,
          taskQueue: spec.taskQueue,
          deps,
          maxActivities: spec.activities,
        }),
      ];
const running = Promise.allSettled(workers.map((w) => w.run()));
const stop = () => workers.forEach((w) => w.shutdown());
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
console.log('ready');
await running;
await conn.close();
process.exit(0);
