// A TLS endpoint in front of the plaintext dev server, the way a secured cluster or Temporal Cloud looks
// to a client: it terminates TLS, may require a client certificate (mTLS) or an API key
// (`authorization: Bearer <key>`), and forwards each gRPC stream to the dev server over HTTP/2.
import http2 from 'node:http2';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';

/** PEM files made by `makeCertificates`: a CA, the server's leaf, a client leaf, and a client leaf of another CA. */
export interface Certificates {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A client certificate the endpoint must refuse: its CA is not the one the endpoint trusts. */
  strangerCert: string;
  strangerKey: string;
}

export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

// P-256 keys: quick to make, and both TLS stacks (Node's for the client, rustls for the workers) accept them.
function makeCa(dir: string, name: string): void {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}-key.pem`]);
  openssl(dir, [
    'req',
    '-x509',
    '-new',
    '-key',
    `${name}-key.pem`,
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

function makeLeaf(dir: string, o: { name: string; ca: string; extensions: string }): void {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${o.name}-key.pem`]);
  openssl(dir, ['req', '-new', '-key', `${o.name}-key.pem`, '-out', `${o.name}.csr`, '-subj', `/CN=${o.name}`]);
  writeFileSync(path.join(dir, `${o.name}.ext`), `basicConstraints=CA:FALSE\n${o.extensions}\n`);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${o.name}.csr`,
    '-CA',
    `${o.ca}.pem`,
    '-CAkey',
    `${o.ca}-key.pem`,
    '-CAcreateserial',
    '-out',
    `${o.name}.pem`,
    '-days',
    '2',
    '-extfile',
    `${o.name}.ext`,
  ]);
}

/** A CA, a server leaf for localhost/127.0.0.1, a client leaf, and a stranger: a client leaf of another CA. */
export function makeCertificates(dir: string): Certificates {
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  makeLeaf(dir, {
    name: 'server',
    ca: 'ca',
    extensions: 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth',
  });
  makeLeaf(dir, { name: 'client', ca: 'ca', extensions: 'extendedKeyUsage=clientAuth' });
  makeLeaf(dir, { name: 'stranger', ca: 'other-ca', extensions: 'extendedKeyUsage=clientAuth' });
  const p = (f: string) => path.join(dir, f);
  return {
    dir,
    ca: p('ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server-key.pem'),
    clientCert: p('client.pem'),
    clientKey: p('client-key.pem'),
    strangerCert: p('stranger.pem'),
    strangerKey: p('stranger-key.pem'),
  };
}

export interface TlsProxy {
  /** host:port of the TLS endpoint. */
  address: string;
  /** How many gRPC calls it let through to the dev server. */
  forwarded: number;
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1 (a free port) with the server leaf; `mtls` requires a client certificate from the CA,
 * `apiKey` answers any stream without `authorization: Bearer <apiKey>` with gRPC status 16 (UNAUTHENTICATED).
 */
export async function startTlsProxy(o: {
  certs: Certificates;
  upstream: string;
  mtls?: boolean;
  apiKey?: string;
}): Promise<TlsProxy> {
  let up: http2.ClientHttp2Session | undefined;
  const upstream = () =>
    up && !up.closed && !up.destroyed ? up : (up = http2.connect(`http://${o.upstream}`).on('error', () => {}));
  const sessions = new Set<http2.ServerHttp2Session>();
  const server = http2.createSecureServer({
    key: readFileSync(o.certs.serverKey),
    cert: readFileSync(o.certs.serverCert),
    ca: readFileSync(o.certs.ca),
    requestCert: !!o.mtls,
    rejectUnauthorized: !!o.mtls,
  });
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', (down, headers) => {
    down.on('error', () => {});
    if (o.apiKey && headers.authorization !== `Bearer ${o.apiKey}`) {
      down.respond(
        { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '16', 'grpc-message': 'invalid API key' },
        { endStream: true },
      );
      return;
    }
    proxy.forwarded++;
    const req = upstream().request(
      Object.fromEntries(Object.entries(headers).filter(([k]) => k !== ':scheme' && k !== ':authority')),
    );
    let trailers: http2.OutgoingHttpHeaders = {};
    req.on('response', (h, flags) => {
      // A trailers-only answer (an error status) ends the stream in its headers.
      if (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) return down.respond(h, { endStream: true });
      down.respond(h, { waitForTrailers: true });
      down.on('wantTrailers', () => down.sendTrailers(trailers));
      req.pipe(down);
    });
    req.on('trailers', (t) => (trailers = t));
    req.on('error', () => down.destroyed || down.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    down.on('close', () => req.destroyed || req.close(http2.constants.NGHTTP2_CANCEL));
    down.pipe(req);
  });
  server.on('tlsClientError', () => {}); // a refused client certificate is the point of some tests
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy: TlsProxy = {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    forwarded: 0,
    async close() {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const s of sessions) s.destroy();
      up?.destroy();
      await closed;
    },
  };
  return proxy;
}
