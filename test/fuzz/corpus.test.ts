/**
 * The minimal reproducers the fuzz suite found (issue 8), replayed through the service
 * oracle on every run so that a fixed defect stays fixed. Each failed at 8c44c13 with the
 * message in its comment; new finds are added here once shrunk.
 */
import { describe, test } from "bun:test";
import { Method } from "../../src/codec/frame.ts";
import { ServiceHarness } from "./oracle.ts";

const corpus: { name: string; method: number; hex: string }[] = [
  {
    // SetFeatures{entity_id "u1", ttl_ms 2^52+1}: RangeError from the cache, INTERNAL on every transport
    name: "a ttl_ms just over 2^52 is refused in client terms, not INTERNAL",
    method: Method.SetFeatures,
    hex: "0a027531188180808080808008",
  },
  {
    // ttl_ms 2^53-1: the same RangeError (values over 2^53 were already INVALID_ARGUMENT)
    name: "a ttl_ms of 2^53-1 is refused in client terms, not INTERNAL",
    method: Method.SetFeatures,
    hex: "0a02753118ffffffffffffff0f",
  },
  {
    // FeatureValue bytes 88 80 80 80 10 01: tag 2^32+8 (field 2^29+1) whose low 32 bits read as
    // int_value; it was stored verbatim and protobuf-es refused the read: "varint overflows uint32"
    name: "a FeatureValue field number past 2^29-1 is never stored",
    method: Method.SetFeatures,
    hex: "0a0120120b0a01201206888080801001",
  },
  {
    // float_list { field 0, varint 1 }: stored verbatim; protobuf-es: "illegal tag: field no 0"
    name: "field number 0 inside a float_list is never stored",
    method: Method.SetFeatures,
    hex: "0a017812090a0161120432020001",
  },
  {
    // FeatureValue { string_list [""], string_list [""] }: protobuf merges a repeated message
    // field (values ["", ""]); the server kept the last occurrence only ([""])
    name: "a oneof list sent twice in one FeatureValue is merged, as protobuf-es reads it",
    method: Method.SetFeatures,
    hex: "0a027531120d0a0161120842020a0042020a00",
  },
  {
    // BatchGet ["big", "big", "big"]: 9,104 bytes with maxResponseBytes 8,192 (the limit was not enforced)
    name: "a BatchGet answer past maxResponseBytes is refused, not sent",
    method: Method.BatchGet,
    hex: "0a036269670a036269670a03626967",
  },
  {
    // GetFeatures of "u1" with 33 distinct names while maxFeatureNames is 32: accepted, and
    // projections compared every requested name with every stored one
    name: "a GetFeatures with more distinct names than maxFeatureNames is refused",
    method: Method.GetFeatures,
    hex: `0a027531${Array.from({ length: 33 }, (_, i) => {
      const name = Buffer.from(`n${i}`).toString("hex");
      return `12${(name.length / 2).toString(16).padStart(2, "0")}${name}`;
    }).join("")}`,
  },
];

describe("fuzz corpus: reproducers of defects the fuzz suite found", () => {
  const h = new ServiceHarness();
  for (const c of corpus)
    test(c.name, () => {
      h.reset();
      h.check({ method: c.method, body: new Uint8Array(Buffer.from(c.hex, "hex")) });
    });
});
