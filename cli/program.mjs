// The `nightlab` command tree: each command's name, arguments, flags and help. Plain JavaScript, so
// that `nightlab --help` and `--version` answer at once, without TypeScript: what a command does is
// a function of cli/main.ts, loaded (through tsx) only when a command runs; it imports what it needs.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';

/** Exit statuses (the rule the help's last lines state). */
export const EXIT = { runtime: 1, usage: 2 };

const EPILOGUE = `
Environment:
  TEMPORAL_ADDRESS    Temporal frontend (default 127.0.0.1:7233)
  TEMPORAL_NAMESPACE  namespace (default "default")
  NIGHTLAB_HOME       data: server database, campaign records, GPU workspaces, caches and logs (default ~/.nightlab)
  TEMPORAL_CLI        path of a Temporal CLI binary to use
  ANTHROPIC_API_KEY   makes "auto" campaigns use the anthropic proposer (read by the orchestrator worker only)
  NIGHTLAB_MAX_ACTIVITIES  the orchestrator worker's --max-activities
  NIGHTLAB_BUILD_ID, NIGHTLAB_DEPLOYMENT  the orchestrator worker's --build-id and --deployment (Worker Versioning)
  NIGHTLAB_GPUS       the GPU worker's --gpus
  NIGHTLAB_CODEC_KEY_FILE  keys that encrypt payloads on every client and worker (see docs/operations.md)
  NIGHTLAB_METRICS_PORT    the workers' --metrics-port (Prometheus /metrics and /healthz)

Quick start:
  nightlab demo --iterations 12     server, workers and a tiny-lm campaign, all in one
  nightlab init --preset autoresearch && nightlab server & nightlab worker & nightlab gpu-worker --gpus all &
  nightlab start --config nightlab.yaml --tag nov27

Exit status: 0 done; 1 failed while running; 2 bad input refused before anything started (usage or config error).`;

// The control commands' help is what they do, in the words of docs/concepts.md; their messages repeat it.
const CONTROLS = {
  pause: 'start no new run; runs already going finish and are recorded; the rest waits for resume',
  resume: 'start experiments again after a pause',
  stop: 'start no new run; runs already going finish and are recorded; experiments not yet running are dropped; then the campaign ends (stopped)',
};

