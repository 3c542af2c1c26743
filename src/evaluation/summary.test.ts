import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { planLine, summaryLines } from "./summary.ts";

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

  it("says before generating how many held-out turns exist when fewer than asked for", () => {
    const plan = {
      speaker: "Anna",
      heldOut: 14,
      turns: 14,
      requested: 20,
      probes: 0,
      models: ["base model", "base model + real history"],
    };
    assert.equal(
      planLine(plan),
      "only 14 held-out turns of Anna exist, not the 20 asked for: generating all of them with each of 2 models (base model, base model + real history)",
    );
    assert.match(
      planLine({ ...plan, heldOut: 1, turns: 1 }),
      /^only 1 held-out turn of Anna exists, not the 20/,
    );
    assert.equal(
      planLine({ ...plan, heldOut: 140, requested: 14, probes: 20, models: ["base model"] }),
      "generating 14 of 140 held-out turns of Anna with the base model, plus 20 leakage probes per model",
    );
    assert.match(planLine({ ...plan, requested: undefined }), /^generating all 14 held-out turns of Anna /);
  });
});
