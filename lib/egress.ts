// The only way out of a sandbox for a command proposer that needs the network (an agent calling its
// API): an HTTP proxy that opens connections to the hosts the config names (proposer.network) and
// to nothing else: not the Temporal server, not the worker's other services, not the internet.
//
// The sandbox has no network of its own beyond a private loopback. Inside it, egress-forwarder.py
// listens on 127.0.0.1:EGRESS_PORT and carries each connection over a Unix socket to this proxy,
// outside. Only CONNECT tunnels go through (HTTPS; the proxy never sees inside the TLS): a tunnel
// goes to the one host it named, whatever is sent inside it. Plain-HTTP proxying is refused, since
// one connection could carry requests for several hosts. HTTPS_PROXY points the agent at it.
import net from 'node:net';
import { chmodSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Where the forwarder listens inside the sandbox. */
export const EGRESS_PORT = 3128;
export const FORWARDER = fileURLToPath(new URL('./egress-forwarder.py', import.meta.url));
/** A request head larger than this is refused (nothing legitimate sends one). */
const MAX_HEAD = 16 * 1024;

export interface Egress {
  /** Connections refused, as "host:port" (for the proposer's log). */
  refused: string[];
  close(): Promise<void>;
}

/** `host` or `host:port` (443 by default) entries, matched exactly, case-insensitively. */
export function allows(allow: string[], host: string, port: number): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return allow.some((entry) => {
    const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(entry.toLowerCase());
    return !!m && m[1].replace(/^\[|\]$/g, '') === h && Number(m[2] ?? 443) === port;
  });
}

/** A proxy on `listen` (a Unix socket path, or a TCP port on 127.0.0.1 when a number) allowing `allow`. */
export async function startEgress(listen: string | number, allow: string[]): Promise<Egress & { port: number | null }> {
  const refused: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_HEAD) client.end('HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n');
        return;
      }
      client.off('data', onData);
      route(client, head, end + 4);
    };
    client.on('data', onData);
  });
  const route = (client: net.Socket, head: Buffer, bodyAt: number) => {
    const line = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
    const connect = /^CONNECT (\[[^\]]+\]|[^\s:]+):(\d+) HTTP\/1\.[01]$/.exec(line);
    if (!connect)
      return void client.end(
        'HTTP/1.1 405 Method Not Allowed\r\ncontent-type: text/plain\r\n\r\nnightlab: only CONNECT (HTTPS) goes through this proxy\n',
      );
    const host = connect[1].replace(/^\[|\]$/g, '');
    const port = Number(connect[2]);
    if (!allows(allow, host, port)) {
      refused.push(`${host}:${port}`);
      return void client.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n\r\nnightlab: ${host}:${port} is not in proposer.network\n`,
      );
    }
    const upstream = net.connect(port, host);
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.once('connect', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head.subarray(bodyAt));
      client.pipe(upstream);
      upstream.pipe(client);
    });
  };
  if (typeof listen === 'string') rmSync(listen, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (typeof listen === 'string') server.listen(listen, resolve);
    else server.listen(listen, '127.0.0.1', resolve);
  });
  if (typeof listen === 'string') chmodSync(listen, 0o600);
  const address = server.address();
  return {
    refused,
    port: typeof address === 'object' && address ? address.port : null,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (typeof listen === 'string') rmSync(listen, { force: true });
    },
  };
}
