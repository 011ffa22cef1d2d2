// The `anthropic` proposer: Claude reads the context and answers with search/replace edits to the
// editable files and a one-line description, as JSON (structured output, so parsing is exact).
//
// Failure policy, chosen so that a flaky API never costs an experiment and a bad reply never
// loops forever:
//   - 408/409/429/5xx/529, connection errors and errors mid-stream: thrown as retryable; the
//     propose activity's retry policy (Temporal, with backoff) tries again. The SDK's own retries
//     are kept low so retries show up in the workflow's history.
//   - 401/403 (and 402, 404: key, billing or model problems a person must fix): non-retryable
//     ApplicationFailure, which pauses the campaign with the message as its status.
//   - other 4xx (400 …): ProposalRejected, recorded as a rejected proposal, not retried.
//   - replies that are truncated, refused, malformed, edit other files, or change nothing:
//     ProposalRejected; edits whose search text does not match exactly once get a bounded
//     "did you mean" exchange first.
// The API key lives in the client object only; every message that leaves here is scrubbed of it.
import Anthropic, { APIConnectionError, APIError, APIUserAbortError, AnthropicError } from '@anthropic-ai/sdk';

type MessageParam = Anthropic.MessageParam;
type TextBlockParam = Anthropic.TextBlockParam;
type Usage = Anthropic.Usage;
import { ApplicationFailure, asyncLocalStorage } from '@temporalio/activity';
import { z } from 'zod';
import type { TokenUsage } from '../common/shared';
import { ProposalRejected, contextSections, type ProposerContext, type Proposer } from './context';
import { cleanDescription } from '../lib/ledger';
import { costOf, priceOf } from '../common/prices';

export interface AnthropicProposerOptions {
  apiKey: string;
  /** ANTHROPIC_BASE_URL: a proxy, or the local fake API in tests. */
  baseURL?: string;
  /** Output budget per request, thinking included. */
  maxTokens?: number;
  /** The SDK's own retries per request; further retries are the activity's. */
  maxRetries?: number;
}

const DEFAULT_MAX_TOKENS = 32_000;
/** "Did you mean" turns after the first reply, before the proposal is rejected. */
export const MAX_FIX_TURNS = 2;
/** The 1-hour TTL: experiments take ~5 minutes each, so a 5-minute cache would expire between them. */
const CACHE = { type: 'ephemeral', ttl: '1h' } as const;
const HEARTBEAT_MS = 10_000;

const replySchema = z.object({
  description: z.string(),
  edits: z.array(z.object({ file: z.string(), search: z.string(), replace: z.string() })),
});
type Reply = z.infer<typeof replySchema>;

/** The same shape, as the JSON schema the API constrains the reply to. */
const REPLY_FORMAT = {
  type: 'json_schema',
  schema: {
    type: 'object',
    properties: {
      description: {
        type: 'string',
        description: 'One line saying what this experiment tries, e.g. "lower LR to 0.02 and double warmup".',
      },
      edits: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            file: { type: 'string', description: 'Path of an editable file.' },
            search: {
              type: 'string',
              description: 'Exact text copied from the current file, matching exactly one place.',
            },
            replace: { type: 'string', description: 'The text that replaces it.' },
          },
          required: ['file', 'search', 'replace'],
          additionalProperties: false,
        },
      },
    },
    required: ['description', 'edits'],
    additionalProperties: false,
  },
} as const;

const RULES = `You are an ML researcher running an autonomous research campaign. Each experiment is one
idea: a small edit to the editable files, trained for a fixed time budget and judged by one metric.
Improvements are kept (later experiments build on them); everything else is discarded.

You receive the instructions, the files, every experiment so far and the current best. Propose the
next experiment: one focused idea that you expect to improve the metric, informed by what has and
has not worked. Do not repeat an experiment that was already tried. Keep the code runnable: a crash
wastes a whole experiment. Never edit locked files or change how the metric is computed.

Reply with a JSON object only:
{"description": "<one line, what this experiment tries>",
 "edits": [{"file": "<editable file>", "search": "<exact current text>", "replace": "<new text>"}]}

Edit rules:
- "search" is copied character for character from the current file, indentation and blank lines
  included, and must match exactly one place in it: include a few surrounding lines to make it
  unique. Keep it short otherwise.
- Edits apply in order; a later edit of the same file sees the earlier edits' result.
- Only the editable files may be edited.`;

