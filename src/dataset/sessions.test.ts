import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { estimateTokens, splitTurns } from "./length.ts";
import { buildNameTable, sanitizeName } from "./names.ts";
import { emptyRedactionCounts, redact } from "./redact.ts";
import { buildSessions, type DatasetMessage, messageContent } from "./sessions.ts";

const at = (iso: string) => Date.parse(iso);
const message = (
  senderId: number,
  iso: string,
  text: string,
  extra: Partial<DatasetMessage> = {},
): DatasetMessage => ({
  chatId: 1,
  messageId: at(iso) / 1000,
  senderId,
  sentAt: at(iso),
  kind: "text",
  text,
  emoji: null,
  ...extra,
});
const gap = { gapMs: 10 * 60_000, media: "tag" as const };

describe("sessions", () => {
  it("keeps talking across midnight in one session", () => {
    const sessions = buildSessions(
      [message(1, "2024-03-01T23:55:00Z", "still up?"), message(2, "2024-03-02T00:03:00Z", "yes")],
      gap,
    );
    assert.equal(sessions.length, 1);
  });

  it("splits messages a day apart even at the same clock time", () => {
    const sessions = buildSessions(
      [message(1, "2024-03-01T09:00:00Z", "morning"), message(2, "2024-03-02T09:05:00Z", "morning!")],
      gap,
    );
    assert.equal(sessions.length, 2);
  });

  it("splits exactly past the gap and merges one speaker's messages into one turn", () => {
    const sessions = buildSessions(
      [
        message(1, "2024-03-01T10:00:00Z", "a"),
        message(1, "2024-03-01T10:10:00Z", "b"),
        message(2, "2024-03-01T10:20:00Z", "c"),
        message(2, "2024-03-01T10:30:01Z", "d"),
      ],
      gap,
    );
    assert.deepEqual(
      sessions.map((s) => s.turns.map((t) => [t.speakerId, t.messages])),
      [
        [
          [1, ["a", "b"]],
          [2, ["c"]],
        ],
        [[2, ["d"]]],
      ],
    );
  });

  it("turns stickers into their emoji, media into tags, and drops service and empty messages", () => {
    assert.equal(messageContent({ kind: "sticker", text: "", emoji: "😂" }, "tag"), "😂");
    assert.equal(messageContent({ kind: "photo", text: "look", emoji: null }, "tag"), "[photo] look");
    assert.equal(messageContent({ kind: "photo", text: "look", emoji: null }, "drop"), "look");
    assert.equal(messageContent({ kind: "voice", text: "", emoji: null }, "drop"), "");
    assert.equal(messageContent({ kind: "service", text: "joined", emoji: null }, "tag"), "");
    const sessions = buildSessions(
      [message(1, "2024-03-01T10:00:00Z", ""), message(1, "2024-03-01T10:01:00Z", "", { kind: "voice" })],
      gap,
    );
    assert.deepEqual(sessions[0]?.turns[0]?.messages, ["[voice message]"]);
  });
});

describe("splitting long sessions", () => {
  const turns = Array.from({ length: 40 }, (_, i) => ({ id: i, tokens: 10 + (i % 7) * 9 }));
  const pieces = splitTurns(turns, (t) => t.tokens, { maxTokens: 200, contextTokens: 50, fixedTokens: 12 });

  it("keeps every turn exactly once, in order", () => {
    assert.deepEqual(
      pieces.flatMap((p) => p.turns.map((t) => t.id)),
      turns.map((t) => t.id),
    );
  });

  it("stays within the limit, context included, and carries the previous turns' tail", () => {
    for (const [i, piece] of pieces.entries()) {
      const size = 12 + [...piece.context, ...piece.turns].reduce((a, t) => a + t.tokens, 0);
      assert.ok(size <= 200, `piece ${i} has ${size} tokens`);
      if (i === 0) assert.equal(piece.context.length, 0);
      else {
        const previous = pieces[i - 1]!.turns;
        assert.deepEqual(piece.context, previous.slice(previous.length - piece.context.length));
        assert.ok(piece.context.length > 0, "some context carried");
      }
    }
  });

  it("keeps a turn longer than the limit whole, on its own", () => {
    const split = splitTurns([{ t: 10 }, { t: 500 }, { t: 10 }], (x) => x.t, {
      maxTokens: 100,
      contextTokens: 20,
      fixedTokens: 0,
    });
    assert.deepEqual(
      split.map((p) => p.turns.map((x) => x.t)),
      [[10], [500], [10]],
    );
  });

  it("estimates Cyrillic, emoji and dense text conservatively", () => {
    // Real SmolLM2 tokens: 3, 4, 6, 17, 34, 6.
    assert.equal(estimateTokens("hello world!"), 5);
    assert.equal(estimateTokens("привет"), 6);
    assert.equal(estimateTokens("👍👍"), 8);
    assert.equal(estimateTokens("07/05/09 22:53:21"), 17);
    assert.equal(estimateTokens("VCore 1: +1.33 V (min = +2.85 V, max = +3.02 V) [ALARM]"), 34);
    assert.equal(estimateTokens("<|im_start|>Anna\n>>> ok<|im_end|>"), 11);
  });
});

describe("names", () => {
  it("sanitises names that could break the template", () => {
    assert.equal(sanitizeName("Eve<|im_end|>\nsystem", 5), "Eveim_end system");
    assert.equal(sanitizeName("  ", 5), "User 5");
    assert.equal(sanitizeName(null, 5), "User 5");
    assert.equal(sanitizeName("System", 5), "System (5)");
  });

  it("gives two people with one name distinct names, the owner and the more active first, and honours overrides", () => {
    const table = buildNameTable(
      [
        { id: 1, name: "Alex", messages: 5 },
        { id: 2, name: "Alex", messages: 50 },
        { id: 3, name: "Alex", messages: 1 },
        { id: 4, name: "Sam", messages: 9 },
      ],
      new Map([[4, "Sasha"]]),
      3,
    );
    assert.deepEqual([...table.entries()].sort(), [
      [1, "Alex (3)"],
      [2, "Alex (2)"],
      [3, "Alex"],
      [4, "Sasha"],
    ]);
  });
});

describe("redaction", () => {
  it("replaces secrets by tags and counts them", () => {
    const counts = emptyRedactionCounts();
    const text = redact(
      "code: 48213, my password is hunter2, пароль: qwerty, card 4111 1111 1111 1111, call +7 916 123-45-67, mail a.b@example.com",
      counts,
    );
    assert.equal(
      text,
      "code: [code], my password is [password], пароль: [password], card [card], call [phone], mail [email]",
    );
    assert.deepEqual(counts, { code: 1, password: 2, card: 1, phone: 1, email: 1 });
  });

  it("leaves ordinary numbers and words alone", () => {
    const counts = emptyRedactionCounts();
    const text = "meet at 10:30, room 1234, order 4111 1111 1111 1112 and the passage";
    assert.equal(redact(text, counts), text);
    assert.deepEqual(counts, emptyRedactionCounts());
  });
});
