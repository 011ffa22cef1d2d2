// What each `nightlab` command does: one function per command, named in the command tree
// (cli/program.mjs: names, flags, help) and called with commander's arguments (args, options,
// command). Each imports what it needs when it runs: a command loads its own part only (the
// workers' code loads for the workers), and `nightlab --help` loads none of this file.
// Data goes to stdout (with --json, nothing else does); logs and errors go to stderr.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import type { Client } from '@temporalio/client';
import type { NativeConnection, Worker } from '@temporalio/worker';
import type { Control } from '../client/control';
import type { CampaignInput } from '../common/shared';
import { EXIT } from './program.mjs';

export { buildProgram, main } from './program.mjs';

const log = (line: string) => console.error(line);
const printJson = (value: unknown) => console.log(JSON.stringify(value, null, 2));

/** Prints what a command threw; the exit status: 2 for a config error (bad input), 1 otherwise. */
export async function failure(e: unknown): Promise<number> {
  const { ConfigError } = await import('../common/config');
  const { TemporalCliMissing } = await import('../ops/temporal-cli');
  if (e instanceof ConfigError) {
    console.error(e.message);
    return EXIT.usage;
  }
  console.error(e instanceof TemporalCliMissing ? e.message : `nightlab: ${(e as Error)?.message ?? e}`);
  return EXIT.runtime;
}

/** `promise`, with the errors `isUsage` picks turned into usage errors of the command (exit 2). */
function usageErrors<T>(cmd: Command, promise: Promise<T>, isUsage: (e: Error) => boolean): Promise<T> {
  return promise.catch((e: Error) => (isUsage(e) ? cmd.error(e.message) : Promise.reject(e)));
}

/** Runs `fn` with a client of the Temporal server, closed afterwards. */
async function withClient<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  const { connectClient } = await import('../ops/connection');
  const client = await connectClient();
  try {
    return await fn(client);
  } finally {
    await client.connection.close();
  }
}

// ---------------------------------------------------------------------------------- set up

export async function setup(): Promise<void> {
  const { findTemporalCli } = await import('../ops/temporal-cli');
  const { ensurePythonDeps } = await import('../lib/python');
  const cli = await findTemporalCli({ install: true, log });
  console.log(`Temporal CLI: ${cli.path} (${cli.version}; from ${cli.source})`);
  await ensurePythonDeps(log);
  console.log('Python packages for examples/tiny-lm: ok');
}

export async function server(o: {
  ip: string;
  port: number;
  uiPort: number;
  dataDir?: string;
  uiCodecEndpoint?: string;
}): Promise<void> {
  const { findTemporalCli } = await import('../ops/temporal-cli');
  const { startServer } = await import('../ops/server');
  const { nightlabHome, temporalNamespace } = await import('../ops/connection');
  const cli = await findTemporalCli({ install: true, log });
  log(`Temporal CLI: ${cli.path} (${cli.version.split('\n')[0]}; from ${cli.source})`);
  const dataDir = path.resolve(o.dataDir ?? path.join(nightlabHome(), 'server'));
  const namespace = temporalNamespace();
  const server = await startServer({
    cli: cli.path,
    dataDir,
    host: o.ip,
    port: o.port,
    uiPort: o.uiPort,
    uiCodecEndpoint: o.uiCodecEndpoint,
    namespace,
    log,
  });
  if (server.reused) {
    console.log(
      `Nothing to do: a Temporal server already runs at ${server.address} (search attributes and retention checked).`,
    );
    return;
  }
  console.log(
    `Temporal server at ${server.address}, Web UI at ${server.uiUrl}, database ${server.dbFile}. Ctrl-C stops it.`,
  );
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
  throw new Error(
    `the Temporal server exited on its own; see ${path.join(path.dirname(server.dbFile!), 'server.log')}`,
  );
}

export async function doctor(o: { json?: boolean }): Promise<void> {
  const { runChecks, checkLines, requiredPresent } = await import('./doctor');
  const results = await runChecks();
  if (o.json) printJson({ ok: requiredPresent(results), checks: results });
  else console.log(checkLines(results).join('\n'));
  if (!requiredPresent(results)) process.exitCode = EXIT.runtime;
}