export function anthropicProposer(opts: AnthropicProposerOptions): Proposer {
  // One client per worker: it holds the key; nothing else in the process does.
  const client = new Anthropic({
    apiKey: opts.apiKey,
    authToken: null,
    baseURL: opts.baseURL || undefined,
    maxRetries: opts.maxRetries ?? 1,
  });
  const scrub = (text: string) => (opts.apiKey ? text.split(opts.apiKey).join('[redacted]') : text);

  return async (ctx, signal) => {
    // The campaign's config chooses the model and effort; history shows which one ran.
    const { model, effort } = ctx;
    try {
      priceOf(model);
    } catch (e) {
      // A model without a price would make the cost budget meaningless: a config mistake to fix.
      throw ApplicationFailure.nonRetryable((e as Error).message, 'UnknownModel');
    }

    const spent = new Spend(model);
    const messages: MessageParam[] = [{ role: 'user', content: contextBlocks(ctx) }];
    // The activity has a heartbeat timeout; a long thinking phase streams nothing for minutes.
    const activity = asyncLocalStorage.getStore();
    const beat = activity ? setInterval(() => activity.heartbeat(), HEARTBEAT_MS) : undefined;
    try {
      for (let turn = 0; ; turn++) {
        const message = await client.messages
          .stream(
            {
              model,
              max_tokens: opts.maxTokens ?? DEFAULT_MAX_TOKENS,
              system: [{ type: 'text', text: RULES, cache_control: CACHE }],
              messages,
              output_config: { effort, format: REPLY_FORMAT },
            },
            { signal },
          )
          .finalMessage();
        spent.add(message.usage);

        const stop = message.stop_reason;
        if (stop === 'max_tokens')
          throw spent.reject(
            `reply truncated at max_tokens (${opts.maxTokens ?? DEFAULT_MAX_TOKENS} tokens); nothing was applied`,
          );
        if (stop === 'refusal')
          throw spent.reject(
            `the model refused to propose an edit${message.stop_details?.category ? ` (${message.stop_details.category})` : ''}`,
          );
        if (stop === 'model_context_window_exceeded')
          throw spent.reject(
            "the context exceeds the model's context window; shorten program.md or the editable files",
          );
        if (stop !== 'end_turn' && stop !== 'stop_sequence') throw spent.reject(`unexpected stop_reason ${stop}`);

        const text = message.content.flatMap((b) => (b.type === 'text' ? [b.text] : [])).join('');
        const outcome = interpret(ctx, text);
        if (outcome.kind === 'reject') throw spent.reject(outcome.reason);
        if (outcome.kind === 'ok') {
          return {
            description: cleanDescription(outcome.description),
            files: outcome.files,
            costUsd: spent.costUsd,
            usage: spent.usage,
          };
        }
        if (turn >= MAX_FIX_TURNS)
          throw spent.reject(
            `the edits could not be applied after ${turn + 1} replies: ${cleanDescription(outcome.problem)}`,
          );
        // Did you mean: the reply, then what went wrong and what the file really says.
        messages.push({ role: 'assistant', content: text || '(empty reply)' });
        messages.push({ role: 'user', content: outcome.problem });
      }
    } catch (err) {
      throw classify(err, { signal, model, costUsd: spent.costUsd, scrub });
    } finally {
      if (beat) clearInterval(beat);
    }
  };
}

/** Tokens and dollars over every request of one proposal. */
class Spend {
  usage: TokenUsage = { inputTokens: 0, cacheWriteTokens: 0, cacheReadTokens: 0, outputTokens: 0 };
  costUsd = 0;
  constructor(private readonly model: string) {}

  add(u: Usage): void {
    const one: TokenUsage = {
      inputTokens: u.input_tokens ?? 0,
      cacheWriteTokens: u.cache_creation_input_tokens ?? 0,
      cacheReadTokens: u.cache_read_input_tokens ?? 0,
      outputTokens: u.output_tokens ?? 0,
    };
    // Priced per request: the 5-minute/1-hour split of cache writes is known per response only.
    this.costUsd += costOf(this.model, {
      ...one,
      cacheWrite5mTokens: u.cache_creation?.ephemeral_5m_input_tokens ?? 0,
    });
    for (const k of Object.keys(one) as (keyof TokenUsage)[]) this.usage[k] += one[k];
  }

  reject(reason: string): ProposalRejected {
    return new ProposalRejected(reason, this.costUsd);
  }
}

/**
 * The context as three user blocks, most stable first, so the cached prefix survives as long as
 * possible (see `contextSections`).
 */
export function contextBlocks(ctx: ProposerContext): TextBlockParam[] {
  const { files, history, task } = contextSections(ctx);
  return [
    { type: 'text', text: files.join('\n\n'), cache_control: CACHE },
    { type: 'text', text: history.join('\n\n'), cache_control: CACHE },
    { type: 'text', text: task.join('\n\n') },
  ];
}

