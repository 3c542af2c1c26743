import os from "node:os";
import path from "node:path";
import type { App } from "../app.ts";
import type { Config } from "../config/config.ts";
import { chooseThreads, Engine } from "../inference/engine.ts";
import { Serving } from "../inference/serving.ts";

/** The base GGUF to serve: a flag, else TWIN_MODEL, else the default registered model. */
export async function resolveModelPath(
  { config, repositories }: Pick<App, "config" | "repositories">,
  flag?: string,
): Promise<string> {
  const registered = await repositories.models.defaultModel();
  const modelPath = flag ?? config.inference.model ?? registered?.ggufPath;
  if (!modelPath)
    throw new Error("no model: set TWIN_MODEL, pass --model, or register one with `twin model add`");
  return modelPath;
}

/**
 * Opens the engine with the configured context, threads, GPU (TWIN_GPU) and sampling; checks the
 * adapter if any.
 */
export async function openEngine(
  config: Config,
  modelPath: string,
  options: {
    sequences: number;
    adapterPath?: string | undefined;
    /** Gets the one line saying the GPU could not hold the model; default: stderr. */
    log?: ((line: string) => void) | undefined;
  },
): Promise<{ engine: Engine; adapter: { path: string; scale: number } | undefined; modelName: string }> {
  const settings = config.inference;
  const engine = await Engine.open(
    {
      modelPath,
      contextSize: settings.contextSize,
      sequences: options.sequences,
      threads: chooseThreads(settings.threads, os.availableParallelism()),
      flashAttention: settings.flashAttention,
      gpu: settings.gpu,
      sampling: settings.sampling,
      maxReplyTokens: settings.maxReplyTokens,
    },
    { log: options.log ?? ((line) => process.stderr.write(`twin: ${line}\n`)) },
  );
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
  { config, repositories }: Pick<App, "config" | "repositories">,
  engine: Engine,
  options: { pinned?: string | undefined; onError?: (message: string, error: unknown) => void } = {},
): Serving {
  return new Serving({
    runs: repositories.runs,
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
