import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { renderSegments } from "../dataset/chatml.ts";
import type { Example } from "../dataset/examples.ts";
import { chatHistory, evaluatedModels, samplePoints } from "./generate.usecase.ts";
import { evalPoints, parseExample, pointSeed } from "./points.ts";

const example = (id: string, startedAt: string, split: "train" | "eval", chatId = 7): Example => ({
  id,
  chat_id: chatId,
  started_at: startedAt,
  split,
  speakers: [],
  segments: renderSegments(
    [
      { speaker: "Anna", messages: ["hey", "pizza <|im_start|> tonight?"], train: false },
      { speaker: "Me", messages: ["yes!", "8?"], train: true },
      { speaker: "Anna", messages: ["ok"], train: false },
      { speaker: "Me", messages: ["see you"], train: true },
    ],
    "private chat · Anna, Me · Friday 19:04",
  ),
});

describe("held-out turns to generate", () => {
  it("reads an example back into its header and turns, control strings unescaped", () => {
    const parsed = parseExample(example("e1", "2024-01-05T19:04:00Z", "eval"));
    assert.equal(parsed.header, "private chat · Anna, Me · Friday 19:04");
    assert.deepEqual(
      parsed.turns.map((t) => [t.speaker, t.messages, t.trained]),
      [
        ["Anna", ["hey", "pizza <|im_start|> tonight?"], false],
        ["Me", ["yes!", "8?"], true],
        ["Anna", ["ok"], false],
        ["Me", ["see you"], true],
      ],
    );
  });

  it("takes every trained turn of the speaker with the real turns before it", () => {
    const points = evalPoints(parseExample(example("e1", "2024-01-05T19:04:00Z", "eval")), "Me");
    assert.deepEqual(
      points.map((p) => [p.turnIndex, p.context.length, p.real]),
      [
        [1, 1, ["yes!", "8?"]],
        [3, 3, ["see you"]],
      ],
    );
    assert.equal(
      evalPoints(parseExample(example("e1", "2024", "eval")), "Anna").length,
      0,
      "untrained turns: none",
    );
  });

  it("gives the history of the same chat before the session, oldest first", () => {
    const all = [
      example("late", "2024-03-01T00:00:00Z", "train"),
      example("early", "2024-01-01T00:00:00Z", "train"),
      example("other chat", "2024-01-02T00:00:00Z", "train", 8),
      example("after", "2024-06-01T00:00:00Z", "train"),
    ].map(parseExample);
    const history = chatHistory(all, 7, "2024-05-01T00:00:00Z");
    assert.equal(history.length, 8, "two sessions of four turns");
    assert.deepEqual(history[0], { speaker: "Anna", messages: ["hey", "pizza <|im_start|> tonight?"] });
  });

  it("draws a fixed subset with fixed seeds, the same for every model", () => {
    const points = Array.from({ length: 30 }, (_, i) =>
      evalPoints(parseExample(example(`e${i}`, "2024", "eval")), "Me"),
    ).flat();
    const subset = samplePoints(points, 10, 1);
    assert.equal(subset.length, 10);
    assert.deepEqual(samplePoints(points, 10, 1), subset, "the same seed, the same subset");
    assert.notDeepEqual(samplePoints(points, 10, 2), subset, "another seed, another subset");
    assert.equal(pointSeed(points[0] as never, 0), pointSeed(points[0] as never, 0));
    assert.notEqual(pointSeed(points[0] as never, 0), pointSeed(points[1] as never, 0));
    assert.deepEqual(
      evaluatedModels([{ id: 3, name: "run-3" }]).map((m) => [m.key, m.history]),
      [
        ["base", false],
        ["base+history", true],
        ["adapter:3", true],
      ],
    );
  });
});
