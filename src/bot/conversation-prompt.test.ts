import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { StoredMessage } from "./bot-messages.repository.ts";
import {
  conversationTurns,
  memoryScope,
  previousTurn,
  storedSpan,
  twinReplies,
} from "./conversation-prompt.ts";

describe("the twin's earlier replies", () => {
  it("are its runs of messages, each one text, oldest first", () => {
    let id = 0;
    const stored = (fromTwin: boolean, text: string): StoredMessage => ({
      id: ++id,
      fromTwin,
      text,
      sentAt: new Date(id * 1000),
    });
    assert.deepEqual(
      twinReplies([
        stored(false, "hey"),
        stored(true, "hi"),
        stored(true, "what's up"),
        stored(false, "not much"),
        stored(false, "you?"),
        stored(true, "same"),
      ]),
      ["hi\nwhat's up", "same"],
    );
    assert.deepEqual(twinReplies([stored(false, "anyone?")]), []);
  });
});

describe("the stored conversation's markers", () => {
  const at = (seconds: number) => new Date(Date.UTC(2025, 0, 1) + seconds * 1000);
  const row = (
    id: number,
    fromTwin: boolean,
    text: string,
    extra: Partial<StoredMessage> = {},
  ): StoredMessage => ({ id, fromTwin, text, sentAt: at(id), ...extra });

  it("are their own lines before the message's text; a run of forwards from one author shows its marker once", () => {
    const { live } = conversationTurns(
      [
        row(1, true, "hey"),
        row(2, false, "look", { marker: "[forwarded from Zoe]" }),
        row(3, false, "at this", { marker: "[forwarded from Zoe]" }),
        row(4, false, "and this", { marker: "[forwarded from Max]" }),
        row(5, false, "about that", { marker: '[reply to Al: "hey"]' }),
        row(6, false, "and that", { marker: '[reply to Al: "hey"]' }),
        row(7, false, "plain"),
      ],
      { person: "Fay", twin: "Al" },
    );
    assert.deepEqual(live, [
      { speaker: "Al", messages: ["hey"] },
      {
        speaker: "Fay",
        messages: [
          "[forwarded from Zoe]",
          "look",
          "at this",
          "[forwarded from Max]",
          "and this",
          '[reply to Al: "hey"]',
          "about that",
          '[reply to Al: "hey"]',
          "and that",
          "plain",
        ],
      },
    ]);
  });

  it("leave out a reply to the twin's previous turn: its latest run of sent messages, in the same session", () => {
    const stored = [
      row(1, true, "old", { telegramMessageId: 501 }),
      row(2, false, "so"),
      row(3, true, "one", { telegramMessageId: 503 }),
      row(4, true, "two", { telegramMessageId: 504 }),
      row(5, true, "not sent yet"),
      row(6, false, "a message of this turn"),
    ];
    assert.deepEqual([...previousTurn(stored, at(7).getTime())], [504, 503]);
    assert.deepEqual(
      [...previousTurn(stored.slice(0, 5), at(6).getTime())],
      [504, 503],
      "a new turn follows it",
    );
    assert.deepEqual(
      [...previousTurn(stored, at(6).getTime() + 11 * 60_000)],
      [],
      "a message after the session gap starts a new session",
    );
    assert.deepEqual([...previousTurn([row(1, false, "hi")], at(2).getTime())], []);
  });
});

describe("what memory may recall for a bot conversation", () => {
  it("draws on the group alone in a group, on everything in /talk, on the friend's chats otherwise", () => {
    assert.deepEqual(memoryScope({ personId: 7, mode: "friend" }), { kind: "friend", personId: 7 });
    assert.deepEqual(memoryScope({ personId: 7, mode: "friend", groupId: -100 }), {
      kind: "group",
      chatId: -100,
    });
    assert.deepEqual(memoryScope({ personId: 7, mode: "talk" }), { kind: "all" });
  });

  it("never recalls the stored conversation itself: its real chat, from its first message to its last", () => {
    const stored = (id: number, seconds: number): StoredMessage => ({
      id,
      fromTwin: id % 2 === 0,
      text: "x",
      sentAt: new Date(seconds * 1000),
    });
    const messages = [stored(1, 10), stored(2, 20), stored(3, 4000)];
    assert.deepEqual(storedSpan({ personId: 7, mode: "friend" }, messages), [
      { chatId: 7, from: new Date(10_000), to: new Date(4_000_000) },
    ]);
    assert.deepEqual(storedSpan({ personId: 7, mode: "friend", groupId: -100 }, messages), [
      { chatId: -100, from: new Date(10_000), to: new Date(4_000_000) },
    ]);
    assert.deepEqual(storedSpan({ personId: 7, mode: "friend" }, []), []);
  });
});
