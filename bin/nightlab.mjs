#!/usr/bin/env node
// The `nightlab` command. Nightlab runs its TypeScript sources directly (no build step between a
// `git pull` and a running campaign); the command tree is plain JavaScript, and it loads TypeScript
// (tsx) only when a command runs, so that `nightlab --help` answers at once.
import { main } from '../cli/program.mjs';

await main(process.argv.slice(2));
