/**
 * The stock gRPC server: what a user would write instead of our server, on the stack they would
 * pick. `@grpc/grpc-js` serves `featurestore.v1.FeatureStoreService` from the same .proto, loaded
 * with `@grpc/proto-loader` (protobufjs underneath): every request is decoded into objects, the
 * features live in a `Map` of entity id -> the decoded `features` object, and every answer is an
 * object that grpc-js encodes again. No cache bounds, no TTL, no durability: the cheapest honest
 * version of the service, so the comparison flatters the stock server if anything.
 *
 * Env: STOCK_GRPC_PORT (0 = free port). Prints `{"port":N}` on stdout when listening.
 */
import { resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** proto-loader options shared with the benchmark's stub client (`systems.ts`). */
export const PROTO_OPTIONS: protoLoader.Options = {
  // camelCase fields, int64 as JS numbers (the feature values fit), oneof name set, no defaults
  // filled in: the choices a TypeScript user of proto-loader typically makes.
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: true,
};
export const PROTO_PATH = resolve(import.meta.dir, "../../proto/featurestore/v1/featurestore.proto");

/** A feature value as proto-loader decodes it: one of the oneof fields set, `kind` naming it. */
type Value = Record<string, unknown>;
type Features = Record<string, Value>;

interface GetReq {
  entityId?: string;
  featureNames?: string[];
}
interface GetRes {
  entityId: string;
  features?: Features;
  found: boolean;
  missing?: string[];
}
interface SetReq {
  entityId?: string;
  features?: Features;
  ttlMs?: number;
  replace?: boolean;
}

type Unary<Q, R> = (call: grpc.ServerUnaryCall<Q, R>, cb: grpc.sendUnaryData<R>) => void;

const store = new Map<string, Features>();

function get(entityId: string, names: string[] | undefined): GetRes {
  const f = store.get(entityId);
  if (f === undefined) return { entityId, found: false, missing: names ?? [] };
  if (names === undefined || names.length === 0) return { entityId, features: f, found: true };
  const features: Features = {};
  const missing: string[] = [];
  for (const n of names) {
    const v = f[n];
    if (v === undefined) missing.push(n);
    else features[n] = v;
  }
  return { entityId, features, found: true, missing };
}

function set(req: SetReq): void {
  const id = req.entityId ?? "";
  const prev = store.get(id);
  if (req.replace || prev === undefined) store.set(id, { ...req.features });
  else Object.assign(prev, req.features);
}

function invalid(msg: string): grpc.ServiceError {
  return Object.assign(new Error(msg), {
    code: grpc.status.INVALID_ARGUMENT,
    details: msg,
    metadata: new grpc.Metadata(),
  });
}

const getFeatures: Unary<GetReq, GetRes> = (call, cb) => {
  const id = call.request.entityId;
  if (!id) return cb(invalid("entity_id is required"));
  cb(null, get(id, call.request.featureNames));
};
const batchGet: Unary<{ entityIds?: string[]; featureNames?: string[] }, unknown> = (call, cb) => {
  const ids = call.request.entityIds ?? [];
  let hits = 0;
  const results = ids.map((id) => {
    const r = get(id, call.request.featureNames);
    if (r.found) hits++;
    return r;
  });
  cb(null, { results, hits, misses: ids.length - hits });
};
const setFeatures: Unary<SetReq, unknown> = (call, cb) => {
  if (!call.request.entityId) return cb(invalid("entity_id is required"));
  set(call.request);
  cb(null, {});
};
const batchSet: Unary<{ items?: SetReq[] }, unknown> = (call, cb) => {
  const items = call.request.items ?? [];
  for (const item of items) if (!item.entityId) return cb(invalid("entity_id is required"));
  for (const item of items) set(item);
  cb(null, { written: items.length });
};
const deleteFeatures: Unary<GetReq, unknown> = (call, cb) => {
  const id = call.request.entityId ?? "";
  const f = store.get(id);
  const names = call.request.featureNames ?? [];
  if (f === undefined) return cb(null, { deleted: false });
  if (names.length === 0) return cb(null, { deleted: store.delete(id) });
  let deleted = false;
  for (const n of names)
    if (n in f) {
      delete f[n];
      deleted = true;
    }
  cb(null, { deleted });
};

/** The service definition from the .proto (shared with the client stubs). */
export function loadService(): grpc.ServiceClientConstructor {
  const def = protoLoader.loadSync(PROTO_PATH, PROTO_OPTIONS);
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    featurestore: { v1: { FeatureStoreService: grpc.ServiceClientConstructor } };
  };
  return pkg.featurestore.v1.FeatureStoreService;
}

if (import.meta.main) {
  const server = new grpc.Server();
  server.addService(loadService().service, {
    GetFeatures: getFeatures,
    BatchGet: batchGet,
    SetFeatures: setFeatures,
    BatchSet: batchSet,
    DeleteFeatures: deleteFeatures,
  } as grpc.UntypedServiceImplementation);
  const want = Number(process.env.STOCK_GRPC_PORT ?? 0);
  server.bindAsync(`127.0.0.1:${want}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) {
      console.error(`bind failed: ${err.message}`);
      process.exit(1);
    }
    console.log(JSON.stringify({ port }));
  });
  for (const sig of ["SIGTERM", "SIGINT"] as const)
    process.on(sig, () => {
      server.tryShutdown(() => process.exit(0));
      setTimeout(() => process.exit(0), 2000).unref();
    });
}
