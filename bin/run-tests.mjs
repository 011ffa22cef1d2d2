#!/usr/bin/env node
// The test command: one real Temporal dev server for the whole run (or the one TEMPORAL_ADDRESS
// already points at), every test file against it, then the server is stopped.
import { register } from 'tsx/esm/api';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

register();
const { findTemporalCli } = await import('../ops/temporal-cli.ts');
const { startServer, probe } = await import('../ops/server.ts');

const root = fileURLToPath(new URL('..', import.meta.url));
const files = process.argv.slice(2).length
  ? process.argv.slice(2)
  : readdirSync(path.join(root, 'test')).filter((f) => f.endsWith('.test.ts')).sort().map((f) => path.join('test', f));

let server = null;
let address = process.env.TEMPORAL_ADDRESS;
if (address && (await probe(address)) === 'temporal') {
  console.log(`# tests use the Temporal server already at ${address}`);
} else {
  const cli = await findTemporalCli({ install: true, log: (l) => console.log(`# ${l}`) });
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'nightlab-test-server-'));
  // A port of our own: a server someone else started (and may stop) must not be reused by accident.
  let port = Number(process.env.NIGHTLAB_TEST_PORT || 17233);
  while ((await probe(`127.0.0.1:${port}`)) !== 'free' || (await probe(`127.0.0.1:${port + 1000}`)) !== 'free') port += 1;
  server = await startServer({ cli: cli.path, dataDir, port, uiPort: port + 1000 });
  address = server.address;
  console.log(`# tests use a fresh Temporal dev server at ${address} (${cli.version.split('\n')[0]}, from ${cli.source}; SQLite ${server.dbFile}; UI ${server.uiUrl})`);
}

const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, TEMPORAL_ADDRESS: address },
});
const code = await new Promise((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))));
if (server) {
  await server.stop();
  rmSync(path.dirname(server.dbFile), { recursive: true, force: true });
}
process.exit(code);
