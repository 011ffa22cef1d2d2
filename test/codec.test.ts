// Encrypted payloads (lib/codec.ts, ops/codec-server.ts): keys from a file or the environment, rotation by key
// id, a campaign whose history the server holds only as ciphertext, the codec server that decodes it for the
// Web UI and the Temporal CLI, and histories from before encryption still replaying.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { Client } from '@temporalio/client';
import { defaultPayloadConverter, METADATA_ENCODING_KEY } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import { campaignWorkflowId } from '../common/shared';
import { CodecKeyError, codecKeys, dataConverter, EncryptionCodec, KEY_ID_METADATA } from '../lib/codec';
import { experiments } from '../lib/ledger';
import { codecReply, payloadToJson, serveCodec, uiOrigins } from '../ops/codec-server';
import { findTemporalCli } from '../ops/temporal-cli';
import { steerCampaign } from '../client/control';
import { workflowBundle } from '../workers/orchestrator';
import { historyFromJSON, historyToJSON } from './history-json';
import { ADDRESS, QUADRATIC, ROOT, lab, makeRepo, plannedProposer, setLine, tempDir, waitFor } from './helpers';
import { nightlab } from './processes';

const key = () => randomBytes(32).toString('base64');
const UI = 'http://127.0.0.1:8233';

/** A keys file with the given ids (the last one encrypts). */
function keyFile(ids: string[], keys: Record<string, string> = {}): { file: string; keys: Record<string, string> } {
  for (const id of ids) keys[id] ??= key();
  const file = path.join(tempDir(), 'keys');
  writeFileSync(file, `# id key\n${ids.map((id) => `${id} ${keys[id]}`).join('\n')}\n`, { mode: 0o600 });
  return { file, keys };
}

const codecFor = (env: NodeJS.ProcessEnv) => new EncryptionCodec(codecKeys(env));
const toPayload = (v: unknown) => defaultPayloadConverter.toPayload(v);
const text = (b?: Uint8Array | null) => Buffer.from(b ?? []).toString('utf8');

test('keys come from a file or the environment; a bad key or key id is refused with the setting to fix', () => {
  assert.equal(codecKeys({}), null, 'no key: encryption off');
  const { file } = keyFile(['2024-01', '2024-06']);
  assert.equal(codecKeys({ NIGHTLAB_CODEC_KEY_FILE: file })!.current, '2024-06', "the file's last key encrypts");
  assert.equal(codecKeys({ NIGHTLAB_CODEC_KEY_FILE: file, NIGHTLAB_CODEC_KEY_ID: '2024-01' })!.current, '2024-01');
  const env = codecKeys({ NIGHTLAB_CODEC_KEY: key(), NIGHTLAB_CODEC_KEY_ID: 'k9' })!;
  assert.deepEqual([env.current, [...env.keys.keys()]], ['k9', ['k9']]);
  const both = codecKeys({ NIGHTLAB_CODEC_KEY_FILE: file, NIGHTLAB_CODEC_KEY: key(), NIGHTLAB_CODEC_KEY_ID: 'k3' })!;
  assert.deepEqual([both.current, [...both.keys.keys()]], ['k3', ['2024-01', '2024-06', 'k3']]);

  const refused: [NodeJS.ProcessEnv, RegExp][] = [
    [{ NIGHTLAB_CODEC_KEY: 'c2hvcnQ=' }, /NIGHTLAB_CODEC_KEY is not a key: it must be 32 bytes in base64/],
    [{ NIGHTLAB_CODEC_KEY_FILE: file, NIGHTLAB_CODEC_KEY_ID: 'nope' }, /"nope", and no key has that id .*2024-01/],
    [{ NIGHTLAB_CODEC_KEY_ID: 'k1' }, /NIGHTLAB_CODEC_KEY_ID is set without a key/],
    [{ NIGHTLAB_CODEC_KEY_FILE: '/no/such/keys' }, /Cannot read NIGHTLAB_CODEC_KEY_FILE \/no\/such\/keys \(ENOENT\)/],
  ];
  const bad = path.join(tempDir(), 'keys');
  writeFileSync(bad, `k1 ${key()}\nk2\n`);
  refused.push([{ NIGHTLAB_CODEC_KEY_FILE: bad }, /keys line 2 must be "<key id> <base64 key>"/]);
  for (const [e, message] of refused)
    assert.throws(
      () => codecKeys(e),
      (err) => err instanceof CodecKeyError && message.test(err.message),
    );
});

