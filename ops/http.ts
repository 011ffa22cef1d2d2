// The small HTTP servers of the operations layer (the metrics endpoint, the codec server): listening with
// errors that name the flag to change, their address as a URL, and a close that does not hang on keep-alive.
import type http from 'node:http';
import type net from 'node:net';

/** Listens on host:port; a port taken or refused is said with the flag that chooses it. */
export function listen(server: http.Server, port: number, host: string, flag: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(`Cannot listen on ${host}:${port} (${e.code ?? e.message}): choose another ${flag}`)),
    );
    server.listen(port, host, () => resolve());
  });
}

/** Stops listening and drops idle keep-alive connections (a scraper's), which would hold close() open. */
export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

/** http://host:port of a listening server (an IPv6 host in brackets). */
export function serverUrl(server: http.Server, host: string): string {
  const { port } = server.address() as net.AddressInfo;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
