// A GPU worker's slots as ML users set up GPU hosts: `--gpus`, `--gpus-per-slot` (torchrun over several
// GPUs) and an inherited CUDA_VISIBLE_DEVICES. No GPU here: the host's table comes from a fake
// nvidia-smi (a real executable on PATH) and a fake /proc/driver/nvidia; the CLI is a real subprocess
// that must refuse what it cannot do with exit 2, before it connects to anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { gpuTable, planSlots, resolveSlots, SlotsError, type GpuEntry, type SlotRequest } from '../gpu-worker/worker';
import { ROOT, tempDir } from './helpers';

const BIN = path.join(ROOT, 'bin', 'nightlab.mjs');
const HOME = tempDir('nightlab-gpus-home-');
process.on('exit', () => rmSync(HOME, { recursive: true, force: true }));
const CONTROL = [
  '/dev/nvidiactl',
  '/dev/nvidia-uvm',
  '/dev/nvidia-uvm-tools',
  '/dev/nvidia-modeset',
  '/dev/nvidia-caps',
];

/** Four GPUs in PCI bus order; their device minors are not in that order (as on real hosts). */
const TABLE: GpuEntry[] = [
  { index: '0', uuid: 'GPU-0a0a0a0a-0000', minor: 1 },
  { index: '1', uuid: 'GPU-1b1b1b1b-1111', minor: 0 },
  { index: '2', uuid: 'GPU-2c2c2c2c-2222', minor: 3 },
  { index: '3', uuid: 'GPU-3d3d3d3d-3333', minor: 2 },
];

/** Each slot as "name devices nodes…" (the control nodes left out), for short assertions. */
function plan(req: SlotRequest, table = TABLE): string[] {
  return planSlots(req, table).map((s) =>
    [s.name, s.devices ?? '-', ...(s.nodes ?? ['(every node)']).filter((n) => !CONTROL.includes(n))].join(' '),
  );
}

function refused(req: SlotRequest, message: RegExp, table = TABLE): void {
  assert.throws(
    () => planSlots(req, table),
    (e: Error) => e instanceof SlotsError && message.test(e.message),
  );
}

/** A directory holding an `nvidia-smi` that lists the table, and a /proc/driver/nvidia/gpus for it. */
function fakeDriver(table: GpuEntry[]): { bin: string; proc: string; dir: string } {
  const dir = tempDir('nightlab-gpus-');
  const bin = path.join(dir, 'bin');
  const proc = path.join(dir, 'proc');
  mkdirSync(bin);
  const csv = table.map((g) => `${g.index}, ${g.uuid}`).join('\n');
  const indexes = table.map((g) => g.index).join('\n');
  writeFileSync(
    path.join(bin, 'nvidia-smi'),
    `#!/bin/sh\ncase "$1" in\n  --query-gpu=index,uuid) printf '%s\\n' '${csv}' ;;\n  --query-gpu=index) printf '%s\\n' '${indexes}' ;;\n  *) exit 9 ;;\nesac\n`,
  );
  chmodSync(path.join(bin, 'nvidia-smi'), 0o755);
  table.forEach((g, i) => {
    if (g.minor === null) return;
    mkdirSync(path.join(proc, `0000:0${i}:00.0`), { recursive: true });
    writeFileSync(
      path.join(proc, `0000:0${i}:00.0`, 'information'),
      `Model:\t\t NVIDIA H100\nIRQ:\t\t 42\nGPU UUID:\t ${g.uuid}\nDevice Minor:\t ${g.minor}\n`,
    );
  });
  return { bin, proc, dir };
}

/** `nightlab gpu-worker ...` with an unreachable server: a usage error must come before any connection. */
async function gpuWorker(args: string[], env: Record<string, string | undefined> = {}) {
  const base: Record<string, string | undefined> = {
    ...process.env,
    TEMPORAL_ADDRESS: '127.0.0.1:1',
    NIGHTLAB_HOME: HOME,
  };
  delete base.NODE_TEST_CONTEXT;
  delete base.CUDA_VISIBLE_DEVICES;
  return execa(process.execPath, [BIN, 'gpu-worker', ...args], {
    env: { ...base, ...env },
    extendEnv: false,
    reject: false,
    timeout: 60_000,
  });
}

