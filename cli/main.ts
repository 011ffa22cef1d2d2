// The `nightlab` command line.
import { Command, Option } from 'commander';
import { writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, loadConfig, presetYaml, PRESETS } from '../common/config';
import { connectClient, connectWorker, nightlabHome, temporalAddress, temporalNamespace } from '../ops/connection';
import { findTemporalCli, TemporalCliMissing } from '../ops/temporal-cli';
import { startServer } from '../ops/server';
import { campaignWorkflowId, isEnded } from '../common/shared';
import { experiments, readLedger } from '../lib/ledger';
import { createOrchestratorWorker, DEFAULT_MAX_ACTIVITIES } from '../workers/orchestrator';
import { workerProposers } from '../workers/proposers';
import { createGpuWorkers, resolveSlots, SHUTDOWN_GRACE } from '../gpu-worker/worker';
import { pauseSignal, resumeSignal, steerUpdate, stopSignal } from '../workflows/messages';
import { campaignStatus, prepareStart, startCampaign, uiLink } from '../client/campaigns';
import { resultsTable, statusText } from './format';
import { doctor } from './doctor';
import { runDemo } from './demo';
import { ensurePythonDeps } from '../lib/python';

const program = new Command();
program
  .name('nightlab')
  .description('Durable autoresearch campaigns on Temporal: an agent proposes, a GPU trains, the metric decides, nothing is lost.')
  .addHelpText('after', `
Environment:
  TEMPORAL_ADDRESS    Temporal frontend (default 127.0.0.1:7233)
  TEMPORAL_NAMESPACE  namespace (default "default")
  NIGHTLAB_HOME       data: server database, campaign records, GPU workspaces, caches and logs (default ~/.nightlab)
  TEMPORAL_CLI        path of a Temporal CLI binary to use
  ANTHROPIC_API_KEY   makes "auto" campaigns use the anthropic proposer (read by the orchestrator worker only)
  NIGHTLAB_MAX_ACTIVITIES  the orchestrator worker's --max-activities
  NIGHTLAB_GPUS       the GPU worker's --gpus

Quick start:
  nightlab demo --iterations 12     server, workers and a tiny-lm campaign, all in one
  nightlab init --preset autoresearch && nightlab server & nightlab worker & nightlab gpu-worker --gpus all &
  nightlab start --config nightlab.yaml --tag nov27`);

const log = (line: string) => console.error(line);

program
  .command('setup')
  .description('get the Temporal CLI (build with Go or download) and the example target\'s Python packages')
  .action(async () => {
    const cli = await findTemporalCli({ install: true, log });
    console.log(`Temporal CLI: ${cli.path} (${cli.version}; from ${cli.source})`);
    await ensurePythonDeps(log);
    console.log('Python packages for examples/tiny-lm: ok');
  });

