// Connect anywhere: campaigns reach the server through a TLS endpoint that requires a client certificate and
// through one that requires an API key, configured only by Temporal's environment configuration (TEMPORAL_*
// variables or a temporal.toml profile); wrong credentials give errors that name the setting to fix.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  ConnectionError,
  connectClient,
  connectWorker,
  connectionSettings,
  describeConnection,
} from '../ops/connection';
import { parseConfig } from '../common/config';
import type { CampaignSnapshot } from '../common/shared';
import { prepareStart, startCampaign } from '../client/campaigns';
import { createOrchestratorWorker } from '../workers/orchestrator';
import { createGpuWorkers } from '../gpu-worker/worker';
import { ADDRESS, QUADRATIC_CONFIG, makeRepo, tempDir, uniqueTag } from './helpers';
import { hasOpenssl, makeCertificates, startTlsProxy, type Certificates, type TlsProxy } from './tls-proxy';

const API_KEY = 'nl-test-key-5f3c9a1e';
const WRONG_KEY = 'nl-wrong-key-77d0b2c4';
const SKIP = hasOpenssl() ? false : 'openssl is not installed: it makes the test CA and certificates';

let dir: string;
let certs: Certificates;
let mtls: TlsProxy;
let keyed: TlsProxy;

before(async () => {
  if (SKIP) return;
  dir = tempDir('nightlab-tls-');
  certs = makeCertificates(dir);
  mtls = await startTlsProxy({ certs, upstream: ADDRESS, mtls: true });
  keyed = await startTlsProxy({ certs, upstream: ADDRESS, apiKey: API_KEY });
});
after(async () => {
  await mtls?.close();
  await keyed?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * Runs fn with exactly these Temporal settings: every TEMPORAL_* variable of the test's environment is unset,
 * and the default temporal.toml is replaced by a file that does not exist. Restores the environment after.
 */
async function withTemporalEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const mine: Record<string, string | undefined> = {
    ...Object.fromEntries(
      Object.keys(process.env)
        .filter((k) => k.startsWith('TEMPORAL_'))
        .map((k) => [k, undefined]),
    ),
    TEMPORAL_CONFIG_FILE: path.join(dir, 'none.toml'),
    ...vars,
  };
  const saved = Object.fromEntries(Object.keys(mine).map((k) => [k, process.env[k]]));
  const apply = (env: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(env)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(mine);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

/** A campaign of one experiment, its client and both workers connected with no argument: the settings alone. */
async function campaignFromSettings(): Promise<CampaignSnapshot> {
  const client = await connectClient();
  const connection = await connectWorker();
  const home = tempDir('nightlab-home-');
  const id = uniqueTag('q');
  const [taskQueue, gpuTaskQueue] = [`orch-${id}`, `gpu-${id}`];
  const workers = [
    await createOrchestratorWorker({ connection, taskQueue }),
    ...(await createGpuWorkers({ connection, home, slots: [{ name: 'cpu', devices: null }], taskQueue: gpuTaskQueue })),
  ];
  const runs = workers.map((w) => w.run());
  try {
    const config = parseConfig({ ...QUADRATIC_CONFIG, budget: { maxExperiments: 1 } }, 'test');
    const input = await prepareStart({ config, baseDir: await makeRepo(), tag: uniqueTag('tls'), home });
    const handle = await startCampaign(client, { ...input, gpuTaskQueue }, { taskQueue });
    return (await handle.result()) as CampaignSnapshot;
  } finally {
    workers.forEach((w) => w.shutdown());
    await Promise.allSettled(runs);
    await connection.close();
    await client.connection.close();
    rmSync(home, { recursive: true, force: true });
  }
}

/** Both clients (grpc-js for the client, the Rust core for workers) fail with the same explained error. */
async function connectionErrors(): Promise<ConnectionError[]> {
  const errors: ConnectionError[] = [];
  for (const connect of [() => connectClient(), () => connectWorker()]) {
    const e = await connect().then(
      () => assert.fail('connected with wrong credentials'),
      (err: unknown) => err,
    );
    assert.ok(e instanceof ConnectionError, `a ConnectionError, not ${String(e)}`);
    errors.push(e);
  }
  return errors;
}

test(
  'with nothing configured, the local dev server in the default namespace; explicit arguments win',
  { skip: SKIP },
  async () => {
    await withTemporalEnv({}, async () => {
      const s = connectionSettings();
      assert.deepEqual(
        [s.address, s.namespace, s.profile, s.tls, s.clientCert, s.apiKey],
        ['127.0.0.1:7233', 'default', 'default', false, null, false],
      );
      assert.equal(connectionSettings('10.0.0.1:7233', 'other').address, '10.0.0.1:7233');
      assert.equal(connectionSettings('10.0.0.1:7233', 'other').namespace, 'other');
    });
  },
);

test(
  'a campaign reaches completion through an mTLS endpoint, configured by a temporal.toml profile',
  { skip: SKIP },
  async () => {
    const file = path.join(dir, 'temporal.toml');
    writeFileSync(
      file,
      `[profile.lab]
address = "${mtls.address}"
namespace = "default"

[profile.lab.tls]
server_ca_cert_path = "${certs.ca}"
client_cert_path = "${certs.clientCert}"
client_key_path = "${certs.clientKey}"
`,
    );
    await withTemporalEnv({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'lab' }, async () => {
      const s = connectionSettings();
      assert.deepEqual(
        [s.address, s.profile, s.configFile, s.tls, s.serverCa, s.clientCert, s.apiKey],
        [mtls.address, 'lab', file, true, certs.ca, certs.clientCert, false],
      );
      assert.match(
        describeConnection(s),
        new RegExp(`^${mtls.address}, namespace default \\(profile lab from .*temporal\\.toml\\); TLS on`),
      );
      const before = mtls.forwarded;
      const status = await campaignFromSettings();
      assert.equal(status.state, 'completed', status.message);
      assert.equal(status.experiments, 1);
      assert.ok(mtls.forwarded > before, 'the client and workers went through the mTLS endpoint');
    });
  },
);

test(
  'a campaign reaches completion through an API-key endpoint, configured by TEMPORAL_* variables',
  { skip: SKIP },
  async () => {
    const env = {
      TEMPORAL_ADDRESS: keyed.address,
      TEMPORAL_API_KEY: API_KEY,
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.ca,
    };
    await withTemporalEnv(env, async () => {
      const described = describeConnection();
      assert.match(described, /TLS on .* API key set$/);
      assert.ok(!described.includes(API_KEY), 'the description never shows the key');
      const before = keyed.forwarded;
      const status = await campaignFromSettings();
      assert.equal(status.state, 'completed', status.message);
      assert.equal(status.experiments, 1);
      assert.ok(keyed.forwarded > before, 'the client and workers went through the API-key endpoint');
    });
  },
);

test(
  'a certificate the server does not trust, or none, is refused with the setting to fix',
  { skip: SKIP },
  async () => {
    const tlsEnv = { TEMPORAL_ADDRESS: mtls.address, TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.ca };
    const stranger = {
      ...tlsEnv,
      TEMPORAL_TLS_CLIENT_CERT_PATH: certs.strangerCert,
      TEMPORAL_TLS_CLIENT_KEY_PATH: certs.strangerKey,
    };
    await withTemporalEnv(stranger, async () => {
      for (const e of await connectionErrors()) {
        assert.match(e.message, new RegExp(`refused the client certificate ${certs.strangerCert}`));
        assert.match(e.fix, /TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH/);
      }
    });
    await withTemporalEnv(tlsEnv, async () => {
      for (const e of await connectionErrors()) {
        assert.match(e.message, /requires a client certificate \(mTLS\), and none is set/);
        assert.match(e.fix, /TEMPORAL_TLS_CLIENT_CERT_PATH/);
      }
    });
    // The server's CA missing: the client refuses the server, and says which setting names the CA.
    const noCa = {
      TEMPORAL_ADDRESS: mtls.address,
      TEMPORAL_TLS_CLIENT_CERT_PATH: certs.clientCert,
      TEMPORAL_TLS_CLIENT_KEY_PATH: certs.clientKey,
    };
    await withTemporalEnv(noCa, async () => {
      for (const e of await connectionErrors()) {
        assert.match(e.message, /server's certificate at .* is not signed by a CA this machine trusts/);
        assert.match(e.fix, /TEMPORAL_TLS_SERVER_CA_CERT_PATH/);
      }
    });
  },
);

test('a wrong API key is refused as UNAUTHENTICATED, and no error shows the key', { skip: SKIP }, async () => {
  await withTemporalEnv(
    { TEMPORAL_ADDRESS: keyed.address, TEMPORAL_API_KEY: WRONG_KEY, TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.ca },
    async () => {
      for (const e of await connectionErrors()) {
        assert.match(e.message, /refused the API key \(UNAUTHENTICATED\)\. Check TEMPORAL_API_KEY/);
        assert.ok(!`${e.message} ${e.stack}`.includes(WRONG_KEY), 'the error never shows the key');
      }
    },
  );
});

test(
  'an unknown profile and an unreadable certificate file name the setting before connecting',
  { skip: SKIP },
  async () => {
    const file = path.join(dir, 'profiles.toml');
    writeFileSync(
      file,
      [
        '[profile.prod]',
        `address = "${mtls.address}"`,
        '[profile.prod.tls]',
        `client_cert_path = "${path.join(dir, 'gone.pem')}"`,
        `client_key_path = "${certs.clientKey}"`,
      ].join('\n'),
    );
    await withTemporalEnv({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'staging' }, async () => {
      assert.throws(
        () => connectionSettings(),
        /No Temporal profile "staging" \(TEMPORAL_PROFILE\): .*profiles\.toml has profiles prod/,
      );
      await assert.rejects(connectWorker(), ConnectionError);
    });
    await withTemporalEnv({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'prod' }, async () => {
      assert.throws(() => connectionSettings(), /Cannot read the client certificate .*gone\.pem \(ENOENT\)\./);
      assert.throws(() => connectionSettings(), /Fix tls\.client_cert_path in profile "prod" of .*profiles\.toml$/);
      await assert.rejects(connectClient(), /Cannot read the client certificate/);
    });
  },
);
