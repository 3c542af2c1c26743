import readline from "node:readline/promises";
import { Writable } from "node:stream";
import type { Command } from "commander";
import { plural } from "../plural.ts";
import { GramjsAuthClient } from "../userbot/auth.ts";
import { pullCursorReader } from "../userbot/cursors.ts";
import { connectHistoryClient } from "../userbot/gramjs-history.ts";
import { Logins, type Outcome } from "../userbot/logins.ts";
import { pullHistory } from "../userbot/pull.ts";
import { parseSessionKey } from "../userbot/session-seal.ts";
import { createSessionStore } from "../userbot/session-store.ts";
import { indexInBackground } from "./background-index.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { progressBar } from "./progress.ts";

/** Reads a line without echoing it (the 2FA password). */
async function askHidden(question: string): Promise<string> {
  let muted = false;
  const output = new Writable({
    write(chunk, _encoding, done) {
      if (!muted) process.stdout.write(chunk);
      done();
    },
  });
  const rl = readline.createInterface({ input: process.stdin, output, terminal: true });
  const answer = rl.question(question);
  muted = true;
  try {
    return await answer;
  } finally {
    rl.close();
    process.stdout.write("\n");
  }
}

const failure = (outcome: Outcome) =>
  outcome.status === "flood_wait"
    ? `Telegram asks to wait ${outcome.seconds} s; try again later`
    : outcome.status === "failed"
      ? outcome.reason
      : outcome.status.replace(/_/g, " ");

export function registerExportCommand(program: Command): void {
  program
    .command("export")
    .description(
      "pull your history live through a userbot logged in as you (TWIN_API_ID, TWIN_API_HASH, TWIN_SESSION_KEY)",
    )
    .option("--groups", "also pull groups")
    .option("--channels", "also pull channels")
    .action(async (options: { groups?: boolean; channels?: boolean }, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const { apiId, apiHash, sessionKey } = config.userbot;
      if (!apiId || !apiHash)
        throw new Error("set TWIN_API_ID and TWIN_API_HASH (from my.telegram.org) first");
      if (!sessionKey)
        throw new Error("set TWIN_SESSION_KEY (e.g. `openssl rand -hex 32`): it seals the login session");
      await withDatabase(config, async ({ database, repositories }) => {
        const ownerId = config.bot.ownerId ?? (await repositories.history.getOwner())?.personId;
        if (!ownerId)
          throw new Error("set TWIN_OWNER_ID to your Telegram user id (or import an export first)");
        const sessions = createSessionStore(database.db, parseSessionKey(sessionKey));
        if (!(await sessions.exists(ownerId))) {
          const logins = new Logins(
            () => new GramjsAuthClient(apiId, apiHash),
            (id, s) => sessions.save(id, s),
          );
          const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
          try {
            let outcome = await logins.start(
              ownerId,
              (await rl.question("Phone number (+…): ")).replace(/[\s()-]/g, ""),
            );
            while (outcome.status === "code_sent" || outcome.status === "code_invalid") {
              const code = (await rl.question("Login code from Telegram: ")).trim();
              for (const digit of code) logins.press(ownerId, digit);
              outcome = await logins.submitCode(ownerId);
            }
            rl.close();
            while (outcome.status === "password_needed" || outcome.status === "password_invalid") {
              const hint =
                outcome.status === "password_needed" && outcome.hint ? ` (hint: ${outcome.hint})` : "";
              outcome = await logins.submitPassword(ownerId, await askHidden(`2FA password${hint}: `));
            }
            if (outcome.status !== "logged_in") throw new Error(`login failed: ${failure(outcome)}`);
          } finally {
            rl.close();
            await logins.cancel(ownerId);
          }
        }
        const client = await connectHistoryClient(apiId, apiHash, (await sessions.load(ownerId)) as string);
        // A bar on a terminal; piped or in a log, a plain line every 30 s.
        const bar = progressBar({
          format: "pulling |{bar}| {value}/{total} chats | {messages} messages | {chat}",
        });
        bar.start(0, 0, { messages: 0, chat: "" });
        try {
          const summary = await pullHistory(
            client,
            { historyRepository: repositories.history, cursors: pullCursorReader(database.db) },
            {
              ownerId,
              groups: options.groups,
              channels: options.channels,
              paceMs: 300,
              onProgress: (p) => {
                bar.setTotal(p.chatsTotal);
                bar.update(p.chatsDone, { messages: p.messages, chat: p.chat ?? "" });
                if (p.notice) process.stderr.write(`\n${p.notice}\n`);
              },
            },
          );
          bar.stop();
          process.stdout.write(
            `pulled ${plural(summary.messages, "message")} from ${plural(summary.chats, "chat")}: ${summary.new} new, ${summary.updated} updated\n`,
          );
        } finally {
          bar.stop();
          await client.disconnect();
        }
      });
      indexInBackground(config); // the new messages, without keeping this command waiting
    });
}
