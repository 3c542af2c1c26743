import fs from "node:fs";
import http from "node:http";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream } from "node:stream/web";
import { autoRetry } from "@grammyjs/auto-retry";
import { conversations } from "@grammyjs/conversations";
import { type RunnerHandle, run, sequentialize } from "@grammyjs/runner";
import { Bot, type Context, session } from "grammy";
import { createFriendsRepository } from "../access/friends.repository.ts";
import type { Config } from "../config/config.ts";
import { machineTimeZone } from "../config/config.ts";
import { sanitizeName } from "../dataset/names.ts";
import type { Database } from "../db/client.ts";
import { PRIVATE_FILE_MODE } from "../files/private.ts";
import { createHistoryRepository } from "../history/history.repository.ts";
import type { Conversations } from "../inference/conversations.ts";
import type { Engine } from "../inference/engine.ts";
import type { LocalWorker } from "../training/local-worker.ts";
import { createRunsRepository } from "../training/runs.repository.ts";
import type { Serving } from "../training/serving.ts";
import { createBotMessagesRepository } from "./bot-messages.repository.ts";
import { registerCommands } from "./commands.ts";
import type { BotContext, SessionData } from "./context.ts";
import { accessControl } from "./features/access.ts";
import { consent } from "./features/consent.ts";
import { evaluation } from "./features/evaluation.ts";
import { exportHistory, loginSecrets, type Userbot } from "./features/export.ts";
import { forget } from "./features/forget.ts";
import { friendChat, friendInbox } from "./features/friend-chat.ts";
import { friendsAdmin } from "./features/friends-admin.ts";
import { groupChat } from "./features/group-chat.ts";
import { guessGame } from "./features/guess.ts";
import { historyJobs } from "./features/history-jobs.ts";
import { ownerInfo } from "./features/owner-info.ts";
import { talk } from "./features/talk.ts";
import { followTraining, training } from "./features/train.ts";
import { Jobs } from "./jobs.ts";
import { createLog, type Log } from "./log.ts";
import { personName } from "./people.ts";
import { Replier, type ReplyTarget } from "./replier.ts";
import type { BotServices } from "./services.ts";
import { BotSettings } from "./settings.ts";
import { postgresStorage } from "./storage.ts";
import { texts } from "./texts.ts";
import { webhookListener, webhookSecret } from "./webhook.ts";

export class BotConfigError extends Error {}

export type TwinBotOptions = {
  config: Config;
  database: Database;
  conversations: Conversations;
  /** The engine behind `conversations`, for /eval; without it /eval says it cannot run. */
  engine?: Engine | undefined;
  countTokens: (text: string) => number;
  model: Serving;
  /** Trains queued runs on this machine (TWIN_WORKER); absent: runs wait for an external worker. */
  worker?: LocalWorker | undefined;
  log?: Log | undefined;
  userbot?: Userbot | undefined;
};

export type TwinBot = {
  bot: Bot<BotContext>;
  services: BotServices;
  /** Long polling (the default) or, with TWIN_WEBHOOK_URL, a webhook server. */
  start(): Promise<void>;
  stop(): Promise<void>;
};

/** How often the bot looks for adapter switches and queued runs made outside it. */
const WATCH_MS = 10_000;

const retries = () => autoRetry({ maxRetryAttempts: 6, maxDelaySeconds: 60 });

/**
 * Sessions and conversations belong to one person in one chat: no one else's message can read
 * or advance a flow someone started, in a group or anywhere.
 */
const chatAndUser = (ctx: Context) => (ctx.chat && ctx.from ? `${ctx.chat.id}:${ctx.from.id}` : undefined);

