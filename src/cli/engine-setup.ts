import os from "node:os";
import path from "node:path";
import type { Config } from "../config/config.ts";
import type { Database } from "../db/client.ts";
import { chooseThreads, Engine } from "../inference/engine.ts";
import { createModelsRepository } from "../models/models.repository.ts";
import { createRunsRepository } from "../training/runs.repository.ts";
import { Serving } from "../training/serving.ts";

/** The base GGUF to serve: a flag, else TWIN_MODEL, else the default registered model. */
export async function resolveModelPath(config: Config, database: Database, flag?: string): Promise<string> {
  const registered = await createModelsRepository(database).defaultModel();
  const modelPath = flag ?? config.inference.model ?? registered?.ggufPath;
  if (!modelPath)
    throw new Error("no model: set TWIN_MODEL, pass --model, or register one with `twin model add`");
  return modelPath;
}

/** Opens the engine with the configured context, threads and sampling; checks the adapter if any. */
export async function openEngine(
  config: Config,
  modelPath: string,
  options: { sequences: number; adapterPath?: string | undefined },
): Promise<{ engine: Engine; adapter: { path: string; scale: number } | undefined; modelName: string }> {
  const settings = config.inference;
  const engine = await Engine.open({
    modelPath,
    contextSize: settings.contextSize,
    sequences: options.sequences,
    threads: chooseThreads(settings.threads, os.availableParallelism()),
    flashAttention: settings.flashAttention,
    sampling: settings.sampling,
    maxReplyTokens: settings.maxReplyTokens,
  });
  const adapter = options.adapterPath
    ? { path: options.adapterPath, scale: settings.adapterScale }
    : undefined;
  try {
    if (adapter) await engine.checkAdapter(adapter.path);
  } catch (error) {
    await engine.dispose();
    throw error;
  }
  return { engine, adapter, modelName: path.basename(modelPath) };
}

/** What answers in the bot: the engine's base, and the active adapter from the database (or a pinned file). */
export function createServing(
  config: Config,
  database: Database,
  engine: Engine,
  options: { pinned?: string | undefined; onError?: (message: string, error: unknown) => void } = {},
): Serving {
  return new Serving({
    runs: createRunsRepository(database),
    modelName: path.basename(engine.options.modelPath),
    adapterDir: path.join(config.dataDir, "adapters"),
    scale: config.inference.adapterScale,
    modelStore: config.training.modelStore,
    checkAdapter: (file) => engine.checkAdapter(file),
    checkFullModel: (file) => engine.checkFullModel(file),
    pinned: options.pinned,
    onError: options.onError,
  });
}
