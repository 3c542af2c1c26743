import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { canarySentence, plantCanary } from "./canary.ts";
import type { DatasetMessage } from "./sessions.ts";

const message = (i: number, senderId: number): DatasetMessage => ({
  chatId: 1,
  messageId: i,
  senderId,
  sentAt: i * 60_000,
  kind: "text",
  text: `m${i}`,
  emoji: null,
});

describe("the leakage canary", () => {
  it("is a sentence around six random digits", () => {
    const { sentence, secret } = canarySentence();
    assert.match(secret, /^\d{6}$/);
    assert.ok(sentence.endsWith(secret), sentence);
    assert.notEqual(canarySentence().secret, secret, "fresh each time (1 in 900,000 to collide)");
  });

  it("is said by the owner three times in the older half of the chat, at the moment of a real message", () => {
    const messages = Array.from({ length: 40 }, (_, i) => message(i, i % 2 === 0 ? 7 : 8));
    const { messages: planted, planted: count } = plantCanary(messages, 7, "the code is 123456");
    assert.equal(count, 3);
    const canaries = planted.map((m, i) => ({ m, i })).filter(({ m }) => m.text === "the code is 123456");
    assert.equal(canaries.length, 3);
    for (const { m, i } of canaries) {
      const before = planted[i - 1] as DatasetMessage;
      assert.equal(m.senderId, 7, "the owner says it");
      assert.equal(m.sentAt, before.sentAt, "right after one of the owner's messages, in the same session");
      assert.ok(m.sentAt < 20 * 60_000, "in the older half");
    }
    assert.equal(planted.length, 43, "nothing else changes");
    assert.equal(
      plantCanary([message(1, 8)], 7, "x").planted,
      0,
      "a chat where the owner never wrote gets none",
    );
  });
});
