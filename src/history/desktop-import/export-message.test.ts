import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { flattenText, isFilePlaceholder, parseExportMessage } from "./export-message.ts";
import { MessageShapeError } from "./import.errors.ts";

const chat = { chatId: -1002482670091, timeZone: "UTC" };
const base = { id: 10, type: "message", date: "2024-09-22T10:20:57", date_unixtime: "1726996857" };
const PLACEHOLDER = "(File not included. Change data exporting settings to download.)";

describe("parseExportMessage", () => {
  it("reads a plain text message of the current format", () => {
    const message = parseExportMessage(
      { ...base, from: "Sami Belkacem", from_id: "user7743393957", text: "hello", text_entities: [] },
      chat,
    );
    assert.deepEqual(message, {
      chatId: chat.chatId,
      messageId: 10,
      senderId: 7743393957,
      senderName: "Sami Belkacem",
      sentAt: 1726996857000,
      editedAt: null,
      kind: "text",
      text: "hello",
      emoji: null,
      replyToMessageId: null,
      forwardedFromName: null,
      forwardedFromId: null,
      viaBot: null,
      action: null,
      details: null,
    });
  });

  it("flattens entity arrays to the text a reader saw", () => {
    const text = ["see ", { type: "link", text: "https://e.com" }, " and ", { type: "bold", text: "this" }];
    assert.equal(parseExportMessage({ ...base, text }, chat).text, "see https://e.com and this");
    assert.equal(flattenText([]), "");
  });

  it("takes the UTC time from date_unixtime, not the local date", () => {
    const message = parseExportMessage(
      { ...base, date: "2024-09-22T11:20:57" },
      { ...chat, timeZone: "Asia/Tokyo" },
    );
    assert.equal(message.sentAt, 1726996857000);
  });

  it("converts the old format's local date with the owner's time zone", () => {
    const old = {
      id: 3,
      type: "message",
      date: "2019-05-12T15:00:04",
      from: "A",
      from_id: 5766110,
      text: "hi",
    };
    assert.equal(
      parseExportMessage(old, { ...chat, timeZone: "Asia/Tehran" }).sentAt,
      Date.UTC(2019, 4, 12, 10, 30, 4),
    );
    assert.equal(parseExportMessage(old, chat).sentAt, Date.UTC(2019, 4, 12, 15, 0, 4));
    assert.equal(parseExportMessage(old, chat).senderId, 5766110);
  });

  it("keeps edits, replies (even to messages not in the file), forwards and via_bot", () => {
    const message = parseExportMessage(
      {
        ...base,
        edited: "x",
        edited_unixtime: "1726997646",
        reply_to_message_id: 999_999,
        forwarded_from: "News",
        forwarded_from_id: "channel1500000001",
        via_bot: "@gif",
        text: "",
      },
      chat,
    );
    assert.equal(message.editedAt, 1726997646000);
    assert.equal(message.replyToMessageId, 999_999);
    assert.equal(message.forwardedFromName, "News");
    assert.equal(message.forwardedFromId, -1001500000001);
    assert.equal(message.viaBot, "@gif");
  });

  it("reads a sticker as its emoji, and never stores a placeholder as a path", () => {
    const message = parseExportMessage(
      {
        ...base,
        file: PLACEHOLDER,
        thumbnail: PLACEHOLDER,
        media_type: "sticker",
        sticker_emoji: "😁",
        text: "",
      },
      chat,
    );
    assert.equal(message.kind, "sticker");
    assert.equal(message.emoji, "😁");
    assert.deepEqual(message.details, { media_type: "sticker", file_included: false });
    assert.ok(isFilePlaceholder(PLACEHOLDER), "placeholder recognised");
  });

  it("keeps a real relative path of an included photo and its caption", () => {
    const message = parseExportMessage(
      { ...base, photo: "chats/chat_1/photos/photo_2.jpg", width: 10, height: 20, text: "caption" },
      chat,
    );
    assert.equal(message.kind, "photo");
    assert.equal(message.text, "caption");
    assert.deepEqual(message.details, { width: 10, height: 20, path: "chats/chat_1/photos/photo_2.jpg" });
  });

  it("tells media kinds apart", () => {
    const kind = (extra: object) => parseExportMessage({ ...base, text: "", ...extra }, chat).kind;
    assert.equal(kind({ file: PLACEHOLDER, media_type: "voice_message" }), "voice");
    assert.equal(kind({ file: PLACEHOLDER, media_type: "video_message" }), "video_message");
    assert.equal(kind({ file: PLACEHOLDER, media_type: "video_file" }), "video");
    assert.equal(kind({ file: PLACEHOLDER, media_type: "animation" }), "animation");
    assert.equal(kind({ file: PLACEHOLDER, media_type: "audio_file" }), "audio");
    assert.equal(kind({ file: "files/report.pdf", file_name: "report.pdf" }), "file");
    assert.equal(kind({ poll: { question: "q?", answers: [] } }), "poll");
    assert.equal(kind({ location_information: { latitude: 1, longitude: 2 } }), "location");
    assert.equal(kind({ location_information: { latitude: 1, longitude: 2 }, place_name: "Cafe" }), "venue");
    assert.equal(kind({ dice: { emoticon: "🎲", value: 3 } }), "dice");
  });

  it("keeps a poll's question and a location's coordinates", () => {
    const poll = parseExportMessage(
      {
        ...base,
        text: "",
        poll: { question: "Tea?", closed: false, total_voters: 2, answers: [{ text: "yes", voters: 2 }] },
      },
      chat,
    );
    assert.deepEqual((poll.details as { poll: { question: string } }).poll.question, "Tea?");
    const place = parseExportMessage(
      { ...base, text: "", location_information: { latitude: 55.7, longitude: 37.6 } },
      chat,
    );
    assert.deepEqual(place.details, { location_information: { latitude: 55.7, longitude: 37.6 } });
  });

  it("keeps a shared contact's name but not their phone number", () => {
    const message = parseExportMessage(
      {
        ...base,
        text: "",
        contact_information: { first_name: "Ann", last_name: "Lee", phone_number: "+15550001" },
      },
      chat,
    );
    assert.equal(message.kind, "contact");
    assert.deepEqual(message.details, { contact: { first_name: "Ann", last_name: "Lee" } });
    assert.ok(!JSON.stringify(message).includes("15550001"), "no phone number");
  });

  it("reads service messages with their actor, also a deleted one", () => {
    const join = parseExportMessage(
      {
        ...base,
        type: "service",
        actor: null,
        actor_id: "user565624175",
        action: "join_group_by_link",
        inviter: "Group",
        text: "",
      },
      chat,
    );
    assert.equal(join.kind, "service");
    assert.equal(join.senderId, 565624175);
    assert.equal(join.senderName, null);
    assert.equal(join.action, "join_group_by_link");
    assert.deepEqual(join.details, { inviter: "Group" });
    const pin = parseExportMessage(
      {
        ...base,
        type: "service",
        actor: "A",
        actor_id: "user1",
        action: "pin_message",
        message_id: 7,
        text: "",
      },
      chat,
    );
    assert.equal(pin.details?.message_id, 7);
  });

  it("reads messages from deleted accounts and messages sent as the group", () => {
    const deleted = parseExportMessage(
      { ...base, from: null, from_id: "user982393899", text: "salam" },
      chat,
    );
    assert.equal(deleted.senderName, null);
    assert.equal(deleted.senderId, 982393899);
    const asGroup = parseExportMessage(
      { ...base, from: "ENSIA", from_id: "channel2482670091", text: "hi" },
      chat,
    );
    assert.equal(asGroup.senderId, -1002482670091);
  });

  it("keeps unsupported messages as such", () => {
    assert.equal(parseExportMessage({ ...base, type: "unsupported", text: "" }, chat).kind, "unsupported");
  });

  it("refuses a wrong shape and says which field and message", () => {
    const fails = (value: unknown, pattern: RegExp, id?: number) =>
      assert.throws(
        () => parseExportMessage(value, chat),
        (error) =>
          error instanceof MessageShapeError && pattern.test(error.message) && error.messageId === id,
      );
    fails({ ...base, id: "10" }, /field "id": expected an integer/);
    fails({ ...base, type: 3 }, /field "type"/, 10);
    fails({ ...base, text: 42 }, /field "text": expected a string or an array/, 10);
    fails({ ...base, text: ["a", { type: "bold" }] }, /field "text"/, 10);
    fails({ ...base, date_unixtime: "yesterday" }, /field "date_unixtime"/, 10);
    fails({ id: 5, type: "message", text: "" }, /field "date"/, 5);
    fails({ id: 5, type: "message", date: "not a date", text: "" }, /field "date"/, 5);
    fails([1, 2], /expected a message object/);
  });
});
