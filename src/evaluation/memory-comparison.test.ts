import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type ArmCandidate, memoryArms, settingsDifference } from "./memory-comparison.ts";

const settings = {
  maxTokens: 1024,
  gapMinutes: 10,
  loss: { kind: "owner" },
  evalFraction: 0.2,
  tokenizer: "estimate",
};
const withMemory = {
  ...settings,
  memory: { enabled: true, windows: 3, queryTurns: 3, maxTokens: 512, recentMessages: 600 },
};
const without = {
  ...settings,
  memory: { enabled: false, windows: 0, queryTurns: 3, maxTokens: 0, recentMessages: 600 },
};

const candidate = (
  id: number,
  datasetId: number,
  memory: boolean,
  trainedTokens: number | null = 1000,
): ArmCandidate => ({
  adapter: { id, runId: id + 100 },
  datasetId,
  manifest: { settings: memory ? withMemory : without },
  trainedTokens: trainedTokens ?? undefined,
});

describe("the arms of a memory comparison", () => {
  it("pairs the adapters of each arm seed by seed", () => {
    const arms = memoryArms([
      candidate(4, 2, true),
      candidate(1, 1, false),
      candidate(2, 2, true, 1030),
      candidate(3, 1, false),
    ]);
    assert.deepEqual(arms, {
      plain: {
        datasetId: 1,
        runs: [
          { adapterId: 1, runId: 101, trainedTokens: 1000 },
          { adapterId: 3, runId: 103, trainedTokens: 1000 },
        ],
      },
      memory: {
        datasetId: 2,
        runs: [
          { adapterId: 2, runId: 102, trainedTokens: 1030 },
          { adapterId: 4, runId: 104, trainedTokens: 1000 },
        ],
      },
    });
  });

  it("refuses a comparison that is not fair, saying why", () => {
    assert.throws(
      () => memoryArms([candidate(1, 1, false), candidate(2, 1, false)]),
      /with memory .* and on one without/,
    );
    assert.throws(
      () => memoryArms([candidate(1, 1, false), candidate(2, 2, true), candidate(3, 2, true)]),
      /seed by seed: 2 adapter\(s\) with memory, 1 without/,
    );
    assert.throws(
      () => memoryArms([candidate(1, 1, false), candidate(2, 2, true, 1200)]),
      /learnt 1000 and 1200 tokens/,
    );
    assert.throws(
      () => memoryArms([candidate(1, 1, false), candidate(2, 2, true, null)]),
      /did not count their trained tokens/,
    );
    assert.throws(
      () =>
        memoryArms([
          candidate(1, 1, false),
          candidate(3, 3, false),
          candidate(2, 2, true),
          candidate(4, 2, true),
        ]),
      /from datasets 1, 3: one per arm/,
    );
    const other = { ...candidate(1, 1, false), manifest: { settings: { ...without, evalFraction: 0.05 } } };
    assert.throws(
      () => memoryArms([other, candidate(2, 2, true)]),
      /differ in more than memory \(evalFraction\)/,
    );
  });

  it("ignores memory and the token counter when comparing settings", () => {
    assert.deepEqual(settingsDifference(withMemory, { ...without, tokenizer: "SmolLM2" }), []);
    assert.deepEqual(settingsDifference(withMemory, { ...without, gapMinutes: 30 }), ["gapMinutes"]);
  });
});
