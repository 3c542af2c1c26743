import fs from "node:fs";
import http from "node:http";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream } from "node:stream/web";
import { autoRetry } from "@grammyjs/auto-retry";
import { conversations } from "@grammyjs/conversations";
import { type RunnerHandle, run, sequentialize } from "@grammyjs/runner";
import { type Api, Bot, type Context, session, type Transformer } from "grammy";
import type { UserFromGetMe } from "grammy/types";
import { createRepositories, type Repositories } from "../app.ts";
import type { Config } from "../config/config.ts";
import { ownerTimeZone } from "../config/config.ts";
import { sanitizeName } from "../dataset/names.ts";
import type { Database } from "../db/client.ts";
import { PRIVATE_FILE_MODE } from "../files/private.ts";
import { contextSettings } from "../inference/conversation-context.ts";
import type { Conversations } from "../inference/conversations.ts";
import type { Engine } from "../inference/engine.ts";
import type { Serving } from "../inference/serving.ts";
import type { RemoteWorkers } from "../remote/remote-workers.ts";
import type { LocalWorker } from "../training/local-worker.ts";
import type { Userbot } from "../userbot/setup.ts";
import { BotConfigError } from "./bot.errors.ts";
import type { ConversationRef } from "./bot-messages.repository.ts";
import { ownerCommands } from "./commands.ts";
import { connectToBotApi, pollingRetries, pollingStopped } from "./connection.ts";
import type { BotContext, SessionData } from "./context.ts";
import { accessControl } from "./features/access.ts";
import { consent } from "./features/consent.ts";
import { evaluation } from "./features/evaluation.ts";
import { exportHistory } from "./features/export.ts";
import { forget } from "./features/forget.ts";
import { friendChat, friendInbox } from "./features/friend-chat.ts";
import { friendsAdmin } from "./features/friends-admin.ts";
import { groupChat } from "./features/group-chat.ts";
import { guessGame } from "./features/guess.ts";
import { historyJobs } from "./features/history-jobs.ts";
import { ownerInfo } from "./features/owner-info.ts";
import { talk } from "./features/talk.ts";
import { followTraining, training } from "./features/train.ts";
import { codeAsEntities } from "./format.ts";
import { Jobs } from "./jobs.ts";
import { createLog, type Log } from "./log.ts";
import { loginSecrets } from "./login/login-secrets.ts";
import { MemoryIndexer } from "./memory-indexer.ts";
import { displayName } from "./people.ts";
import { PressAnswers } from "./presses.ts";
import { RATE_WINDOW_MS, RateGate, RateWindow } from "./rate-limit.ts";
import { Replier, type ReplyTarget } from "./replier.ts";
import type { BotServices } from "./services.ts";
import { BotSettings } from "./settings.ts";
import { postgresStorage } from "./storage.ts";
import { texts } from "./texts.ts";
import { webhookListener, webhookSecret } from "./webhook.ts";

/** The bot's two required settings, checked once (the CLI calls this before opening anything). */
export function checkBotConfig(config: Config): { token: string; ownerId: number } {
  const { token, ownerId } = config.bot;
  if (!token)
    throw new BotConfigError("TWIN_BOT_TOKEN is not set: create a bot with @BotFather and set its token");
  if (!ownerId) throw new BotConfigError("TWIN_OWNER_ID is not set: set it to your own Telegram user id");
  return { token, ownerId };
}

export type TwinBotOptions = {
  config: Config;
  database: Database;
  /** The app's repositories (app.ts); tests that give none get their own. */
  repositories?: Repositories | undefined;
  conversations: Conversations;
  /** The engine behind `conversations`, for /eval; without it /eval says it cannot run. */
  engine?: Engine | undefined;
  countTokens: (text: string) => number;
  model: Serving;
  /** Trains queued runs on this machine (TWIN_WORKER); absent: runs wait for an external worker. */
  worker?: LocalWorker | undefined;
  /** Machines reached over SSH that /train offers (TWIN_REMOTE_WORKERS). */
  remoteWorkers?: RemoteWorkers | undefined;
  log?: Log | undefined;
  userbot?: Userbot | undefined;
  /** Who the bot is, when the caller has connected already (`connectToBotApi`); absent: start() connects. */
  botInfo?: UserFromGetMe | undefined;
  /** The window TWIN_RATE_LIMIT counts messages in: a minute (tests shorten it). */
  rateWindowMs?: number | undefined;
};

