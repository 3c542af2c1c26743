import type { Manifest } from "../dataset/manifest.ts";
import { recordedMemory } from "../dataset/memory-turn.ts";
import type { Adapter } from "../training/runs.repository.ts";
import { EvaluationError } from "./evaluation.errors.ts";

/**
 * The two arms of `twin eval --compare-memory`: adapters trained on a dataset built with memory and
 * adapters trained on the same dataset built without (`twin dataset --memory on|off`), one per seed.
 * The trainer scores them on the same held-out tokens (compare_memory.py); this checks first that
 * the comparison is a fair one: the same data but for memory, and as many tokens learnt.
 */

export type ArmRun = { adapterId: number; runId: number; trainedTokens: number | undefined };
export type MemoryArms = {
  plain: { datasetId: number; runs: ArmRun[] };
  memory: { datasetId: number; runs: ArmRun[] };
};

export type ArmCandidate = {
  adapter: Pick<Adapter, "id" | "runId">;
  datasetId: number;
  manifest: Pick<Manifest, "settings">;
  /** Tokens the run learnt (its metrics' trained_tokens); undefined for runs from before it was counted. */
  trainedTokens: number | undefined;
};

/** Two runs learnt "the same number of tokens" within this share: a step's rows overshoot the budget a little. */
export const TRAINED_TOKENS_TOLERANCE = 0.05;

/** Settings that may differ between the arms' datasets: memory itself, and what says nothing of the data. */
const IGNORED_SETTINGS = new Set(["memory", "tokenizer"]);

/** The arms (pure), or an error saying why these adapters make no fair comparison. */
export function memoryArms(candidates: ArmCandidate[]): MemoryArms {
  const withMemory = candidates.filter((c) => recordedMemory(c.manifest.settings)?.enabled === true);
  const without = candidates.filter((c) => !withMemory.includes(c));
  if (withMemory.length === 0 || without.length === 0) {
    throw new EvaluationError(
      "--compare-memory needs adapters trained on a dataset with memory (twin dataset --memory on) and on one without",
    );
  }
  if (withMemory.length !== without.length) {
    throw new EvaluationError(
      `--compare-memory pairs the arms seed by seed: ${withMemory.length} adapter(s) with memory, ${without.length} without`,
    );
  }
  const datasetOf = (arm: ArmCandidate[], name: string) => {
    const ids = [...new Set(arm.map((c) => c.datasetId))];
    if (ids.length > 1)
      throw new EvaluationError(`the adapters ${name} come from datasets ${ids.join(", ")}: one per arm`);
    return ids[0] as number;
  };
  const plainDataset = datasetOf(without, "without memory");
  const memoryDataset = datasetOf(withMemory, "with memory");
  const differing = settingsDifference(
    (without[0] as ArmCandidate).manifest.settings,
    (withMemory[0] as ArmCandidate).manifest.settings,
  );
  if (differing.length > 0) {
    throw new EvaluationError(
      `datasets ${plainDataset} and ${memoryDataset} differ in more than memory (${differing.join(", ")}): build both with the same options`,
    );
  }
  const byAdapter = (a: ArmCandidate, b: ArmCandidate) => a.adapter.id - b.adapter.id;
  const runs = (arm: ArmCandidate[]) =>
    [...arm]
      .sort(byAdapter)
      .map((c) => ({ adapterId: c.adapter.id, runId: c.adapter.runId, trainedTokens: c.trainedTokens }));
  const arms = {
    plain: { datasetId: plainDataset, runs: runs(without) },
    memory: { datasetId: memoryDataset, runs: runs(withMemory) },
  };
  arms.plain.runs.forEach((plain, seed) => {
    const memory = arms.memory.runs[seed] as ArmRun;
    if (plain.trainedTokens === undefined || memory.trainedTokens === undefined) {
      throw new EvaluationError(
        `adapters ${plain.adapterId} and ${memory.adapterId}: the runs did not count their trained tokens (train both with --set max_trained_tokens=N)`,
      );
    }
    const gap =
      Math.abs(plain.trainedTokens - memory.trainedTokens) /
      Math.max(plain.trainedTokens, memory.trainedTokens);
    if (gap > TRAINED_TOKENS_TOLERANCE) {
      throw new EvaluationError(
        `adapters ${plain.adapterId} and ${memory.adapterId} learnt ${plain.trainedTokens} and ${memory.trainedTokens} tokens: train both with the same --set max_trained_tokens`,
      );
    }
  });
  return arms;
}

/** The settings two datasets were built with differently, memory aside (pure). */
export function settingsDifference(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter(
    (key) => !IGNORED_SETTINGS.has(key),
  );
  return keys.filter((key) => JSON.stringify(a[key]) !== JSON.stringify(b[key])).sort();
}
