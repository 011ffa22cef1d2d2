// Encrypted payloads: every value Nightlab hands Temporal (proposals, descriptions, steering notes, log
// tails, records) is encrypted with AES-256-GCM before it leaves the process, so the server and anyone who
// reads its database see ciphertext. The format is Temporal's encryption samples': the whole serialized
// Payload is encrypted, and the new payload says `encoding: binary/encrypted` and which key did it
// (`encryption-key-id`); its data is a 12-byte nonce, the ciphertext and the 16-byte tag.
//
// Keys come from the environment or a file (docs/operations.md, "Encrypted payloads"). Rotation is by key id:
// the current key encrypts, every key given decrypts, so a new key is added beside the old ones. A payload
// that is not encrypted passes through (histories from before encryption, replay fixtures).
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { METADATA_ENCODING_KEY, ValueError, type Payload, type PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const CIPHER = 'aes-256-gcm';
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
// The Payload message, to serialize a payload whole (its metadata included) before encrypting it.
const PayloadMessage = proto.temporal.api.common.v1.Payload;
/** With NIGHTLAB_CODEC_KEY and no NIGHTLAB_CODEC_KEY_ID, the key's id. */
export const DEFAULT_KEY_ID = 'default';

/** The variables that configure encryption. */
export const CODEC_ENV = {
  keyFile: 'NIGHTLAB_CODEC_KEY_FILE',
  key: 'NIGHTLAB_CODEC_KEY',
  keyId: 'NIGHTLAB_CODEC_KEY_ID',
} as const;

/** A key setting that cannot be used: said with the variable or file line to fix. */
export class CodecKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CodecKeyError';
  }
}

export interface CodecKeys {
  /** Every key that may decrypt, by id. */
  keys: Map<string, Buffer>;
  /** The id of the key that encrypts. */
  current: string;
}

const text = (b: Uint8Array | undefined | null) => (b ? Buffer.from(b).toString('utf8') : undefined);

function parseKey(base64: string, where: string): Buffer {
  const key = Buffer.from(base64.trim(), 'base64');
  if (key.length !== KEY_BYTES || key.toString('base64') !== base64.trim()) {
    throw new CodecKeyError(
      `${where} is not a key: it must be ${KEY_BYTES} bytes in base64 (make one with \`openssl rand -base64 32\`)`,
    );
  }
  return key;
}

/**
 * A keys file: one key a line, `<key id> <base64 key>`; blank lines and `#` comments are skipped. The last
 * line is the newest key: it encrypts unless NIGHTLAB_CODEC_KEY_ID names another.
 */
