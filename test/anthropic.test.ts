// The `anthropic` proposer with the real SDK against a local HTTP server speaking the Messages API:
// first the proposer alone (edits, retries, rejections, cost, caching, secrets), then whole
// campaigns on the real Temporal server (keeps and discards, a 529 that loses nothing, cost
// totals, the key absent from history and files, and a bad key pausing the campaign).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { ApplicationFailure } from '@temporalio/activity';
import { anthropicProposer, didYouMean } from '../proposers/anthropic';
import { ProposalRejected, type ProposerContext, type ProposerReply } from '../proposers/context';
import { costOf, KNOWN_MODELS } from '../common/prices';
import { experiments, readLedger } from '../lib/ledger';
import { git } from '../lib/git';
import { campaignWorkflowId } from '../common/shared';
import { statusQuery, stopSignal } from '../workflows/messages';
import { workerProposers } from '../workers/proposers';
import {
  apiError,
  dynamic,
  overloaded,
  overloadedMidStream,
  reply,
  startFakeAnthropic,
  type FakeAnthropic,
  type FakeUsage,
} from './fake-anthropic';
import { QUADRATIC, lab, makeRepo, waitFor } from './helpers';

/** A key that must never show up anywhere but in the Authorization header. */
const CANARY = 'sk-ant-canary-7f3c9e1d2b4a6058-do-not-log';
const TRAIN = readFileSync(path.join(QUADRATIC, 'train.py'), 'utf8');
const PREPARE = readFileSync(path.join(QUADRATIC, 'prepare.py'), 'utf8');
const SONNET = 'claude-sonnet-5-5';
/** 1-based line number of the fixture's first line that passes `test`. */
const lineOf = (test: (line: string) => boolean) => TRAIN.split('\n').findIndex(test) + 1;

function context(over: Partial<ProposerContext> = {}): ProposerContext {
  return {
    tag: 'unit',
    experiment: 1,
    attempt: 0,
    seed: 0,
    model: SONNET,
    effort: 'medium',
    metric: { name: 'val_bpb', direction: 'lower' },
    instructions: 'Lower val_bpb. Edit train.py only.',
    notes: [],
    editable: [{ path: 'train.py', content: TRAIN }],
    locked: [{ path: 'prepare.py', content: PREPARE }],
    history: [{ experiment: 0, status: 'keep', metric: 1.5044, delta: null, description: 'baseline' }],
    best: { experiment: 0, metric: 1.5044, commit: 'abcdef0123456789' },
    fix: null,
    inFlight: [],
    lastRejection: null,
    code: { repo: '/nonexistent', sha: '0'.repeat(40) },
    ...over,
  };
}