type Interpretation =
  | { kind: 'ok'; description: string; files: Record<string, string> }
  | { kind: 'retry'; problem: string }
  | { kind: 'reject'; reason: string };

/** What a reply's text amounts to: new file contents, a problem worth one more turn, or a rejection. */
export function interpret(ctx: Pick<ProposerContext, 'editable' | 'locked'>, text: string): Interpretation {
  const parsed = parseReply(text);
  if (typeof parsed === 'string') {
    return {
      kind: 'retry',
      problem: `Your reply could not be read: ${parsed}. Reply with only the JSON object {"description": ..., "edits": [{"file": ..., "search": ..., "replace": ...}]}.`,
    };
  }
  if (parsed.edits.length === 0) return { kind: 'reject', reason: 'empty edit: the reply proposed no edits' };
  const editable = new Map(ctx.editable.map((f) => [f.path, f.content]));
  const strangers = [...new Set(parsed.edits.map((e) => e.file).filter((f) => !editable.has(f)))];
  if (strangers.length) {
    const locked = strangers.filter((f) => ctx.locked.some((l) => l.path === f));
    return {
      kind: 'reject',
      reason: `edits to file(s) that may not be edited: ${strangers.join(', ')}${locked.length ? ` (locked: ${locked.join(', ')})` : ''}; editable: ${[...editable.keys()].join(', ')}`,
    };
  }

  const { files, problems } = applyEdits(editable, parsed.edits);
  if (problems.length) {
    return {
      kind: 'retry',
      problem: `Your edits could not be applied, so nothing was changed:\n\n${problems.join('\n\n')}\n\nReply again with the complete list of edits (all of them, not only the failing ones), in the same JSON format. Copy each "search" exactly from the current file.`,
    };
  }
  const changed = Object.fromEntries(Object.entries(files).filter(([f, content]) => content !== editable.get(f)));
  if (Object.keys(changed).length === 0)
    return { kind: 'reject', reason: 'no-op edit: the edits leave every file unchanged' };
  return { kind: 'ok', description: parsed.description, files: changed };
}

/** The reply as JSON; a string says why it is not. Tolerates a code fence or prose around the object. */
function parseReply(text: string): Reply | string {
  if (!text.trim()) return 'it was empty';
  const candidates = [text.trim()];
  const fenced = /```(?:json)?\s*\n([\s\S]*?)\n```/.exec(text);
  if (fenced) candidates.push(fenced[1]);
  const first = text.indexOf('{');
  const last = text.lastIndexOf('}');
  if (first >= 0 && last > first) candidates.push(text.slice(first, last + 1));
  let lastError = 'it is not JSON';
  for (const c of candidates) {
    let json: unknown;
    try {
      json = JSON.parse(c);
    } catch {
      continue;
    }
    const r = replySchema.safeParse(json);
    if (r.success) return r.data;
    lastError = `it does not match the schema (${r.error.issues.map((i) => `${i.path.join('.') || 'reply'}: ${i.message}`).join('; ')})`;
  }
  return lastError;
}

/**
 * Applies the edits in order, each with exact-one-match semantics. Edits that fail are skipped
 * and described (with the closest text when it is not found), so one turn can fix all of them.
 */
export function applyEdits(
  original: Map<string, string>,
  edits: Reply['edits'],
): { files: Record<string, string>; problems: string[] } {
  const files = Object.fromEntries(original);
  const problems: string[] = [];
  edits.forEach((e, i) => {
    const where = `Edit ${i + 1} (${e.file})`;
    const content = files[e.file];
    if (e.search === '') {
      problems.push(`${where}: "search" is empty; quote the exact lines to replace.`);
      return;
    }
    const at = occurrences(content, e.search);
    if (at.length === 1) {
      // Slicing, not String.replace: "$&" and friends in the new code must stay literal.
      files[e.file] = content.slice(0, at[0]) + e.replace + content.slice(at[0] + e.search.length);
    } else if (at.length > 1) {
      const lines = at.map((offset) => lineOf(content, offset));
      problems.push(
        `${where}: the search text matches ${at.length} places (lines ${lines.join(', ')}); include more surrounding lines so that it matches exactly one.`,
      );
    } else {
      problems.push(`${where}: the search text was not found in ${e.file}.${didYouMean(content, e.search)}`);
    }
  });
  return { files, problems };
}

