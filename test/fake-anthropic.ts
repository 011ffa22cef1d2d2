// A local stand-in for the paid Anthropic Messages API: the real SDK talks HTTP to it.
// POST /v1/messages, streaming (SSE) and not, answering from a queue of scripted behaviours,
// and recording every request (body and headers) for the tests to inspect.
// It also refuses what the real API refuses and a client could get wrong (sampling parameters,
// prefill, too many cache breakpoints, a wrong key), so a test passes only if the request would.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeUsage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens: number;
  /** Tokens written to the 1-hour and the 5-minute cache; their sum is cache_creation_input_tokens. */
  cache_write_1h: number;
  cache_write_5m: number;
}

export type Behaviour =
  /** A complete reply: its text, usage and stop reason (end_turn unless given). */
  | { kind: 'reply'; text: string; usage?: Partial<FakeUsage>; stopReason?: string; thinking?: string }
  /** An HTTP error with Anthropic's error body, e.g. 529 overloaded_error, 401 authentication_error. */
  | { kind: 'error'; status: number; type: string; message: string }
  /** Streaming starts (200, message_start, some text), then an `error` event and the end. */
  | { kind: 'error-mid-stream'; type: string; message: string }
  /** Computed from the request, for replies that depend on what was asked. */
  | { kind: 'dynamic'; respond: (req: RecordedRequest) => Behaviour };

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: any;
  /** What the fake answered: the behaviour's kind and status. */
  answer?: string;
}

export const DEFAULT_USAGE: FakeUsage = {
  input_tokens: 1000,
  output_tokens: 200,
  cache_read_input_tokens: 0,
  cache_write_1h: 0,
  cache_write_5m: 0,
};

// Builders for the queue.
export const reply = (
  text: string | object,
  opts: { usage?: Partial<FakeUsage>; stopReason?: string; thinking?: string } = {},
): Behaviour => ({
  kind: 'reply',
  text: typeof text === 'string' ? text : JSON.stringify(text),
  ...opts,
});
export const apiError = (status: number, type: string, message: string): Behaviour => ({
  kind: 'error',
  status,
  type,
  message,
});
export const overloaded = (): Behaviour => apiError(529, 'overloaded_error', 'Overloaded');
export const overloadedMidStream = (): Behaviour => ({
  kind: 'error-mid-stream',
  type: 'overloaded_error',
  message: 'Overloaded',
});
export const dynamic = (respond: (req: RecordedRequest) => Behaviour): Behaviour => ({ kind: 'dynamic', respond });

export interface FakeAnthropic {
  baseURL: string;
  requests: RecordedRequest[];
  /** Appends behaviours; each request takes the first one left. */
  script(...behaviours: Behaviour[]): void;
  /** Behaviours not consumed yet. */
  pending(): number;
  close(): Promise<void>;
}

/**
 * Starts the fake on a free port of 127.0.0.1. With `apiKey`, requests must carry
 * `Authorization: Bearer <apiKey>` (as SDK 1.x sends it), else they get the real 401 body.
 */
