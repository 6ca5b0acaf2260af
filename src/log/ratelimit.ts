/**
 * Rate limiting for log lines: a server that logs one line per bad request or bad connection
 * lets any client fill its disk (100,000 bad pipelined requests once wrote 49 MB of stderr in
 * 1.1 s). No timers: the window is checked on each call, with the time the caller passes in.
 */

/**
 * Admits at most `limit` events per window of `windowMs` and counts the rest. A window opens
 * at the first event after the previous one ended (a fixed window, not a sliding one: a burst
 * of 2 x limit can straddle a boundary, which is fine for logs).
 */
export class RateLimiter {
  private windowStart = Number.NEGATIVE_INFINITY;
  private admitted = 0;
  private refused = 0;

  /**
   * @param limit events admitted per window, at least 1
   * @param windowMs window length in ms, at least 1
   */
  constructor(
    readonly limit: number,
    readonly windowMs: number,
  ) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`RateLimiter limit must be an integer >= 1, got ${limit}`);
    if (!(windowMs >= 1)) throw new RangeError(`RateLimiter windowMs must be >= 1 ms, got ${windowMs}`);
  }

  /** Whether an event at `now` (ms, any monotonic origin) may pass; a refused one is counted. */
  admit(now: number): boolean {
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.admitted = 0;
    }
    if (this.admitted < this.limit) {
      this.admitted++;
      return true;
    }
    this.refused++;
    return false;
  }

  /**
   * Events refused in a window that has ended by `now`, then 0 until more are refused. While
   * the window that refused them is still open it returns 0 and keeps counting.
   */
  takeRefused(now: number): number {
    if (this.refused === 0 || now - this.windowStart < this.windowMs) return 0;
    const n = this.refused;
    this.refused = 0;
    return n;
  }
}
