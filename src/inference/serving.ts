import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { PRIVATE_FILE_MODE, privateDir } from "../files/private.ts";
import type { Adapter, RunsRepository } from "../training/runs.repository.ts";
import type { AdapterChoice } from "./engine.ts";
import { StoredModelError } from "./inference.errors.ts";

export type ServingDeps = {
  runs: RunsRepository;
  /** The served base's name, for messages. */
  modelName: string;
  /** Where adapters from the database are written as files for llama.cpp. */
  adapterDir: string;
  scale: number;
  /** Where fully fine-tuned models are (TWIN_MODEL_STORE), shared with the workers. */
  modelStore: string;
  /** Refuses an adapter made for another base (Engine.checkAdapter). */
  checkAdapter: (file: string) => Promise<unknown>;
  /** Refuses a full model not tuned from the served base (Engine.checkFullModel). */
  checkFullModel: (file: string) => Promise<unknown>;
  /** An adapter file from config or a flag, served until the active adapter changes. */
  pinned?: string | undefined;
  onError?: ((message: string, error: unknown) => void) | undefined;
};

/**
 * Which adapter new replies use. The database says which trained adapter is active (a finished
 * run activates its own; /model switches); this keeps that choice in memory, writes the adapter's
 * GGUF out of the database once, and checks it fits the served base before using it — a misfit
 * is reported and the base answers instead. Switching costs a new context on the same model.
 */
export class Serving {
  private current: AdapterChoice | undefined;
  private activeId: number | null | undefined;
  /**
   * Changes run one after another: a refresh that finds the choice already being loaded by another
   * call must not return before that load is done (the bot's watch and a finished run both refresh).
   */
  private changes: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: ServingDeps) {
    if (deps.pinned) {
      this.current = { path: deps.pinned, scale: deps.scale, label: `file:${path.basename(deps.pinned)}` };
    }
  }

  get name(): string {
    return this.deps.modelName;
  }

  /** The adapter for the next reply (undefined: the base alone). */
  adapter(): AdapterChoice | undefined {
    return this.current;
  }

  /** Reads the active adapter; at the first call a pinned file wins until the choice changes. */
  refresh(): Promise<void> {
    return this.inTurn(() => this.readActive());
  }

  /** Makes an adapter active (null: the base alone) for new replies. */
  use(adapterId: number | null): Promise<void> {
    return this.inTurn(() => this.activate(adapterId));
  }

  private inTurn(change: () => Promise<void>): Promise<void> {
    const done = this.changes.then(change, change);
    this.changes = done.catch(() => undefined);
    return done;
  }

  private async readActive(): Promise<void> {
    const active = await this.deps.runs.activeAdapter();
    const id = active?.id ?? null;
    const first = this.activeId === undefined;
    if (id === this.activeId) return;
    this.activeId = id;
    if (first && this.deps.pinned) return;
    this.current = active ? await this.load(active) : undefined;
  }

  private async activate(adapterId: number | null): Promise<void> {
    const adapter = adapterId === null ? undefined : await this.fetch(adapterId);
    const choice = adapter ? await this.load(adapter, true) : undefined;
    await this.deps.runs.activate(adapterId);
    this.activeId = adapterId;
    this.current = choice;
  }

  private async fetch(adapterId: number): Promise<Adapter> {
    const adapter = (await this.deps.runs.listAdapters()).find((row) => row.id === adapterId);
    if (!adapter) throw new Error(`there is no adapter ${adapterId}`);
    return adapter;
  }

  private async load(adapter: Adapter, strict = false): Promise<AdapterChoice | undefined> {
    try {
      return await tunedChoice(adapter, this.deps);
    } catch (error) {
      if (strict) throw error;
      this.deps.onError?.(
        `adapter ${adapter.id} (${adapter.name}) cannot be served; the base answers`,
        error,
      );
      return undefined;
    }
  }
}

/** A tuned model as the engine takes it: the adapter's file, or the full model's GGUF in the store, checked. */
export async function tunedChoice(
  adapter: Adapter,
  deps: Pick<ServingDeps, "runs" | "adapterDir" | "modelStore" | "scale" | "checkAdapter" | "checkFullModel">,
): Promise<AdapterChoice> {
  const label = `adapter:${adapter.id}`;
  if (adapter.kind === "full") {
    const file = await storedModelFile(deps.modelStore, adapter);
    await deps.checkFullModel(file);
    return { path: file, scale: 1, label, kind: "full" };
  }
  const file = await adapterFile(deps.runs, deps.adapterDir, adapter);
  await deps.checkAdapter(file);
  return { path: file, scale: deps.scale, label };
}

/**
 * A full model's GGUF in the model store, checked against the size and sha256 the worker recorded
 * (a truncated copy or another run's file is refused before llama.cpp reads it).
 */
export async function storedModelFile(store: string, adapter: Adapter): Promise<string> {
  if (!adapter.storePath) throw new StoredModelError(`model ${adapter.id} has no path in the model store`);
  const file = path.resolve(store, adapter.storePath);
  if (path.relative(store, file).startsWith("..")) {
    throw new StoredModelError(`model ${adapter.id}: ${adapter.storePath} is outside the model store`);
  }
  const stat = await fs.stat(file).catch(() => undefined);
  if (!stat) {
    throw new StoredModelError(
      `model ${adapter.id}: ${file} is missing — the bot and the workers must share TWIN_MODEL_STORE (${store})`,
    );
  }
  if (stat.size !== adapter.bytes) {
    throw new StoredModelError(
      `model ${adapter.id}: ${file} has ${stat.size} bytes, the worker wrote ${adapter.bytes}`,
    );
  }
  const digest = createHash("sha256");
  await pipeline(createReadStream(file), digest);
  if (digest.digest("hex") !== adapter.sha256) {
    throw new StoredModelError(
      `model ${adapter.id}: ${file} does not match the checksum the worker recorded`,
    );
  }
  return file;
}

/** The adapter's GGUF as a file in `dir` (written once, atomically; checked by sha256 on the way out). */
export async function adapterFile(runs: RunsRepository, dir: string, adapter: Adapter): Promise<string> {
  if (adapter.fileId === null)
    throw new StoredModelError(`adapter ${adapter.id} has no file in the database`);
  const file = path.join(dir, `adapter-${adapter.id}-${adapter.name}.gguf`);
  if (await fs.stat(file).catch(() => undefined)) return file;
  await privateDir(dir);
  const partial = `${file}.partial`;
  await fs.writeFile(partial, await runs.readFile(adapter.fileId), { mode: PRIVATE_FILE_MODE });
  await fs.rename(partial, file);
  return file;
}

/** "LoRA adapter" or "full model, 270 MB" (pure). */
export function describeKind(adapter: Pick<Adapter, "kind" | "bytes">): string {
  if (adapter.kind !== "full") return "LoRA adapter";
  const megabytes = (adapter.bytes ?? 0) / 1e6;
  return `full model, ${megabytes >= 1000 ? `${(megabytes / 1000).toFixed(1)} GB` : `${Math.round(megabytes)} MB`}`;
}
