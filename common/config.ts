// The campaign config: one small YAML (or JSON) file, validated before anything starts.
// Every error names the field and how to fix it.
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { AUTORESEARCH_PROGRESS, progressProblem } from './curves';
import { EARLY_STOP_DEFAULTS } from './early-stop';
import { DEFAULT_SEARCH } from './search';

/** Names of environment variables that hold secrets: never given to a training run. */
// Names that end like a secret (OPENAI_API_KEY, HF_TOKEN, DB_PASSWORD), not ones that merely
// contain the word (TINYLM_TOKEN_BUDGET).
export const SECRET_NAME = /(^|_)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|AUTH)$|^ANTHROPIC_/i;

export const PROPOSERS = ['auto', 'mutate', 'anthropic', 'command'] as const;
export const DEFAULT_MODEL = 'claude-sonnet-5-5';

const relPath = z
  .string({ required_error: 'required: a path relative to the target repository' })
  .min(1, 'must not be empty')
  .refine((p) => !path.isAbsolute(p) && !p.split(/[\\/]/).includes('..'), {
    message: 'must be a path inside the target repository (relative, no "..")',
  })
  // One spelling per path (git's): "./data/heldout/" is "data/heldout".
  .transform((p) => path.posix.normalize(p.replace(/\\/g, '/')).replace(/\/+$/, ''))
  .refine((p) => p !== '.' && p !== '.git' && !p.startsWith('.git/'), {
    message: 'must name a file or folder of the repository (not "." or .git)',
  });

/** A host path a sandboxed process may read: absolute, or under the home directory (~/...), never all of it. */
const hostPath = z
  .string()
  .refine(
    (p) =>
      (path.isAbsolute(p) || p.startsWith('~/')) &&
      !['/', '~/', '/home', '/root', '/run', '/var/run', '/proc', '/dev'].includes(p.replace(/\/+$/, '') || '/'),
    {
      message:
        'must be an absolute path or ~/..., naming a folder to read (not /, ~ itself, /home, /root, /run, /proc or /dev)',
    },
  );

/** A host the command proposer may reach: host or host:port (port 443 by default). */
const hostPort = z
  .string()
  .regex(
    /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$/,
    'must be host or host:port (e.g. api.anthropic.com)',
  );

