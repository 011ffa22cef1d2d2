// How a run ended (classify), the environment a run gets, and reaping an orphaned run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { classify } from '../gpu-worker/outcome';
import { pidRecord, reapOrphan } from '../lib/supervise';
import { spawn } from 'node:child_process';
import { trainingEnv } from '../gpu-worker/env';
import { tempDir } from './helpers';

const RUN = {
  exitCode: 0,
  signal: null,
  killedFor: null,
  metric: 1.0,
  tail: 'step 1\n---\nval_bpb: 1.0',
  timeoutSec: 30,
  command: 'python3 train.py',
  metricName: 'val_bpb',
} as Parameters<typeof classify>[0];

test('classify: timeout, command not found, out of memory, crash, no metric, ok', () => {
  const t = classify({ ...RUN, killedFor: 'timeout', exitCode: null, signal: 'SIGTERM', metric: null });
  assert.equal(t.outcome, 'timeout');
  assert.match(t.reason, /hard timeout of 30 s/);
  assert.equal(
    classify({ ...RUN, killedFor: 'timeout', exitCode: 137, metric: null }).outcome,
    'timeout',
    'the timeout kill is not an OOM',
  );

  const nf = classify({
    ...RUN,
    exitCode: 127,
    metric: null,
    tail: 'sh: 1: pythn3: not found',
    command: 'pythn3 train.py',
  });
  assert.equal(nf.outcome, 'crash');
  assert.match(nf.reason, /command not found \(exit 127\): pythn3 train\.py/);

  const oomText = classify({
    ...RUN,
    exitCode: 1,
    metric: null,
    tail: 'Traceback\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB',
  });
  assert.equal(oomText.outcome, 'oom');
  assert.match(oomText.reason, /out of memory: torch\.OutOfMemoryError/);
  assert.equal(
    classify({ ...RUN, exitCode: 137, metric: null, tail: 'step 5' }).outcome,
    'oom',
    'exit 137: killed by the OOM killer',
  );
  assert.equal(classify({ ...RUN, exitCode: null, signal: 'SIGKILL', metric: null, tail: 'step 5' }).outcome, 'oom');

  const crash = classify({
    ...RUN,
    exitCode: 1,
    metric: null,
    tail: 'Traceback\nRuntimeError: boom: the model diverged\n',
  });
  assert.equal(crash.outcome, 'crash');
  assert.equal(crash.reason, 'exit 1: RuntimeError: boom: the model diverged');
  assert.equal(
    classify({ ...RUN, exitCode: 2, metric: 1.0 }).outcome,
    'crash',
    'a metric does not excuse a failing exit',
  );

  const nm = classify({ ...RUN, exitCode: 0, metric: null, tail: 'step 1' });
  assert.equal(nm.outcome, 'no-metric');
  assert.match(nm.reason, /exited 0 but printed no val_bpb/);

  assert.deepEqual(classify(RUN), { outcome: 'ok', reason: '' });
});

test('classify: a run that exits 0 with a metric is ok even if its log mentions memory trouble', () => {
  const r = classify({ ...RUN, tail: 'warning: CUDA out of memory, retrying with a smaller batch\n---\nval_bpb: 1.0' });
  assert.equal(r.outcome, 'ok');
});

test('trainingEnv: secrets on the worker never reach the run; PATH does; CUDA_VISIBLE_DEVICES is the slot', () => {
  const saved = { ...process.env };
  try {
    process.env.ANTHROPIC_API_KEY = 'sk-ant-unit-secret';
    process.env.GITHUB_TOKEN = 'ghp_unit';
    process.env.HF_TOKEN = 'hf_unit';
    process.env.AWS_SECRET_ACCESS_KEY = 'aws';
    process.env.SOME_RANDOM_VAR = 'not on the allowlist';
    process.env.CUDA_VISIBLE_DEVICES = '0,1,2,3';
    process.env.PATH = '/opt/unit/bin:/usr/bin';

    const cpu = trainingEnv({ QUAD_SLEEP: '1', MY_TOKEN: 'from-config' }, null);
    for (const k of [
      'ANTHROPIC_API_KEY',
      'GITHUB_TOKEN',
      'HF_TOKEN',
      'AWS_SECRET_ACCESS_KEY',
      'SOME_RANDOM_VAR',
      'MY_TOKEN',
    ]) {
      assert.equal(cpu[k], undefined, `${k} must not pass`);
    }
    assert.ok(!Object.values(cpu).some((v) => /sk-ant|ghp_|hf_unit/.test(v)), 'no secret value under any name');
    assert.equal(cpu.PATH, '/opt/unit/bin:/usr/bin');
    assert.equal(cpu.QUAD_SLEEP, '1', "the config's own env passes");
    assert.equal(cpu.CUDA_VISIBLE_DEVICES, '', 'a CPU slot sees no GPU, whatever the worker had');
    assert.equal(cpu.PYTHONUNBUFFERED, '1');
    assert.equal(cpu.CUDA_DEVICE_ORDER, 'PCI_BUS_ID', "device numbers in nvidia-smi's order");

    const gpu = trainingEnv({ CUDA_VISIBLE_DEVICES: '0,1' }, '2');
    assert.equal(gpu.CUDA_VISIBLE_DEVICES, '2', 'the slot decides the device, not the config');
    assert.equal(gpu.ANTHROPIC_API_KEY, undefined);
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
});

test('reapOrphan kills the run recorded in run.pid, and nothing that only shares its number (another boot, another process)', async () => {
  const dir = tempDir();
  const pidFile = path.join(dir, 'run.pid');
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const orphan = () => {
    const child = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    child.unref();
    return child.pid!;
  };
  const gone = async (pid: number) => {
    for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 20));
    return !alive(pid);
  };
  const pids: number[] = [];
  try {
    const pid = orphan();
    pids.push(pid);
    const rec = JSON.parse(pidRecord(pid));
    assert.equal(rec.pid, pid);
    if (existsSync('/proc/self/stat')) assert.match(String(rec.start), /^\d+$/);

    // Written before a reboot: the number may now be anyone's.
    writeFileSync(pidFile, JSON.stringify({ ...rec, boot: 'another-boot' }));
    assert.equal(reapOrphan(pidFile), null);
    assert.equal(existsSync(pidFile), false, 'the stale record is dropped');
    // The number was handed to a process started later.
    if (rec.start !== null) {
      writeFileSync(pidFile, JSON.stringify({ ...rec, start: String(Number(rec.start) - 1) }));
      assert.equal(reapOrphan(pidFile), null);
    }
    assert.ok(alive(pid), 'neither record killed the process');

    // The run's own record: its group is killed.
    writeFileSync(pidFile, pidRecord(pid));
    assert.equal(reapOrphan(pidFile), pid);
    assert.ok(await gone(pid));
    // A bare number, as versions before the record wrote it, is still reaped.
    const old = orphan();
    pids.push(old);
    writeFileSync(pidFile, String(old));
    assert.equal(reapOrphan(pidFile), old);
    assert.ok(await gone(old));
    assert.equal(reapOrphan(pidFile), null, 'no file, nothing to do');
  } finally {
    for (const p of pids)
      try {
        process.kill(-p, 'SIGKILL');
      } catch {
        /* gone */
      }
    rmSync(dir, { recursive: true, force: true });
  }
});