/** Builds the bot: wiring, storage, and one Composer per feature, in the order they must see updates. */
export async function createTwinBot(options: TwinBotOptions): Promise<TwinBot> {
  const { config, database } = options;
  const { token, ownerId } = config.bot;
  if (!token)
    throw new BotConfigError("TWIN_BOT_TOKEN is not set: create a bot with @BotFather and set its token");
  if (!ownerId) throw new BotConfigError("TWIN_OWNER_ID is not set: set it to your own Telegram user id");
  const log = options.log ?? createLog([token, config.bot.webhook?.secret, config.databaseUrl]);

  const bot = new Bot<BotContext>(token, { client: { apiRoot: config.bot.apiRoot } });
  bot.api.config.use(retries());
  const messages = createBotMessagesRepository(database);
  const settings = await BotSettings.load(postgresStorage(database.db, "settings"));
  const history = createHistoryRepository(database);
  const ownerName = async () => {
    const owner = await history.getOwner();
    return sanitizeName(owner?.name ?? null, ownerId).replace(/^User \d+$/, "the owner");
  };
  const timeZone = config.timeZone ?? machineTimeZone();
  const replier = new Replier({
    api: bot.api,
    messages,
    conversations: options.conversations,
    prompt: {
      database,
      countTokens: options.countTokens,
      contextSize: config.inference.contextSize,
      maxReplyTokens: config.inference.maxReplyTokens,
      timeZone,
    },
    adapter: () => options.model.adapter(),
    paused: () => settings.paused,
    quietMs: config.bot.quietMs,
    typing: config.bot.typing,
    onError: (error, target) =>
      log.error(`replying in ${target.mode} conversation ${target.personId}`, error),
  });
  const services: BotServices = {
    api: bot.api,
    config,
    ownerId,
    ownerName,
    timeZone,
    database,
    friends: createFriendsRepository(database),
    messages,
    settings,
    refusals: postgresStorage<string>(database.db, "refused"),
    replier,
    jobs: new Jobs(bot.api, config.bot.progressEditMs, log),
    model: options.model,
    training: {
      runs: createRunsRepository(database),
      kick: async () => {
        await options.worker?.kick().catch((error) => log.error("starting the trainer worker", error));
      },
    },
    log,
    userbot: options.userbot,
    inference: options.engine ? { engine: options.engine, conversations: options.conversations } : undefined,
    download: async (fileId, to) => {
      const file = await bot.api.getFile(fileId);
      if (!file.file_path) throw new Error("Telegram gave no path for that file");
      // The file URL carries the token: it is built here and never logged or shown.
      const response = await fetch(`${config.bot.apiRoot}/file/bot${token}/${file.file_path}`);
      if (!response.ok || !response.body)
        throw new Error(`Telegram refused the download (HTTP ${response.status})`);
      await pipeline(
        Readable.fromWeb(response.body as ReadableStream),
        fs.createWriteStream(to, { mode: PRIVATE_FILE_MODE }), // someone's whole history
      );
    },
  };

  // Updates of one chat in order, chats in parallel (the runner needs this first).
  bot.use(sequentialize((ctx: Context) => ctx.chat?.id.toString()));
  bot.use(
    session({
      initial: (): SessionData => ({}),
      storage: postgresStorage<SessionData>(database.db, "session"),
      getSessionKey: chatAndUser,
    }),
  );
  bot.use(accessControl(services));
  const inbox = friendInbox(services);
  bot.use(groupChat(services, inbox)); // groups end here: every feature below runs in private chats only
  bot.use(loginSecrets(services)); // before conversations: codes and passwords never reach their state
  bot.use(
    conversations<BotContext, Context>({
      storage: {
        type: "key",
        adapter: postgresStorage(database.db, "conversation"),
        getStorageKey: chatAndUser,
      },
      // Conversations build their own Api objects: retries must be installed on each.
      plugins: [
        async (ctx, next) => {
          ctx.api.config.use(retries());
          await next();
        },
      ],
    }),
  );
  bot.command("cancel", async (ctx) => {
    const active = Object.keys(ctx.conversation.active()).length;
    await ctx.conversation.exitAll();
    if (ctx.role === "owner") await services.userbot?.logins.cancel(ctx.from?.id as number);
    if (ctx.role === "owner") await ctx.reply(active > 0 ? "Cancelled." : "Nothing to cancel.");
  });
  bot.use(historyJobs(services));
  bot.use(forget(services));
  bot.use(exportHistory(services));
  bot.use(consent(services));
  bot.use(guessGame(services)); // before friendChat: /guess is a command, not a message to the twin
  bot.use(friendChat(services, inbox));
  bot.use(ownerInfo(services));
  bot.use(friendsAdmin(services));
  bot.use(training(services));
  bot.use(evaluation(services));
  bot.use(talk(services)); // it answers unknown commands
  // Last: a press no feature took (stale, forged, or not this person's to press) still gets an
  // answer, so Telegram stops its spinner; it changes nothing.
  bot.on("callback_query", (ctx) => ctx.answerCallbackQuery({ text: "That button does nothing now." }));

  bot.catch(async (error) => {
    log.error(`update ${error.ctx.update.update_id}`, error.error);
    await error.ctx.reply(texts.failed).catch(() => undefined);
  });

  let runner: RunnerHandle | undefined;
  let server: http.Server | undefined;
  let watch: NodeJS.Timeout | undefined;
  return {
    bot,
    services,
    async start() {
      await bot.init();
      await presentHonestly(bot, await ownerName(), ownerId).catch((error) =>
        log.error("setting the bot's profile", error),
      );
      const unfinished = await messages.unfinished();
      const targets: ReplyTarget[] = await Promise.all(
        unfinished.map(async (ref) => ({
          ...ref,
          chatId: ref.groupId ?? (ref.mode === "friend" ? ref.personId : ownerId),
          name: await personName(database.pool, ref.personId),
        })),
      );
      await replier.resume(targets);
      await options.model.refresh();
      for (const run of await services.training.runs.unfinished()) {
        if (run.chatId) followTraining(services, run.chatId, run);
      }
      // Runs queued elsewhere (twin train) and adapters switched elsewhere reach the bot this way.
      watch = setInterval(() => {
        void options.model.refresh().catch((error) => log.error("reading the active adapter", error));
        void services.training.kick();
      }, WATCH_MS);
      void services.training.kick();
      const webhook = config.bot.webhook;
      if (webhook) {
        const secret = await webhookSecret(webhook.secret, postgresStorage(database.db, "secret"));
        server = http.createServer(webhookListener(bot, secret));
        await new Promise<void>((resolve) => server?.listen(webhook.port, resolve));
        await bot.api.setWebhook(webhook.url, {
          secret_token: secret,
          drop_pending_updates: false,
          allowed_updates: ["message", "callback_query"],
        });
        log.info(`webhook listening on port ${webhook.port}`);
      } else {
        await bot.api.deleteWebhook();
        runner = run(bot, { runner: { fetch: { allowed_updates: ["message", "callback_query"] } } });
        log.info(`@${bot.botInfo.username} is polling for updates`);
      }
    },
    async stop() {
      clearInterval(watch);
      if (runner?.isRunning()) await runner.stop();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      await replier.stop(); // a reply in progress is cut short and answered after the restart
      await options.conversations.close(); // their states saved, their sequences free for the next start
      await options.worker?.stop(); // its run goes back to the queue with a checkpoint
      await services.jobs.idle();
    },
  };
}

/** Name, descriptions and commands that say plainly this is an AI twin. */
async function presentHonestly(bot: Bot<BotContext>, owner: string, ownerId: number): Promise<void> {
  const name = texts.name(owner);
  if ((await bot.api.getMyName()).name !== name) await bot.api.setMyName(name);
  await bot.api.setMyDescription(texts.description(owner));
  await bot.api.setMyShortDescription(texts.shortDescription(owner));
  await registerCommands(bot.api, ownerId);
}
