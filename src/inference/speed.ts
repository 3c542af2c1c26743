/**
 * How fast the engine generates: tokens a second over its recent replies, counted from each
 * reply's first generated token to its last (the prompt's evaluation before it is left out), so the
 * figure is the decoding speed a friend waits on, with whatever else shares the batches.
 */

export type Speed = { tokensPerSecond: number; replies: number; tokens: number };

export class SpeedMeter {
  private readonly samples: { tokens: number; seconds: number }[] = [];

  constructor(private readonly keep = 20) {}

  /** One generation: `tokens` generated after its first one, over `seconds`. Empty ones are skipped. */
  record(tokens: number, seconds: number): void {
    if (!(tokens > 0) || !(seconds > 0)) return;
    this.samples.push({ tokens, seconds });
    if (this.samples.length > this.keep) this.samples.shift();
  }

  /** Tokens a second over the kept generations, or undefined before any. */
  rate(): Speed | undefined {
    if (this.samples.length === 0) return undefined;
    const tokens = this.samples.reduce((sum, s) => sum + s.tokens, 0);
    const seconds = this.samples.reduce((sum, s) => sum + s.seconds, 0);
    return { tokensPerSecond: tokens / seconds, replies: this.samples.length, tokens };
  }

  /**
   * A timer for one generation: `tick(n)` as its tokens come, `stop()` records it. The first tick
   * starts the clock, so the tokens after it are the ones counted.
   */
  timer(now: () => number = () => performance.now()): { tick(count: number): void; stop(): void } {
    let first: number | undefined;
    let last = 0;
    let after = 0;
    return {
      tick: (count) => {
        const at = now();
        if (first === undefined) first = at;
        else after += count;
        last = at;
      },
      stop: () => {
        if (first !== undefined) this.record(after, (last - first) / 1000);
      },
    };
  }
}

/** "14.2 tokens/s over the last 6 replies" (pure). */
export function describeSpeed(speed: Speed | undefined): string {
  if (!speed) return "no reply generated yet";
  const rate =
    speed.tokensPerSecond >= 10 ? speed.tokensPerSecond.toFixed(0) : speed.tokensPerSecond.toFixed(1);
  return `${rate} tokens/s over the last ${speed.replies === 1 ? "reply" : `${speed.replies} replies`}`;
}
