// Where the Temporal server is: TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE, defaulting to the local dev server.
import { Connection, Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_ADDRESS, DEFAULT_NAMESPACE } from '../common/shared';

export function temporalAddress(): string {
  return process.env.TEMPORAL_ADDRESS || DEFAULT_ADDRESS;
}
export function temporalNamespace(): string {
  return process.env.TEMPORAL_NAMESPACE || DEFAULT_NAMESPACE;
}

/** Nightlab's data directory: server database, campaign records, GPU worktrees and logs. */
export function nightlabHome(): string {
  return path.resolve(process.env.NIGHTLAB_HOME || path.join(os.homedir(), '.nightlab'));
}

export async function connectClient(address = temporalAddress(), namespace = temporalNamespace()): Promise<Client> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ address, connectTimeout: '5s' });
  } catch (e) {
    throw new Error(`Cannot reach the Temporal server at ${address} (${(e as Error).message.split('\n')[0]}). Start one with \`nightlab server\`, or set TEMPORAL_ADDRESS to a running server.`);
  }
  return new Client({ connection, namespace });
}

export async function connectWorker(address = temporalAddress()): Promise<NativeConnection> {
  try {
    return await NativeConnection.connect({ address });
  } catch (e) {
    throw new Error(`Cannot reach the Temporal server at ${address} (${(e as Error).message.split('\n')[0]}). Start one with \`nightlab server\`, or set TEMPORAL_ADDRESS to a running server.`);
  }
}
