import { createFriendsRepository } from "./access/friends.repository.ts";
import { createBotMessagesRepository } from "./bot/bot-messages.repository.ts";
import type { Config } from "./config/config.ts";
import { createDatasetRepository } from "./dataset/dataset.repository.ts";
import type { Database } from "./db/client.ts";
import { createEvaluationRepository } from "./evaluation/evaluation.repository.ts";
import { createGuessRepository } from "./evaluation/guess.repository.ts";
import { createHistoryRepository } from "./history/history.repository.ts";
import { createMemoryRepository } from "./history/memory/memory.repository.ts";
import { createModelsRepository } from "./models/models.repository.ts";
import { LocalWorker } from "./training/local-worker.ts";
import { createRunsRepository } from "./training/runs.repository.ts";

/**
 * The composition root: every repository is built here, once per open database, and handed to
 * use cases, commands and the bot as arguments. Nothing below builds its own.
 */
export function createRepositories(database: Database) {
  return {
    history: createHistoryRepository(database),
    dataset: createDatasetRepository(database),
    friends: createFriendsRepository(database),
    runs: createRunsRepository(database),
    models: createModelsRepository(database),
    evaluations: createEvaluationRepository(database),
    guesses: createGuessRepository(database),
    botMessages: createBotMessagesRepository(database),
    memory: createMemoryRepository(database),
  };
}

export type Repositories = ReturnType<typeof createRepositories>;

/** What a command or the bot works with: the config, the open database and its repositories. */
export type App = { config: Config; database: Database; repositories: Repositories };

export function createApp(config: Config, database: Database): App {
  return { config, database, repositories: createRepositories(database) };
}

/**
 * The local training worker, unless training is left to external workers (TWIN_WORKER=external).
 * `onLine` gets the worker's output lines: its JSON events, and what it prints outside a run (a run's
 * own output goes to the run's log in the database); `onExit` its exit.
 */
export function createLocalWorker(
  app: App,
  onLine: (line: string) => void,
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void,
): LocalWorker | undefined {
  if (app.config.training.worker === "external") return undefined;
  return new LocalWorker({
    config: app.config.training,
    databaseUrl: app.database.url,
    runs: app.repositories.runs,
    hasGpu: app.config.inference.gpu === "cuda",
    onLine,
    onExit,
  });
}