program
  .command('server')
  .description('run the local Temporal dev server (SQLite persistence, Web UI) until Ctrl-C')
  .option('--ip <ip>', 'address to listen on', '127.0.0.1')
  .option('--port <port>', 'gRPC port', (v) => Number(v), 7233)
  .option('--ui-port <port>', 'Web UI port', (v) => Number(v), 8233)
  .option('--data-dir <dir>', 'where the SQLite database lives', path.join(nightlabHome(), 'server'))
  .action(async (o) => {
    const cli = await findTemporalCli({ install: true, log });
    log(`Temporal CLI: ${cli.path} (${cli.version.split('\n')[0]}; from ${cli.source})`);
    const server = await startServer({ cli: cli.path, dataDir: path.resolve(o.dataDir), host: o.ip, port: o.port, uiPort: o.uiPort, namespace: temporalNamespace(), log });
    if (server.reused) {
      console.log(`Nothing to do: a Temporal server already runs at ${server.address} (search attributes and retention checked).`);
      return;
    }
    console.log(`Temporal server at ${server.address}, Web UI at ${server.uiUrl}, database ${server.dbFile}. Ctrl-C stops it.`);
    let stopping = false;
    const stop = async () => {
      stopping = true;
      log('Stopping the Temporal server...');
      await server.stop();
      process.exit(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    await server.exited;
    if (stopping) return;
    console.error(`The Temporal server exited on its own; see ${path.join(path.dirname(server.dbFile!), 'server.log')}`);
    process.exit(1);
  });

program
  .command('doctor')
  .description('check every prerequisite and say how to fix what is missing')
  .action(async () => {
    process.exitCode = (await doctor()) ? 0 : 1;
  });

program
  .command('init')
  .description('write nightlab.yaml in the current directory')
  .addOption(new Option('--preset <name>', 'starting point').choices(Object.keys(PRESETS)).default('autoresearch'))
  .option('--force', 'overwrite an existing nightlab.yaml')
  .action((o) => {
    const file = path.resolve('nightlab.yaml');
    if (existsSync(file) && !o.force) throw new ConfigError([`${file} exists; pass --force to overwrite it`], 'init');
    writeFileSync(file, presetYaml(o.preset));
    console.log(`Wrote ${file} (preset ${o.preset}). Edit it, then: nightlab start --config nightlab.yaml --tag <tag>`);
  });

program
  .command('demo')
  .description('the tiny-lm campaign end to end on CPU: server if none runs, workers, live status, results')
  .option('--iterations <n>', 'experiments after the baseline', (v) => Number(v), 12)
  .option('--tag <tag>', 'campaign tag (default demo-<time>)')
  .action(async (o) => {
    if (!Number.isInteger(o.iterations) || o.iterations < 1) throw new ConfigError(['--iterations: must be a whole number >= 1'], 'demo');
    await runDemo({ iterations: o.iterations, tag: o.tag });
  });

program
  .command('start')
  .description('start a campaign (workers run separately: nightlab worker, nightlab gpu-worker)')
  .requiredOption('--config <file>', 'campaign config (YAML or JSON)')
  .requiredOption('--tag <tag>', 'campaign tag: names the workflow campaign-<tag> and the branch')
  .action(async (o) => {
    const { config, baseDir } = loadConfig(o.config);
    const input = await prepareStart({ config, baseDir, tag: o.tag });
    const client = await connectClient();
    await startCampaign(client, input);
    console.log(`Started campaign ${o.tag} (workflow ${campaignWorkflowId(o.tag)}), proposer ${input.config.proposer.kind}, branch ${input.branch}.`);
    console.log(`Records: ${input.campaignDir}\nWeb UI: ${uiLink(o.tag, temporalNamespace())}`);
  });

program
  .command('status <tag>')
  .description('where a campaign stands')
  .option('--json', 'machine-readable')
  .option('--watch', 'a live view until the campaign ends: the running experiment\'s progress, the last results, budgets and time left')
  .action(async (tag, o) => {
    const client = await connectClient();
    if (o.watch && !o.json) {
      const { watchCampaign } = await import('../client/watch');
      await watchCampaign(client, tag);
      return;
    }
    const { alarms, alarmLines } = await import('../client/alarms');
    const ledgerOf = (s: { campaignDir: string }) => {
      try {
        return readLedger(s.campaignDir);
      } catch {
        return [];
      }
    };
    for (;;) {
      const s = await campaignStatus(client, tag);
      // Alarms for people: the keeps' held-out figures, suspect gains (from the ledger on this host).
      const ledger = ledgerOf(s);
      if (o.json) console.log(JSON.stringify({ ...s, alarms: alarms(ledger, s.direction) }, null, 2));
      else console.log([statusText(s), ...alarmLines(ledger, s.direction, s.metricName)].join('\n'));
      if (!o.watch || isEnded(s.state)) return;
      await new Promise((r) => setTimeout(r, 2000));
    }
  });

program
  .command('report <tag>')
  .description('the progress chart (PNG and SVG) and an HTML report: results, diffs, log tails, cost, GPU-hours')
  .option('--out <dir>', 'where to write them (default: the campaign directory\'s report/)')
  .option('--repo <path>', 'the campaign repository, for the diffs (default: from the workflow\'s start input)')
  .action(async (tag, o) => {
    const client = await connectClient();
    const { reportCampaign } = await import('../client/report');
    const r = await reportCampaign(client, tag, { out: o.out, repo: o.repo });
    console.log(`Report for campaign ${tag} (${r.chart.counts.experiments} experiments, ${r.chart.counts.kept} kept):\n  ${r.html}\n  ${r.png}\n  ${r.svg}`);
  });

program
  .command('dashboard')
  .description('a local web page: campaigns, live charts, results, diffs, and pause / resume / stop / steer')
  .option('--port <port>', 'port to serve on', (v) => Number(v), 8234)
  .option('--host <host>', 'address to listen on (keep it local: the page can control campaigns)', '127.0.0.1')
  .action(async (o) => {
    const client = await connectClient();
    const { startDashboard } = await import('../dashboard/server');
    const d = await startDashboard({ client, port: o.port, host: o.host, log });
    console.log(`Nightlab dashboard at ${d.url} (Temporal ${temporalAddress()}, namespace ${temporalNamespace()}). Ctrl-C stops it.`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await d.close();
    await client.connection.close();
  });

for (const [name, signal, what] of [
  ['pause', pauseSignal, 'finish the running experiment, then wait'],
  ['resume', resumeSignal, 'go on after a pause'],
  ['stop', stopSignal, 'finish the running experiment, then end the campaign'],
] as const) {
  program
    .command(`${name} <tag>`)
    .description(what)
    .action(async (tag) => {
      const client = await connectClient();
      await campaignStatus(client, tag); // a clear error for an unknown tag
      await client.workflow.getHandle(campaignWorkflowId(tag)).signal(signal);
      console.log(`Sent ${name} to campaign ${tag}.`);
    });
}

program
  .command('steer <tag>')
  .description('change what the next proposals see: a note, or new instructions')
  .option('--note <text>', 'a note added to the proposer\'s context')
  .option('--instructions <file>', 'a file that replaces the instructions (program.md)')
  .action(async (tag, o) => {
    if (!o.note && !o.instructions) throw new ConfigError(['give --note "..." or --instructions <file>'], 'steer');
    const instructions = o.instructions ? (await import('node:fs')).readFileSync(o.instructions, 'utf8') : undefined;
    const client = await connectClient();
    await campaignStatus(client, tag); // a clear error for an unknown tag
    const r = await client.workflow
      .getHandle(campaignWorkflowId(tag))
      .executeUpdate(steerUpdate, { args: [{ note: o.note, instructions }] })
      .catch((e: Error & { cause?: Error }) => {
        throw new Error(`steering refused: ${e.cause?.message ?? e.message}`);
      });
    console.log(`Steered campaign ${tag} (${r.notes} note(s) in the proposer's context).`);
  });

program
  .command('results <tag>')
  .description('every experiment of a campaign')
  .option('--json', 'one JSON object per experiment')
  .action(async (tag, o) => {
    const client = await connectClient();
    const s = await campaignStatus(client, tag);
    const rows = experiments(s.campaignDir);
    if (o.json) console.log(JSON.stringify(rows.map(({ logTail: _t, ...r }) => ({ number: r.experiment, ...r })), null, 2));
    else console.log(`${resultsTable(rows, s.metricName)}\n\nresults.tsv: ${path.join(s.campaignDir, 'results.tsv')}`);
  });

program
  .command('list')
  .description('campaigns known to the server')
  .action(async () => {
    const client = await connectClient();
    for await (const wf of client.workflow.list({ query: `WorkflowType = 'campaign'` })) {
      const sa = wf.typedSearchAttributes.getAll();
      const get = (n: string) => sa.find((p) => p.key.name === n)?.value;
      console.log(`${wf.workflowId.replace(/^campaign-/, '').padEnd(24)} ${String(get('NightlabStatus') ?? wf.status.name.toLowerCase()).padEnd(10)} experiments ${String(get('NightlabExperiments') ?? 0).padStart(4)}  kept ${String(get('NightlabKept') ?? 0).padStart(3)}  best ${get('NightlabBestMetric') ?? '-'}  started ${wf.startTime.toISOString()}`);
    }
  });

program
  .command('worker')
  .description('run the orchestrator worker (campaign workflows, proposers, git, records)')
  .option('--task-queue <name>', 'the campaigns\' task queue (default nightlab-orchestrator)')
  .option('--max-activities <n>', `activities (mostly proposals) run at once; at least the sum of every campaign's parallelism + lookahead (default ${DEFAULT_MAX_ACTIVITIES})`, process.env.NIGHTLAB_MAX_ACTIVITIES)
  .action(async (o) => {
    const maxActivities = o.maxActivities === undefined ? DEFAULT_MAX_ACTIVITIES : Number(o.maxActivities);
    if (!Number.isInteger(maxActivities) || maxActivities < 1) throw new Error(`--max-activities (or NIGHTLAB_MAX_ACTIVITIES) must be a whole number >= 1, not "${o.maxActivities}"`);
    const connection = await connectWorker();
    const worker = await createOrchestratorWorker({ connection, namespace: temporalNamespace(), taskQueue: o.taskQueue, deps: { proposers: workerProposers() }, maxActivities });
    log(`Orchestrator worker on ${temporalAddress()} (${temporalNamespace()}). Ctrl-C stops it.`);
    // Ctrl-C / SIGTERM: the SDK stops polling, cancels the activities in flight (they are retried
    // by the next worker) and ends; campaigns wait in the server until a worker is back.
    onStop(() => log('Stopping the orchestrator worker: campaigns resume when a worker runs again.'));
    await worker.run();
    await connection.close();
  });

program
  .command('gpu-worker')
  .description('run training on this host: one experiment per GPU slot')
  .option('--gpus <list>', 'GPU indexes (0,1,...), "all", or "cpu" for one CPU slot', process.env.NIGHTLAB_GPUS)
  .option('--task-queue <name>', 'the GPU task queue (default nightlab-gpu; a campaign\'s gpuTaskQueue)')
  .action(async (o) => {
    const slots = await resolveSlots(o.gpus);
    const connection = await connectWorker();
    const workers = await createGpuWorkers({ connection, home: nightlabHome(), slots, namespace: temporalNamespace(), taskQueue: o.taskQueue });
    log(`GPU worker on ${temporalAddress()}: slots ${slots.map((s) => s.name).join(', ')}; workspaces and logs under ${nightlabHome()}. Ctrl-C stops it.`);
    // Ctrl-C / SIGTERM: runs get SHUTDOWN_GRACE to finish, then their process groups are killed
    // and they go back to the queue (retried, never recorded as crashes). A second Ctrl-C quits at once.
    onStop(() => log(`Stopping the GPU worker: runs not done within ${SHUTDOWN_GRACE} are cancelled and run again on another worker.`));
    await Promise.all(workers.map((w) => w.run()));
    await connection.close();
  });

/** Says what a stop signal does (the Temporal SDK's own handler does the stopping). */
function onStop(say: () => void): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, say);
}

try {
  await program.parseAsync();
} catch (e) {
  if (e instanceof ConfigError || e instanceof TemporalCliMissing) console.error(e.message);
  else console.error(`nightlab: ${(e as Error).message}`);
  process.exit(2);
}
