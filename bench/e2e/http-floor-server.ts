/**
 * The HTTP floor: a bare `Bun.serve` whose one handler reads the request body and answers with
 * a fixed, pre-built body of FLOOR_BODY_BYTES (the size of a typical GetFeatures answer) as a
 * Connect unary answer would be sent (status 200, `content-type: application/proto`). It does no
 * other work, so no Connect server on Bun.serve can answer faster; beside our Connect adapter it
 * shows how much of that path's cost is the adapter's own and how much is Bun.serve + Response.
 *
 * Env: FLOOR_PORT (0 = free port), FLOOR_BODY_BYTES. Prints `{"port":N}` on stdout when listening.
 */
const bodyBytes = Number(process.env.FLOOR_BODY_BYTES ?? 600);
const body = new Uint8Array(bodyBytes);
for (let i = 0; i < bodyBytes; i++) body[i] = i & 0x7f;
const headers = { "content-type": "application/proto" };

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.FLOOR_PORT ?? 0),
  async fetch(req) {
    // Read the request as the adapter must (the body decides the answer there).
    await req.bytes();
    return new Response(body, { headers });
  },
});

process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
