// `npm run redteam [training|proposer|suspect|config]`: every attack of the red team
// (test/redteam-attacks.ts), or one group of them, against the real engine: one line each, blocked
// or got through, then the count. Exits 1 when any got through.
// Uses the Temporal server at TEMPORAL_ADDRESS when one answers, else starts a dev server of its own.
import { serverForTools } from '../ops/server';

const server = await serverForTools({ port: 19533, log: console.error });
// The helpers read TEMPORAL_ADDRESS when they load: after the server is known.
const { runRedTeam } = await import('./redteam-attacks');
const { sandboxSupport } = await import('../lib/sandbox');
let through = 0;
try {
  const support = await sandboxSupport();
  console.log(`red team: ${support.ok ? `sandbox ${support.bwrap}` : `NO SANDBOX (${support.why})`}`);
  const group = process.argv[2] as Parameters<typeof runRedTeam>[0] extends infer O
    ? O extends { only?: infer G }
      ? G
      : never
    : never;
  const results = await runRedTeam(group ? { only: group } : {});
  const width = Math.max(...results.map((r) => r.name.length));
  for (const r of results) {
    if (!r.blocked) through += 1;
    console.log(`${r.blocked ? 'blocked     ' : 'GOT THROUGH '} ${r.name.padEnd(width)}  [${r.against}] ${r.detail}`);
  }
  console.log(`${through} of ${results.length} got through`);
} finally {
  await server.stop();
}
process.exit(through ? 1 : 0);