export async function init(o: { preset: string; force?: boolean }, cmd: Command): Promise<void> {
  const { presetYaml, PRESETS } = await import('../common/config');
  if (!(o.preset in PRESETS))
    cmd.error(`--preset: unknown preset "${o.preset}"; choose one of ${Object.keys(PRESETS).join(', ')}`);
  const file = path.resolve('nightlab.yaml');
  if (existsSync(file) && !o.force) cmd.error(`${file} exists; pass --force to overwrite it`);
  writeFileSync(file, presetYaml(o.preset));
  console.log(`Wrote ${file} (preset ${o.preset}). Edit it, then: nightlab start --config nightlab.yaml --tag <tag>`);
}

export async function demo(o: { iterations: number; tag?: string }): Promise<void> {
  const { runDemo } = await import('./demo');
  await runDemo({ iterations: o.iterations, tag: o.tag });
}

// ----------------------------------------------------------------------------- campaigns

export async function start(
  o: { config: string; tag: string; gpuTaskQueue?: string; json?: boolean },
  cmd: Command,
): Promise<void> {
  const { loadConfig } = await import('../lib/config-file');
  const { prepareStart, startCampaign, TagRefused } = await import('../client/campaigns');
  const { config, baseDir } = loadConfig(o.config);
  // --tag is a flag: one that cannot name a new campaign is a usage error, the config's problems config errors.
  const tagRefused = (e: Error) => e instanceof TagRefused;
  const prepared = await usageErrors(cmd, prepareStart({ config, baseDir, tag: o.tag }), tagRefused);
  const input = o.gpuTaskQueue ? { ...prepared, gpuTaskQueue: o.gpuTaskQueue } : prepared;
  await withClient((client) => usageErrors(cmd, startCampaign(client, input), tagRefused));
  await started(input, o.json);
}

export async function fork(
  parent: string,
  o: { from: number; tag: string; json?: boolean },
  cmd: Command,
): Promise<void> {
  const { prepareFork, startCampaign, TagRefused } = await import('../client/campaigns');
  const tagRefused = (e: Error) => e instanceof TagRefused;
  const input = await withClient(async (client) => {
    const fork = await usageErrors(cmd, prepareFork(client, { parent, from: o.from, tag: o.tag }), tagRefused);
    await usageErrors(cmd, startCampaign(client, fork.input, { taskQueue: fork.taskQueue }), tagRefused);
    return fork.input;
  });
  if (!o.json) console.log(`Forked campaign ${parent} at experiment ${o.from} (${input.baseSha.slice(0, 7)}).`);
  await started(input, o.json);
}

/** What `start` and `fork` print: the campaign started, where its runs go, its records and Web UI link. */
async function started(input: CampaignInput, json?: boolean): Promise<void> {
  const { campaignWorkflowId, GPU_TASK_QUEUE } = await import('../common/shared');
  const { temporalNamespace } = await import('../ops/connection');
  const { uiLink } = await import('../client/campaigns');
  const { tag } = input;
  const facts = {
    tag,
    workflowId: campaignWorkflowId(tag),
    proposer: input.config.proposer.kind,
    branch: input.branch,
    gpuTaskQueue: input.gpuTaskQueue ?? GPU_TASK_QUEUE,
    campaignDir: input.campaignDir,
    uiUrl: uiLink(tag, temporalNamespace()),
  };
  if (json) return printJson(facts);
  const { workflowId, proposer, branch, gpuTaskQueue, campaignDir, uiUrl } = facts;
  console.log(`Started campaign ${tag} (workflow ${workflowId}), proposer ${proposer}, branch ${branch}.`);
  if (input.gpuTaskQueue)
    console.log(`Its runs go to task queue ${gpuTaskQueue}: nightlab gpu-worker --task-queue ${gpuTaskQueue}`);
  console.log(`Records: ${campaignDir}\nWeb UI: ${uiUrl}`);
}