const edit = (search: string, replace: string, file = 'train.py') => ({ file, search, replace });
const answer = (description: string, ...edits: ReturnType<typeof edit>[]) => ({ description, edits });
/** The price of one fake reply, in the shape the proposer reads it from the API. */
const priceOfReply = (model: string, u: Partial<FakeUsage> = {}) => {
  const full = {
    input_tokens: 1000,
    output_tokens: 200,
    cache_read_input_tokens: 0,
    cache_write_1h: 0,
    cache_write_5m: 0,
    ...u,
  };
  return costOf(model, {
    inputTokens: full.input_tokens,
    outputTokens: full.output_tokens,
    cacheReadTokens: full.cache_read_input_tokens,
    cacheWriteTokens: full.cache_write_1h + full.cache_write_5m,
    cacheWrite5mTokens: full.cache_write_5m,
  });
};
const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a} != ${b}`);

/** One fake and one proposer per test; the fake demands the canary key, as the real API demands a valid one. */
async function withFake(
  fn: (f: FakeAnthropic, propose: (ctx?: ProposerContext) => Promise<ProposerReply>) => Promise<void>,
  opts: { maxRetries?: number; apiKey?: string; maxTokens?: number } = {},
) {
  const fake = await startFakeAnthropic({ apiKey: CANARY });
  try {
    const p = anthropicProposer({
      apiKey: opts.apiKey ?? CANARY,
      baseURL: fake.baseURL,
      maxRetries: opts.maxRetries,
      maxTokens: opts.maxTokens,
    });
    await fn(fake, (ctx = context()) => p(ctx, new AbortController().signal));
  } finally {
    await fake.close();
  }
}

/** Everything an error carries that could end up in history or a log. */
function errorText(err: unknown): string {
  const e = err as Error & { cause?: unknown; details?: unknown };
  return [e.message, e.stack, String(e.cause ?? ''), JSON.stringify(e.details ?? null), JSON.stringify(e)].join('\n');
}

async function caught(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    assert.ok(!errorText(err).includes(CANARY), `the key leaked into an error: ${errorText(err)}`);
    return err as Error;
  }
  assert.fail('expected the proposal to throw');
}

test('a scripted reply becomes new file contents and a one-line description; the request is well formed and cached', async () => {
  await withFake(async (fake, propose) => {
    fake.script(
      reply(answer('lower the\tlearning rate\nto 0.12', edit('LEARNING_RATE = 0.5\n', 'LEARNING_RATE = 0.12\n')), {
        thinking: 'LR is far from its optimum.',
      }),
    );
    const r = await propose(context({ notes: ['try the learning rate first'] }));
    assert.equal(r.description, 'lower the learning rate to 0.12');
    assert.deepEqual(Object.keys(r.files!), ['train.py']);
    assert.equal(r.files!['train.py'], TRAIN.replace('LEARNING_RATE = 0.5\n', 'LEARNING_RATE = 0.12\n'));

    assert.equal(fake.requests.length, 1);
    const { body, headers } = fake.requests[0];
    assert.equal(headers.authorization, `Bearer ${CANARY}`, 'SDK 1.x sends the key as a bearer token');
    assert.ok(headers['anthropic-version'], 'an API version header is sent');
    assert.equal(body.model, SONNET);
    assert.equal(body.stream, true, 'streaming');
    for (const k of ['temperature', 'top_p', 'top_k']) assert.ok(!(k in body), `${k} is not sent`);
    assert.equal(body.output_config.effort, 'medium');
    assert.equal(body.output_config.format.type, 'json_schema');
    assert.equal(body.messages.length, 1);
    assert.equal(body.messages[0].role, 'user', 'no assistant prefill');

    // The stable prefix (rules, files, history) is cached for an hour; the task is not.
    const hour = { type: 'ephemeral', ttl: '1h' };
    assert.deepEqual(body.system[0].cache_control, hour);
    const [files, history, task] = body.messages[0].content;
    assert.deepEqual(files.cache_control, hour);
    assert.deepEqual(history.cache_control, hour);
    assert.equal(task.cache_control, undefined);
    assert.ok(
      files.text.includes(TRAIN) && files.text.includes(PREPARE) && files.text.includes('Lower val_bpb'),
      'files block holds instructions and files',
    );
    assert.match(history.text, /baseline/);
    assert.match(history.text, /try the learning rate first/);
    assert.match(task.text, /Propose experiment 1/);
  });
});

test('cost is the fake usage times the price table, summed over every request of a proposal', async () => {
  // By hand, Sonnet 5.5 at $2/$10 per million: input 1200 + 5m writes 100×1.25 + 1h writes 3000×2 +
  // reads 5000×0.1 = 7825 input-equivalent → $0.01565; output 345 → $0.00345.
  const u1 = {
    input_tokens: 1200,
    output_tokens: 345,
    cache_read_input_tokens: 5000,
    cache_write_1h: 3000,
    cache_write_5m: 100,
  };
  near(priceOfReply(SONNET, u1), 0.0191, 'the price table');
  const u2 = {
    input_tokens: 80,
    output_tokens: 120,
    cache_read_input_tokens: 8000,
    cache_write_1h: 0,
    cache_write_5m: 0,
  };
  await withFake(async (fake, propose) => {
    fake.script(
      reply(answer('x', edit('WIDTH = 80', 'WIDTH = 16')), { usage: u1 }),
      reply(answer('widen to 16', edit('WIDTH = 8\n', 'WIDTH = 16\n')), { usage: u2 }),
    );
    const r = await propose();
    near(r.costUsd!, 0.0191 + priceOfReply(SONNET, u2), 'cost of both turns');
    assert.deepEqual(r.usage, { inputTokens: 1280, cacheWriteTokens: 3100, cacheReadTokens: 13000, outputTokens: 465 });
  });
  // The campaign's model, when the context carries it, is the one asked for and priced.
  await withFake(async (fake, propose) => {
    fake.script(reply(answer('w', edit('WIDTH = 8\n', 'WIDTH = 12\n')), { usage: u1 }));
    const r = await propose({ ...context(), model: 'claude-opus-5-5', effort: 'high' } as ProposerContext);
    assert.equal(fake.requests[0].body.model, 'claude-opus-5-5');
    assert.equal(fake.requests[0].body.output_config.effort, 'high');
    near(r.costUsd!, (7825 * 4 + 345 * 20) / 1e6, 'Opus 5.5 at $4/$20');
  });
  assert.throws(
    () => costOf('claude-unknown-9', { inputTokens: 1, outputTokens: 1, cacheReadTokens: 0, cacheWriteTokens: 0 }),
    (e: Error) => KNOWN_MODELS.every((m) => e.message.includes(m)),
  );
  near(
    costOf('claude-haiku-4-5-20251001', {
      inputTokens: 1e6,
      outputTokens: 1e6,
      cacheReadTokens: 0,
      cacheWriteTokens: 0,
    }),
    6,
    'a dated snapshot prices as its alias',
  );
});

test('an unknown model pauses the campaign before any request is paid for', async () => {
  await withFake(async (fake, propose) => {
    const err = await caught(propose({ ...context(), model: 'claude-unknown-9' } as ProposerContext));
    assert.ok(err instanceof ApplicationFailure && err.nonRetryable && err.type === 'UnknownModel', String(err));
    assert.match(err.message, /claude-sonnet-5-5/);
    assert.equal(fake.requests.length, 0);
  });
});

test('529 twice: the SDK retries once, then the error is thrown for the activity to retry; the next attempt succeeds', async () => {
  await withFake(async (fake, propose) => {
    fake.script(overloaded(), overloaded(), reply(answer('w', edit('WIDTH = 8\n', 'WIDTH = 20\n'))));
    const err = await caught(propose());
    assert.ok(err instanceof ApplicationFailure && !err.nonRetryable, `retryable: ${err}`);
    assert.match(err.message, /529/);
    assert.equal(fake.requests.length, 2, 'one SDK retry (maxRetries 1)');
    const r = await propose();
    assert.match(r.files!['train.py'], /^WIDTH = 20$/m);
    assert.equal(fake.requests.length, 3);
  });
  // With more SDK retries the same script succeeds within one call.
  await withFake(
    async (fake, propose) => {
      fake.script(overloaded(), overloaded(), reply(answer('w', edit('WIDTH = 8\n', 'WIDTH = 20\n'))));
      assert.match((await propose()).files!['train.py'], /^WIDTH = 20$/m);
      assert.equal(fake.requests.length, 3);
    },
    { maxRetries: 2 },
  );
});

test('400 is a rejected proposal, not retried; 429 and 5xx are retryable', async () => {
  await withFake(async (fake, propose) => {
    fake.script(apiError(400, 'invalid_request_error', 'prompt is too long: 210000 tokens > 200000 maximum'));
    const err = await caught(propose());
    assert.ok(err instanceof ProposalRejected, String(err));
    assert.match(err.message, /400 invalid_request_error: prompt is too long/);
    assert.equal(fake.requests.length, 1, 'a 400 is not retried by the SDK either');

    fake.script(apiError(429, 'rate_limit_error', 'slow down'), apiError(429, 'rate_limit_error', 'slow down'));
    const limited = await caught(propose());
    assert.ok(
      limited instanceof ApplicationFailure && !limited.nonRetryable && limited.type === 'rate_limit_error',
      String(limited),
    );

    fake.script(apiError(500, 'api_error', 'internal'), apiError(503, 'api_error', 'unavailable'));
    const internal = await caught(propose());
    assert.ok(internal instanceof ApplicationFailure && !internal.nonRetryable, String(internal));
  });
});

test('an overloaded error mid-stream throws a retryable error', async () => {
  await withFake(async (fake, propose) => {
    fake.script(overloadedMidStream());
    const err = await caught(propose());
    assert.ok(err instanceof ApplicationFailure && !err.nonRetryable, String(err));
    assert.equal(err.type, 'overloaded_error');
    assert.match(err.message, /Overloaded/);
    assert.equal(fake.requests.length, 1, 'the SDK does not retry an error event');
  });
});

test('an unreachable API is retryable', async () => {
  const fake = await startFakeAnthropic();
  const baseURL = fake.baseURL;
  await fake.close();
  const err = await caught(
    anthropicProposer({ apiKey: CANARY, baseURL, maxRetries: 0 })(context(), new AbortController().signal),
  );
  assert.ok(err instanceof ApplicationFailure && !err.nonRetryable && err.type === 'APIConnectionError', String(err));
});

test('an edit whose search text is not found gets a "did you mean" turn, then applies', async () => {
  await withFake(async (fake, propose) => {
    fake.script(
      reply(answer('lr', edit('LEARNING_RATE=0.5', 'LEARNING_RATE=0.2'))),
      reply(answer('lower the learning rate to 0.2', edit('LEARNING_RATE = 0.5', 'LEARNING_RATE = 0.2'))),
    );
    const r = await propose();
    assert.match(r.files!['train.py'], /^LEARNING_RATE = 0.2$/m);
    assert.equal(r.description, 'lower the learning rate to 0.2');
    const second = fake.requests[1].body;
    assert.deepEqual(
      second.messages.map((m: { role: string }) => m.role),
      ['user', 'assistant', 'user'],
    );
    const feedback: string = second.messages[2].content;
    assert.match(feedback, /Edit 1 \(train\.py\): the search text was not found/);
    const lr = lineOf((l) => l.startsWith('LEARNING_RATE'));
    assert.match(feedback, new RegExp(`Did you mean lines ${lr}-${lr}`));
    assert.ok(feedback.includes('```\nLEARNING_RATE = 0.5\n```'), feedback);
    // The cached prefix is sent again unchanged, so the second turn reads it from the cache.
    assert.deepEqual(second.messages[0], fake.requests[0].body.messages[0]);
  });
});

test('ambiguous or malformed replies get at most two more turns, then the proposal is rejected with its cost', async () => {
  await withFake(async (fake, propose) => {
    // "mode ==" is on four lines: ambiguous; then not JSON; then a search that is nowhere.
    fake.script(
      reply(answer('a', edit('mode ==', 'mode !='))),
      reply('I would lower the learning rate.'),
      reply(answer('c', edit('OPTIMIZER = "adam"', 'OPTIMIZER = "sgd"'))),
      reply(answer('never asked for', edit('WIDTH = 8\n', 'WIDTH = 9\n'))),
    );
    const err = await caught(propose());
    assert.ok(err instanceof ProposalRejected, String(err));
    assert.match(err.message, /could not be applied after 3 replies/);
    assert.match(err.message, /Nothing in the file resembles it/);
    near((err as ProposalRejected).costUsd, 3 * priceOfReply(SONNET), 'the three replies are paid for');
    assert.equal(fake.requests.length, 3);
    const modes = TRAIN.split('\n').flatMap((l, i) => (l.includes('mode ==') ? [i + 1] : []));
    assert.equal(modes.length, 4);
    assert.match(
      fake.requests[1].body.messages[2].content,
      new RegExp(`matches 4 places \\(lines ${modes.join(', ')}\\)`),
    );
    assert.match(fake.requests[2].body.messages[4].content, /could not be read: it is not JSON/);
    assert.equal(fake.pending(), 1);
  });
  assert.match(didYouMean('a = 1\n    b = 2\nc = 3\n', 'b = 2'), /lines 2-2 \(they differ only in whitespace/);
});

test('truncated, refused, empty, no-op and out-of-bounds replies are rejected', async () => {
  await withFake(
    async (fake, propose) => {
      const cases: [ReturnType<typeof reply>, RegExp][] = [
        [
          reply('{"description": "lower LR", "edits": [{"file": "train.py", "search": "LEARN', {
            stopReason: 'max_tokens',
          }),
          /truncated at max_tokens/,
        ],
        [reply('', { stopReason: 'refusal' }), /refused/],
        [reply(answer('nothing')), /empty edit/],
        [reply(answer('same', edit('WIDTH = 8', 'WIDTH = 8'))), /no-op/],
        [
          reply(answer('cheat', edit('EVAL_TOKENS = 1000', 'EVAL_TOKENS = 10', 'prepare.py'))),
          /may not be edited: prepare\.py \(locked: prepare\.py\)/,
        ],
        [reply(answer('elsewhere', edit('x', 'y', 'other.py'))), /may not be edited: other\.py/],
      ];
      for (const [behaviour, reason] of cases) {
        fake.script(behaviour);
        const err = await caught(propose());
        assert.ok(err instanceof ProposalRejected, String(err));
        assert.match(err.message, reason);
        near((err as ProposalRejected).costUsd, priceOfReply(SONNET), `a rejected reply still costs (${reason})`);
      }
      assert.equal(fake.requests.length, cases.length, 'none of them gets another turn');
    },
    { maxTokens: 100 },
  );
});

test('401 and 403 are non-retryable authentication failures; the key never appears in any error', async () => {
  await withFake(
    async (fake, propose) => {
      const err = await caught(propose());
      assert.ok(
        err instanceof ApplicationFailure && err.nonRetryable && err.type === 'AuthenticationError',
        String(err),
      );
      assert.match(
        err.message,
        /^Anthropic API authentication failed: check ANTHROPIC_API_KEY on the orchestrator worker, then resume \(401 authentication_error: invalid x-api-key\)$/,
      );
      assert.equal(fake.requests[0].answer, '401 authentication_error');
    },
    { apiKey: 'sk-ant-wrong-key' },
  );
  await withFake(async (fake, propose) => {
    // A proxy that echoes the key back in its error message: it is scrubbed.
    fake.script(apiError(403, 'permission_error', `key ${CANARY} may not use this model`));
    const err = await caught(propose());
    assert.ok(err instanceof ApplicationFailure && err.nonRetryable && err.type === 'AuthenticationError', String(err));
    assert.match(err.message, /key \[redacted\] may not use/);
    fake.script(apiError(400, 'invalid_request_error', `bad request from ${CANARY}`));
    assert.match((await caught(propose())).message, /bad request from \[redacted\]/);
  });
});

test('the fake also answers non-streaming requests, and refuses what the real API refuses', async () => {
  const fake = await startFakeAnthropic({ apiKey: CANARY });
  try {
    const client = new Anthropic({ apiKey: CANARY, baseURL: fake.baseURL, maxRetries: 0 });
    fake.script(reply('hello', { usage: { input_tokens: 7, output_tokens: 3 } }));
    const m = await client.messages.create({
      model: SONNET,
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(m.content[0].type === 'text' && m.content[0].text, 'hello');
    assert.equal(m.usage.input_tokens, 7);
    assert.equal(fake.requests[0].body.stream, undefined);
    await assert.rejects(
      client.messages.create({
        model: SONNET,
        max_tokens: 100,
        temperature: 0.5,
        messages: [{ role: 'user', content: 'hi' }],
      } as never),
      /temperature/,
    );
    await assert.rejects(
      client.messages.create({
        model: SONNET,
        max_tokens: 100,
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: '{' },
        ],
      }),
      /prefill/,
    );
  } finally {
    await fake.close();
  }
});

test('the worker offers the anthropic proposer only when ANTHROPIC_API_KEY is set', () => {
  assert.deepEqual(Object.keys(workerProposers({})), []);
  assert.deepEqual(
    Object.keys(workerProposers({ ANTHROPIC_API_KEY: CANARY, ANTHROPIC_BASE_URL: 'http://127.0.0.1:9' })),
    ['anthropic'],
  );
});

/** Every readable file under a directory, for a search for the key. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

/**
 * History as text with payload bytes decoded. JSON.stringify alone would not do: protobuf
 * messages serialise bytes as base64, where a leaked key would not be found.
 */
function historyText(history: unknown): string {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (v instanceof Uint8Array) out.push(Buffer.from(v).toString('utf8'));
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.keys(v).forEach((k) => walk((v as Record<string, unknown>)[k]));
    else if (v !== null && v !== undefined) out.push(String(v));
  };
  walk(history);
  return out.join('\n');
}

test('a campaign with the anthropic proposer: expected keeps and discards, a 529 loses nothing, cost totals add up, the key stays secret', async () => {
  const fake = await startFakeAnthropic({ apiKey: CANARY });
  const l = await lab({
    deps: { proposers: { anthropic: anthropicProposer({ apiKey: CANARY, baseURL: fake.baseURL }) } },
  });
  try {
    // val_bpb = (LR-0.12)^2 + (WIDTH-20)^2/400 + 1; the baseline (0.5, 8) gives 1.5044.
    const usage: Partial<FakeUsage>[] = [
      { input_tokens: 900, output_tokens: 400, cache_write_1h: 2500 },
      { input_tokens: 950, output_tokens: 300, cache_read_input_tokens: 2500 },
      { input_tokens: 990, output_tokens: 250, cache_read_input_tokens: 2500, cache_write_5m: 40 },
      { input_tokens: 1010, output_tokens: 350, cache_read_input_tokens: 2500 },
    ];
    fake.script(
      // 1: LR 0.5 → 0.12: 1.36, keep.
      reply(answer('lower the learning rate to 0.12', edit('LEARNING_RATE = 0.5\n', 'LEARNING_RATE = 0.12\n')), {
        usage: usage[0],
      }),
      // 2: overloaded for the first try and the SDK's retry; the activity retries and gets it.
      overloaded(),
      overloaded(),
      // 2: WIDTH 8 → 4 (on top of the kept LR): 1.64, discard.
      dynamic((req) => {
        // The kept edit is what experiment 2 is shown.
        assert.match(req.body.messages[0].content[0].text, /^LEARNING_RATE = 0\.12$/m);
        return reply(answer('halve the width to 4', edit('WIDTH = 8\n', 'WIDTH = 4\n')), { usage: usage[1] });
      }),
      // 3: an edit of the locked file: rejected, still paid for; then WIDTH 8 → 20: 1.0, keep.
      reply(answer('shrink the eval', edit('EVAL_TOKENS = 1000', 'EVAL_TOKENS = 10', 'prepare.py')), {
        usage: usage[2],
      }),
      dynamic((req) => {
        assert.match(req.body.messages[0].content[2].text, /previous proposal was rejected[\s\S]*prepare\.py/);
        return reply(answer('widen to 20', edit('WIDTH = 8\n', 'WIDTH = 20\n')), { usage: usage[3] });
      }),
    );
    const repo = await makeRepo();
    const c = await l.start(repo, {
      proposer: { kind: 'anthropic', seed: 0, model: SONNET },
      budget: { maxExperiments: 3 },
      lookahead: 0,
    });
    const status = await c.result();

    assert.equal(status.state, 'completed', status.message);
    const rows = experiments(c.campaignDir);
    assert.deepEqual(
      rows.map((r) => [r.experiment, r.status, r.metric]),
      [
        [0, 'keep', 1.5044],
        [1, 'keep', 1.36],
        [2, 'discard', 1.64],
        [3, 'keep', 1],
      ],
    );
    assert.deepEqual(
      rows.map((r) => r.description),
      ['baseline', 'lower the learning rate to 0.12', 'halve the width to 4', 'widen to 20'],
    );
    assert.equal(status.experiments, 3);
    assert.equal(status.kept, 2);
    assert.equal(status.bestMetric, 1);
    const rejected = readLedger(c.campaignDir).filter((r) => r.kind === 'rejected');
    assert.equal(rejected.length, 1);
    assert.match(rejected[0].kind === 'rejected' ? rejected[0].reason : '', /prepare\.py/);
    assert.equal(fake.pending(), 0, 'every scripted reply was used, none twice');
    assert.equal(fake.requests.length, 6);

    // Cost: each request's usage times the price table, per row and in total.
    const costs = usage.map((u) => priceOfReply(SONNET, u));
    const total = costs.reduce((a, b) => a + b, 0);
    near(status.costUsd, total, 'campaign cost total');
    near(rows[1].costUsd, costs[0], 'experiment 1 cost');
    near(rows[2].costUsd, costs[1], 'experiment 2 cost');
    // An experiment's cost is every proposal it took: the rejected one, then the one that ran.
    near(rows[3].costUsd, costs[2] + costs[3], 'experiment 3 cost');
    near(rejected[0].costUsd, costs[2], 'the rejected proposal cost');

    const handle = l.client.workflow.getHandle(campaignWorkflowId(c.tag));
    const desc = await handle.describe();
    const sa = Object.fromEntries(desc.typedSearchAttributes.getAll().map((p) => [p.key.name, p.value]));
    near(sa.NightlabCostUsd as number, Math.round(total * 1e6) / 1e6, 'NightlabCostUsd');

    // The 529s were retried by the activity, visibly: its started event says attempt 2.
    const history = await handle.fetchHistory();
    const retried = history.events!.filter((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 1) > 1);
    assert.equal(retried.length, 1);
    assert.match(retried[0].activityTaskStartedEventAttributes!.lastFailure!.message!, /529 overloaded_error/);

    // The key: in every request's header, nowhere else.
    assert.ok(fake.requests.every((r) => r.headers.authorization === `Bearer ${CANARY}`));
    const text = historyText(history);
    assert.ok(
      text.includes('lower the learning rate to 0.12'),
      'payloads are decoded, so the search below means something',
    );
    assert.ok(!text.includes(CANARY), 'the key is not in the workflow history');
    const files = [...filesUnder(c.campaignDir), ...filesUnder(l.home)];
    assert.ok(files.some((f) => f.endsWith('ledger.jsonl')) && files.some((f) => f.endsWith('.log')), files.join('\n'));
    for (const f of files) assert.ok(!readFileSync(f).includes(CANARY), `the key is in ${f}`);
    const repoText = await git(repo).raw(['log', '--all', '--notes=nightlab', '-p']);
    assert.ok(repoText.includes('widen to 20') && !repoText.includes(CANARY), 'the key is not in commits or notes');
  } finally {
    await l.close();
    await fake.close();
  }
});

test('a rejected key pauses the campaign with a clear message and burns no experiment', async () => {
  const fake = await startFakeAnthropic({ apiKey: CANARY });
  const wrongKey = 'sk-ant-wrong-5e0d1c2b3a49-do-not-log';
  const l = await lab({
    deps: { proposers: { anthropic: anthropicProposer({ apiKey: wrongKey, baseURL: fake.baseURL }) } },
  });
  try {
    const c = await l.start(await makeRepo(), {
      proposer: { kind: 'anthropic', seed: 0, model: SONNET },
      budget: { maxExperiments: 3 },
      lookahead: 0,
    });
    const handle = l.client.workflow.getHandle(campaignWorkflowId(c.tag));
    const paused = await waitFor('the campaign to pause', async () => {
      const s = await handle.query(statusQuery);
      return s.state === 'paused' ? s : null;
    });
    assert.match(
      paused.message,
      /^paused: the proposer failed: Anthropic API authentication failed: check ANTHROPIC_API_KEY on the orchestrator worker/,
    );
    assert.equal(paused.experiments, 0);
    assert.deepEqual(
      experiments(c.campaignDir).map((r) => r.experiment),
      [0],
      'only the baseline',
    );
    assert.equal(readLedger(c.campaignDir).filter((r) => r.kind === 'rejected').length, 0);
    assert.equal(fake.requests.length, 1, 'an authentication failure is not retried');

    await handle.signal(stopSignal);
    const status = await c.result();
    assert.equal(status.state, 'stopped');
    assert.ok(!historyText(await handle.fetchHistory()).includes(wrongKey), 'the key is not in the workflow history');
  } finally {
    await l.close();
    await fake.close();
  }
});