/** The whole command tree; building it runs nothing. */
export function buildProgram() {
  const program = new Command('nightlab')
    .description(
      'Durable autoresearch on Temporal: an agent proposes, a GPU trains, the metric decides, nothing is lost.',
    )
    .version(packageVersion(), '-V, --version', 'print the version')
    .addHelpText('after', EPILOGUE)
    // Every command inherits these: commander's own errors are usage errors, thrown to `main`.
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`nightlab: usage error: ${text.replace(/^error: /, '')}`) })
    .showHelpAfterError('(add --help for usage)');

  program
    .command('setup')
    .description("get the Temporal CLI (build with Go or download) and the example target's Python packages")
    .action(run('setup'));

  program
    .command('server')
    .description('run the local Temporal dev server (SQLite persistence, Web UI) until Ctrl-C')
    .option('--ip <ip>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'gRPC port', port(1), 7233)
    .option('--ui-port <port>', 'Web UI port', port(1), 8233)
    .option('--data-dir <dir>', 'where the SQLite database lives (default $NIGHTLAB_HOME/server)')
    .option(
      '--ui-codec-endpoint <url>',
      'the Web UI decodes payloads through this codec server (nightlab codec-server)',
    )
    .action(run('server'));

  program
    .command('doctor')
    .description('check every prerequisite and say how to fix what is missing (exit 1 when a required one is)')
    .option('--json', 'the checks as JSON')
    .action(run('doctor'));

  program
    .command('init')
    .description('write nightlab.yaml in the current directory')
    .option('--preset <name>', 'starting point: autoresearch (a GPU, uv) or tiny-lm (CPU)', 'autoresearch')
    .option('--force', 'overwrite an existing nightlab.yaml')
    .action(run('init'));

  program
    .command('demo')
    .description('the tiny-lm campaign end to end on CPU: server if none runs, workers, live status, results')
    .option('--iterations <n>', 'experiments after the baseline', wholeNumber(1), 12)
    .option('--tag <tag>', 'campaign tag (default demo-<time>)')
    .action(run('demo'));

  program
    .command('start')
    .description('start a campaign (workers run separately: nightlab worker, nightlab gpu-worker)')
    .requiredOption('--config <file>', 'campaign config (YAML or JSON)')
    .requiredOption('--tag <tag>', 'campaign tag: names the workflow campaign-<tag> and the branch')
    .option('--gpu-task-queue <name>', 'where its runs go (default nightlab-gpu): a GPU fleet of its own')
    .option('--json', 'what was started, as JSON')
    .action(run('start'));

  program
    .command('fork <tag>')
    .description("a new campaign from one of a campaign's experiments: its commit the base, the archive inherited")
    .requiredOption('--from <n>', 'the experiment whose commit the new campaign starts from', wholeNumber(0))
    .requiredOption('--tag <tag>', 'the new campaign tag')
    .option('--json', 'what was started, as JSON')
    .action(run('fork'));

  program
    .command('status <tag>')
    .description('where a campaign stands: its snapshot, and alarms for people')
    .option('--json', 'the snapshot as JSON (with --watch: one JSON line every 2 s)')
    .option(
      '--watch',
      'a live view until the campaign ends: the experiments in flight, the last results, budgets, time left',
    )
    .action(run('status'));

  program
    .command('results <tag>')
    .description('every experiment of a campaign')
    .option('--json', 'the experiments as a JSON array')
    .action(run('results'));

  program
    .command('report <tag>')
    .description('the progress chart (PNG and SVG) and an HTML report: results, diffs, log tails, cost, GPU-hours')
    .option('--out <dir>', "where to write them (default: the campaign directory's report/)")
    .option('--repo <path>', "the campaign repository, for the diffs (default: from the workflow's start input)")
    .option('--json', 'the files written, as JSON')
    .action(run('report'));

  program
    .command('list')
    .description('campaigns known to the server, newest first')
    .option('--json', 'the campaigns as a JSON array')
    .action(run('list'));

  program
    .command('dashboard')
    .description('a web page: campaigns, live charts, results, diffs, and pause / resume / stop / steer')
    .option('--port <port>', 'port to serve on (0: any free port)', port(0), 8234)
    .option('--host <addr>', 'address to listen on (default 127.0.0.1, this host only); any other needs a token')
    .action(run('dashboard'));

  for (const [name, what] of Object.entries(CONTROLS)) {
    program.command(`${name} <tag>`).description(what).action(run(name));
  }

  program
    .command('steer <tag>')
    .description('change what the next proposals see: a note, or new instructions')
    .option('--note <text>', "a note added to the proposer's context")
    .option('--instructions <file>', 'a file that replaces the instructions (program.md)')
    .action(run('steer'));

  program
    .command('worker')
    .description('run the orchestrator worker (campaign workflows, proposers, git, records)')
    .addOption(
      new Option(
        '--max-activities <n>',
        "activities (mostly proposals) at once: at least every campaign's parallelism + lookahead (default 64)",
      )
        .env('NIGHTLAB_MAX_ACTIVITIES')
        .argParser(wholeNumber(1)),
    )
    .addOption(
      new Option(
        '--build-id <id>',
        'Worker Versioning: this worker is version <id> of the deployment; a campaign stays on the version ' +
          'that started it and moves to the current one at its next continue-as-new (docs/upgrading.md)',
      ).env('NIGHTLAB_BUILD_ID'),
    )
    .addOption(
      new Option('--deployment <name>', 'the worker deployment --build-id belongs to')
        .env('NIGHTLAB_DEPLOYMENT')
        .default('nightlab'),
    )
    .option(
      '--set-current',
      'with --build-id: once this worker polls, make its version current (new campaigns start on it)',
    )
    .addOption(metricsPortOption())
    .addOption(metricsHostOption())
    .action(run('worker'));

  program
    .command('gpu-worker')
    .description('take runs on this host: one run per GPU slot')
    .addOption(
      new Option(
        '--gpus <list>',
        'GPU indexes (0,1,...; counted within an inherited CUDA_VISIBLE_DEVICES), all, or cpu ' +
          '(default: the GPUs CUDA_VISIBLE_DEVICES names, else one CPU slot)',
      ).env('NIGHTLAB_GPUS'),
    )
    .addOption(
      new Option(
        '--gpus-per-slot <n>',
        'GPUs per slot, for runs that train on several (torchrun); must divide the GPUs',
      )
        .env('NIGHTLAB_GPUS_PER_SLOT')
        .argParser(wholeNumber(1))
        .default(1),
    )
    .option('--task-queue <name>', 'take runs from this queue (default nightlab-gpu; see start --gpu-task-queue)')
    .addOption(metricsPortOption())
    .addOption(metricsHostOption())
    .action(run('gpuWorker'));

  program
    .command('codec-server')
    .description("decrypt payloads for the Temporal Web UI and CLI (--codec-endpoint) with this host's key")
    .option('--port <port>', 'port to serve on (0: any free port)', port(0), 8888)
    .option('--host <addr>', 'address to listen on (default 127.0.0.1, this host only: whoever reaches it can decrypt)')
    .option(
      '--origin <url...>',
      'Web UI origins allowed to call it (default: NIGHTLAB_UI_URL, else http://127.0.0.1:8233)',
    )
    .action(run('codecServer'));

  return program;
}

/**
 * Runs the command line (`argv` without node and the script) to its end. A failure ends the
 * process: 2 for bad input (commander's usage errors, a config error), 1 for the rest.
 */
export async function main(argv) {
  // `nightlab list | head`: a reader that has read enough is no error.
  process.stdout.on('error', (e) => process.exit(e.code === 'EPIPE' ? 0 : EXIT.runtime));
  try {
    await buildProgram().parseAsync(argv, { from: 'user' });
  } catch (e) {
    // Commander has printed its errors and help already; main.ts prints what a command threw.
    if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : EXIT.usage);
    process.exit(await (await commands()).failure(e));
  }
}

let loaded;
/** cli/main.ts, through tsx: registered on the first command that runs, never for --help. */
function commands() {
  loaded ??= import('tsx/esm/api').then(({ register }) => {
    register();
    return import('./main.ts');
  });
  return loaded;
}

/** A command's action: its function in cli/main.ts, given commander's arguments (args, options, command). */
function run(name) {
  return async (...args) => (await commands())[name](...args);
}

/** A whole number >= min (a flag's value; anything else is a usage error). */
function wholeNumber(min, max = Infinity) {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) {
      throw new InvalidArgumentError(`must be a whole number >= ${min}${max < Infinity ? ` and <= ${max}` : ''}`);
    }
    return n;
  };
}

function port(min) {
  return wholeNumber(min, 65535);
}

/** A worker's metrics and health endpoint (ops/metrics.ts). */
function metricsPortOption() {
  return new Option('--metrics-port <port>', 'serve Prometheus /metrics and /healthz on this port')
    .env('NIGHTLAB_METRICS_PORT')
    .argParser(port(0));
}
function metricsHostOption() {
  return new Option('--metrics-host <addr>', 'address of the metrics endpoint (default 127.0.0.1; 0.0.0.0: any)').env(
    'NIGHTLAB_METRICS_HOST',
  );
}

function packageVersion() {
  return JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
}
