import { randomBytes, timingSafeEqual } from "node:crypto";
import type http from "node:http";
import { type Bot, webhookCallback } from "grammy";
import type { BotContext } from "./context.ts";
import type { PostgresStorage } from "./storage.ts";

/** The header Telegram sends the webhook's secret in (`secret_token` of setWebhook). */
export const SECRET_HEADER = "x-telegram-bot-api-secret-token";

const KEPT_SECRET = "webhook";

/**
 * The secret every webhook call must carry: TWIN_WEBHOOK_SECRET, else one generated once (256
 * random bits) and kept in the database, so a restart and every pending update agree on it.
 */
export async function webhookSecret(
  configured: string | undefined,
  secrets: PostgresStorage<string>,
): Promise<string> {
  if (configured) return configured;
  const kept = await secrets.read(KEPT_SECRET);
  if (kept) return kept;
  const secret = randomBytes(32).toString("base64url"); // 43 characters Telegram accepts: A-Z a-z 0-9 _ -
  await secrets.write(KEPT_SECRET, secret);
  return secret;
}

/**
 * The webhook's HTTP listener: a POST carrying exactly the secret goes to grammY; anything else
 * gets 401 (405 for other methods) and reaches no handler. Compared in constant time.
 */
export function webhookListener(bot: Bot<BotContext>, secret: string): http.RequestListener {
  const handle = webhookCallback(bot, "http", { secretToken: secret });
  const expected = Buffer.from(secret);
  return (request, response) => {
    if (request.method !== "POST") {
      response.writeHead(405, { allow: "POST" }).end();
      return;
    }
    const given = Buffer.from(String(request.headers[SECRET_HEADER] ?? ""));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      response.writeHead(401).end();
      return;
    }
    return handle(request, response);
  };
}
