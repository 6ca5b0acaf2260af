/**
 * The service-level oracle: runs requests through `FeatureService.handle` over a MemoryStore
 * and checks every answer against a conformant decoder (protobuf-es `fromBinary` with the
 * generated schemas) and against a model of what the store should hold.
 *
 * Checked on every request:
 * - only `FeatureStoreError` is thrown, never with code INTERNAL;
 * - an OK answer decodes as the method's response and fits `maxResponseBytes`;
 * - an accepted request names at most `maxFeatureNames` distinct names;
 * - every record a request wrote reads back (GetFeatures, a projection, BatchGet) as bytes
 *   protobuf-es decodes, with at most `maxFeaturesPerEntity` features;
 * - a request refused as INVALID_ARGUMENT wrote nothing;
 * - when protobuf-es also reads the request (and every field has the wire type its type
 *   allows, see `wellFormed`), the answer and the stored records equal the model:
 *   merge or replace, last map entry for a name wins, deletes, projections, `missing`; event
 *   times (stamped with the clock when absent; an older event is skipped and named in the
 *   answer, equal times the write wins); a read's max age (stale values listed, not returned).
 *   Requests naming a feature set or version (records under the internal 0xFF key space, which
 *   no UTF-8 entity id can start with) and window aggregates are left to the contract suites:
 *   the model holds plain entities only.
 *
 * A request protobuf-es refuses but the server accepts is allowed (the server may be lenient),
 * as long as what it stored reads back: the model then takes the server's word for the
 * records that request wrote.
 */
