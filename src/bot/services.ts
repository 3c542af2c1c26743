import type { Api } from "grammy";
import type { FriendsRepository } from "../access/friends.repository.ts";
import type { Repositories } from "../app.ts";
import type { Config } from "../config/config.ts";
import type { Database } from "../db/client.ts";
import type { HistoryRepository } from "../history/history.repository.ts";
import type { Conversations } from "../inference/conversations.ts";
import type { Engine } from "../inference/engine.ts";
import type { Serving } from "../inference/serving.ts";
import type { RemoteWorkers } from "../remote/remote-workers.ts";
import type { RunsRepository } from "../training/runs.repository.ts";
import type { Userbot } from "../userbot/setup.ts";
import type { BotMessagesRepository } from "./bot-messages.repository.ts";
import type { Jobs } from "./jobs.ts";
import type { Log } from "./log.ts";
import type { MemoryIndexer } from "./memory-indexer.ts";
import type { RateGate } from "./rate-limit.ts";
import type { Replier } from "./replier.ts";
import type { BotSettings } from "./settings.ts";
import type { PostgresStorage } from "./storage.ts";

/** What the bot's features share; built once in bot.ts. */
export type BotServices = {
  /** The bot's own Api, for what is sent outside an update (jobs, the QR login's picture). */
  api: Api;
  config: Config;
  ownerId: number;
  ownerName: () => Promise<string>;
  timeZone: string;
  database: Database;
  history: HistoryRepository;
  /** Every repository, built once (app.ts). */
  repositories: Repositories;
  friends: FriendsRepository;
  messages: BotMessagesRepository;
  settings: BotSettings;
  refusals: PostgresStorage<string>;
  replier: Replier;
  /** The rate limit friends' messages pass: stored at once, answered now or in later rounds. */
  gate: RateGate;
  jobs: Jobs;
  /** Keeps the memory index up to date in the background; `request()` after storing messages. */
  memoryIndexer: MemoryIndexer;
  /** The served base and which adapter answers (the database's active one, switched by /model). */
  model: Serving;
  /** The training queue; `kick` starts the local worker when runs wait (and config allows). */
  training: { runs: RunsRepository; kick: () => Promise<void>; remote: RemoteWorkers | undefined };
  log: Log;
  /** Downloads a file the Bot API holds (getFile + the file URL, which carries the token). */
  download: (fileId: string, to: string) => Promise<void>;
  /** The served engine and its conversations, for /eval (absent in tests that need no model). */
  inference: { engine: Engine; conversations: Conversations } | undefined;
  /** The userbot (/export), when configured. */
  userbot: Userbot | undefined;
};
