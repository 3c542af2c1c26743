import fs from "node:fs/promises";
import path from "node:path";
import type { AdapterChoice } from "../inference/engine.ts";
import type { Adapter, RunsRepository } from "./runs.repository.ts";

export type ServingDeps = {
  runs: RunsRepository;
  /** The served base's name, for messages. */
  modelName: string;
  /** Where adapters from the database are written as files for llama.cpp. */
  adapterDir: string;
  scale: number;
  /** Refuses an adapter made for another base (Engine.checkAdapter). */
  checkAdapter: (file: string) => Promise<unknown>;
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
  async refresh(): Promise<void> {
    const active = await this.deps.runs.activeAdapter();
    const id = active?.id ?? null;
    const first = this.activeId === undefined;
    if (id === this.activeId) return;
    this.activeId = id;
    if (first && this.deps.pinned) return;
    this.current = active ? await this.load(active) : undefined;
  }

  /** Makes an adapter active (null: the base alone) for new replies. */
  async use(adapterId: number | null): Promise<void> {
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
      const file = await adapterFile(this.deps.runs, this.deps.adapterDir, adapter);
      await this.deps.checkAdapter(file);
      return { path: file, scale: this.deps.scale, label: `adapter:${adapter.id}` };
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

/** The adapter's GGUF as a file in `dir` (written once, atomically; checked by sha256 on the way out). */
export async function adapterFile(runs: RunsRepository, dir: string, adapter: Adapter): Promise<string> {
  const file = path.join(dir, `adapter-${adapter.id}-${adapter.name}.gguf`);
  if (await fs.stat(file).catch(() => undefined)) return file;
  await fs.mkdir(dir, { recursive: true });
  const partial = `${file}.partial`;
  await fs.writeFile(partial, await runs.readFile(adapter.fileId));
  await fs.rename(partial, file);
  return file;
}
