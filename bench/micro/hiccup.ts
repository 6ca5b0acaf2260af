/**
 * The machine's own pauses, jHiccup-style: a loop that does nothing but read the clock for 10 s.
 * Any gap it sees is the kernel's or the hypervisor's, not the code under test's, so it bounds
 * what a pause measurement (bench/micro/cache.bench.ts) can show on this machine.
 *
 * Run: bun bench/micro/hiccup.ts   (prints one JSON line)
 */
const SECONDS = 10;
const t0 = performance.now();
let last = t0;
let worst = 0;
let over1ms = 0;
let over100us = 0;
while (last - t0 < SECONDS * 1000) {
  const t = performance.now();
  const gap = t - last;
  if (gap > worst) worst = gap;
  if (gap > 1) over1ms++;
  if (gap > 0.1) over100us++;
  last = t;
}
console.log(
  JSON.stringify({
    seconds: SECONDS,
    worstGapMs: +worst.toFixed(3),
    gapsOver1ms: over1ms,
    gapsOver100us: over100us,
  }),
);