const configSchema = z
  .object({
    target: z
      .string({ required_error: 'required: the path of the target git repository (e.g. ".")' })
      .min(1)
      .default('.'),
    // Where GPU workers fetch candidate commits from, when they cannot read the target's path: a
    // git URL of the target repository itself (ssh://, https://, git://, file://), or the path it
    // has on the GPU hosts. null: the target's path.
    remote: z.string().min(1, 'must not be empty (leave it out to use the target path)').nullable().default(null),
    editable: z
      .array(relPath, { required_error: 'required: list the files the proposer may edit (e.g. [train.py])' })
      .min(1, 'list at least one file the proposer may edit (e.g. [train.py])'),
    locked: z.array(relPath).default([]),
    instructions: relPath.optional(),
    run: z
      .object(
        {
          command: z
            .string({ required_error: 'required: the training command (e.g. "uv run train.py")' })
            .min(1, 'must not be empty'),
          env: z.record(z.string(), z.union([z.string(), z.number()]).transform(String)).default({}),
          timeoutSec: z
            .number({ invalid_type_error: 'must be a number of seconds (e.g. 600)' })
            .positive('must be > 0')
            .default(600),
          // Ignored paths of the workspace kept from run to run (a .venv), read-only to every run;
          // made by `setup` on the campaign's base commit (with the network) where one is missing.
          // Top-level only: a persisted folder is a mount point in the sandbox, which a run can neither
          // rename nor replace; a folder above it could be.
          persist: z
            .array(
              relPath.refine((p) => !p.includes('/'), {
                message: 'must be a top-level path of the repository (e.g. .venv)',
              }),
            )
            .default([]),
          setup: z.string().min(1, 'must not be empty (leave it out when nothing is to be made)').optional(),
          // Host paths a sandboxed run may read besides the system and its tools (datasets, caches).
          readOnly: z.array(hostPath).default([]),
          maxLogMb: z.number().positive('must be > 0').default(64),
        },
        { required_error: 'required: how to train (e.g. run: { command: "uv run train.py", timeoutSec: 600 })' },
      )
      .strict(),
    metric: z
      .object(
        {
          name: z
            .string({ required_error: 'required: the metric name printed by the run (e.g. val_bpb)' })
            .regex(/^[A-Za-z_][\w.]*$/, 'must be an identifier such as val_bpb'),
          direction: z
            .enum(['lower', 'higher'], {
              errorMap: () => ({ message: 'must be "lower" or "higher" (which way is better)' }),
            })
            .default('lower'),
          pattern: z
            .string()
            .refine(isRegexWithOneGroup, {
              message: 'must be a regular expression with exactly one capture group around the number',
            })
            .optional(),
        },
        { required_error: 'required: the metric to read (e.g. metric: { name: val_bpb, direction: lower })' },
      )
      .strict(),
    memory: z
      .object({ key: z.string().min(1) })
      .strict()
      .optional(),
    // Learning curves: each run's progress lines (`pattern`: named groups `value`, and `pct` or `step`
    // with `steps`) are read as it streams, kept in the records and drawn beside the best's. earlyStop
    // (opt-in): a candidate's first run whose curve, extrapolated, clearly ends worse than the best's is
    // stopped and discarded (docs/judging.md). Resolved here, so a later default never changes a campaign.
    progress: z
      .object({
        pattern: z.string().default(AUTORESEARCH_PROGRESS),
        steps: z.number().int('must be a whole number').positive('must be > 0').optional(),
        name: z
          .string()
          .regex(/^[\w.-]+$/, 'must be a word such as loss')
          .default('loss'),
        direction: z
          .enum(['lower', 'higher'], { errorMap: () => ({ message: 'must be "lower" or "higher"' }) })
          .default('lower'),
        earlyStop: z
          .union([
            z.boolean(),
            z
              .object({
                after: z
                  .number()
                  .gt(0, 'must be > 0')
                  .lt(1, 'must be < 1 (a fraction of the run)')
                  .default(EARLY_STOP_DEFAULTS.after),
                margin: z
                  .number()
                  .positive('must be > 0 (uncertainties of the predicted end)')
                  .default(EARLY_STOP_DEFAULTS.margin),
                bloom: z.number().min(0, 'must be >= 0').default(EARLY_STOP_DEFAULTS.bloom),
                checks: z
                  .number()
                  .int('must be a whole number')
                  .min(1, 'must be >= 1')
                  .default(EARLY_STOP_DEFAULTS.checks),
              })
              .strict(),
          ])
          .default(false)
          .transform((v) => (v === false ? null : v === true ? { ...EARLY_STOP_DEFAULTS } : v)),
      })
      .strict()
      .superRefine((p, ctx) => {
        const problem = progressProblem(p.pattern, p.steps);
        if (problem) ctx.addIssue({ code: 'custom', path: ['pattern'], message: problem });
      })
      .default({}),
    // A locked evaluation run after each training run that exits 0, in the same worktree (it reads
    // what the run saved, e.g. a checkpoint in $NIGHTLAB_OUTPUT_DIR). `metric`: the evaluator's
    // figure that decides instead of the trainer's print. `heldOut`: a figure recorded for people
    // and never given to the proposer. `heldOutPaths`: data only the evaluation may read.
    evaluate: z
      .object({
        command: z
          .string({ required_error: 'required: the evaluation command (e.g. "python3 evaluate.py")' })
          .min(1, 'must not be empty'),
        // The candidate's model, served to the scorer over fd 3 from a sandbox of its own: the
        // scorer then runs only locked code of the base commit (see README, "Threat model").
        model: z.string().min(1, 'must not be empty').optional(),
        metric: z
          .string()
          .regex(/^[A-Za-z_][\w.]*$/, 'must be an identifier such as val_bpb')
          .optional(),
        heldOut: z
          .string()
          .regex(/^[A-Za-z_][\w.]*$/, 'must be an identifier such as test_bpb')
          .optional(),
        heldOutPaths: z.array(relPath).default([]),
        timeoutSec: z
          .number({ invalid_type_error: 'must be a number of seconds (e.g. 120)' })
          .positive('must be > 0')
          .default(120),
      })
      .strict()
      .optional(),
    // Training runs in a bubblewrap sandbox on Linux: no network, held-out data and secrets hidden,
    // writes only in the worktree and a scratch directory. auto: when bubblewrap works, else a
    // warning; required: a run without a sandbox is a crash; off: never.
    // Promotion: each keep is re-run at a larger fidelity (a longer budget, a bigger model: another
    // command, or the run's with `env` over run.env), beside the best it replaced; the records show
    // which ideas transfer. gate: a keep that loses there is reverted on the branch, by a commit saying why.
    promote: z
      .object({
        command: z.string().min(1, 'must not be empty (leave it out to use run.command)').optional(),
        env: z.record(z.string(), z.union([z.string(), z.number()]).transform(String)).default({}),
        timeoutSec: z.number().positive('must be > 0').optional(),
        runs: z.number().int('must be a whole number').min(1, 'must be >= 1').default(1),
        gate: z.boolean().default(false),
      })
      .strict()
      .optional(),
    sandbox: z
      .enum(['auto', 'required', 'off'], { errorMap: () => ({ message: 'must be "auto", "required" or "off"' }) })
      .default('auto'),
    budget: z
      .object({
        maxExperiments: z.number().int('must be a whole number').positive('must be > 0').nullable().default(100),
        maxHours: z.number().positive('must be > 0').nullable().default(null),
        maxCostUsd: z.number().positive('must be > 0').nullable().default(null),
      })
      .strict()
      .default({}),
    proposer: z
      .object({
        kind: z
          .enum(PROPOSERS, { errorMap: () => ({ message: `must be one of ${PROPOSERS.join(', ')}` }) })
          .default('auto'),
        seed: z.number().int().default(0),
        model: z.string().default(DEFAULT_MODEL),
        effort: z.enum(['low', 'medium', 'high']).default('medium'),
        command: z.string().optional(),
        // For the command proposer: environment variables it gets from the orchestrator (its API
        // key), hosts it may reach (through a proxy that lets nothing else out), host paths it may read.
        env: z
          .array(
            z
              .string()
              .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name (e.g. ANTHROPIC_API_KEY)'),
          )
          .default([]),
        network: z.array(hostPort).default([]),
        readOnly: z.array(hostPath).default([]),
      })
      .strict()
      .default({}),
    keep: z
      .object({ minImprovement: z.number().min(0, 'must be >= 0').default(0) })
      .strict()
      .default({}),
    // Run-to-run noise: the baseline runs several times; promising candidates are confirmed
    // with other seeds (the run index, in seedEnv) before they are kept.
    noise: z
      .object({
        baselineRuns: z
          .number()
          .int('must be a whole number')
          .min(1, "must be >= 1 (1 turns noise estimation off: autoresearch's rule)")
          .default(3),
        // The sequential rule (docs/judging.md): the share of changes that do nothing it may keep, the
        // gain (in noise sigmas) it finds 90% of the time, the most runs of a candidate after its first
        // (confirmRuns), the best's runs it keeps re-running up to (bestRuns).
        falseKeep: z.number().gt(0, 'must be > 0').max(0.5, 'must be <= 0.5').default(0.05),
        detect: z.number().positive('must be > 0 (noise sigmas)').default(2),
        // The confirmation rule of campaigns started before the sequential one: the margin in sigmas.
        k: z.number().positive('must be > 0').default(1.8),
        confirmRuns: z.number().int().min(0, 'must be >= 0').default(4),
        bestRuns: z.number().int().min(1, 'must be >= 1').default(10),
        seedEnv: z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
          .default('NIGHTLAB_SEED'),
      })
      .strict()
      .default({}),
    // The engine's own search moves (common/search.ts), each a share of experiments made without the
    // proposer: combine two near misses, ablate a kept change, revisit a promising discard; and the
    // plateau rule (no keep in `plateau` experiments multiplies the combine and ablate shares by
    // `plateauBoost` and tells the proposer). An ablation gets `ablateSlack` sigmas of slack (0: it must measure better).
    search: z
      .object({
        combine: z.number().min(0, 'must be >= 0').max(1, 'must be <= 1 (a share)').default(DEFAULT_SEARCH.combine),
        ablate: z.number().min(0, 'must be >= 0').max(1, 'must be <= 1 (a share)').default(DEFAULT_SEARCH.ablate),
        revisit: z.number().min(0, 'must be >= 0').max(1, 'must be <= 1 (a share)').default(DEFAULT_SEARCH.revisit),
        plateau: z
          .number()
          .int('must be a whole number')
          .min(0, 'must be >= 0 (0: never)')
          .default(DEFAULT_SEARCH.plateau),
        plateauBoost: z.number().min(1, 'must be >= 1').default(DEFAULT_SEARCH.plateauBoost),
        ablateSlack: z
          .number()
          .min(0, 'must be >= 0 (noise sigmas)')
          .max(2, 'must be <= 2 (noise sigmas): more would keep clearly worse commits')
          .default(DEFAULT_SEARCH.ablateSlack),
      })
      .strict()
      .default({}),
    // Experiments training at once, across every GPU worker; and proposals prepared ahead of them.
    parallelism: z.number().int('must be a whole number').min(1, 'must be >= 1').default(1),
    lookahead: z.number().int('must be a whole number').min(0, 'must be >= 0').nullable().default(null),
    crash: z
      .object({ maxFixAttempts: z.number().int().min(0, 'must be >= 0').default(2) })
      .strict()
      .default({}),
    branch: z
      .string()
      .regex(/^[\w./{}-]+$/, 'must be a git branch name; {tag} is replaced by the campaign tag')
      .default('autoresearch/{tag}'),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const f of c.editable) {
      if (c.locked.includes(f))
        ctx.addIssue({
          code: 'custom',
          path: ['locked'],
          message: `${f} is listed as both editable and locked; remove it from one list`,
        });
    }
    const envs = [['run', c.run.env] as const, ...(c.promote ? [['promote', c.promote.env] as const] : [])];
    for (const [k, section] of envs.flatMap(([s, env]) => Object.keys(env).map((k) => [k, s] as const))) {
      if (SECRET_NAME.test(k))
        ctx.addIssue({
          code: 'custom',
          path: [section, 'env', k],
          message:
            'looks like a secret; training runs never get secrets (the code they run is written by the proposer). Remove it',
        });
    }
    if (c.evaluate) {
      const e = c.evaluate;
      const deciding = e.metric ?? c.metric.name;
      if (e.heldOut && e.heldOut === deciding) {
        ctx.addIssue({
          code: 'custom',
          path: ['evaluate', 'heldOut'],
          message: `${e.heldOut} is the deciding metric, which the proposer sees; name another figure (e.g. test_bpb)`,
        });
      }
      const under = (p: string, dir: string) =>
        p === dir || p.startsWith(`${dir.replace(/\/+$/, '')}/`) || dir.startsWith(`${p.replace(/\/+$/, '')}/`);
      for (const [i, h] of e.heldOutPaths.entries()) {
        // Locked files are shown to the proposer, editable ones are written by it: held-out data is neither.
        const clash = [...c.locked.map((f) => ['locked', f]), ...c.editable.map((f) => ['editable', f])].find(([, f]) =>
          under(h, f),
        );
        if (clash)
          ctx.addIssue({
            code: 'custom',
            path: ['evaluate', 'heldOutPaths', i],
            message: `${h} overlaps ${clash[0]} ${clash[1]}; held-out data must be neither locked (locked files are shown to the proposer) nor editable`,
          });
      }
    }
    const tracked = [...c.editable, ...c.locked, ...(c.evaluate?.heldOutPaths ?? [])];
    for (const [i, p] of c.run.persist.entries()) {
      const clash = tracked.find((f) => f === p || f.startsWith(`${p}/`) || p.startsWith(`${f}/`));
      if (clash)
        ctx.addIssue({
          code: 'custom',
          path: ['run', 'persist', i],
          message: `${p} overlaps ${clash}; persisted paths are made by run.setup and never part of the code`,
        });
    }
    if (c.run.persist.length && !c.run.setup)
      ctx.addIssue({
        code: 'custom',
        path: ['run', 'setup'],
        message: 'required with run.persist: the command that makes the persisted paths (e.g. "uv sync --frozen")',
      });
    if (c.evaluate?.model && !c.evaluate.metric)
      ctx.addIssue({
        code: 'custom',
        path: ['evaluate', 'metric'],
        message: "required with evaluate.model: the scorer's figure that decides (e.g. val_bpb)",
      });
    if (c.proposer.kind === 'command' && !c.proposer.command) {
      ctx.addIssue({
        code: 'custom',
        path: ['proposer', 'command'],
        message: 'required when proposer.kind is "command" (e.g. "claude -p ...")',
      });
    }
  })
  // The default lookahead is resolved here, into the campaign's input, so a later change of the
  // default never changes what a running campaign does. 2 x P: one proposal ready for every slot,
  // and one more to take a slot while a proposal that conflicted with a keep is made again.
  .transform((c) => ({ ...c, lookahead: c.lookahead ?? 2 * c.parallelism }));