test('payloads are encrypted with the current key, decrypted by any key held, and passed through when plain', async () => {
  const { file, keys } = keyFile(['old']);
  const before = codecFor({ NIGHTLAB_CODEC_KEY_FILE: file });
  const [sealed] = await before.encode([toPayload({ description: 'wider model' })]);
  assert.equal(text(sealed.metadata![METADATA_ENCODING_KEY]), 'binary/encrypted');
  assert.equal(text(sealed.metadata![KEY_ID_METADATA]), 'old');
  assert.ok(!text(sealed.data).includes('wider model'));
  // The same value twice is two different ciphertexts (a fresh nonce each).
  const [again] = await before.encode([toPayload({ description: 'wider model' })]);
  assert.notDeepEqual(Buffer.from(again.data!), Buffer.from(sealed.data!));

  // Rotation: a new key is added last; it encrypts from now on, and the old one still decrypts.
  const rotated = codecFor({ NIGHTLAB_CODEC_KEY_FILE: keyFile(['old', 'new'], keys).file });
  const [back] = await rotated.decode([sealed]);
  assert.deepEqual(defaultPayloadConverter.fromPayload(back), { description: 'wider model' });
  const [fresh] = await rotated.encode([toPayload(1)]);
  assert.equal(text(fresh.metadata![KEY_ID_METADATA]), 'new');

  // A payload that is not encrypted (a history from before encryption) passes through unchanged.
  const plain = toPayload('recorded before encryption');
  assert.deepEqual(await rotated.decode([plain]), [plain]);

  // Keys that cannot decrypt say which key id is needed.
  const onlyNew = codecFor({ NIGHTLAB_CODEC_KEY_FILE: keyFile(['new']).file });
  await assert.rejects(
    onlyNew.decode([sealed]),
    /encrypted with key id "old", which this process does not hold \(it holds: new\)/,
  );
  const sameIdOtherKey = codecFor({ NIGHTLAB_CODEC_KEY_FILE: keyFile(['old']).file });
  await assert.rejects(sameIdOtherKey.decode([sealed]), /does not decrypt .*two different keys have the same id/);
  await assert.rejects(codecFor({}).decode([sealed]), /encrypted \(key id "old"\) and this process has no key/);
});

test('histories recorded before encryption replay on workers with the codec', async () => {
  const dir = path.join(ROOT, 'test', 'fixtures', 'histories');
  const histories = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => ({ workflowId: f, history: historyFromJSON(JSON.parse(readFileSync(path.join(dir, f), 'utf8'))) }));
  const env = { NIGHTLAB_CODEC_KEY: key() };
  const results = Worker.runReplayHistories(
    { workflowBundle: await workflowBundle(), dataConverter: dataConverter(env), replayName: 'codec-replay' },
    histories,
  );
  let seen = 0;
  for await (const r of results) {
    seen += 1;
    assert.equal(r.error, undefined, `${r.workflowId}: ${r.error?.message}`);
  }
  assert.equal(seen, histories.length);
});