export async function status(tag: string, o: { json?: boolean; watch?: boolean }): Promise<void> {
  const { campaignStatus } = await import('../client/campaigns');
  const { alarms, alarmLines } = await import('../client/alarms');
  const { isEnded } = await import('../common/shared');
  const { campaignRecords } = await import('../client/records');
  const { statusText } = await import('./format');
  await withClient(async (client) => {
    if (o.watch && !o.json) {
      const { watchCampaign } = await import('../client/watch');
      await watchCampaign(client, tag);
      return;
    }
    for (;;) {
      const s = await campaignStatus(client, tag);
      // Alarms for people: the keeps' held-out figures, suspect gains (from the records, wherever they live).
      // Records out of reach do not hide the status: the reason is said instead of the alarms.
      const records = await campaignRecords(client, tag).catch((e: Error) => e);
      const ledger = records instanceof Error ? [] : records.rows;
      const recordsError = records instanceof Error ? { recordsError: records.message } : {};
      const ended = isEnded(s.state);
      const snapshot = { ...s, ended, alarms: alarms(ledger, s.direction), ...recordsError };
      // With --watch, one JSON object per line: a stream a script reads line by line.
      if (o.json) console.log(JSON.stringify(snapshot, null, o.watch ? 0 : 2));
      else {
        const note = records instanceof Error ? [`  ${records.message}`] : [];
        console.log([statusText(s), ...alarmLines(ledger, s.direction, s.metricName), ...note].join('\n'));
      }
      if (!o.watch || ended) return;
      await new Promise((r) => setTimeout(r, 2000));
    }
  });
}

export async function results(tag: string, o: { json?: boolean }): Promise<void> {
  const { campaignStatus } = await import('../client/campaigns');
  const { campaignRecords } = await import('../client/records');
  const { resultRows } = await import('../client/results');
  const { resultsTable } = await import('./format');
  const [s, records] = await withClient(async (client) => [
    await campaignStatus(client, tag),
    await campaignRecords(client, tag),
  ]);
  // Each experiment's record with every run of its commit (mean, spread, count) and the best marked.
  const rows = resultRows(records.rows);
  const tsv = `${path.join(records.campaignDir, 'results.tsv')}${records.host ? ` on ${records.host}` : ''}`;
  if (o.json) printJson(rows);
  else console.log(`${resultsTable(rows, s.metricName)}\n\nresults.tsv: ${tsv}`);
}

export async function report(tag: string, o: { out?: string; repo?: string; json?: boolean }): Promise<void> {
  const { reportCampaign } = await import('../client/report');
  const r = await withClient((client) => reportCampaign(client, tag, { out: o.out, repo: o.repo }));
  const { experiments, kept } = r.chart.counts;
  if (o.json) return printJson({ tag, html: r.html, png: r.png, svg: r.svg, experiments, kept });
  console.log(
    `Report for campaign ${tag} (${experiments} experiments, ${kept} kept):\n  ${r.html}\n  ${r.png}\n  ${r.svg}`,
  );
}

export async function list(o: { json?: boolean }): Promise<void> {
  const { listCampaigns } = await import('../client/campaigns');
  const campaigns = await withClient((client) => listCampaigns(client));
  if (o.json) return printJson(campaigns);
  if (!campaigns.length) console.log(`No campaigns on ${(await import('../ops/connection')).temporalAddress()} yet.`);
  for (const c of campaigns) {
    const counts = `experiments ${String(c.experiments).padStart(4)}  kept ${String(c.kept).padStart(3)}`;
    console.log(
      `${c.tag.padEnd(24)} ${c.state.padEnd(10)} ${counts}  best ${c.bestMetric ?? '-'}  started ${c.startTime}`,
    );
  }
}

