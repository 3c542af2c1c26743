import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { turnBody } from "./chatml.ts";
import { chatExamples, emptyChatStats } from "./examples.ts";
import { buildManifest, histogramPercentile, turnTokensP95 } from "./manifest.ts";
import { emptyRedactionCounts } from "./redact.ts";
import type { DatasetMessage } from "./sessions.ts";

describe("the manifest's turn lengths", () => {
  it("takes a percentile from a histogram by nearest rank", () => {
    const lengths = new Map([
      [10, 90],
      [40, 5],
      [300, 5],
    ]);
    assert.equal(histogramPercentile(lengths, 0.95), 40, "the 95th of 100 turns is the 95th shortest");
    assert.equal(histogramPercentile(lengths, 0.96), 300);
    assert.equal(histogramPercentile(lengths, 0.5), 10);
    assert.equal(histogramPercentile(new Map([[7, 1]]), 0.95), 7);
    assert.equal(histogramPercentile(new Map(), 0.95), null, "nobody spoke");
  });

  it("measures each speaker's turns as the model writes them and reports their 95th percentile", () => {
    const texts = ["hi", "yes", "ok", "sure thing", "no", "a much longer turn than all the others, really"];
    const messages: DatasetMessage[] = texts.flatMap((text, i) => [
      {
        chatId: 9,
        messageId: 2 * i,
        senderId: 2,
        sentAt: 1_000_000 + i * 60_000,
        kind: "text",
        text: "q?",
        emoji: null,
      },
      {
        chatId: 9,
        messageId: 2 * i + 1,
        senderId: 1,
        sentAt: 1_030_000 + i * 60_000,
        kind: "text",
        text,
        emoji: null,
      },
    ]);
    const stats = emptyChatStats();
    const names = new Map([
      [1, "Owner"],
      [2, "Friend"],
    ]);
    const settings = {
      gapMinutes: 30,
      media: "tag" as const,
      header: false,
      loss: { kind: "all" as const },
      minTurns: 2,
      maxTokens: 10_000,
      evalFraction: 0,
      redact: false,
      timeZone: "UTC",
    };
    const countChars = (text: string) => text.length;
    chatExamples(
      { id: 9, type: "personal_chat", title: null },
      messages,
      { settings, names, ownerId: 1, tokenize: countChars },
      stats,
    );
    const manifest = buildManifest({
      datasetId: 1,
      settings,
      owner: { id: 1, name: "Owner" },
      source: "test",
      stats,
      chats: 1,
      examples: { train: 1, eval: 0 },
      names,
      redactions: emptyRedactionCounts(),
    });
    // Counted in characters here: the turn body is ">>> text<|im_end|>".
    const longest = turnBody([texts[5] as string]).length;
    assert.equal(
      manifest.owner.turnTokensP95,
      longest,
      "the owner's longest of six turns is their 95th percentile",
    );
    assert.equal(turnTokensP95(manifest, 1), longest);
    assert.equal(turnTokensP95(manifest, 2), turnBody(["q?"]).length, "every speaker's own");
    assert.equal(turnTokensP95(manifest, 3), undefined, "someone else");
  });
});