export type CampaignConfigInput = z.input<typeof configSchema>;
export type CampaignConfig = z.output<typeof configSchema>;

function isRegexWithOneGroup(p: string): boolean {
  try {
    return new RegExp(`${p}|`).exec('')!.length === 2;
  } catch {
    return false;
  }
}

/** Fields that were removed, and what to do about each: a config naming one says so instead of "unknown field". */
const REMOVED: Record<string, string> = {
  'proposer.maxAttempts':
    'was removed: it never limited anything (a proposal that preflight rejects is made again, and the campaign ' +
    'pauses after too many rejections in a row); delete the line',
};

export class ConfigError extends Error {
  constructor(
    public readonly problems: string[],
    source: string,
  ) {
    super(`Invalid campaign config ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Validates a parsed object; throws ConfigError listing every problem by field. */
export function parseConfig(raw: unknown, source = '(inline)'): CampaignConfig {
  const r = configSchema.safeParse(raw ?? {});
  if (r.success) return r.data;
  const problems = r.error.issues.flatMap((i) => {
    const field = i.path.length ? i.path.join('.') : '(top level)';
    if (i.code === 'unrecognized_keys') {
      const named = (k: string) => [...i.path, k].join('.');
      const removed = i.keys.filter((k) => REMOVED[named(k)]).map((k) => `${named(k)}: ${REMOVED[named(k)]}`);
      const unknown = i.keys.filter((k) => !REMOVED[named(k)]);
      if (!unknown.length) return removed;
      const names = unknown.map((k) => `"${k}"`).join(', ');
      return [...removed, `${field}: unknown field(s) ${names}; check the spelling (see nightlab init)`];
    }
    if (i.code === 'invalid_type' && i.received === 'undefined')
      return `${field}: ${i.message === 'Required' ? 'required' : i.message}`;
    if (i.code === 'invalid_type')
      return `${field}: expected ${i.expected}, got ${i.received}${i.message && i.message !== 'Required' && !i.message.startsWith('Expected') ? ` (${i.message})` : ''}`;
    return `${field}: ${i.message}`;
  });
  throw new ConfigError(problems, source);
}

export function branchName(config: CampaignConfig, tag: string): string {
  return config.branch.replaceAll('{tag}', tag);
}

export const TAG_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export function checkTag(tag: string): void {
  if (!TAG_PATTERN.test(tag)) {
    throw new ConfigError(
      [`tag: "${tag}" must be lowercase letters, digits, ".", "_" or "-" (e.g. nov27), at most 63 characters`],
      '--tag',
    );
  }
}

/** Presets, written by `nightlab init --preset P`; values are a starting point to edit. */
export const PRESETS: Record<string, CampaignConfigInput> = {
  // karpathy/autoresearch unchanged: one 5-minute run on one GPU, killed at 10 minutes.
  autoresearch: {
    target: '.',
    editable: ['train.py'],
    locked: ['prepare.py', 'pyproject.toml'],
    instructions: 'program.md',
    // The .venv is made once per GPU slot by setup (on the base commit, with the network), then
    // read-only to every run. prepare.py's data and tokenizer, and the flash-attention kernel
    // train.py loads from the Hugging Face cache, are read where `uv run prepare.py` put them.
    run: {
      command: 'uv run train.py',
      env: { HF_HUB_OFFLINE: '1' },
      timeoutSec: 600,
      setup: 'uv sync --frozen',
      persist: ['.venv'],
      readOnly: ['~/.cache/autoresearch', '~/.cache/huggingface/hub'],
    },
    metric: { name: 'val_bpb', direction: 'lower' },
    memory: { key: 'peak_vram_mb' },
    budget: { maxExperiments: 100, maxHours: 10, maxCostUsd: null },
    proposer: { kind: 'auto', seed: 0 },
    keep: { minImprovement: 0 },
    crash: { maxFixAttempts: 2 },
    branch: 'autoresearch/{tag}',
  },
  // The CPU example shipped in examples/tiny-lm: runs of a few seconds on 2 cores. The locked
  // evaluate.py scores the saved checkpoint: its val_bpb decides, its test_bpb is held out.
  'tiny-lm': {
    target: '.',
    editable: ['train.py'],
    locked: ['prepare.py', 'evaluate.py'],
    instructions: 'program.md',
    run: { command: 'python3 train.py', env: {}, timeoutSec: 120 },
    metric: { name: 'val_bpb', direction: 'lower' },
    // The scorer runs the base commit's locked code only; the candidate's model answers it from a sandbox of its own.
    evaluate: {
      command: 'python3 evaluate.py',
      model: 'python3 evaluate.py --serve',
      metric: 'val_bpb',
      heldOut: 'test_bpb',
      heldOutPaths: ['data/heldout'],
      timeoutSec: 60,
    },
    sandbox: 'auto',
    memory: { key: 'peak_vram_mb' },
    budget: { maxExperiments: 12, maxHours: 2, maxCostUsd: null },
    proposer: { kind: 'auto', seed: 0 },
    keep: { minImprovement: 0 },
    crash: { maxFixAttempts: 2 },
    branch: 'autoresearch/{tag}',
  },
};

export function presetYaml(name: string): string {
  const preset = PRESETS[name];
  if (!preset)
    throw new ConfigError(
      [`--preset: unknown preset "${name}"; choose one of ${Object.keys(PRESETS).join(', ')}`],
      '--preset',
    );
  return (
    `# Nightlab campaign config (preset ${name}). Paths are relative to the target repository.\n` +
    YAML.stringify(preset)
  );
}
