import { FloodWaitError } from "telegram/errors/index.js";
import { rpcMessage } from "./auth.ts";
import { PullPausedError } from "./userbot.errors.ts";

/**
 * How the pull asks Telegram: one request at a time, paced, flood waits slept through or turned
 * into a pause, and the whole run inside a takeout session when Telegram grants one.
 */

export type RequestOptions = {
  /** Pause between requests: gramjs paces nothing itself (its waitTime is slept as milliseconds). */
  paceMs?: number | undefined;
  /** Flood waits up to this long are slept through; longer ones throw PullPausedError. */
  maxFloodWaitSeconds?: number | undefined;
  signal?: AbortSignal | undefined;
  sleep?: ((ms: number) => Promise<void>) | undefined;
  /** Told the flood waits' running total before each is slept through. */
  onFloodWait?: ((totalSeconds: number) => void) | undefined;
};

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Sends requests one by one, and counts them and the flood waits they met (for the summary). */
export class TelegramRequests {
  /** Every attempt, retries after a flood wait included. */
  count = 0;
  floodWaitSeconds = 0;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly maxFlood: number;

  constructor(private readonly options: RequestOptions = {}) {
    this.sleep = options.sleep ?? defaultSleep;
    this.maxFlood = options.maxFloodWaitSeconds ?? 300;
  }

  /** One request, paced, with flood waits slept through (or the pull paused when they are long). */
  async send<T>(call: () => Promise<T>): Promise<T> {
    for (;;) {
      if (this.options.signal?.aborted) throw new Error("the pull was cancelled");
      try {
        this.count++;
        const result = await call();
        if (this.options.paceMs) await this.sleep(this.options.paceMs);
        return result;
      } catch (error) {
        if (!(error instanceof FloodWaitError)) throw error;
        if (error.seconds > this.maxFlood) throw new PullPausedError(error.seconds);
        this.floodWaitSeconds += error.seconds;
        this.options.onFloodWait?.(this.floodWaitSeconds);
        await this.sleep(error.seconds * 1000);
      }
    }
  }
}

/** The client's takeout side, where it has one. */
export interface TakeoutClient {
  /**
   * Routes the following requests through a takeout session (account.initTakeoutSession), which
   * Telegram limits less for a data export; throws TAKEOUT_INIT_DELAY_n until the owner approves.
   */
  startTakeout?(): Promise<void>;
  finishTakeout?(success: boolean): Promise<void>;
}

/**
 * Runs `work` inside a takeout session when Telegram grants one, and without it (told through
 * `onNotice`, for the owner to approve) while Telegram waits for the owner's approval.
 */
export async function withTakeout<T>(
  client: TakeoutClient,
  onNotice: (notice: string) => void,
  work: () => Promise<T>,
): Promise<T> {
  let takeout = false;
  if (client.startTakeout) {
    try {
      await client.startTakeout();
      takeout = true;
    } catch (error) {
      const delay = /^TAKEOUT_INIT_DELAY_(\d+)$/.exec(rpcMessage(error) ?? "");
      if (!delay) throw error;
      onNotice(
        "Telegram wants you to approve this data export: open Telegram on a phone and allow the request " +
          `(it says it can be granted in ${delay[1]} s). Pulling without it meanwhile, more slowly.`,
      );
    }
  }
  let succeeded = false;
  try {
    const result = await work();
    succeeded = true;
    return result;
  } finally {
    // Finished in every case; a finish Telegram refuses only lets the takeout expire on its own.
    if (takeout) await client.finishTakeout?.(succeeded).catch(() => undefined);
  }
}