export async function startFakeAnthropic(opts: { apiKey?: string } = {}): Promise<FakeAnthropic> {
  const queue: Behaviour[] = [];
  const requests: RecordedRequest[] = [];
  let seq = 0;

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body: any = null;
    try {
      body = raw ? JSON.parse(raw) : null;
    } catch {
      body = raw;
    }
    const rec: RecordedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body };
    requests.push(rec);

    const fail = (status: number, type: string, message: string) => {
      rec.answer = `${status} ${type}`;
      res.writeHead(status, {
        'content-type': 'application/json',
        'request-id': `req_fake_${++seq}`,
        ...retryHeaders(status),
      });
      res.end(JSON.stringify({ type: 'error', error: { type, message }, request_id: `req_fake_${seq}` }));
    };

    if (req.method !== 'POST' || !req.url?.startsWith('/v1/messages'))
      return fail(404, 'not_found_error', `fake-anthropic: no route ${req.method} ${req.url}`);
    if (opts.apiKey !== undefined && req.headers.authorization !== `Bearer ${opts.apiKey}`)
      return fail(401, 'authentication_error', 'invalid x-api-key');
    const invalid = validate(body);
    if (invalid) return fail(400, 'invalid_request_error', invalid);

    let b: Behaviour | undefined = queue.shift();
    while (b?.kind === 'dynamic') b = b.respond(rec);
    if (!b) return fail(400, 'invalid_request_error', 'fake-anthropic: no scripted behaviour left for this request');
    if (b.kind === 'error') return fail(b.status, b.type, b.message);

    const id = `msg_fake_${++seq}`;
    const model = body.model;
    if (b.kind === 'error-mid-stream') {
      rec.answer = `200 then error event ${b.type}`;
      if (!body.stream) return fail(529, b.type, b.message);
      sse(res);
      send(res, 'message_start', { type: 'message_start', message: messageShell(id, model, DEFAULT_USAGE) });
      send(res, 'content_block_start', {
        type: 'content_block_start',
        index: 0,
        content_block: { type: 'text', text: '' },
      });
      send(res, 'content_block_delta', {
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'text_delta', text: '{"descr' },
      });
      send(res, 'error', { type: 'error', error: { type: b.type, message: b.message } });
      res.end();
      return;
    }

    const usage = { ...DEFAULT_USAGE, ...b.usage };
    const stopReason = b.stopReason ?? 'end_turn';
    rec.answer = `200 ${stopReason}`;
    const content: any[] = [];
    if (b.thinking) content.push({ type: 'thinking', thinking: b.thinking, signature: 'fake-signature' });
    content.push({ type: 'text', text: b.text, citations: null });
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': `req_fake_${seq}` });
      res.end(
        JSON.stringify({ ...messageShell(id, model, usage), content, stop_reason: stopReason, usage: apiUsage(usage) }),
      );
      return;
    }
    // The real event order: message_start, per block start/deltas/stop, message_delta, message_stop.
    sse(res);
    send(res, 'message_start', {
      type: 'message_start',
      message: messageShell(id, model, { ...usage, output_tokens: 1 }),
    });
    content.forEach((block, index) => {
      if (block.type === 'thinking') {
        send(res, 'content_block_start', {
          type: 'content_block_start',
          index,
          content_block: { type: 'thinking', thinking: '', signature: '' },
        });
        send(res, 'content_block_delta', {
          type: 'content_block_delta',
          index,
          delta: { type: 'thinking_delta', thinking: block.thinking },
        });
        send(res, 'content_block_delta', {
          type: 'content_block_delta',
          index,
          delta: { type: 'signature_delta', signature: block.signature },
        });
      } else {
        send(res, 'content_block_start', {
          type: 'content_block_start',
          index,
          content_block: { type: 'text', text: '', citations: null },
        });
        send(res, 'ping', { type: 'ping' });
        for (const piece of pieces(block.text, 40))
          send(res, 'content_block_delta', {
            type: 'content_block_delta',
            index,
            delta: { type: 'text_delta', text: piece },
          });
      }
      send(res, 'content_block_stop', { type: 'content_block_stop', index });
    });
    send(res, 'message_delta', {
      type: 'message_delta',
      delta: { stop_reason: stopReason, stop_sequence: null },
      usage: { output_tokens: usage.output_tokens },
    });
    send(res, 'message_stop', { type: 'message_stop' });
    res.end();
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseURL: `http://127.0.0.1:${port}`,
    requests,
    script: (...bs) => void queue.push(...bs),
    pending: () => queue.length,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** What the real API would answer 400 to, of the mistakes a client of SDK 1.x could make. */
function validate(body: any): string | null {
  if (!body || typeof body !== 'object') return 'body: expected a JSON object';
  for (const k of ['temperature', 'top_p', 'top_k'])
    if (k in body) return `${k}: not supported by this API version; remove it`;
  if (typeof body.max_tokens !== 'number') return 'max_tokens: field required';
  if (typeof body.model !== 'string') return 'model: field required';
  if (!Array.isArray(body.messages) || body.messages.length === 0) return 'messages: at least one message is required';
  if (body.messages.at(-1).role === 'assistant')
    return 'This model does not support assistant message prefill. The conversation must end with a user message.';
  const blocks = [
    ...(Array.isArray(body.system) ? body.system : []),
    ...body.messages.flatMap((m: any) => (Array.isArray(m.content) ? m.content : [])),
    ...(body.tools ?? []),
  ];
  const marks = blocks.filter((b: any) => b?.cache_control).length + (body.cache_control ? 1 : 0);
  if (marks > 4) return `A maximum of 4 blocks with cache_control may be provided. Found ${marks}.`;
  return null;
}

function messageShell(id: string, model: string, usage: FakeUsage) {
  return {
    id,
    type: 'message',
    role: 'assistant',
    model,
    content: [],
    stop_reason: null,
    stop_sequence: null,
    usage: apiUsage(usage),
  };
}

function apiUsage(u: FakeUsage) {
  return {
    input_tokens: u.input_tokens,
    output_tokens: u.output_tokens,
    cache_read_input_tokens: u.cache_read_input_tokens,
    cache_creation_input_tokens: u.cache_write_1h + u.cache_write_5m,
    cache_creation: { ephemeral_1h_input_tokens: u.cache_write_1h, ephemeral_5m_input_tokens: u.cache_write_5m },
    service_tier: 'standard',
  };
}

/** Short waits, so the SDK's own retry does not slow the tests down. */
function retryHeaders(status: number): Record<string, string> {
  return status === 429 || status === 529 || status >= 500 ? { 'retry-after-ms': '20' } : {};
}

function sse(res: http.ServerResponse) {
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'request-id': 'req_fake_stream',
  });
}

function send(res: http.ServerResponse, event: string, data: unknown) {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

function pieces(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out.length ? out : [''];
}
