/** gRPC headers, named once in src/transport/grpc-wire.ts (shared with native gRPC). */
export {
  headerGrpcEncoding,
  headerGrpcMessage,
  headerGrpcStatus,
  headerGrpcTimeout,
} from "../../grpc-wire.ts";
