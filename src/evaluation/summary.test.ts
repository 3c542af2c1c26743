import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { summaryLines } from "./summary.ts";

describe("the evaluation's summary lines", () => {
  it("put the baselines first whatever order the stored JSON has, and say how often an adapter is closer", () => {
    const entry = (label: string, auc: number | null) => ({
      label,
      turns: 28,
      discriminator: { auc },
      length_distance: 17.1,
    });
    const lines = summaryLines({
      models: {
        "adapter:1": { ...entry("run-1", 0.579), closer_than_baselines: { closer: 9, compared: 13 } },
        base: entry("base model", 0.847),
        "base+history": entry("base model + real history", null),
      },
    });
    assert.deepEqual(
      lines.map((l) => l.split(":")[0]),
      ["base model", "base model + real history", "run-1"],
    );
    assert.match(lines[1] as string, /discriminator AUC — /, "a missing AUC prints as a dash");
    assert.match(lines[2] as string, /closer to you than both baselines on 9 of 13 measures$/);
  });
});