test('one slot per GPU, named by nvidia-smi index, given its GPU by UUID and only its own device node', () => {
  assert.deepEqual(plan({ gpus: 'all' }), [
    'gpu0 GPU-0a0a0a0a-0000 /dev/nvidia1',
    'gpu1 GPU-1b1b1b1b-1111 /dev/nvidia0',
    'gpu2 GPU-2c2c2c2c-2222 /dev/nvidia3',
    'gpu3 GPU-3d3d3d3d-3333 /dev/nvidia2',
  ]);
  assert.deepEqual(plan({ gpus: '2, GPU-0a0a' }), [
    'gpu2 GPU-2c2c2c2c-2222 /dev/nvidia3',
    'gpu0 GPU-0a0a0a0a-0000 /dev/nvidia1',
  ]);
  assert.deepEqual(planSlots({ gpus: '1' }, TABLE)[0].nodes, ['/dev/nvidia0', ...CONTROL]);
  assert.deepEqual(plan({}), ['cpu - (every node)'], 'nothing asked and nothing inherited: one CPU slot');
  assert.deepEqual(plan({ gpus: 'cpu', visible: '0,1' }), ['cpu - (every node)']);
  // Without nvidia-smi the indexes are used as written, and the sandbox shows every GPU node.
  assert.deepEqual(plan({ gpus: '0,1' }, []), ['gpu0 0 (every node)', 'gpu1 1 (every node)']);
});

test('--gpus-per-slot groups the GPUs for torchrun and refuses a count that does not divide them', () => {
  assert.deepEqual(plan({ gpus: 'all', perSlot: 2 }), [
    'gpu0+1 GPU-0a0a0a0a-0000,GPU-1b1b1b1b-1111 /dev/nvidia1 /dev/nvidia0',
    'gpu2+3 GPU-2c2c2c2c-2222,GPU-3d3d3d3d-3333 /dev/nvidia3 /dev/nvidia2',
  ]);
  assert.deepEqual(plan({ gpus: 'all', perSlot: 4 }), [
    'gpu0+1+2+3 GPU-0a0a0a0a-0000,GPU-1b1b1b1b-1111,GPU-2c2c2c2c-2222,GPU-3d3d3d3d-3333 ' +
      '/dev/nvidia1 /dev/nvidia0 /dev/nvidia3 /dev/nvidia2',
  ]);
  refused({ gpus: 'all', perSlot: 3 }, /^--gpus-per-slot 3: 4 GPU\(s\) \(0, 1, 2, 3\) do not divide into slots of 3/);
  refused({ gpus: '0,1,2', perSlot: 2 }, /do not divide into slots of 2; use a count that divides 3/);
  refused({ perSlot: 2 }, /^--gpus-per-slot 2: this worker has no GPU to group/);
  refused({ gpus: '0,1,0' }, /^--gpus: GPU 0 is named twice/);
  refused({ gpus: '1,GPU-1b1b1b1b-1111' }, /GPU 1 is named twice/); // by index and by UUID
});

test('an inherited CUDA_VISIBLE_DEVICES bounds the worker, and --gpus counts within it as CUDA does', () => {
  assert.deepEqual(plan({ visible: '2,3' }), [
    'gpu2 GPU-2c2c2c2c-2222 /dev/nvidia3',
    'gpu3 GPU-3d3d3d3d-3333 /dev/nvidia2',
  ]);
  assert.deepEqual(plan({ gpus: 'all', visible: 'GPU-3d3d3d3d-3333,1' }), [
    'gpu3 GPU-3d3d3d3d-3333 /dev/nvidia2',
    'gpu1 GPU-1b1b1b1b-1111 /dev/nvidia0',
  ]);
  assert.deepEqual(
    plan({ gpus: '1', visible: '2,3' }),
    ['gpu3 GPU-3d3d3d3d-3333 /dev/nvidia2'],
    '--gpus 1 = 2nd visible',
  );
  assert.deepEqual(plan({ gpus: 'GPU-2c2c', visible: '2,3' }), ['gpu2 GPU-2c2c2c2c-2222 /dev/nvidia3']);
  assert.equal(plan({ visible: '0,1,2,3', perSlot: 2 }).length, 2);
  assert.deepEqual(plan({ visible: '' }), ['cpu - (every node)'], 'CUDA_VISIBLE_DEVICES="" hides every GPU');
  assert.deepEqual(plan({ visible: '-1' }), ['cpu - (every node)']);
  assert.deepEqual(plan({ visible: '1,0' }, []), ['gpu1 1 (every node)', 'gpu0 0 (every node)'], 'no nvidia-smi');
  refused({ gpus: '2', visible: '2,3' }, /^--gpus: 2 is not among the 2 GPU\(s\) that CUDA_VISIBLE_DEVICES=2,3 makes/);
  refused({ gpus: 'GPU-0a0a0a0a-0000', visible: '2,3' }, /^--gpus: GPU-0a0a0a0a-0000 is not among the 2 GPU/);
  refused({ gpus: 'all', visible: '' }, /^--gpus all: CUDA_VISIBLE_DEVICES="" hides every GPU/);
  refused({ gpus: '0', visible: '-1' }, /^--gpus 0: CUDA_VISIBLE_DEVICES="-1" hides every GPU/);
  refused({ visible: '0,gpu1' }, /^CUDA_VISIBLE_DEVICES="0,gpu1": "gpu1" is not a GPU index or UUID/);
  refused({ visible: '7' }, /^CUDA_VISIBLE_DEVICES="7": no GPU 7 on this host \(nvidia-smi lists 0, 1, 2, 3\)/);
});

