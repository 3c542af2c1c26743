import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Message, MessageEntity } from "grammy/types";
import { groupAddress } from "./group-chat.ts";

const me = { id: 999, username: "twin_bot" };
const message = (text: string, entities: MessageEntity[] = [], extra: Partial<Message> = {}) =>
  ({
    message_id: 1,
    date: 0,
    chat: { id: -100, type: "supergroup", title: "g" },
    from: { id: 5, is_bot: false, first_name: "Ann" },
    text,
    entities,
    ...extra,
  }) as Message;
const command = (text: string) =>
  message(text, [{ type: "bot_command", offset: 0, length: text.split(" ")[0]?.length ?? 0 }]);

describe("groupAddress: whether a group message speaks to the twin", () => {
  it("ignores what is not addressed to it", () => {
    assert.deepEqual(groupAddress(message("hi all"), me), { kind: "none" });
    assert.deepEqual(
      groupAddress(message("@someone_else hi", [{ type: "mention", offset: 0, length: 13 }]), me),
      {
        kind: "none",
      },
    );
    assert.deepEqual(
      groupAddress(command("/import@other_bot"), me),
      { kind: "none" },
      "another bot's command",
    );
  });

  it("takes its commands, bare or with its name, and what follows them", () => {
    assert.deepEqual(groupAddress(command("/import"), me), { kind: "command", command: "import", rest: "" });
    assert.deepEqual(groupAddress(command("/Ask@Twin_Bot how are you?"), me), {
      kind: "command",
      command: "ask",
      rest: "how are you?",
    });
  });

  it("takes a mention of it, without the mention", () => {
    const text = "so @twin_bot what now?";
    assert.deepEqual(groupAddress(message(text, [{ type: "mention", offset: 3, length: 9 }]), me), {
      kind: "message",
      text: "so what now?",
    });
    const byName = message("Twin, hi", [
      { type: "text_mention", offset: 0, length: 4, user: { id: 999, is_bot: true, first_name: "Twin" } },
    ]);
    assert.deepEqual(groupAddress(byName, me), { kind: "message", text: "Twin, hi" });
  });

  it("takes a reply to one of its messages, a sticker as its emoji", () => {
    const reply = {
      message_id: 2,
      date: 0,
      chat: { id: -100, type: "supergroup" },
      from: { id: 999 },
    } as NonNullable<Message["reply_to_message"]>;
    assert.deepEqual(groupAddress(message("sure", [], { reply_to_message: reply }), me), {
      kind: "message",
      text: "sure",
    });
    const sticker = {
      ...message("", [], { reply_to_message: reply }),
      text: undefined,
      sticker: { emoji: "😂" },
    } as unknown as Message;
    assert.deepEqual(groupAddress(sticker, me), { kind: "message", text: "😂" });
    const toSomeoneElse = { ...reply, from: { id: 7, is_bot: false, first_name: "Bo" } };
    assert.deepEqual(groupAddress(message("sure", [], { reply_to_message: toSomeoneElse }), me), {
      kind: "none",
    });
  });
});
