import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ChatExampleStream, lastGap } from "./chat-stream.ts";
import { chatExamples, type ExampleSettings, emptyChatStats } from "./examples.ts";
import type { DatasetMessage } from "./sessions.ts";

const chat = { id: 9, type: "private_group", title: "Friends" };
const names = new Map([
  [1, "Owner"],
  [2, "Ann"],
  [3, "Bob"],
]);

/** A seeded chat: three speakers, bursts of messages with gaps of seconds to hours, a few media and empties. */
function seededChat(seed: number, count: number): DatasetMessage[] {
  let state = seed;
  const random = () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
  let at = Date.UTC(2023, 0, 1);
  return Array.from({ length: count }, (_, i) => {
    const roll = random();
    at +=
      roll < 0.75
        ? Math.floor(random() * 120_000)
        : roll < 0.95
          ? 11 * 60_000 + Math.floor(random() * 3_600_000)
          : 10 * 60_000;
    return {
      chatId: chat.id,
      messageId: i + 1,
      senderId: 1 + Math.floor(random() * 3),
      sentAt: at,
      kind: random() < 0.05 ? "sticker" : "text",
      text: random() < 0.03 ? "" : `message ${i} ${"word ".repeat(Math.floor(random() * 40))}`,
      emoji: "🙂",
    };
  });
}

/** The dataset's settings with a session gap of 10 minutes and the given split, length and header. */
const settingsWith = (
  over: Pick<ExampleSettings, "evalFraction" | "maxTokens" | "header">,
): ExampleSettings => ({
  gapMinutes: 10,
  media: "tag",
  loss: { kind: "all" },
  minTurns: 2,
  redact: false,
  timeZone: "UTC",
  ...over,
});

describe("ChatExampleStream", () => {
  it("gives exactly chatExamples' examples and stats, in order, whatever runs the messages come in", () => {
    for (const [seed, evalFraction, maxTokens] of [
      [1, 0.05, 1024],
      [2, 0.3, 128],
      [3, 0, 512],
      [4, 1, 1024],
    ] as const) {
      const messages = seededChat(seed, 1500);
      const settings = settingsWith({ evalFraction, maxTokens, header: true });
      const whole = emptyChatStats();
      const expected = chatExamples(chat, structuredClone(messages), { settings, names, ownerId: 1 }, whole);
      assert.ok(expected.length > 20, "the chat makes examples");
      for (const run of [1, 7, 100, 5000]) {
        const stats = emptyChatStats();
        const stream = new ChatExampleStream(chat, { settings, names, ownerId: 1 }, stats);
        const copy = structuredClone(messages);
        const got = [];
        for (let at = 0; at < copy.length; at += run) got.push(...stream.push(copy.slice(at, at + run)));
        got.push(...stream.end());
        assert.deepEqual(got, expected, `seed ${seed}, runs of ${run}`);
        assert.deepEqual(stats, whole, `stats, seed ${seed}, runs of ${run}`);
      }
    }
  });

  it("holds back only the sessions whose split is still open", () => {
    const settings = settingsWith({ evalFraction: 0.1, maxTokens: 1024, header: false });
    const stream = new ChatExampleStream(chat, { settings, names, ownerId: 1 }, emptyChatStats());
    // 100 two-turn sessions an hour apart: once all are in, at most 10% (and the one in progress) wait.
    const messages: DatasetMessage[] = [];
    for (let s = 0; s < 100; s++)
      for (const [k, sender] of [2, 1].entries())
        messages.push({
          chatId: 9,
          messageId: s * 2 + k,
          senderId: sender,
          sentAt: s * 3_600_000 + k * 1000,
          kind: "text",
          text: "hi",
          emoji: null,
        });
    const early = stream.push(messages);
    assert.ok(
      early.length >= 85 && early.every((e) => e.split === "train"),
      `${early.length} out before the end`,
    );
    const rest = stream.end();
    assert.equal(early.length + rest.length, 100);
    assert.equal(rest.filter((e) => e.split === "eval").length, 10);
  });
});

describe("lastGap", () => {
  it("finds the last message more than the gap after the one before, from a given index", () => {
    const at = (...times: number[]) => times.map((sentAt) => ({ sentAt }) as DatasetMessage);
    assert.equal(lastGap(at(0, 5, 100, 101, 300), 50), 4);
    assert.equal(lastGap(at(0, 5, 100, 101, 102), 50), 2);
    assert.equal(lastGap(at(0, 5, 100, 101, 102), 50, 3), 0);
    assert.equal(lastGap(at(0, 50), 50), 0, "exactly the gap is the same session");
    assert.equal(lastGap(at(), 50), 0);
  });
});
