/**
 * The service contract as the HTTP adapter needs it: the RPC paths, which methods are free of
 * side effects (Connect GET), and a field table per message for the proto3 JSON mapping.
 *
 * Loaded once at start from proto/featurestore/v1/featurestore.proto with protobufjs (used for
 * parsing the .proto and its reflection only; JSON and binary are converted by json.ts).
 */
import { join } from "node:path";
import protobuf from "protobufjs";
import { METHOD_NAMES, type MethodName } from "../../codec/frame.ts";

/** Scalar field types of protobuf, as named in .proto files. */
export type ScalarType =
  | "double"
  | "float"
  | "int32"
  | "int64"
  | "uint32"
  | "uint64"
  | "sint32"
  | "sint64"
  | "fixed32"
  | "fixed64"
  | "sfixed32"
  | "sfixed64"
  | "bool"
  | "string"
  | "bytes";

const SCALARS = new Set<string>([
  "double",
  "float",
  "int32",
  "int64",
  "uint32",
  "uint64",
  "sint32",
  "sint64",
  "fixed32",
  "fixed64",
  "sfixed32",
  "sfixed64",
  "bool",
  "string",
  "bytes",
]);

/** A field's value type: a scalar or a message. */
export type ValueType =
  | { scalar: ScalarType; message?: undefined }
  | { scalar?: undefined; message: MessageInfo };

/** One field of a message, as the JSON mapping reads and writes it. */
export interface FieldInfo {
  /** The name in the .proto file (snake_case), accepted in JSON input. */
  readonly name: string;
  /** The lowerCamelCase JSON name, emitted in JSON output and accepted in input. */
  readonly jsonName: string;
  readonly number: number;
  readonly type: ValueType;
  readonly repeated: boolean;
  /** Set for `map<K, V>` fields: `type` is then V. Map keys are strings or integers or bools. */
  readonly mapKey?: ScalarType;
  /** Name of the oneof the field belongs to: its value is emitted even when it is the default. */
  readonly oneof?: string;
}

/** One message type: its fields, looked up by JSON key or by number. */
export interface MessageInfo {
  readonly fullName: string;
  /** Fields in declaration order. */
  readonly fields: FieldInfo[];
  /** By proto name and by JSON name. */
  readonly byJsonKey: Map<string, FieldInfo>;
  /** By field number (sparse). */
  readonly byNumber: (FieldInfo | undefined)[];
}

/** One RPC of the service: its path, number, message types and whether GET may call it. */
export interface MethodInfo {
  readonly name: MethodName;
  /** The method number of src/codec/frame.ts, passed to FeatureService.handle. */
  readonly number: number;
  /** `/featurestore.v1.FeatureStoreService/GetFeatures` */
  readonly path: string;
  readonly input: MessageInfo;
  readonly output: MessageInfo;
  /** `idempotency_level = NO_SIDE_EFFECTS`: Connect GET is allowed. */
  readonly sideEffectFree: boolean;
}

/** The whole contract: the service name, its methods by path, its message types. */
export interface ServiceSchema {
  readonly serviceName: string;
  /** By request path. */
  readonly methods: Map<string, MethodInfo>;
  readonly messages: Map<string, MessageInfo>;
}

/** Where the contract lives, relative to this file. */
export const PROTO_FILE = join(import.meta.dir, "../../../proto/featurestore/v1/featurestore.proto");
/** The fully qualified service name; every RPC path is `/<SERVICE_NAME>/<Method>`. */
export const SERVICE_NAME = "featurestore.v1.FeatureStoreService";

/** proto3's default JSON name: underscores dropped, the letter after each one upper-cased. */
export function protoJsonName(name: string): string {
  let out = "";
  let upper = false;
  for (const ch of name) {
    if (ch === "_") upper = true;
    else if (upper) {
      out += ch.toUpperCase();
      upper = false;
    } else out += ch;
  }
  return out;
}

let cached: ServiceSchema | undefined;

/** Loads (once) the service schema. Throws if the proto and the method table disagree. */
export function loadSchema(file = PROTO_FILE): ServiceSchema {
  if (cached && file === PROTO_FILE) return cached;
  const root = new protobuf.Root().loadSync(file, { keepCase: true });
  root.resolveAll();
  const messages = new Map<string, MessageInfo>();

  const messageInfo = (type: protobuf.Type): MessageInfo => {
    const fullName = type.fullName.replace(/^\./, "");
    const known = messages.get(fullName);
    if (known) return known;
    const info: MessageInfo = { fullName, fields: [], byJsonKey: new Map(), byNumber: [] };
    messages.set(fullName, info); // before the fields: a message may refer to itself
    for (const f of type.fieldsArray) {
      f.resolve();
      const jsonName = (f.options?.json_name as string | undefined) ?? protoJsonName(f.name);
      const valueType = (t: protobuf.ReflectionObject | null, typeName: string): ValueType => {
        if (SCALARS.has(typeName)) return { scalar: typeName as ScalarType };
        if (t instanceof protobuf.Type) return { message: messageInfo(t) };
        throw new Error(`${fullName}.${f.name}: type ${typeName} is not supported by the HTTP adapter`);
      };
      let field: FieldInfo;
      if (f instanceof protobuf.MapField) {
        if (!SCALARS.has(f.keyType) || ["float", "double", "bytes"].includes(f.keyType))
          throw new Error(`${fullName}.${f.name}: map key type ${f.keyType} is not allowed`);
        field = {
          name: f.name,
          jsonName,
          number: f.id,
          type: valueType(f.resolvedType, f.type),
          repeated: false,
          mapKey: f.keyType as ScalarType,
        };
      } else {
        field = {
          name: f.name,
          jsonName,
          number: f.id,
          type: valueType(f.resolvedType, f.type),
          repeated: f.repeated,
          ...(f.partOf && !isSyntheticOneof(f.partOf) ? { oneof: f.partOf.name } : {}),
        };
      }
      info.fields.push(field);
      info.byJsonKey.set(field.name, field);
      info.byJsonKey.set(field.jsonName, field);
      info.byNumber[field.number] = field;
    }
    return info;
  };

  const service = root.lookupService(SERVICE_NAME);
  const methods = new Map<string, MethodInfo>();
  for (const m of service.methodsArray) {
    m.resolve();
    const number = (METHOD_NAMES as readonly string[]).indexOf(m.name);
    if (number <= 0) throw new Error(`${SERVICE_NAME}.${m.name} has no method number in src/codec/frame.ts`);
    if (m.requestStream || m.responseStream)
      throw new Error(`${m.name}: streaming methods are not supported`);
    const level = m.options?.idempotency_level;
    const path = `/${SERVICE_NAME}/${m.name}`;
    methods.set(path, {
      name: m.name as MethodName,
      number,
      path,
      input: messageInfo(m.resolvedRequestType!),
      output: messageInfo(m.resolvedResponseType!),
      sideEffectFree: level === "NO_SIDE_EFFECTS" || level === 1,
    });
  }
  const schema: ServiceSchema = { serviceName: SERVICE_NAME, methods, messages };
  if (file === PROTO_FILE) cached = schema;
  return schema;
}

/** A proto3 `optional` field sits in a synthetic oneof named `_<field>`: presence, not a choice. */
function isSyntheticOneof(o: protobuf.OneOf): boolean {
  return o.oneof.length === 1 && o.name === `_${o.oneof[0]}`;
}
