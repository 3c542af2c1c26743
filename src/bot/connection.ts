import { Api, GrammyError, HttpError, type Transformer } from "grammy";
import type { UserFromGetMe } from "grammy/types";
import { BotApiUnreachableError, BotPollingError, BotTokenRefusedError } from "./bot.errors.ts";
import type { Log } from "./log.ts";

/**
 * The bot's connection to the Bot API, said out loud: the start-up's getMe in a bounded loop that
 * prints each failed attempt, and long polling that prints each failed getUpdates.
 *
 * grammY alone is silent here: @grammyjs/auto-retry retries a network error (HttpError) without
 * end — its maxRetryAttempts counts only 429 and 5xx answers, maxDelaySeconds caps only a
 * retry_after, and its own backoff (3, 6, 12 … s) grows to an hour — and bot.init() wraps getMe in
 * a retry loop of its own that never gives up either. So getMe here goes through a plain Api with
 * no retries installed, and getUpdates bypasses auto-retry (see `pollingRetries`).
 */

/** How long the start-up keeps trying when TWIN_BOT_CONNECT_S is not set. */
export const DEFAULT_CONNECT_SECONDS = 120;
/** The longest one getMe may take before it counts as failed. */
const ATTEMPT_TIMEOUT_S = 10;
/** Slack for the time the attempts themselves take, so a bound of n s still fits its attempts. */
const GRACE_MS = 1000;

/** The wait after failed attempt `attempt` (1-based): 1, 2, 4, 8, 16, then 30 s. */
export function connectWait(attempt: number): number {
  return Math.min(30, 2 ** (attempt - 1));
}

/** How many attempts start within `seconds`: the first at once, each next one after its wait. */
export function connectAttempts(seconds: number): number {
  let attempts = 1;
  let at = 0;
  while (at + connectWait(attempts) <= seconds) {
    at += connectWait(attempts);
    attempts++;
  }
  return attempts;
}

/** The wait after the n-th failed getUpdates in a row: 1, 2, 4 … s, at most a minute. */
export function pollingWait(failures: number): number {
  return Math.min(60, 2 ** Math.min(failures - 1, 6));
}

/** The API root as it may be shown: without a user or password in it. */
export function displayApiRoot(apiRoot: string): string {
  try {
    const url = new URL(apiRoot);
    url.username = "";
    url.password = "";
    return url.toString().replace(/\/+$/, "");
  } catch {
    return "(an invalid URL)";
  }
}

/**
 * Why a call failed, in a few words and without the request's URL (it holds the token): the
 * Bot API's own answer, or the network's reason.
 */
export function failureReason(error: unknown): string {
  if (error instanceof GrammyError) return `${error.error_code} ${error.description}`;
  const cause = error instanceof HttpError ? error.error : error;
  if (!(cause instanceof Error)) return String(cause);
  const { type, code } = cause as { type?: unknown; code?: unknown };
  if (type === "invalid-json") return "the answer is not JSON (is a Bot API server at that address?)";
  const timedOut = /timed out after (\d+) seconds/.exec(cause.message);
  if (timedOut) return `no answer within ${timedOut[1]} s`;
  // node-fetch: "request to <url> failed, reason: <why>".
  const why = (/reason: (.*)$/s.exec(cause.message)?.[1] ?? cause.message)
    .replace(/\bhttps?:\/\/\S+/g, "<url>")
    .replace(/\s+/g, " ")
    .trim();
  return why || (typeof code === "string" ? code : cause.name);
}

/** Answers worth another try: the server is busy, overloaded, or behind a failing proxy. */
function retryable(code: number): boolean {
  return code === 429 || code >= 500;
}

export type ConnectOptions = {
  token: string;
  apiRoot: string;
  /** The bound on the whole start-up (TWIN_BOT_CONNECT_S); default 120 s. */
  seconds?: number | undefined;
  /** Where each line goes (the bot's log). */
  say: (line: string) => void;
};

/**
 * Asks the Bot API who the bot is (getMe), as the start of `twin bot`: one line before, one line per
 * failed attempt (network error, 5xx, 429) with its reason and the wait before the next, and one
 * on success. A refused token (401) fails at once; after `seconds` it gives up.
 */
