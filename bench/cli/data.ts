/**
 * The data of the load benchmark and of the CLI tests' bigger files: `rows` entities of 20
 * features each (8 ints, 6 doubles, 4 strings, a bool and an 8-float embedding), every value a
 * function of the row index, written as NDJSON, and the same rows as a Redis protocol stream of
 * HSETs (what `redis-cli --pipe` reads).
 */

/** The features of row i (the embedding's floats are exact in float32). */
export function benchRow(i: number): Record<string, unknown> {
  return {
    entity_id: `user:${i}`,
    clicks_1d: i % 97,
    clicks_7d: i % 997,
    clicks_30d: i % 9973,
    views_1d: (i * 7) % 1000,
    views_7d: (i * 13) % 10000,
    orders_30d: i % 31,
    days_since_signup: i % 3650,
    age_bucket: i % 12,
    ctr_7d: ((i % 1000) + 0.5) / 1000,
    ctr_30d: ((i % 500) + 0.25) / 500,
    ltv: (i % 100000) / 3 + 0.5,
    avg_basket: (i % 777) * 1.25 + 0.1,
    score: ((i * 31) % 10007) / 10007 + 0.001,
    churn_risk: (i % 101) / 101 + 0.0001,
    country: COUNTRIES[i % COUNTRIES.length],
    device: DEVICES[i % DEVICES.length],
    plan: PLANS[i % PLANS.length],
    segment: `seg-${i % 50}`,
    premium: i % 3 === 0,
    embedding: [
      (i % 256) / 256,
      -(i % 128) / 128,
      (i % 64) / 64,
      0.5,
      -0.25,
      (i % 32) / 32,
      (i % 16) / 16,
      1,
    ],
  };
}

const COUNTRIES = ["DE", "FR", "US", "GB", "JP", "BR", "IN", "ES"];
const DEVICES = ["ios", "android", "web"];
const PLANS = ["free", "basic", "pro", "team"];

/** NDJSON of rows [0, rows), written in blocks. */
export async function writeNdjson(path: string, rows: number): Promise<number> {
  const w = Bun.file(path).writer();
  let bytes = 0;
  for (let i = 0; i < rows; i++) {
    const line = `${JSON.stringify(benchRow(i))}\n`;
    bytes += line.length;
    w.write(line);
  }
  await w.end();
  return bytes;
}

/** The same rows as RESP `HSET user:i f1 v1 ...` commands (the embedding as JSON text). */
export async function writeRedisProtocol(path: string, rows: number): Promise<number> {
  const w = Bun.file(path).writer();
  let bytes = 0;
  for (let i = 0; i < rows; i++) {
    const r = benchRow(i);
    const args: string[] = ["HSET", String(r.entity_id)];
    for (const [k, v] of Object.entries(r)) {
      if (k === "entity_id") continue;
      args.push(k, typeof v === "object" ? JSON.stringify(v) : String(v));
    }
    let cmd = `*${args.length}\r\n`;
    for (const a of args) cmd += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
    bytes += cmd.length;
    w.write(cmd);
  }
  await w.end();
  return bytes;
}
