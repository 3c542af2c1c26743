import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Message } from "grammy/types";
import { incomingText } from "./incoming-text.ts";

const base = { message_id: 1, date: 0, chat: { id: 5, type: "private", first_name: "A" } } as const;
const message = (fields: Partial<Message>) => ({ ...base, ...fields }) as Message;

describe("a friend's message as prompt text", () => {
  it("keeps text, turns a sticker into its emoji and media into the dataset's tags", () => {
    assert.equal(incomingText(message({ text: "hi there" })), "hi there");
    assert.equal(
      incomingText(message({ sticker: { emoji: "😂" } as Message["sticker"] })),
      "😂",
      "a sticker is its emoji",
    );
    assert.equal(incomingText(message({ photo: [], caption: "look" })), "[photo] look");
    assert.equal(incomingText(message({ voice: {} as Message["voice"] })), "[voice message]");
    assert.equal(incomingText(message({ video_note: {} as Message["video_note"] })), "[video message]");
    assert.equal(
      incomingText(message({ animation: {} as Message["animation"], document: {} as Message["document"] })),
      "[GIF]",
      "a GIF is not a file",
    );
    assert.equal(incomingText(message({ document: {} as Message["document"] })), "[file]");
    assert.equal(
      incomingText(message({ sticker: {} as Message["sticker"] })),
      "[sticker]",
      "no emoji: a tag",
    );
  });
});
