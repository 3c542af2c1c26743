import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { App } from "../app.ts";
import type { Config } from "../config/config.ts";
import type { Manifest } from "../dataset/manifest.ts";
import { RECENT_MESSAGES, recordedMemory } from "../dataset/memory-turn.ts";
import { EvaluationError } from "./evaluation.errors.ts";
import { type ArmCandidate, type MemoryArms, memoryArms } from "./memory-comparison.ts";
import { recallProbe } from "./recall-probe.ts";
import { runTrainerCommand } from "./report-runner.ts";

/** One figure of the comparison, as the trainer's compare_memory.py writes it: arm a against arm b. */
export type MemoryFigure = {
  a: number;
  b: number;
  difference: number;
  ci95: [number, number];
  sessions: number;
  tokens: number;
  examples: number;
};
export type MemoryComparison = {
  figures: Partial<Record<"message_text" | "served" | "probe" | "base", MemoryFigure>>;
  memory_helps: boolean;
  verdict: string;
  seeds: number;
};

/** The adapters with what the arms are judged by: their run's dataset and the tokens it learnt. */
export async function armCandidates(
  { runs, dataset }: Pick<App["repositories"], "runs" | "dataset">,
  adapterIds: number[],
): Promise<ArmCandidate[]> {
  const known = await runs.listAdapters();
  const candidates: ArmCandidate[] = [];
  for (const id of adapterIds) {
    const adapter = known.find((a) => a.id === id);
    if (!adapter) throw new EvaluationError(`there is no adapter ${id} (twin model list shows them)`);
    const run = await runs.get(adapter.runId);
    const ready = run && (await dataset.readyDataset(run.datasetId));
    if (!run || !ready) throw new EvaluationError(`adapter ${id}: its run's dataset is gone or not ready`);
    const trained = (run.metrics as { trained_tokens?: unknown } | null)?.trained_tokens;
    candidates.push({
      adapter,
      datasetId: run.datasetId,
      manifest: ready.manifest,
      trainedTokens: typeof trained === "number" ? trained : undefined,
    });
  }
  return candidates;
}

/**
 * `twin eval --compare-memory`: checks the arms (memory-comparison.ts), finds the held-out turns
 * that "know the context" (recall-probe.ts), and has the trainer score every adapter on the same
 * held-out tokens with and without memory, with paired bootstrap intervals over sessions. Writes
 * probe.json and memory-comparison.json into `out`; returns the arms, the figures and that file.
 */
export async function compareMemory(
  { config, database, repositories }: Pick<App, "database" | "repositories"> & { config: Config },
  options: { adapterIds: number[]; out: string; onProgress?: (line: string) => void },
): Promise<{ arms: MemoryArms; comparison: MemoryComparison; file: string; probeTurns: number }> {
  const { dataset } = repositories;
  const arms = memoryArms(await armCandidates(repositories, options.adapterIds));
  const memoryManifest = (await dataset.readyDataset(arms.memory.datasetId))?.manifest as Manifest;
  const examples = await dataset.examples(arms.memory.datasetId);
  options.onProgress?.("finding the held-out turns whose words the owner wrote before");
  const probe = await recallProbe(
    examples,
    { saidBefore: repositories.memory.saidBefore, recentSince: repositories.history.recentSince },
    memoryManifest.owner,
    recordedMemory(memoryManifest.settings)?.recentMessages ?? RECENT_MESSAGES,
  );
  await mkdir(options.out, { recursive: true, mode: 0o700 });
  const probeFile = path.join(options.out, "probe.json");
  await writeFile(probeFile, JSON.stringify(probe), { mode: 0o600 });
  const file = path.join(options.out, "memory-comparison.json");
  await runTrainerCommand(
    config.training,
    database.url,
    [
      "compare-memory",
      "--plain-dataset",
      `postgres:${arms.plain.datasetId}`,
      "--memory-dataset",
      `postgres:${arms.memory.datasetId}`,
      ...arms.plain.runs.flatMap((run) => ["--plain-adapter", `run:${run.runId}`]),
      ...arms.memory.runs.flatMap((run) => ["--memory-adapter", `run:${run.runId}`]),
      "--probe",
      probeFile,
      "--out",
      file,
    ],
    "the memory comparison",
    options.onProgress,
  );
  const comparison = JSON.parse(await readFile(file, "utf8")) as MemoryComparison;
  return { arms, comparison, file, probeTurns: probe.probed };
}

const LABELS: Record<keyof MemoryComparison["figures"], string> = {
  message_text: "held-out loss on message text, without → with memory (trained so)",
  served: "memory adapter served without → with memory",
  probe: "turns that know the context, without → with memory",
  base: "base model, without → with memory",
};

/** The comparison in a few lines for the terminal (pure). */
export function comparisonLines(comparison: MemoryComparison): string[] {
  const lines = Object.entries(comparison.figures).map(([key, f]) => {
    const label = LABELS[key as keyof MemoryComparison["figures"]] ?? key;
    const [low, high] = f.ci95;
    return `${label}: ${f.a.toFixed(3)} → ${f.b.toFixed(3)} nats/token (${f.difference >= 0 ? "+" : ""}${f.difference.toFixed(3)}, 95% CI ${low.toFixed(3)} to ${high.toFixed(3)}; ${f.sessions} sessions, ${f.tokens} tokens)`;
  });
  return [...lines, comparison.verdict];
}
