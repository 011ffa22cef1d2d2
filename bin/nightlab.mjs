#!/usr/bin/env node
// Nightlab runs its TypeScript sources directly through tsx: no build step between a
// `git pull` and a running campaign, and Temporal's bundler reads the same files.
import { register } from 'tsx/esm/api';
register();
await import('../cli/main.ts');