export async function dashboard(o: { port: number; host?: string }): Promise<void> {
  const { connectClient, temporalAddress, temporalNamespace } = await import('../ops/connection');
  const { startDashboard } = await import('../dashboard/server');
  const client = await connectClient();
  const d = await startDashboard({ client, port: o.port, host: o.host, log });
  const temporal = `Temporal ${temporalAddress()}, namespace ${temporalNamespace()}`;
  console.log(`Nightlab dashboard at ${d.url} (${temporal}). Ctrl-C stops it.`);
  if (d.token) log('It is open to the network: whoever has this URL (its token) can pause, stop and steer campaigns.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await d.close();
  await client.connection.close();
}

export async function codecServer(o: { port: number; host?: string; origin?: string[] }): Promise<void> {
  const { DEFAULT_UI_ORIGIN, serveCodec, uiOrigins } = await import('../ops/codec-server');
  const { CODEC_ENV, EncryptionCodec, codecKeys } = await import('../lib/codec');
  const keys = codecKeys();
  if (!keys)
    throw new Error(`no key to decrypt with: set ${CODEC_ENV.keyFile} or ${CODEC_ENV.key}, as the workers have`);
  const origins = o.origin ?? uiOrigins(process.env.NIGHTLAB_UI_URL || DEFAULT_UI_ORIGIN);
  const s = await serveCodec({ codec: new EncryptionCodec(keys), port: o.port, host: o.host, origins });
  console.log(`Codec server at ${s.url} (keys ${[...keys.keys.keys()].join(', ')}). Ctrl-C stops it.`);
  log(`Web UI (${origins.join(', ')}): set its codec endpoint to ${s.url}, or nightlab server --ui-codec-endpoint.`);
  log(`Temporal CLI: temporal workflow show -w campaign-<tag> --codec-endpoint ${s.url}`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await s.close();
}

// ------------------------------------------------------------------- pause, resume, stop, steer

async function control(what: Control, tag: string, cmd: Command): Promise<void> {
  const { sendControl } = await import('../client/control');
  await withClient((client) => sendControl(client, tag, what));
  // The command's help says what the campaign now does, in the words of docs/concepts.md.
  console.log(`Sent ${what} to campaign ${tag}: ${cmd.description()}.`);
}

export const pause = (tag: string, _o: object, cmd: Command) => control('pause', tag, cmd);
export const resume = (tag: string, _o: object, cmd: Command) => control('resume', tag, cmd);
export const stop = (tag: string, _o: object, cmd: Command) => control('stop', tag, cmd);

export async function steer(tag: string, o: { note?: string; instructions?: string }, cmd: Command): Promise<void> {
  const { steerCampaign } = await import('../client/control');
  if (!o.note && !o.instructions) cmd.error('give --note "..." or --instructions <file>');
  if (o.instructions && !existsSync(o.instructions)) cmd.error(`--instructions: ${o.instructions} does not exist`);
  const instructions = o.instructions ? readFileSync(o.instructions, 'utf8') : undefined;
  const { notes } = await withClient((client) => steerCampaign(client, tag, { note: o.note, instructions }));
  console.log(`Steered campaign ${tag} (${notes} note(s) in the proposer's context).`);
}

// -------------------------------------------------------------------------------- workers

/** A worker started beside a server that is still starting waits this long for it (NIGHTLAB_SERVER_WAIT). */
const SERVER_WAIT_SEC = Number(process.env.NIGHTLAB_SERVER_WAIT ?? 60);

export async function worker(
  o: { maxActivities?: number; buildId?: string; deployment: string; setCurrent?: boolean } & MetricsFlags,
  cmd: Command,
): Promise<void> {
  if (o.setCurrent && !o.buildId) cmd.error('--set-current needs --build-id (or NIGHTLAB_BUILD_ID)');
  const { connectWorker, temporalAddress, temporalNamespace } = await import('../ops/connection');
  const { createOrchestratorWorker, setCurrentVersion } = await import('../workers/orchestrator');
  const { workerProposers } = await import('../workers/proposers');
  const { versionName } = await import('../activities/versioning');
  const metrics = await workerMetrics(o);
  const connection = await connectWorker(undefined, { waitSec: SERVER_WAIT_SEC, log });
  const namespace = temporalNamespace();
  const deps = { proposers: workerProposers() };
  const version = o.buildId ? { deploymentName: o.deployment, buildId: o.buildId } : undefined;
  const worker = await createOrchestratorWorker({
    connection,
    namespace,
    deps,
    maxActivities: o.maxActivities,
    version,
  });
  const name = version && versionName(version);
  log(`Orchestrator worker on ${temporalAddress()} (${namespace})${name ? `, version ${name}` : ''}. Ctrl-C stops it.`);
  if (version && o.setCurrent) {
    // The server knows the version once this worker has polled: set it current beside the running worker.
    void setCurrentVersion(connection, namespace, version).then(
      () => log(`${name} is the current version: new campaigns start on it, running ones move at continue-as-new.`),
      (e: Error) => log(`nightlab: could not make ${name} current: ${e.message}`),
    );
  }
  // Ctrl-C / SIGTERM: the SDK stops polling, cancels the activities in flight (they are retried
  // by the next worker) and ends; campaigns wait in the server until a worker is back.
  onStop(() => log('Stopping the orchestrator worker: campaigns resume when a worker runs again.'));
  await runWorkers([worker], connection, metrics);
}

export async function gpuWorker(
  o: { gpus?: string; gpusPerSlot?: number; taskQueue?: string } & MetricsFlags,
  cmd: Command,
): Promise<void> {
  const { connectWorker, nightlabHome, temporalAddress, temporalNamespace } = await import('../ops/connection');
  const { createGpuWorkers, resolveSlots, SlotsError, SHUTDOWN_GRACE } = await import('../gpu-worker/worker');
  // GPUs it cannot read or group as asked are a usage error; a GPU table it cannot get is not.
  const slots = await usageErrors(cmd, resolveSlots(o.gpus, o.gpusPerSlot), (e) => e instanceof SlotsError);
  const metrics = await workerMetrics(o);
  const connection = await connectWorker(undefined, { waitSec: SERVER_WAIT_SEC, log });
  const home = nightlabHome();
  const namespace = temporalNamespace();
  const workers = await createGpuWorkers({ connection, home, slots, namespace, taskQueue: o.taskQueue });
  const names = slots.map((s) => s.name).join(', ');
  log(`GPU worker on ${temporalAddress()}: slots ${names}; workspaces and logs under ${home}. Ctrl-C stops it.`);
  // Ctrl-C / SIGTERM: runs get SHUTDOWN_GRACE to finish, then their process groups are killed
  // and they go back to the queue (retried, never recorded as crashes). A second Ctrl-C quits at once.
  onStop(() =>
    log(
      `Stopping the GPU worker: runs not done within ${SHUTDOWN_GRACE} are cancelled and run again on another worker.`,
    ),
  );
  await runWorkers(workers, connection, metrics);
}

interface MetricsFlags {
  metricsPort?: number;
  metricsHost?: string;
}
type Metrics = Awaited<ReturnType<typeof import('../ops/metrics').prepareMetrics>>;

/** With --metrics-port, the SDK runtime with its Prometheus exporter: installed before any connection. */
async function workerMetrics(o: MetricsFlags): Promise<Metrics | null> {
  if (o.metricsPort === undefined) return null;
  const { prepareMetrics } = await import('../ops/metrics');
  return prepareMetrics({ port: o.metricsPort, host: o.metricsHost });
}

/** Runs the workers to their end, their metrics and health endpoint open meanwhile (with --metrics-port). */
async function runWorkers(workers: Worker[], connection: NativeConnection, metrics: Metrics | null): Promise<void> {
  const endpoint = await metrics?.serve(workers, connection);
  if (endpoint) log(`Metrics on ${endpoint.url}/metrics, health on ${endpoint.url}/healthz.`);
  try {
    await Promise.all(workers.map((w) => w.run()));
  } finally {
    await endpoint?.close();
    await connection.close();
  }
}

/** Says what a stop signal does (the Temporal SDK's own handler does the stopping). */
function onStop(say: () => void): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, say);
}