import { create, type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { Method } from "../../src/codec/frame.ts";
import { Code, FeatureStoreError } from "../../src/codec/status.ts";
import { ProtoWriter } from "../../src/codec/wire.ts";
import { FeatureService, type ServiceOptions } from "../../src/service/service.ts";
import { MemoryStore } from "../../src/store/memory.ts";
import type { PrefixDrop, RecordStore } from "../../src/store/types.ts";
import {
  type BatchGetRequest,
  type BatchGetResponse,
  BatchGetResponseSchema,
  type BatchSetRequest,
  type BatchSetResponse,
  type DeleteFeaturesRequest,
  type DeleteFeaturesResponse,
  type FeatureValue,
  FeatureValueSchema,
  type GetFeaturesRequest,
  GetFeaturesRequestSchema,
  type GetFeaturesResponse,
  GetFeaturesResponseSchema,
  type SetFeaturesRequest,
  SetFeaturesRequestSchema,
  SetFeaturesResponseSchema,
} from "../gen/featurestore/v1/featurestore_pb.ts";
import { REQUEST_SCHEMAS, RESPONSE_SCHEMAS, type Step } from "./gen.ts";
import { hex, wellFormed } from "./wire.ts";

/**
 * Limits of the service under fuzz: small, so that a few-KB request can reach every one of
 * them (an answer of three copies of the seeded "big" record passes 8 KiB).
 */
export const FUZZ_LIMITS: Partial<ServiceOptions> = {
  maxEntityIdBytes: 64,
  maxBatchItems: 16,
  maxFeatureNames: 32,
  maxFeaturesPerEntity: 48,
  maxResponseBytes: 8192,
};

/** The records every case starts from (GetFeatures and deletes meet them; "big" makes large answers). */
export function seedRequests(): SetFeaturesRequest[] {
  const v = (kind: FeatureValue["kind"]) => create(FeatureValueSchema, { kind });
  return [
    create(SetFeaturesRequestSchema, {
      entityId: "u1",
      features: {
        a: v({ case: "intValue", value: 1n }),
        b: v({ case: "stringValue", value: "x" }),
        emb: v({ case: "floatList", value: { $typeName: "featurestore.v1.FloatList", values: [0.5, -1] } }),
        tags: v({
          case: "stringList",
          value: { $typeName: "featurestore.v1.StringList", values: ["p", "q"] },
        }),
      },
    }),
    create(SetFeaturesRequestSchema, {
      entityId: "u2",
      features: { a: v({ case: "doubleValue", value: 0.5 }) },
    }),
    create(SetFeaturesRequestSchema, {
      entityId: "big",
      features: {
        blob: v({ case: "bytesValue", value: new Uint8Array(3000).fill(7) }),
        a: v({ case: "boolValue", value: true }),
      },
    }),
  ];
}

/** A property violation: the message says what and shows the bytes. */
export class Violation extends Error {
  override readonly name = "Violation";
}

const keyHex = (k: Uint8Array) => hex(k);

/** The store behind the fuzzed service: a MemoryStore that remembers which keys each request wrote or removed. */
export class RecordingStore implements RecordStore {
  readonly ready = true;
  /** Keys written or removed since `mark()`, by hex. */
  touched = new Map<string, Uint8Array>();
  /** Every key written since `clear()`. */
  private all = new Map<string, Uint8Array>();
  writes = 0;
  constructor(readonly inner: MemoryStore) {}
  mark(): void {
    this.touched = new Map();
    this.writes = 0;
  }
  clear(): void {
    for (const k of this.all.values()) this.inner.remove(k, 0, k.length);
    this.all.clear();
    this.mark();
  }
  find(key: Uint8Array, start: number, end: number): number {
    return this.inner.find(key, start, end);
  }
  arena(h: number): Uint8Array {
    return this.inner.arena(h);
  }
  offset(h: number): number {
    return this.inner.offset(h);
  }
  length(h: number): number {
    return this.inner.length(h);
  }
  copyTo(h: number, dst: Uint8Array, at: number): number {
    return this.inner.copyTo(h, dst, at);
  }
  expiresAt(h: number): number {
    return this.inner.expiresAt(h);
  }
  freshUntil(h: number): number {
    return this.inner.freshUntil(h);
  }
  dropPrefix(prefix: Uint8Array): PrefixDrop {
    return this.inner.dropPrefix(prefix);
  }
  write(
    key: Uint8Array,
    start: number,
    end: number,
    record: Uint8Array,
    ttlMs: number,
    freshUntil: number,
  ): void {
    this.inner.write(key, start, end, record, ttlMs, freshUntil);
    const k = key.slice(start, end);
    this.touched.set(keyHex(k), k);
    this.all.set(keyHex(k), k);
    this.writes++;
  }
  remove(key: Uint8Array, start: number, end: number): boolean {
    const k = key.slice(start, end);
    this.touched.set(keyHex(k), k);
    this.writes++;
    return this.inner.remove(key, start, end);
  }
  now(): number {
    return this.inner.now();
  }
}

/** Outcome of one call: the code, and the answer bytes when OK. */
export interface Outcome {
  code: number;
  answer: Uint8Array;
  message: string;
}

type Features = Map<string, FeatureValue>;
const strict = new TextDecoder("utf-8", { fatal: true });

/** Bytes of a FeatureValue without unknown fields: how two readings of one value are compared. */
function valueBytes(v: FeatureValue): string {
  return hex(toBinary(FeatureValueSchema, v, { writeUnknownFields: false }));
}

function describeValue(v: FeatureValue | undefined): string {
  return v === undefined ? "absent" : `${v.kind.case ?? "unset"}:${valueBytes(v)}`;
}

function tryDecode<T extends DescMessage>(desc: T, body: Uint8Array): MessageShape<T> | undefined {
  try {
    return fromBinary(desc, body);
  } catch {
    return undefined;
  }
}

/** The fuzzed service, its store and a model of the records, reset to the seeds before each case. */
export class ServiceHarness {
  readonly store: RecordingStore;
  readonly service: FeatureService;
  readonly limits: ServiceOptions;
  private readonly out = new ProtoWriter(1024);
  /** Entity id -> features, as the store should hold them. */
  model = new Map<string, Features>();

  constructor(limits: Partial<ServiceOptions> = FUZZ_LIMITS) {
    // A fixed clock: no record expires during a case, whatever its ttl.
    const inner = new MemoryStore({
      maxEntries: 4096,
      maxBytes: 8 << 20,
      shardCount: 4,
      now: () => NOW,
    });
    this.store = new RecordingStore(inner);
    this.service = new FeatureService(this.store, limits);
    this.limits = this.service.options;
  }

  /** Empties the store and writes the seed records. */
  reset(): void {
    this.store.clear();
    this.model.clear();
    for (const req of seedRequests()) {
      const body = toBinary(SetFeaturesRequestSchema, req);
      const o = this.call(Method.SetFeatures, body);
      if (o.code !== Code.OK) throw new Violation(`seeding ${req.entityId} failed: ${o.code} ${o.message}`);
      this.applySet(req);
    }
    this.store.mark();
  }

  /** One call; throws Violation for anything but a FeatureStoreError, and for INTERNAL. */
  call(method: number, body: Uint8Array): Outcome {
    const out = this.out;
    out.reset();
    try {
      this.service.handle(method, body, 0, body.length, out);
      return { code: Code.OK, answer: out.view().slice(), message: "" };
    } catch (err) {
      if (!(err instanceof FeatureStoreError))
        throw new Violation(`handle threw ${String(err)} (not a FeatureStoreError)`, { cause: err });
      if (err.code === Code.Internal) throw new Violation(`INTERNAL: ${err.message}`, { cause: err });
      return { code: err.code, answer: new Uint8Array(0), message: err.message };
    }
  }

  /** Runs one request and checks everything in the file comment. */
  check(s: Step): void {
    this.store.mark();
    const o = this.call(s.method, s.body);
    // keys under 0xFF are feature-set records and pointers, outside the model
    const touched = touchedOf(this.store);
    if (o.code === Code.InvalidArgument && this.store.writes > 0)
      throw new Violation(
        `refused with INVALID_ARGUMENT (${o.message}) but wrote ${this.store.writes} record(s)`,
      );
    const reqDesc = REQUEST_SCHEMAS[s.method];
    // protobuf-es's reading of the request, when it has one the server must agree with.
    const req = reqDesc && wellFormed(reqDesc, s.body) ? (tryDecode(reqDesc, s.body) as unknown) : undefined;
    if (o.code === Code.OK) this.checkAnswer(s.method, o.answer, req);
    if (o.code === Code.OK && req !== undefined) this.predict(s.method, req, o.answer);
    else if (touched.length > 0) this.resync(touched);
    // Every record written reads back; the predicted ones equal the model.
    for (const k of touched) this.verifyRecord(k);
  }

  private checkAnswer(method: number, answer: Uint8Array, req: unknown): void {
    const desc = RESPONSE_SCHEMAS[method];
    if (desc === undefined) {
      if (answer.length !== 0)
        throw new Violation(`method ${method} answered ${answer.length} bytes: ${hex(answer)}`);
      return;
    }
    if (answer.length > this.limits.maxResponseBytes)
      throw new Violation(
        `answer of ${answer.length} bytes is over maxResponseBytes ${this.limits.maxResponseBytes}`,
      );
    try {
      fromBinary(desc, answer);
    } catch (err) {
      throw new Violation(
        `answer does not decode as ${desc.typeName}: ${(err as Error).message}; answer ${hex(answer)}`,
      );
    }
    if (req === undefined) return;
    const max = this.limits.maxFeatureNames;
    const names =
      method === Method.SetFeatures
        ? Object.keys((req as SetFeaturesRequest).features).length
        : method === Method.BatchSet
          ? Math.max(0, ...(req as BatchSetRequest).items.map((i) => Object.keys(i.features).length))
          : new Set((req as GetFeaturesRequest).featureNames).size;
    if (names > max)
      throw new Violation(`accepted a request with ${names} distinct names (maxFeatureNames ${max})`);
  }

  /** Applies a request protobuf-es read to the model, checking the answer it got. */
  private predict(method: number, req: unknown, answer: Uint8Array): void {
    const set = req as { featureSet?: string; version?: string };
    if (set.featureSet || set.version) return; // not the plain entities the model holds
    switch (method) {
      case Method.GetFeatures: {
        const r = req as GetFeaturesRequest;
        const a = fromBinary(GetFeaturesResponseSchema, answer);
        this.compareResult(a, r.entityId, r.featureNames, "", Number(r.maxAgeMs));
        return;
      }
      case Method.BatchGet: {
        const r = req as BatchGetRequest;
        const a = fromBinary(BatchGetResponseSchema, answer) as BatchGetResponse;
        if (a.results.length !== r.entityIds.length)
          throw new Violation(`BatchGet of ${r.entityIds.length} ids answered ${a.results.length} results`);
        for (const [i, id] of r.entityIds.entries())
          this.compareResult(a.results[i]!, id, r.featureNames, `results[${i}] `, Number(r.maxAgeMs));
        const hits = r.entityIds.filter((id) => this.model.has(id)).length;
        if (a.hits !== hits || a.misses !== r.entityIds.length - hits)
          throw new Violation(
            `BatchGet hits/misses ${a.hits}/${a.misses}, expected ${hits}/${r.entityIds.length - hits}`,
          );
        return;
      }
      case Method.SetFeatures: {
        const a = fromBinary(SetFeaturesResponseSchema, answer);
        sameNames("SetFeatures skipped", a.skipped, this.applySet(req as SetFeaturesRequest));
        return;
      }
      case Method.BatchSet: {
        const r = req as BatchSetRequest;
        const a = fromBinary(RESPONSE_SCHEMAS[method]!, answer) as BatchSetResponse;
        if (a.written !== r.items.length)
          throw new Violation(`BatchSet of ${r.items.length} items answered written=${a.written}`);
        if (r.items.some((i) => i.featureSet || i.version)) {
          this.resync(touchedOf(this.store));
          return;
        }
        const got = new Map(a.skipped.map((s) => [s.item, s.names]));
        for (const [i, item] of r.items.entries())
          sameNames(`BatchSet items[${i}] skipped`, got.get(i) ?? [], this.applySet(item));
        return;
      }
      case Method.UpdateFeatures:
        // increments, appends and windows are modelled by the contract suites; here the
        // model takes the server's word, and the records must still read back
        this.resync(touchedOf(this.store));
        return;
      case Method.DeleteFeatures: {
        const r = req as DeleteFeaturesRequest;
        const a = fromBinary(RESPONSE_SCHEMAS[method]!, answer) as DeleteFeaturesResponse;
        const rec = this.model.get(r.entityId);
        let expected = false;
        if (rec !== undefined && r.featureNames.length === 0) {
          this.model.delete(r.entityId);
          expected = true;
        } else if (rec !== undefined) {
          for (const n of r.featureNames) if (rec.delete(n)) expected = true;
        }
        if (a.deleted !== expected)
          throw new Violation(
            `DeleteFeatures of ${JSON.stringify(r.entityId)} answered deleted=${a.deleted}, expected ${expected}`,
          );
        return;
      }
    }
  }

  /**
   * Applies one SetFeatures to the model: each value stamped with the clock when it has no event
   * time, skipped (and returned) when the stored value is newer. Replace drops the unnamed ones.
   */
  private applySet(r: SetFeaturesRequest): string[] {
    const old = this.model.get(r.entityId);
    const rec: Features = r.replace ? new Map() : new Map(old ?? []);
    const skipped: string[] = [];
    for (const [name, value] of Object.entries(r.features)) {
      const v = create(FeatureValueSchema, { ...value, eventTimeMs: value.eventTimeMs || BigInt(NOW) });
      const prev = old?.get(name);
      if (prev !== undefined && prev.eventTimeMs > v.eventTimeMs) {
        rec.set(name, prev);
        skipped.push(name);
      } else rec.set(name, v);
    }
    this.model.set(r.entityId, rec);
    return skipped;
  }

  /**
   * Takes the server's word for records a request protobuf-es could not read wrote (or that
   * partly failed, or that the model does not predict): the stored record itself, decoded as the
   * features map of a GetFeaturesResponse (stale values too, which reads hold back).
   */
  private resync(keys: Uint8Array[]): void {
    const store = this.store.inner;
    for (const k of keys) {
      const id = strict.decode(k);
      const h = store.find(k, 0, k.length);
      if (h < 0) {
        this.model.delete(id);
        continue;
      }
      const at = store.offset(h);
      const record = store.arena(h).subarray(at, at + store.length(h));
      let features: Record<string, FeatureValue>;
      try {
        features = fromBinary(GetFeaturesResponseSchema, record).features;
      } catch (err) {
        throw new Violation(
          `stored record of ${JSON.stringify(id)} does not decode: ${(err as Error).message}; ${hex(record)}`,
        );
      }
      this.model.set(id, new Map(Object.entries(features)));
    }
  }

  /** GetFeatures of key `k` (raw id bytes), decoded; null when the service refuses with a non-INTERNAL code. */
  private read(k: Uint8Array, names: string[]): GetFeaturesResponse | null {
    const names_ = toBinary(
      GetFeaturesRequestSchema,
      create(GetFeaturesRequestSchema, { featureNames: names }),
    );
    // entity_id is written from the key bytes themselves, not through a string
    const req = Uint8Array.from([0x0a, ...lengthVarint(k.length), ...k, ...names_]);
    const o = this.call(Method.GetFeatures, req);
    if (o.code !== Code.OK) return null;
    try {
      return fromBinary(GetFeaturesResponseSchema, o.answer);
    } catch (err) {
      throw new Violation(
        `stored record of ${JSON.stringify(strict.decode(k))} does not decode: ${(err as Error).message}; answer ${hex(o.answer)}`,
      );
    }
  }

  /** Reads a written record back three ways; compares with the model. */
  private verifyRecord(k: Uint8Array): void {
    const id = strict.decode(k);
    const got = this.read(k, []);
    if (got !== null) {
      const n = Object.keys(got.features).length;
      if (n > this.limits.maxFeaturesPerEntity)
        throw new Violation(
          `${JSON.stringify(id)} holds ${n} features (maxFeaturesPerEntity ${this.limits.maxFeaturesPerEntity})`,
        );
      this.compareResult(got, id, [], "read-back ");
      // a projection walks the stored entries one by one
      const names = [...Object.keys(got.features).slice(0, 3), "not-there"];
      const proj = this.read(k, names);
      if (proj !== null) this.compareResult(proj, id, names, "projection ");
    }
    const batch = Uint8Array.from([
      0x0a,
      ...lengthVarint(k.length),
      ...k,
      0x0a,
      ...lengthVarint(k.length),
      ...k,
    ]);
    const o = this.call(Method.BatchGet, batch);
    if (o.code === Code.OK) {
      try {
        fromBinary(BatchGetResponseSchema, o.answer);
      } catch (err) {
        throw new Violation(`BatchGet of ${JSON.stringify(id)} does not decode: ${(err as Error).message}`);
      }
    }
  }

  /** Compares one GetFeaturesResponse with the model. */
  private compareResult(
    a: GetFeaturesResponse,
    id: string,
    names: string[],
    what = "",
    readMaxAge = 0,
  ): void {
    const rec = this.model.get(id);
    if (a.entityId !== id)
      throw new Violation(`${what}entity_id ${JSON.stringify(a.entityId)}, expected ${JSON.stringify(id)}`);
    if (a.found !== (rec !== undefined))
      throw new Violation(
        `${what}${JSON.stringify(id)} found=${a.found}, the model says ${rec !== undefined}`,
      );
    const want = new Map<string, FeatureValue>();
    const wantStale: string[] = [];
    if (rec !== undefined)
      for (const n of names.length === 0 ? rec.keys() : names) {
        const v = rec.get(n);
        if (v === undefined) continue;
        const own = Number(v.maxAgeMs);
        const maxAge = own > 0 && (readMaxAge === 0 || own < readMaxAge) ? own : readMaxAge;
        if (maxAge > 0 && NOW - Number(v.eventTimeMs) > maxAge) wantStale.push(n);
        else want.set(n, v);
      }
    sameNames(`${what}${JSON.stringify(id)} stale`, a.stale, wantStale);
    const got = Object.entries(a.features);
    for (const [n, v] of got)
      if (!want.has(n) || valueBytes(want.get(n)!) !== valueBytes(v))
        throw new Violation(
          `${what}${JSON.stringify(id)} feature ${JSON.stringify(n)} is ${describeValue(v)}, expected ${describeValue(want.get(n))}`,
        );
    if (got.length !== want.size) {
      const missing = [...want.keys()].filter((n) => !(n in a.features));
      throw new Violation(`${what}${JSON.stringify(id)} lacks features ${JSON.stringify(missing)}`);
    }
    const wantMissing = new Set(names.filter((n) => !rec?.has(n)));
    const gotMissing = new Set(a.missing);
    if (wantMissing.size !== gotMissing.size || [...wantMissing].some((n) => !gotMissing.has(n)))
      throw new Violation(
        `${what}${JSON.stringify(id)} missing=${JSON.stringify([...gotMissing])}, expected ${JSON.stringify([...wantMissing])}`,
      );
  }
}

/** The fixed clock of the fuzzed store and service (ms). */
const NOW = 1_000_000;

/** Throws unless `got` and `want` hold the same names (in any order). */
function sameNames(what: string, got: string[], want: string[]): void {
  const g = [...new Set(got)].sort();
  const w = [...new Set(want)].sort();
  if (g.length !== w.length || g.some((n, i) => n !== w[i]))
    throw new Violation(`${what} ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
}

const touchedOf = (s: RecordingStore) => [...s.touched.values()].filter((k) => k[0] !== 0xff);

function lengthVarint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
