// Workflow histories to and from JSON files (the proto3 JSON of `temporal workflow show -o json`).
//
// The SDK's own historyToJSON / historyFromJSON (@temporalio/common/lib/proto-utils) fail in this
// install with "TypeError: type must be a Type": npm gives @temporalio/common, /proto and /worker
// each a nested copy of protobufjs 8 (the root slot holds protobufjs 7 for @grpc/proto-loader), and
// common's protojson extension rejects the types of proto's copy. Here the extension is loaded from
// the copy @temporalio/proto itself uses, whatever the layout of node_modules.
import { createRequire } from 'node:module';
import proto from '@temporalio/proto';
import { patchProtobufRoot } from '@temporalio/proto/lib/patch-protobuf-root';

type History = proto.temporal.api.history.v1.IHistory;
interface ProtoJson {
  toJson(type: unknown, message: unknown): unknown;
  fromJson(type: unknown, json: unknown, options?: { ignoreUnknownFields?: boolean }): History | null;
}

const fromProto = createRequire(createRequire(import.meta.url).resolve('@temporalio/proto'));
const protojson = fromProto('protobufjs/ext/protojson') as ProtoJson;
const historyType = (patchProtobufRoot(proto as never) as { lookupType(name: string): unknown }).lookupType(
  'temporal.api.history.v1.History',
);

export function historyToJSON(history: History): string {
  return JSON.stringify(
    protojson.toJson(historyType, proto.temporal.api.history.v1.History.fromObject(history as never)),
  );
}

export function historyFromJSON(json: unknown): History {
  const h = protojson.fromJson(historyType, json, { ignoreUnknownFields: true });
  if (!h?.events?.length) throw new TypeError('not a workflow history (no events)');
  return h;
}
