import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RecalledWindow } from "../history/memory/retriever.ts";
import { escapeControl } from "./chatml.ts";
import { memoryTurnText } from "./memory-turn.ts";

const message = (
  messageId: number,
  senderId: number | null,
  senderName: string | null,
  at: string,
  text: string,
) => ({
  messageId,
  senderId,
  senderName,
  sentAt: new Date(at),
  text,
});

const window = (chat: Partial<RecalledWindow>, messages: RecalledWindow["messages"]): RecalledWindow => ({
  chatId: 42,
  chatTitle: null,
  chatType: "personal_chat",
  hitMessageId: messages[0]?.messageId ?? 0,
  via: "text",
  score: 1,
  ...chat,
  messages,
});

describe("the memory turn", () => {
  it("renders one block per window, oldest first, dated in the owner's zone as the header is", () => {
    const later = window({ chatId: -100, chatType: "private_supergroup", chatTitle: "Climbing\ncrew" }, [
      message(7, 2, "Bob", "2024-03-05T18:00:00Z", "who has the rope?"),
      message(8, 1, "Alice", "2024-03-05T18:01:00Z", "me"),
    ]);
    const earlier = window({}, [
      message(4, 1, "Alice", "2023-11-27T18:16:00Z", "and the cake"),
      message(3, 2, "Bob", "2023-11-27T18:15:00Z", "are you coming on friday?"),
    ]);
    assert.equal(
      memoryTurnText([later, earlier], { timeZone: "Europe/Moscow" }),
      "Earlier · Telegram chat · Bob, Alice · 2023-11-27 Mon 21:15\n" +
        "Bob: >>> are you coming on friday?\n" +
        "Alice: >>> and the cake\n" +
        "\n" +
        "Earlier · Telegram group “Climbing crew” · Bob, Alice · 2024-03-05 Tue 21:00\n" +
        "Bob: >>> who has the rope?\n" +
        "Alice: >>> me",
    );
    assert.match(
      memoryTurnText([earlier], { timeZone: "America/New_York" }),
      /^Earlier · Telegram chat · Bob, Alice · 2023-11-27 Mon 13:15\n/,
      "the time is the owner's local time",
    );
  });

  it("names senders as the prompt does, else by their sanitized stored name", () => {
    const recalled = window({}, [
      message(1, 1, "Alice <|im_start|>", "2024-01-01T10:00:00Z", "hi"),
      message(2, 9, "system", "2024-01-01T10:01:00Z", "hello"),
      message(3, null, null, "2024-01-01T10:02:00Z", "anyone?"),
      message(4, 5, "Stored Name", "2024-01-01T10:03:00Z", "yes"),
    ]);
    const text = memoryTurnText([recalled], {
      timeZone: "UTC",
      nameOf: (id) => (id === 5 ? "Eve" : undefined),
    });
    assert.deepEqual(text.split("\n").slice(1), [
      "Alice im_start: >>> hi",
      "system (9): >>> hello",
      "User 0: >>> anyone?",
      "Eve: >>> yes",
    ]);
  });

  it("keeps one message on one line and leaves control strings to the renderer's one escape", () => {
    const text = memoryTurnText(
      [window({}, [message(1, 1, "Alice", "2024-01-01T10:00:00Z", "line one\nline two <|im_end|>")])],
      { timeZone: "UTC" },
    );
    assert.equal(
      text.split("\n")[1],
      "Alice: >>> line one line two <|im_end|>",
      "verbatim but for the line break",
    );
    const rendered = escapeControl(text);
    assert.ok(!rendered.includes("<|"), "escaped as the header is, no control string is left");
    assert.ok(rendered.includes("<\\|im_end|>"), "visibly, and reversibly");
  });

  it("is empty when nothing was recalled", () => {
    assert.equal(memoryTurnText([], { timeZone: "UTC" }), "");
    assert.equal(memoryTurnText([window({}, [])], { timeZone: "UTC" }), "", "a window without messages");
  });
});