export async function connectToBotApi(options: ConnectOptions): Promise<UserFromGetMe> {
  const { token, apiRoot, say } = options;
  const seconds = options.seconds ?? DEFAULT_CONNECT_SECONDS;
  const where = displayApiRoot(apiRoot);
  const attempts = connectAttempts(seconds);
  const started = Date.now();
  const deadline = started + seconds * 1000 + GRACE_MS;
  const clean = (text: string) => text.split(token).join("[secret]");
  say(`connecting to the Bot API at ${where} …`);
  for (let attempt = 1; ; attempt++) {
    const timeoutSeconds = Math.max(
      1,
      Math.min(ATTEMPT_TIMEOUT_S, Math.ceil((deadline - Date.now()) / 1000)),
    );
    let reason: string;
    let retryAfter: number | undefined;
    try {
      const me = await new Api(token, { apiRoot, timeoutSeconds }).getMe();
      say(`connected to the Bot API as @${me.username} (bot id ${me.id})`);
      return me;
    } catch (error) {
      reason = clean(failureReason(error));
      if (error instanceof GrammyError && error.error_code === 401) {
        throw new BotTokenRefusedError(
          `the Bot API at ${where} refused TWIN_BOT_TOKEN (${reason}): the token is wrong or was revoked; copy the bot's current token from @BotFather`,
        );
      }
      if (error instanceof GrammyError && !retryable(error.error_code)) {
        throw new BotApiUnreachableError(
          `the Bot API at ${where} answered getMe with ${reason}: check TWIN_BOT_API_ROOT (the server's root, with no /bot… path)`,
        );
      }
      if (error instanceof GrammyError) retryAfter = error.parameters.retry_after;
    }
    const wait = retryAfter ?? connectWait(attempt);
    if (attempt >= attempts || Date.now() + wait * 1000 > deadline) {
      say(`attempt ${attempt}/${attempts} failed: ${reason}; giving up`);
      const took = Math.round((Date.now() - started) / 1000);
      throw new BotApiUnreachableError(
        `no answer from the Bot API at ${where}: getMe failed ${attempt} ${attempt === 1 ? "time" : "times"} in ${took} s (last: ${reason}); check TWIN_BOT_API_ROOT, the network and any proxy, or allow longer with TWIN_BOT_CONNECT_S (now ${seconds} s)`,
      );
    }
    say(`attempt ${attempt}/${attempts} failed: ${reason}; next attempt in ${wait} s`);
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
  }
}

/**
 * Long polling's getUpdates, retried here and not by auto-retry (which would retry a network error
 * silently and forever): each failure (network error, 5xx, 429, any other refusal) is one line, then
 * a wait of 1, 2, 4 … s (at most a minute, or the server's retry_after). 401 and 409 go back to the
 * runner, which stops polling on them (see `pollingStopped`). Other methods pass through.
 */
export function pollingRetries(log: Log): Transformer {
  return async (prev, method, payload, signal) => {
    if (method !== "getUpdates") return prev(method, payload, signal);
    for (let failures = 0; ; ) {
      let reason: string;
      let wait: number;
      try {
        const result = await prev(method, payload, signal);
        if (result.ok) {
          if (failures > 0)
            log.info(
              `getUpdates works again after ${failures} failed ${failures === 1 ? "attempt" : "attempts"}`,
            );
          return result;
        }
        if (result.error_code === 401 || result.error_code === 409) return result;
        failures++;
        reason = `${result.error_code} ${result.description}`;
        wait = result.parameters?.retry_after ?? pollingWait(failures);
      } catch (error) {
        if (signal?.aborted || !(error instanceof HttpError)) throw error;
        failures++;
        reason = failureReason(error);
        wait = pollingWait(failures);
      }
      log.info(`getUpdates failed: ${reason}; polling again in ${wait} s (${failures} failed in a row)`);
      await pause(wait, signal);
    }
  };
}

/** The error of a polling loop that stopped on its own, in words that say what to do. */
export function pollingStopped(error: unknown): BotPollingError {
  const reason = failureReason(error);
  const code = error instanceof GrammyError ? error.error_code : undefined;
  if (code === 401)
    return new BotPollingError(
      `the Bot API refused TWIN_BOT_TOKEN while polling (${reason}): the token was revoked or replaced; set the current one from @BotFather and start again`,
    );
  if (code === 409)
    return new BotPollingError(
      `the Bot API ended long polling (${reason}): another process is polling with this bot's token, or a webhook was set for it; run one twin bot per token`,
    );
  return new BotPollingError(`long polling stopped: ${reason}`);
}

/** The abort signal grammY hands a transformer (abort-controller's, not the DOM's type). */
type CallSignal = Parameters<Transformer>[3];

function pause(seconds: number, signal: CallSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const abort = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", abort);
      reject(new Error("polling stopped while waiting to try again"));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", abort);
      resolve();
    }, seconds * 1000);
    if (signal?.aborted) abort();
    else signal?.addEventListener("abort", abort);
  });
}