function occurrences(text: string, search: string): number[] {
  const found: number[] = [];
  for (let i = text.indexOf(search); i >= 0; i = text.indexOf(search, i + search.length)) found.push(i);
  return found;
}

function lineOf(text: string, offset: number): number {
  return text.slice(0, offset).split('\n').length;
}

/** The file's lines most like the search text, for the model to copy from. */
export function didYouMean(content: string, search: string): string {
  const fileLines = content.split('\n');
  const want = search.replace(/^\n+|\n+$/g, '').split('\n');
  const k = Math.min(want.length, fileLines.length);
  if (k === 0) return '';
  const wantGrams = want.map((l) => bigrams(l.trim()));
  const fileGrams = fileLines.map((l) => bigrams(l.trim()));
  let best = { score: -1, start: 0 };
  for (let s = 0; s + k <= fileLines.length; s++) {
    let score = 0;
    for (let i = 0; i < k; i++) score += dice(wantGrams[i], fileGrams[s + i]);
    if (score > best.score) best = { score, start: s };
  }
  // Below this the "closest" lines are noise; showing them would only mislead.
  if (best.score / k < 0.4) return ' Nothing in the file resembles it; copy the lines to change from the file above.';
  const lines = fileLines.slice(best.start, best.start + k);
  const sameButSpacing = lines.map((l) => l.trim()).join('\n') === want.map((l) => l.trim()).join('\n');
  return ` Did you mean lines ${best.start + 1}-${best.start + k}${sameButSpacing ? ' (they differ only in whitespace or indentation)' : ''}:\n\`\`\`\n${lines.join('\n')}\n\`\`\``;
}

function bigrams(s: string): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < s.length - 1; i++) m.set(s.slice(i, i + 2), (m.get(s.slice(i, i + 2)) ?? 0) + 1);
  if (s.length === 1) m.set(s, 1);
  return m;
}

/** Sørensen–Dice similarity of two bigram bags: 1 for equal lines, 0 for nothing shared. */
function dice(a: Map<string, number>, b: Map<string, number>): number {
  let na = 0;
  let nb = 0;
  let both = 0;
  for (const n of a.values()) na += n;
  for (const n of b.values()) nb += n;
  if (na === 0 && nb === 0) return 1;
  for (const [g, n] of a) both += Math.min(n, b.get(g) ?? 0);
  return (2 * both) / (na + nb);
}

/** Turns an SDK error into what the activity should do with it (see the header comment). */
function classify(
  err: unknown,
  c: { signal: AbortSignal; model: string; costUsd: number; scrub: (s: string) => string },
): Error {
  if (err instanceof ProposalRejected || err instanceof ApplicationFailure) return err;
  if (c.signal.aborted || err instanceof APIUserAbortError)
    return c.signal.reason instanceof Error ? c.signal.reason : (err as Error);
  if (err instanceof APIConnectionError)
    return ApplicationFailure.retryable(`Anthropic API unreachable, will retry (${c.scrub(err.message)})`, err.name);
  if (err instanceof APIError) {
    const status = err.status;
    // Status, error type and the API's own message; never headers, never the request.
    const what = c.scrub(
      `${status ?? 'error event mid-stream'} ${err.type ?? err.name}: ${err.apiMessage ?? err.message}`,
    );
    if (status === 401 || status === 403) {
      return ApplicationFailure.nonRetryable(
        `Anthropic API authentication failed: check ANTHROPIC_API_KEY on the orchestrator worker, then resume (${what})`,
        'AuthenticationError',
      );
    }
    if (status === 402)
      return ApplicationFailure.nonRetryable(
        `Anthropic API billing problem: check the account, then resume (${what})`,
        'BillingError',
      );
    if (status === 404)
      return ApplicationFailure.nonRetryable(
        `Anthropic API not found: check proposer.model ("${c.model}") and ANTHROPIC_BASE_URL (${what})`,
        'NotFoundError',
      );
    if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 409 && status !== 429) {
      return new ProposalRejected(`Anthropic API rejected the request (${what})`, c.costUsd);
    }
    // 408/409/429/5xx/529, and error events mid-stream (status undefined, e.g. overloaded_error).
    return ApplicationFailure.retryable(`Anthropic API error, will retry (${what})`, err.type ?? err.name);
  }
  // The stream ended early, or similar: transient by nature.
  if (err instanceof AnthropicError)
    return ApplicationFailure.retryable(`Anthropic API error, will retry (${c.scrub(err.message)})`, err.name);
  if (err instanceof Error && c.scrub(err.message) === err.message) return err;
  return new Error(c.scrub(err instanceof Error ? err.message : String(err)));
}
