// What every benchmark needs: a real Temporal server (the one TEMPORAL_ADDRESS points at, or a
// fresh dev server of its own), and a figure printer that keeps lines comparable.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findTemporalCli } from '../ops/temporal-cli';
import { probe, startServer } from '../ops/server';

export async function benchServer(port = 19233): Promise<{ address: string; stop: () => Promise<void> }> {
  const given = process.env.TEMPORAL_ADDRESS;
  if (given && (await probe(given)) === 'temporal') return { address: given, stop: async () => {} };
  const cli = await findTemporalCli({ install: true, log: (l) => console.error(l) });
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'nightlab-bench-server-'));
  const server = await startServer({ cli: cli.path, dataDir, port, uiPort: port + 1000 });
  process.env.TEMPORAL_ADDRESS = server.address;
  return {
    address: server.address,
    stop: async () => {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** One line per system: its name, then `label value unit` pairs. */
export function figure(system: string, values: Record<string, string>): void {
  console.log(`${system.padEnd(13)} ${Object.entries(values).map(([k, v]) => `${k} ${v}`).join('  ')}`);
}
