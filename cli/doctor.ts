// `nightlab doctor`: each prerequisite, whether it is there, and how to fix it when it is not.
import { execa } from 'execa';
import {
  checkConnection,
  connectionSettings,
  isLocalAddress,
  temporalAddress,
  temporalNamespace,
} from '../ops/connection';
import { findTemporalCli } from '../ops/temporal-cli';
import { missingSearchAttributes } from '../ops/server';
import { listGpus } from '../gpu-worker/worker';
import { pythonPackagesMissing } from '../lib/python';
import { INSTALL_HINT, sandboxSupport } from '../lib/sandbox';

interface Check {
  name: string;
  required: boolean;
  run: () => Promise<{ ok: boolean; detail: string; fix?: string }>;
}

/** One check's outcome, as `nightlab doctor --json` gives it. */
export interface CheckResult {
  name: string;
  required: boolean;
  ok: boolean;
  detail: string;
  /** How to fix it, when it failed. */
  fix?: string;
}

async function version(cmd: string, args: string[]): Promise<string | null> {
  const r = await execa(cmd, args, { reject: false, timeout: 10_000 });
  return r.exitCode === 0 ? (r.stdout || r.stderr).split('\n')[0].trim() : null;
}

/** A local server is the one `nightlab server` or the demo starts: then this machine needs the Temporal CLI. */
function usesLocalServer(): boolean {
  try {
    return isLocalAddress(connectionSettings().address);
  } catch {
    return true;
  }
}

export async function runChecks(): Promise<CheckResult[]> {
  const address = temporalAddress();
  const namespace = temporalNamespace();
  // A client of a remote cluster needs neither the Temporal CLI nor the example's packages.
  const local = usesLocalServer();
  const checks: Check[] = [
    {
      name: 'Node.js >= 20',
      required: true,
      run: async () => ({
        ok: Number(process.versions.node.split('.')[0]) >= 20,
        detail: process.version,
        fix: 'install Node.js 20 or newer (https://nodejs.org)',
      }),
    },
    {
      name: 'Temporal CLI',
      required: local,
      run: async () => {
        try {
          const cli = await findTemporalCli({ install: false });
          return { ok: true, detail: `${cli.path} — ${cli.version.split('\n')[0]} (from ${cli.source})` };
        } catch (e) {
          return {
            ok: false,
            detail: (e as Error).message.split('\n')[0],
            fix: 'run `nightlab setup` (builds it with Go or downloads it), or set TEMPORAL_CLI',
          };
        }
      },
    },
    { name: 'Temporal connection', required: true, run: checkConnection },
    {
      name: "Nightlab's search attributes",
      required: true,
      run: async () => {
        try {
          const missing = await missingSearchAttributes(address, namespace);
          return missing.length
            ? {
                ok: false,
                detail: `missing ${missing.join(', ')}`,
                fix: 'run `nightlab server` once against this server (it registers them), or `temporal operator search-attribute create`',
              }
            : { ok: true, detail: `registered in namespace "${namespace}"` };
        } catch (e) {
          return {
            ok: false,
            detail: `skipped: ${(e as Error).message.split('\n')[0]}`,
            fix: 'fix the connection first (see above)',
          };
        }
      },
    },
    {
      name: 'git',
      required: true,
      run: async () => {
        const v = await version('git', ['--version']);
        return { ok: v !== null, detail: v ?? 'not found', fix: 'install git (apt-get install git)' };
      },
    },
    {
      name: "Python 3 and the example target's packages (numpy)",
      required: local,
      run: async () => {
        const v = await version('python3', ['--version']);
        if (!v) return { ok: false, detail: 'python3 not found', fix: 'install Python 3.10+' };
        const missing = await pythonPackagesMissing();
        return {
          ok: !missing,
          detail: missing ?? `${v}, numpy present`,
          fix: 'run `nightlab setup` (pip install -r examples/tiny-lm/requirements.txt)',
        };
      },
    },
    {
      name: 'sandbox (bubblewrap) for proposers and runs',
      required: false,
      run: async () => {
        const s = await sandboxSupport();
        return s.ok
          ? { ok: true, detail: `${s.bwrap} creates the namespaces a run needs` }
          : {
              ok: false,
              detail: `${s.why}; runs and command proposers would not be isolated (config sandbox: auto warns, required refuses)`,
              fix: `${INSTALL_HINT}, on a host that allows user namespaces`,
            };
      },
    },
    {
      name: 'workers run as a user of their own, not root',
      required: false,
      run: async () => {
        const root = process.getuid?.() === 0;
        return {
          ok: !root,
          detail: root
            ? 'running as root: a sandboxed process can read root-owned files the sandbox shows (under /etc, /usr, /opt)'
            : `uid ${process.getuid?.() ?? '?'}`,
          fix: 'run `nightlab worker` and `nightlab gpu-worker` as a dedicated user',
        };
      },
    },
    {
      name: 'GPUs (nvidia-smi)',
      required: false,
      run: async () => {
        const gpus = await listGpus();
        return {
          ok: gpus.length > 0,
          detail: gpus.length
            ? `${gpus.length} GPU(s): ${gpus.join(', ')}`
            : 'none; the GPU worker will use one CPU slot',
          fix: 'optional: install the NVIDIA driver to train on GPUs',
        };
      },
    },
  ];
  // The checks are independent: all at once, reported in order.
  return Promise.all(
    checks.map(async (c) => {
      const r = await c.run().catch((e: Error) => ({ ok: false, detail: e.message, fix: undefined }));
      return {
        name: c.name,
        required: c.required,
        ok: r.ok,
        detail: r.detail,
        ...(!r.ok && r.fix ? { fix: r.fix } : {}),
      };
    }),
  );
}

export const requiredPresent = (results: CheckResult[]) => results.every((r) => r.ok || !r.required);

/** The checks for a terminal: a mark, the check, and the fix under a failed one. */
export function checkLines(results: CheckResult[]): string[] {
  const lines = results.map((r) => {
    const mark = r.ok ? 'ok  ' : r.required ? 'FAIL' : 'warn';
    return `[${mark}] ${r.name}: ${r.detail}${r.fix ? `\n       fix: ${r.fix}` : ''}`;
  });
  const summary = requiredPresent(results)
    ? 'All required parts are present.'
    : 'Some required parts are missing: see the fixes above.';
  return [...lines, summary];
}
