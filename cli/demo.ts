// `nightlab demo`: the whole product in one command on a laptop without a GPU. A dev server if none
// answers, both workers in this process, the tiny-lm example as a fresh git repo, live status,
// then the results table and the Web UI link.
import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { parseConfig, PRESETS } from '../common/config';
import { connectClient, connectWorker, nightlabHome, temporalAddress, temporalNamespace } from '../ops/connection';
import { findTemporalCli } from '../ops/temporal-cli';
import { prepareNamespace, probe, splitAddress, startServer, type RunningServer } from '../ops/server';
import { git } from '../lib/git';
import { experiments, readLedger } from '../lib/ledger';
import { resultRows } from '../client/results';
import { createOrchestratorWorker } from '../workers/orchestrator';
import { workerProposers } from '../workers/proposers';
import { createGpuWorkers, resolveSlots } from '../gpu-worker/worker';
import { campaignStatus, prepareStart, startCampaign, uiLink } from '../client/campaigns';
import { resultsTable, statusText } from './format';
import { ensurePythonDeps, TINY_LM_DIR } from '../lib/python';

const POLL_MS = 1500;

/** A fresh git repo holding the example, so the demo never writes into this checkout. */
export async function makeExampleRepo(dir: string, source = TINY_LM_DIR): Promise<string> {
  mkdirSync(path.dirname(dir), { recursive: true });
  cpSync(source, dir, { recursive: true, filter: (p) => !/__pycache__|\.pyc$/.test(p) });
  const g = git(dir);
  await g.raw(['init', '--quiet', '-b', 'main']);
  await g.raw(['add', '-A']);
  await g.raw(['commit', '--quiet', '-m', 'tiny-lm baseline']);
  return dir;
}

export async function runDemo(opts: { iterations: number; tag?: string }): Promise<void> {
  const log = (l: string) => console.log(l);
  // The demo prints its own progress; the workers' lifecycle chatter would bury it.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const home = nightlabHome();
  const tag =
    opts.tag ??
    `demo-${new Date()
      .toISOString()
      .slice(0, 19)
      .replace(/[-:T]/g, '')
      .replace(/^(\d{8})/, '$1-')}`;
  const address = temporalAddress();
  const namespace = temporalNamespace();

  await ensurePythonDeps(log);
  let server: RunningServer | null = null;
  if ((await probe(address)) !== 'temporal') {
    const cli = await findTemporalCli({ install: true, log });
    const { host, port } = splitAddress(address);
    log(
      `Starting a Temporal dev server (${cli.version.split('\n')[0]}) at ${address}, data in ${path.join(home, 'server')}...`,
    );
    server = await startServer({
      cli: cli.path,
      dataDir: path.join(home, 'server'),
      host,
      port,
      namespace, // the Web UI on port + 1000: 8233 for the default 7233
      log,
    });
  } else {
    log(`Using the Temporal server at ${address}.`);
    await prepareNamespace(address, namespace);
  }

  const repoDir = path.join(home, 'demo', tag, 'tiny-lm');
  if (existsSync(repoDir)) throw new Error(`${repoDir} exists: demo tag ${tag} was used before; pass another --tag`);
  await makeExampleRepo(repoDir);
  const preset = PRESETS['tiny-lm'];
  const config = parseConfig(
    { ...preset, budget: { ...preset.budget, maxExperiments: opts.iterations } },
    'tiny-lm preset',
  );
  writeFileSync(
    path.join(repoDir, '..', 'nightlab.yaml'),
    YAML.stringify({ ...preset, target: 'tiny-lm', budget: { ...preset.budget, maxExperiments: opts.iterations } }),
  );
  const input = await prepareStart({ config, baseDir: repoDir, tag });

  const client = await connectClient(address, namespace);
  const connection = await connectWorker(address);
  const workers = [
    await createOrchestratorWorker({ connection, namespace, deps: { proposers: workerProposers() } }),
    ...(await createGpuWorkers({ connection, home, slots: await resolveSlots(process.env.NIGHTLAB_GPUS), namespace })),
  ];
  const running = workers.map((w) => w.run());
  const handle = await startCampaign(client, input);
  log(
    `Campaign ${tag}: baseline + ${opts.iterations} experiments of tiny-lm with the ${input.config.proposer.kind} proposer.`,
  );
  log(
    `  repository ${repoDir}, branch ${input.branch}\n  records ${input.campaignDir}\n  Web UI ${uiLink(tag, namespace, server?.uiUrl ?? undefined)}\n`,
  );

  // Experiments finish out of order when one is prepared ahead: print each once, as it ends.
  const shown = new Set<number>();
  const result = handle.result();
  let finished = false;
  void result.then(
    () => (finished = true),
    () => (finished = true),
  );
  while (!finished) {
    await Promise.race([result.catch(() => {}), new Promise((r) => setTimeout(r, POLL_MS))]);
    const rows = experiments(input.campaignDir);
    for (const r of rows.filter((x) => !shown.has(x.experiment))) {
      log(
        `  ${String(r.experiment).padStart(3)}  ${r.status.padEnd(7)} ${r.metric === null ? '   -    ' : r.metric.toFixed(6)}  ${r.description}${r.status === 'crash' ? ` (${r.reason})` : ''}`,
      );
      shown.add(r.experiment);
    }
  }
  try {
    await result;
  } catch {
    // the status below says why
  }
  const status = await campaignStatus(client, tag);
  for (const w of workers) w.shutdown();
  await Promise.allSettled(running);
  await connection.close();

  log(`\n${statusText(status)}\n\n${resultsTable(resultRows(readLedger(input.campaignDir)), config.metric.name)}`);
  log(`\nresults.tsv: ${path.join(input.campaignDir, 'results.tsv')}`);
  log(`Kept commits: git -C ${repoDir} log --oneline --notes=nightlab ${input.branch}`);
  log(`Web UI: ${uiLink(tag, namespace, server?.uiUrl ?? undefined)}`);
  if (server) {
    if (process.stdout.isTTY) {
      log('The Temporal server keeps running so you can browse the campaign in the Web UI; Ctrl-C stops it.');
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    } else {
      log('Run `nightlab server` to browse this campaign in the Web UI later (its history is kept).');
    }
    await server.stop();
  }
  if (status.state === 'failed') process.exitCode = 1;
}