export function parseKeyFile(content: string, file: string): [string, Buffer][] {
  const keys: [string, Buffer][] = [];
  content.split('\n').forEach((line, i) => {
    const words = line.replace(/#.*/, '').trim().split(/\s+/).filter(Boolean);
    if (!words.length) return;
    const where = `${file} line ${i + 1}`;
    if (words.length !== 2) throw new CodecKeyError(`${where} must be "<key id> <base64 key>"`);
    keys.push([words[0], parseKey(words[1], where)]);
  });
  if (!keys.length) throw new CodecKeyError(`${file} (${CODEC_ENV.keyFile}) holds no key`);
  return keys;
}

/** The keys the environment configures, or null when encryption is off. */
export function codecKeys(env: NodeJS.ProcessEnv = process.env): CodecKeys | null {
  const file = env[CODEC_ENV.keyFile] || undefined;
  const single = env[CODEC_ENV.key] || undefined;
  const wanted = env[CODEC_ENV.keyId] || undefined;
  if (!file && !single) {
    if (wanted) {
      throw new CodecKeyError(`${CODEC_ENV.keyId} is set without a key: set ${CODEC_ENV.keyFile} or ${CODEC_ENV.key}`);
    }
    return null;
  }
  const entries: [string, Buffer][] = [];
  if (file) {
    let content: string;
    try {
      content = readFileSync(file, 'utf8');
    } catch (e) {
      throw new CodecKeyError(`Cannot read ${CODEC_ENV.keyFile} ${file} (${(e as NodeJS.ErrnoException).code})`);
    }
    entries.push(...parseKeyFile(content, file));
  }
  if (single) entries.push([wanted ?? DEFAULT_KEY_ID, parseKey(single, CODEC_ENV.key)]);
  const keys = new Map<string, Buffer>();
  for (const [id, key] of entries) {
    if (keys.has(id) && !keys.get(id)!.equals(key)) throw new CodecKeyError(`Two different keys have the id "${id}"`);
    keys.set(id, key);
  }
  // The key from the environment, else the file's last (newest) line, unless the id names another.
  const current = wanted ?? entries[entries.length - 1][0];
  if (!keys.has(current)) {
    const ids = [...keys.keys()].join(', ');
    throw new CodecKeyError(`${CODEC_ENV.keyId} is "${current}", and no key has that id (there are: ${ids})`);
  }
  return { keys, current };
}

export function encrypt(plain: Uint8Array, key: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv(CIPHER, key, nonce);
  return Buffer.concat([nonce, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
}

export function decrypt(sealed: Uint8Array, key: Buffer): Buffer {
  const data = Buffer.from(sealed);
  if (data.length < NONCE_BYTES + TAG_BYTES) throw new Error('too short to be an encrypted payload');
  const decipher = createDecipheriv(CIPHER, key, data.subarray(0, NONCE_BYTES));
  decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
  return Buffer.concat([decipher.update(data.subarray(NONCE_BYTES, data.length - TAG_BYTES)), decipher.final()]);
}

/**
 * The payload codec. Without keys it encrypts nothing and still names the problem when it meets an
 * encrypted payload (a process started without the key), instead of the SDK's "unknown encoding".
 */
export class EncryptionCodec implements PayloadCodec {
  constructor(readonly keys: CodecKeys | null) {}

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const keys = this.keys;
    if (!keys) return payloads;
    const key = keys.keys.get(keys.current)!;
    return payloads.map((p) => ({
      metadata: {
        [METADATA_ENCODING_KEY]: Buffer.from(ENCRYPTED_ENCODING),
        [KEY_ID_METADATA]: Buffer.from(keys.current),
      },
      data: encrypt(PayloadMessage.encode(p).finish(), key),
    }));
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.decodeOne(p));
  }

  private decodeOne(p: Payload): Payload {
    if (text(p.metadata?.[METADATA_ENCODING_KEY]) !== ENCRYPTED_ENCODING) return p;
    const id = text(p.metadata?.[KEY_ID_METADATA]);
    if (id === undefined) throw new ValueError(`An encrypted payload names no key (no ${KEY_ID_METADATA})`);
    if (!this.keys) {
      throw new ValueError(
        `A payload is encrypted (key id "${id}") and this process has no key: set ${CODEC_ENV.keyFile} or ${CODEC_ENV.key}`,
      );
    }
    const key = this.keys.keys.get(id);
    if (!key) {
      throw new ValueError(
        `A payload is encrypted with key id "${id}", which this process does not hold (it holds: ` +
          `${[...this.keys.keys.keys()].join(', ')}); add that key to ${CODEC_ENV.keyFile}`,
      );
    }
    let plain: Buffer;
    try {
      plain = decrypt(p.data ?? new Uint8Array(), key);
    } catch (e) {
      throw new ValueError(
        `A payload encrypted with key id "${id}" does not decrypt with this process's key of that id ` +
          `(${(e as Error).message}): two different keys have the same id`,
      );
    }
    return PayloadMessage.decode(plain);
  }
}

/** The codec as the environment configures it; throws a CodecKeyError for a key it cannot use. */
export function payloadCodec(env: NodeJS.ProcessEnv = process.env): EncryptionCodec {
  return new EncryptionCodec(codecKeys(env));
}

/** Encrypted failure messages (lib/failure-converter.cjs), for workers when a key is configured. */
export const FAILURE_CONVERTER_PATH = fileURLToPath(new URL('./failure-converter.cjs', import.meta.url));

/**
 * What every client and worker passes as its `dataConverter`: the codec and, with a key, the failure converter
 * that moves failure messages into an encrypted payload (workers also bundle it into the workflow code).
 */
export function dataConverter(env: NodeJS.ProcessEnv = process.env): {
  payloadCodecs: PayloadCodec[];
  failureConverterPath?: string;
} {
  const codec = payloadCodec(env);
  return { payloadCodecs: [codec], ...(codec.keys ? { failureConverterPath: FAILURE_CONVERTER_PATH } : {}) };
}
