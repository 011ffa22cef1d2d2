// Types of cli/program.mjs (plain JavaScript, so that `nightlab --help` needs no TypeScript).
import type { Command } from 'commander';

export declare const EXIT: { runtime: 1; usage: 2 };
/** The whole command tree; building it runs nothing. */
export declare function buildProgram(): Command;
/** Runs the command line (`argv` without node and the script); a failure ends the process with 1 or 2. */
export declare function main(argv: string[]): Promise<void>;
