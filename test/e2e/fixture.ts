/** Starts a real TCP server over a real store on an ephemeral loopback port. */
import { silentLogger } from "../../src/log/index.ts";
import { HotMetrics } from "../../src/metrics/hot.ts";
import { FeatureService, type ServiceOptions } from "../../src/service/service.ts";
import { MemoryStore } from "../../src/store/memory.ts";
import { startTcpServer, type TcpServerOptions } from "../../src/transport/tcp/server.ts";

/**
 * @param overrides server options (a `service` given here replaces the default one)
 * @param serviceOptions options of the default service (limits such as maxResponseBytes)
 */
export function startTestTcpServer(
  overrides: Partial<TcpServerOptions> = {},
  serviceOptions: Partial<ServiceOptions> = {},
) {
  const store = new MemoryStore({ maxEntries: 100_000, maxBytes: 256 << 20, shardCount: 4 });
  const service = new FeatureService(store, serviceOptions);
  const metrics = new HotMetrics(true);
  const server = startTcpServer({
    host: "127.0.0.1",
    port: 0,
    service,
    metrics,
    logger: silentLogger,
    maxFrameBytes: 1 << 20,
    maxPendingOutputBytes: 1 << 20,
    maxConnections: 5000,
    ...overrides,
  });
  return { server, store, service, metrics, port: server.port };
}