test('GPUs that are not on the host, or not GPUs, are refused; --gpus all with none found is an error', () => {
  refused({ gpus: '4' }, /^--gpus: no GPU 4 on this host \(nvidia-smi lists 0, 1, 2, 3\)/);
  refused({ gpus: 'GPU-ffff' }, /^--gpus: no GPU GPU-ffff on this host/);
  refused({ gpus: 'zero' }, /^--gpus: "zero" is not a GPU index/);
  assert.throws(
    () => planSlots({ gpus: 'all' }, []),
    (e: Error) => !(e instanceof SlotsError) && /^--gpus all: nvidia-smi lists no GPU on this host/.test(e.message),
    'not a usage error: the host, not the command, is wrong',
  );
  // A MIG instance is passed to CUDA as written (nvidia-smi's GPU table does not list it).
  assert.deepEqual(plan({ visible: 'MIG-5c1a0a7e-aaaa' }), ['gpuMIG-5c1a0a7e-aaaa MIG-5c1a0a7e-aaaa (every node)']);
});

test("gpuTable reads nvidia-smi's indexes and UUIDs and the driver's device minors", async (t) => {
  const driver = fakeDriver([...TABLE.slice(0, 3), { ...TABLE[3], minor: null }]);
  t.after(() => rmSync(driver.dir, { recursive: true, force: true }));
  const path0 = process.env.PATH;
  process.env.PATH = `${driver.bin}${path.delimiter}${path0}`;
  try {
    const table = await gpuTable(driver.proc);
    assert.deepEqual(table, [...TABLE.slice(0, 3), { ...TABLE[3], minor: null }]);
    assert.deepEqual(
      planSlots({ gpus: 'all', perSlot: 2 }, table).map((s) => s.nodes?.length ?? 'every'),
      [2 + CONTROL.length, 'every'],
      'a slot whose minor is unknown falls back to every node, never to another slot only',
    );
    // resolveSlots asks the same nvidia-smi; the inherited CUDA_VISIBLE_DEVICES is its third argument.
    const slots = await resolveSlots(undefined, 1, '3,0');
    assert.deepEqual(
      slots.map((s) => [s.name, s.devices]),
      [
        ['gpu3', 'GPU-3d3d3d3d-3333'],
        ['gpu0', 'GPU-0a0a0a0a-0000'],
      ],
    );
  } finally {
    process.env.PATH = path0;
  }
});

test('gpu-worker refuses GPUs it cannot group or see with exit 2, before it connects', async (t) => {
  const driver = fakeDriver(TABLE);
  t.after(() => rmSync(driver.dir, { recursive: true, force: true }));
  const onPath = { PATH: `${driver.bin}${path.delimiter}${process.env.PATH}` };
  const cases: [string[], Record<string, string>, RegExp][] = [
    [['--gpus', 'all', '--gpus-per-slot', '3'], onPath, /--gpus-per-slot 3: 4 GPU\(s\) \(0, 1, 2, 3\) do not divide/],
    [['--gpus', '0,1,2', '--gpus-per-slot', '2'], onPath, /--gpus-per-slot 2: 3 GPU\(s\) \(0, 1, 2\) do not divide/],
    [['--gpus', '0,1,2'], { ...onPath, NIGHTLAB_GPUS_PER_SLOT: '2' }, /--gpus-per-slot 2: 3 GPU/],
    [['--gpus', '1'], { ...onPath, CUDA_VISIBLE_DEVICES: '3' }, /--gpus: 1 is not among the 1 GPU\(s\)/],
    [['--gpus', '9'], onPath, /--gpus: no GPU 9 on this host/],
    [['--gpus-per-slot', '0'], {}, /option '--gpus-per-slot <n>' argument '0' is invalid/],
  ];
  for (const [args, env, message] of cases) {
    const r = await gpuWorker(args, env);
    const shown = `gpu-worker ${args.join(' ')} ${JSON.stringify(env.CUDA_VISIBLE_DEVICES ?? '')}: exit ${r.exitCode}\n${r.stderr}`;
    assert.equal(r.exitCode, 2, shown);
    assert.match(r.stderr, /^nightlab: usage error: /, shown);
    assert.match(r.stderr, message, shown);
    assert.doesNotMatch(r.stderr, /Cannot reach/, shown);
  }
});
