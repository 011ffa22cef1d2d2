// `nightlab codec-server`: Temporal's remote codec protocol, so the Web UI and the Temporal CLI
// (`--codec-endpoint`) show encrypted histories in clear to people who run it with the key. The browser
// sends the payloads here, never to the Temporal server: POST .../encode and .../decode (only the last part
// of the path counts), JSON `{payloads: [{metadata: {k: base64}, data: base64}]}` both ways. The UI calls
// from its own origin, so the server answers CORS for the origins it is given (preflight included) and
// refuses requests from any other page; tools that send no Origin (the CLI, curl) are served. It listens on
// loopback unless told otherwise: whoever reaches it can decrypt.
import http from 'node:http';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { closeServer, listen, serverUrl } from './http';

export const DEFAULT_CODEC_PORT = 8888;
export const DEFAULT_CODEC_HOST = '127.0.0.1';
/** The dev server's Web UI (`nightlab server`). */
export const DEFAULT_UI_ORIGIN = 'http://127.0.0.1:8233';
/** The headers the UI sends (X-Namespace always, Authorization with passAccessToken). */
const ALLOWED_HEADERS = 'x-namespace, content-type, authorization';
const MAX_BODY_BYTES = 64 * 1024 * 1024;
const PREFLIGHT_CACHE_SECONDS = 600;

/** A payload as proto3 JSON writes it: bytes in base64. */
export interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

export function payloadFromJson(p: JsonPayload): Payload {
  const metadata = Object.fromEntries(
    Object.entries(p.metadata ?? {}).map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))]),
  );
  return { metadata, data: new Uint8Array(Buffer.from(p.data ?? '', 'base64')) };
}

export function payloadToJson(p: Payload): JsonPayload {
  const b64 = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array()).toString('base64');
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, b64(v)])),
    data: b64(p.data),
  };
}

/** The codec's answer to one request body: the reply's status and JSON. */
export async function codecReply(
  codec: PayloadCodec,
  op: 'encode' | 'decode',
  body: string,
): Promise<{ status: number; json: unknown }> {
  let payloads: Payload[];
  try {
    const parsed = JSON.parse(body) as { payloads?: JsonPayload[] };
    if (!Array.isArray(parsed.payloads)) throw new Error('no "payloads" array');
    payloads = parsed.payloads.map(payloadFromJson);
  } catch (e) {
    return { status: 400, json: { error: `the body is not {payloads: [...]} (${(e as Error).message})` } };
  }
  try {
    const done = op === 'encode' ? await codec.encode(payloads) : await codec.decode(payloads);
    return { status: 200, json: { payloads: done.map(payloadToJson) } };
  } catch (e) {
    return { status: 400, json: { error: (e as Error).message } };
  }
}

function readBody(req: http.IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
    });
    req.on('end', () => resolve(size > MAX_BODY_BYTES ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export async function serveCodec(opts: {
  codec: PayloadCodec;
  port?: number;
  host?: string;
  /** Web UI origins allowed to call (scheme://host:port). */
  origins: string[];
}): Promise<{ url: string; close(): Promise<void> }> {
  const origins = new Set(opts.origins.map((o) => o.replace(/\/+$/, '')));
  const server = http.createServer((req, res) => {
    const origin = req.headers.origin;
    const send = (status: number, json?: unknown) => {
      const cors = origin
        ? {
            'access-control-allow-origin': origin,
            'access-control-allow-credentials': 'true',
            'access-control-allow-methods': 'POST, OPTIONS',
            'access-control-allow-headers': ALLOWED_HEADERS,
            'access-control-max-age': String(PREFLIGHT_CACHE_SECONDS),
            vary: 'Origin',
          }
        : {};
      const body = json === undefined ? '' : JSON.stringify(json);
      res.writeHead(status, { ...cors, ...(body ? { 'content-type': 'application/json' } : {}) }).end(body);
    };
    if (origin && !origins.has(origin)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end(`origin ${origin} is not allowed (--origin)\n`);
      return;
    }
    const op = /\/(encode|decode)$/.exec((req.url ?? '').split('?')[0])?.[1] as 'encode' | 'decode' | undefined;
    if (!op) return send(404, { error: 'POST .../encode or .../decode' });
    if (req.method === 'OPTIONS') return send(204);
    if (req.method !== 'POST') return send(405, { error: 'POST only' });
    void readBody(req).then(
      async (body) => {
        if (body === null) return send(413, { error: `the body is over ${MAX_BODY_BYTES} bytes` });
        const { status, json } = await codecReply(opts.codec, op, body);
        send(status, json);
      },
      () => send(400, { error: 'the request broke off' }),
    );
  });
  const host = opts.host ?? DEFAULT_CODEC_HOST;
  await listen(server, opts.port ?? DEFAULT_CODEC_PORT, host, '--port');
  return { url: serverUrl(server, host), close: () => closeServer(server) };
}

/** The origins of a Web UI at `uiUrl`; on loopback, under both names a browser may use for it. */
export function uiOrigins(uiUrl: string): string[] {
  const u = new URL(uiUrl);
  const twin = { '127.0.0.1': 'localhost', localhost: '127.0.0.1' }[u.hostname];
  return [u.origin, ...(twin ? [`${u.protocol}//${twin}${u.port ? `:${u.port}` : ''}`] : [])];
}