test('the codec server answers the Web UI (CORS) and the CLI; other pages are refused', async () => {
  const codec = codecFor({ NIGHTLAB_CODEC_KEY_FILE: keyFile(['k1']).file });
  const s = await serveCodec({ codec, port: 0, origins: uiOrigins(UI) });
  try {
    assert.deepEqual(uiOrigins(UI), [UI, 'http://localhost:8233']);
    const preflight = await fetch(`${s.url}/decode`, {
      method: 'OPTIONS',
      headers: { origin: UI, 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-namespace' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), UI);
    assert.match(preflight.headers.get('access-control-allow-headers')!, /x-namespace, content-type, authorization/);
    assert.match(preflight.headers.get('access-control-allow-methods')!, /POST/);
    const other = await fetch(`${s.url}/decode`, { method: 'OPTIONS', headers: { origin: 'https://evil.example' } });
    assert.equal(other.status, 403);
    assert.equal(other.headers.get('access-control-allow-origin'), null);

    // The UI's request: encode, then decode what came back, under a path prefix (only the last part counts).
    const post = (op: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${s.url}/ns/default/${op}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-namespace': 'default', origin: UI, ...headers },
        body: JSON.stringify(body),
      });
    const encoded = await post('encode', { payloads: [payloadToJson(toPayload('a steering note'))] });
    assert.equal(encoded.status, 200);
    assert.equal(encoded.headers.get('access-control-allow-origin'), UI);
    const sealed = (await encoded.json()) as { payloads: { metadata: Record<string, string> }[] };
    assert.equal(Buffer.from(sealed.payloads[0].metadata.encoding, 'base64').toString(), 'binary/encrypted');
    const decoded = (await (await post('decode', sealed)).json()) as { payloads: { data: string }[] };
    assert.equal(Buffer.from(decoded.payloads[0].data, 'base64').toString(), '"a steering note"');

    assert.equal((await post('decode', { nothing: 1 })).status, 400);
    const wrong = await codecReply(
      codecFor({ NIGHTLAB_CODEC_KEY: key(), NIGHTLAB_CODEC_KEY_ID: 'k2' }),
      'decode',
      JSON.stringify(sealed),
    );
    assert.equal(wrong.status, 400);
    assert.match(
      (wrong.json as { error: string }).error,
      /key id "k1", which this process does not hold \(it holds: k2\)/,
    );
  } finally {
    await s.close();
  }
});

test('nightlab codec-server serves with the configured keys; with none it names the variables to set', async () => {
  const none = nightlab(['codec-server', '--port', '0'], { NIGHTLAB_CODEC_KEY_FILE: '', NIGHTLAB_CODEC_KEY: '' });
  assert.equal((await none.exited).code, 1);
  assert.match(none.output(), /no key to decrypt with: set NIGHTLAB_CODEC_KEY_FILE or NIGHTLAB_CODEC_KEY/);
  const p = nightlab(['codec-server', '--port', '0'], { NIGHTLAB_CODEC_KEY_FILE: keyFile(['k7']).file });
  try {
    const url = (await waitFor('the codec server', () => /Codec server at (\S+) \(keys k7\)/.exec(p.output())))[1];
    const r = await fetch(`${url}/encode`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ payloads: [payloadToJson(toPayload('x'))] }),
    });
    const body = (await r.json()) as { payloads: { metadata: Record<string, string> }[] };
    assert.equal(Buffer.from(body.payloads[0].metadata[KEY_ID_METADATA], 'base64').toString(), 'k7');
  } finally {
    await p.kill('SIGTERM');
  }
});

/** Every string of a proto-JSON history, and each one read as base64 (payload data and metadata). */
function everyText(historyJson: string): string {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === 'string') out.push(v, Buffer.from(v, 'base64').toString('utf8'));
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(JSON.parse(historyJson));
  return out.join('\n');
}

