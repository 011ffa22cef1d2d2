#!/usr/bin/env node
// The test command: one real Temporal dev server for the whole run (or the one TEMPORAL_ADDRESS
// already points at), every test file against it, then the server is stopped.
import { register } from 'tsx/esm/api';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

register();
const { serverForTools } = await import('../ops/server.ts');

const root = fileURLToPath(new URL('..', import.meta.url));
const files = process.argv.slice(2).length
  ? process.argv.slice(2)
  : readdirSync(path.join(root, 'test'))
      .filter((f) => f.endsWith('.test.ts'))
      .sort()
      .map((f) => path.join('test', f));

const server = await serverForTools({
  port: Number(process.env.NIGHTLAB_TEST_PORT || 17233),
  log: (l) => console.log(`# ${l}`),
});
console.log(`# tests use ${server.describe}`);

const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, TEMPORAL_ADDRESS: server.address },
});
const code = await new Promise((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))));
await server.stop();
process.exit(code);
