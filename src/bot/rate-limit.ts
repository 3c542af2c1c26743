/**
 * A sliding one-minute window per person. `hit` says whether this message may go on, and whether
 * it is the first one over the limit (the only one that gets told).
 */
export class RateLimiter {
  private readonly hits = new Map<number, number[]>();

  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {}

  hit(personId: number): "ok" | "limited" | "limited-again" {
    const now = this.now();
    const recent = (this.hits.get(personId) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= this.perMinute) {
      const told = recent.length > this.perMinute;
      if (!told) recent.push(now); // one marker past the limit: the next ones stay quiet
      this.hits.set(personId, recent);
      return told ? "limited-again" : "limited";
    }
    recent.push(now);
    this.hits.set(personId, recent);
    return "ok";
  }
}