test(
  'with encryption on, the server holds no description, steering note or log tail in clear; the codec server reads them',
  { timeout: 180_000 },
  async () => {
    const { file } = keyFile(['k1']);
    process.env.NIGHTLAB_CODEC_KEY_FILE = file;
    const l = await lab();
    try {
      const repo = await makeRepo();
      const secret = `secret-${randomBytes(4).toString('hex')}`;
      const note = `steer toward ${secret} widths`;
      const proposer = plannedProposer({
        1: { mode: 1, desc: `crash on purpose ${secret}` },
        2: { WIDTH: 12, desc: `width 12 ${secret}` },
        3: { WIDTH: 14, desc: `width 14 ${secret}` },
      });
      const c = await l.start(repo, {
        proposer,
        crash: { maxFixAttempts: 0 },
        lookahead: 0,
        budget: { maxExperiments: 3 },
        run: { command: 'python3 train.py', env: { QUAD_SLEEP: '2' }, timeoutSec: 60 },
      });
      await waitFor('experiment 2 proposed', () => existsSync(path.join(c.campaignDir, 'proposals', '2-0.json')));
      await steerCampaign(l.client, c.tag, { note });
      const s = await c.result();
      assert.equal(s.state, 'completed', 'the workers and the client decrypt what they read');
      const rows = experiments(c.campaignDir);
      assert.deepEqual(
        rows.map((r) => [r.experiment, r.status]),
        [
          [0, 'keep'],
          [1, 'crash'],
          [2, 'keep'],
          [3, 'keep'],
        ],
      );
      assert.match(rows[1].reason, /boom: the model diverged/, 'the crash reason holds the log tail');
      assert.ok(rows[2].description.includes(secret));

      // What the server stores: fetched raw, every string and its base64 reading searched.
      const id = campaignWorkflowId(c.tag);
      const history = historyToJSON(await l.client.workflow.getHandle(id).fetchHistory());
      const stored = everyText(history);
      assert.ok(stored.includes('binary/encrypted'), 'payloads are stored encrypted');
      for (const clear of [secret, 'boom: the model diverged', 'step 00001 | loss', 'steer toward'])
        assert.ok(!stored.includes(clear), `"${clear}" is not in the stored history`);
      // A client without the key cannot read the campaign's result.
      const plain = new Client({ connection: l.client.connection });
      await assert.rejects(plain.workflow.getHandle(id).result(), /binary\/encrypted/);

      // `temporal workflow show -o json`: ciphertext alone; with the codec server, the clear text.
      const cli = (await findTemporalCli({ install: true })).path;
      const show = (...extra: string[]) =>
        execa(cli, ['workflow', 'show', '-w', id, '-o', 'json', '--address', ADDRESS, ...extra]).then((r) => r.stdout);
      const shown = everyText(await show());
      assert.ok(!shown.includes(secret) && !shown.includes('boom: the model diverged'));
      const server = await serveCodec({ codec: codecFor(process.env), port: 0, origins: uiOrigins(UI) });
      try {
        const decoded = everyText(await show('--codec-endpoint', server.url));
        for (const clear of [secret, 'boom: the model diverged', note]) assert.ok(decoded.includes(clear), clear);
      } finally {
        await server.close();
      }

      // Failure messages are encrypted too: a baseline that crashes fails the campaign with its last log line.
      const broken = await makeRepo(QUADRATIC, (d) => setLine(path.join(d, 'train.py'), 'mode', '1'));
      const f = await l.start(broken, { budget: { maxExperiments: 1 } });
      const failed = await f.result().then(
        () => assert.fail('the campaign should fail'),
        (e: Error) => (e.cause as Error).message,
      );
      assert.match(failed, /The baseline run crashed \(crash\): exit 1: .*boom: the model diverged/);
      const failedHistory = everyText(
        historyToJSON(await l.client.workflow.getHandle(campaignWorkflowId(f.tag)).fetchHistory()),
      );
      for (const clear of ['The baseline run crashed', 'boom: the model diverged'])
        assert.ok(!failedHistory.includes(clear), `"${clear}" is not in the failed campaign's history`);
    } finally {
      delete process.env.NIGHTLAB_CODEC_KEY_FILE;
      await l.close();
    }
  },
);
