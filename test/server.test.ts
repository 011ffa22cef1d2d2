// The local Temporal server from nothing: finding the CLI, `nightlab server` persistence across a
// restart, reuse of a running server, and clear errors for a busy port or a missing CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { symlinkSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Connection, Client } from '@temporalio/client';
import { findTemporalCli, TemporalCliMissing } from '../ops/temporal-cli';
import { RETENTION_DAYS } from '../ops/server';
import { SEARCH_ATTRIBUTES } from '../common/shared';
import { ROOT, tempDir, waitFor } from './helpers';

const BIN = path.join(ROOT, 'bin', 'nightlab.mjs');

function nightlab(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): { child: ChildProcess; output: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exit };
}

test('the Temporal CLI is found in order: TEMPORAL_CLI, PATH, cache', async () => {
  const real = await findTemporalCli({ install: false });
  assert.match(real.version, /temporal version/);
  const viaEnv = await findTemporalCli({ env: { ...process.env, TEMPORAL_CLI: real.path } });
  assert.equal(viaEnv.source, 'TEMPORAL_CLI');
  const cacheDir = tempDir();
  mkdirSync(path.join(cacheDir, 'bin'));
  symlinkSync(real.path, path.join(cacheDir, 'bin', 'temporal'));
  const cached = await findTemporalCli({ cacheDir, env: { PATH: '/nonexistent' } });
  assert.equal(cached.source, 'cache');
  assert.equal(cached.path, path.join(cacheDir, 'bin', 'temporal'));
  const notExec = path.join(cacheDir, 'not-a-binary');
  writeFileSync(notExec, 'hello');
  await assert.rejects(findTemporalCli({ env: { TEMPORAL_CLI: notExec } }), /TEMPORAL_CLI=.*is not an executable file/);
});

test('no Go and no internet: setup says exactly how to install the CLI', async () => {
  const cacheDir = tempDir();
  await assert.rejects(
    findTemporalCli({
      install: true,
      cacheDir,
      env: { PATH: '/nonexistent', HOME: cacheDir },
      downloadUrl: 'http://127.0.0.1:1/cli',
    }),
    (e: Error) => {
      assert.ok(e instanceof TemporalCliMissing);
      assert.match(e.message, /Go is not installed/);
      assert.match(e.message, /download from http:\/\/127\.0\.0\.1:1\/cli.* failed/);
      assert.match(e.message, /install Go >= 1\.25/);
      assert.match(e.message, /TEMPORAL_CLI=/);
      return true;
    },
  );
  // The same through the command line: exit status 1 (a failure while running) and the message, nothing started.
  const r = nightlab(['setup'], {
    PATH: path.dirname(process.execPath),
    XDG_CACHE_HOME: cacheDir,
    TEMPORAL_CLI: '',
    NIGHTLAB_TEMPORAL_DOWNLOAD_URL: 'http://127.0.0.1:1/cli',
  });
  assert.equal(await r.exit, 1);
  assert.match(r.output(), /Could not get the Temporal CLI/);
});

test('nightlab server keeps workflows across a restart, registers search attributes and 30-day retention, and reuses a running server', async () => {
  const dataDir = tempDir();
  const port = 27233 + Math.floor(Math.random() * 500);
  const address = `127.0.0.1:${port}`;
  const args = ['server', '--port', String(port), '--ui-port', String(port + 1000), '--data-dir', dataDir];
  let s = nightlab(args);
  try {
    await waitFor('server up', () => /Temporal server at/.test(s.output()) || s.child.exitCode !== null, 120_000);
    assert.match(s.output(), new RegExp(`Web UI at http://127.0.0.1:${port + 1000}`));
    const connection = await Connection.connect({ address });
    const client = new Client({ connection });
    await client.workflow.start('campaign', { workflowId: 'survives-restart', taskQueue: 'nobody-listens', args: [] });
    const ns = await connection.workflowService.describeNamespace({ namespace: 'default' });
    assert.ok(Number(ns.config!.workflowExecutionRetentionTtl!.seconds) >= RETENTION_DAYS * 86400);
    const attrs = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
    for (const name of Object.keys(SEARCH_ATTRIBUTES)) assert.ok(name in attrs.customAttributes!, `${name} registered`);
    await connection.close();

    // A second `nightlab server` on the same address reuses the running one.
    const again = nightlab(args);
    assert.equal(await again.exit, 0);
    assert.match(again.output(), /already runs at/);

    // Ctrl-C stops it cleanly; the same database brings the workflow back.
    s.child.kill('SIGINT');
    assert.equal(await s.exit, 0);
    s = nightlab(args);
    await waitFor('server up again', () => /Temporal server at/.test(s.output()), 120_000);
    const c2 = await Connection.connect({ address });
    const desc = await new Client({ connection: c2 }).workflow.getHandle('survives-restart').describe();
    assert.equal(desc.status.name, 'RUNNING');
    await c2.close();
  } finally {
    s.child.kill('SIGINT');
    await s.exit;
  }
});

test('a port held by something that is not Temporal gets a clear error', async () => {
  const busy = http.createServer((_q, r) => r.end('not temporal'));
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const port = (busy.address() as { port: number }).port;
  try {
    const r = nightlab(['server', '--port', String(port), '--data-dir', tempDir()]);
    assert.equal(await r.exit, 1, 'a failure while running, not a usage error');
    assert.match(
      r.output(),
      new RegExp(`Port ${port} on 127.0.0.1 is in use by something that is not a Temporal server`),
    );
  } finally {
    busy.close();
  }
});

test('a worker started before its server waits for it, and a server that never comes is an error', async () => {
  const { PrivateServer, freePort, nightlab: spawnNightlab, sleep } = await import('./processes');
  const port = await freePort();
  const env = { TEMPORAL_ADDRESS: `127.0.0.1:${port}`, NIGHTLAB_HOME: tempDir(), NIGHTLAB_SERVER_WAIT: '120' };
  const worker = spawnNightlab(['gpu-worker'], env);
  let server: Awaited<ReturnType<typeof PrivateServer.create>> | null = null;
  try {
    await waitFor('the worker says it waits', async () =>
      /Waiting up to 120 s for the Temporal server/.test(worker.output()),
    );
    server = await PrivateServer.create(tempDir(), { port });
    await waitFor('the worker polls once the server is up', async () => /GPU worker on/.test(worker.output()), 120_000);
    assert.ok(worker.alive(), worker.output());
  } finally {
    await worker.kill('SIGINT');
    await server?.close();
  }
  // Nobody ever listens there: after its wait, the worker fails with the usual message.
  const lonely = spawnNightlab(['gpu-worker'], { ...env, TEMPORAL_ADDRESS: '127.0.0.1:1', NIGHTLAB_SERVER_WAIT: '1' });
  while (lonely.alive()) await sleep(100);
  assert.match(lonely.output(), /Cannot reach the Temporal server at 127\.0\.0\.1:1/);
});