export type TwinBot = {
  bot: Bot<BotContext>;
  services: BotServices;
  /** Long polling (the default) or, with TWIN_WEBHOOK_URL, a webhook server. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Rejects (BotPollingError) when long polling stops on its own: a revoked token, another process polling. */
  failed: Promise<never>;
};

/** How often the bot looks for adapter switches and queued runs made outside it. */
const WATCH_MS = 10_000;

/**
 * Retries of 429 and 5xx answers. getUpdates is left to `pollingRetries`: auto-retry would retry its
 * network errors silently and without end (its limits count only 429 and 5xx answers).
 */
const retries = (): Transformer => {
  const retry = autoRetry({ maxRetryAttempts: 6, maxDelaySeconds: 60 });
  return (prev, method, payload, signal) =>
    method === "getUpdates" ? prev(method, payload, signal) : retry(prev, method, payload, signal);
};

/**
 * Sessions and conversations belong to one person in one chat: no one else's message can read
 * or advance a flow someone started, in a group or anywhere.
 */
const chatAndUser = (ctx: Context) => (ctx.chat && ctx.from ? `${ctx.chat.id}:${ctx.from.id}` : undefined);

/** Builds the bot: wiring, storage, and one Composer per feature, in the order they must see updates. */
export async function createTwinBot(options: TwinBotOptions): Promise<TwinBot> {
  const { config, database } = options;
  const { token, ownerId } = checkBotConfig(config);
  const log = options.log ?? createLog([token, config.bot.webhook?.secret, config.databaseUrl]);

  const bot = new Bot<BotContext>(token, {
    client: { apiRoot: config.bot.apiRoot },
    ...(options.botInfo ? { botInfo: options.botInfo } : {}),
  });
  bot.api.config.use(retries());
  bot.api.config.use(pollingRetries(log));
  // Both reach every update's Api (grammY copies the bot's transformers) and each conversation's (below).
  const presses = new PressAnswers(texts.pressNotValid);
  bot.api.config.use(presses.transformer, codeAsEntities());
  const repositories = options.repositories ?? createRepositories(database);
  const messages = repositories.botMessages;
  const settings = await BotSettings.load(postgresStorage(database.db, "settings"));
  const history = repositories.history;
  const ownerName = async () => {
    const owner = await history.getOwner();
    return sanitizeName(owner?.name ?? null, ownerId).replace(/^User \d+$/, "the owner");
  };
  const storedTimeZone = (await history.getOwner())?.timeZone;
  const timeZone = ownerTimeZone(config.timeZone, storedTimeZone);
  const replier = new Replier({
    api: bot.api,
    messages,
    conversations: options.conversations,
    datasets: repositories.dataset,
    prompt: {
      history: repositories.history,
      countTokens: options.countTokens,
      retriever: repositories.memory.retriever,
    },
    contextSettings: (manifest) => contextSettings(config, manifest, storedTimeZone),
    maxReplyTokens: config.inference.maxReplyTokens,
    adapter: () => options.model.adapter(),
    paused: () => settings.paused,
    quietMs: config.bot.quietMs,
    typing: config.bot.typing,
    onError: (error, target) =>
      log.error(`replying in ${target.mode} conversation ${target.personId}`, error),
  });
  const targetOf = async (ref: ConversationRef): Promise<ReplyTarget> => ({
    ...ref,
    chatId: ref.groupId ?? (ref.mode === "friend" ? ref.personId : ownerId),
    name: await displayName(history, ref.personId),
  });
  const gate = new RateGate({
    messages,
    window: new RateWindow(config.bot.rateLimitPerMinute, options.rateWindowMs ?? RATE_WINDOW_MS),
    schedule: (target) => replier.schedule(target),
    targetOf,
    allowed: (personId) => repositories.friends.isAllowed(personId),
    onError: (error, personId) => log.error(`releasing the held messages of ${personId}`, error),
  });
  const services: BotServices = {
    api: bot.api,
    config,
    ownerId,
    ownerName,
    timeZone,
    database,
    history,
    repositories,
    friends: repositories.friends,
    messages,
    settings,
    refusals: postgresStorage<string>(database.db, "refused"),
    replier,
    gate,
    jobs: new Jobs(bot.api, config.bot.progressEditMs, log),
    memoryIndexer: new MemoryIndexer(repositories.memory, () => history.lastImportEnded(), log),
    model: options.model,
    training: {
      runs: repositories.runs,
      remote: options.remoteWorkers,
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

  // First: every button press is answered exactly once, whatever the rest does with it.
  bot.use(presses.middleware);
  // Updates of one chat in order, chats in parallel (the runner needs this before any state).
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
          ctx.api.config.use(retries(), presses.transformer, codeAsEntities());
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
    if (ctx.role === "friend") await ctx.reply(texts.friendHelp(await ownerName())); // friends have no flows
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
  // A press no feature answered (stale, forged, or not this person's to press) is answered by the
  // press guard installed first.

  bot.catch(async (error) => {
    log.error(`update ${error.ctx.update.update_id}`, error.error);
    await error.ctx.reply(texts.failed).catch(() => undefined);
  });

  let runner: RunnerHandle | undefined;
  let server: http.Server | undefined;
  let watch: NodeJS.Timeout | undefined;
  let fail: (error: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => {
    fail = reject;
  });
  failed.catch(() => undefined); // a caller that does not watch it is not an unhandled rejection
  return {
    bot,
    services,
    failed,
    async start() {
      if (!bot.isInited()) {
        bot.botInfo = await connectToBotApi({
          token,
          apiRoot: config.bot.apiRoot,
          seconds: config.bot.connectSeconds,
          say: (line) => log.info(line),
        });
      }
      await presentHonestly(bot.api, await ownerName(), ownerId, log);
      await replier.resume(await Promise.all((await messages.unfinished()).map(targetOf)));
      await gate.resume(); // messages held by the rate limit: released as the fresh window allows
      await options.model.refresh();
      for (const run of await services.training.runs.unfinished()) {
        if (run.chatId) followTraining(services, run.chatId, run);
      }
      // Runs queued elsewhere (twin train), adapters switched elsewhere and imports made elsewhere
      // (to be indexed) reach the bot this way.
      watch = setInterval(() => {
        void options.model.refresh().catch((error) => log.error("reading the active adapter", error));
        void services.training.kick();
        void services.memoryIndexer.watch().catch((error) => log.error("looking for new imports", error));
      }, WATCH_MS);
      void services.training.kick();
      // Messages stored before the index existed, or while no twin indexed: filled in the background.
      services.memoryIndexer.request();
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
        // Silent: pollingRetries reports each failed getUpdates in one line; the runner gives up only
        // on 401 and 409, and that is reported here, once.
        runner = run(bot, {
          runner: { silent: true, fetch: { allowed_updates: ["message", "callback_query"] } },
        });
        runner.task()?.catch((error: unknown) => {
          log.error("long polling stopped", error);
          fail(pollingStopped(error));
        });
        log.info(`@${bot.botInfo.username} is polling for updates`);
      }
    },
    async stop() {
      clearInterval(watch);
      if (runner?.isRunning()) await runner.stop();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      await services.memoryIndexer.stop(); // a run stops after its batch; the next start goes on
      await gate.stop(); // held messages stay held in the database
      await replier.stop(); // a reply in progress is cut short and answered after the restart
      await options.conversations.close(); // their states saved, their sequences free for the next start
      await options.worker?.stop(); // its run goes back to the queue with a checkpoint
      await options.remoteWorkers?.stop(); // theirs too, stored over the link before it closes
      await services.jobs.idle();
    },
  };
}

/**
 * Commands (the owner's list in the owner's chat, none elsewhere), name, description and short
 * description, which say plainly this is an AI twin. Each is a step of its own: a failure is one
 * log line naming its method, and the other steps still run.
 */
async function presentHonestly(api: Api, owner: string, ownerId: number, log: Log): Promise<void> {
  const step = async <T>(method: string, call: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await call();
    } catch (error) {
      log.error(`setting the bot's profile (${method})`, error);
      return undefined;
    }
  };
  await step("setMyCommands", () =>
    api.setMyCommands(ownerCommands, { scope: { type: "chat", chat_id: ownerId } }),
  );
  await step("deleteMyCommands", () => api.deleteMyCommands({ scope: { type: "default" } }));
  const name = texts.name(owner);
  // Telegram limits setMyName hard: it is called only when the name differs, or cannot be read.
  const current = await step("getMyName", () => api.getMyName());
  if (current?.name !== name) await step("setMyName", () => api.setMyName(name));
  await step("setMyDescription", () => api.setMyDescription(texts.description(owner)));
  await step("setMyShortDescription", () => api.setMyShortDescription(texts.shortDescription(owner)));
}
