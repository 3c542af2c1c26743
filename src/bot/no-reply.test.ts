import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { NoReply } from "./bot-messages.repository.ts";
import { noReplyNote, noReplyStatus } from "./no-reply.ts";

const outcome = (personId: number, extra: Partial<NoReply> = {}): NoReply => ({
  personId,
  mode: "friend",
  messageId: 10 + personId,
  reason: "empty",
  servedBy: "base",
  at: new Date(0),
  ...extra,
});
const nameOf = async (id: number) => `Person ${id}`;

describe("conversations the model said nothing to", () => {
  it("are named in one /status line, when there are any", async () => {
    assert.deepEqual(await noReplyStatus([], nameOf), []);
    assert.deepEqual(await noReplyStatus([outcome(1), outcome(2, { mode: "talk" })], nameOf), [
      "No reply from the model: Person 1, Person 2 (/talk) — /log <name>",
    ]);
    const many = await noReplyStatus(
      [1, 2, 3, 4, 5, 6, 7].map((id) => outcome(id)),
      nameOf,
    );
    assert.match(many[0] as string, /Person 5 and 2 more/);
  });

  it("are marked in /log after the message left unanswered, in that conversation only", () => {
    const outcomes = [outcome(1), outcome(2, { reason: "repeat" })];
    assert.equal(
      noReplyNote(outcomes, { personId: 1, mode: "friend" }, 11),
      "  [no reply: it said nothing, 3 tries]",
    );
    assert.equal(
      noReplyNote(outcomes, { personId: 2, mode: "friend" }, 12),
      "  [no reply: it only repeated an earlier reply, resampled too]",
    );
    assert.equal(noReplyNote(outcomes, { personId: 1, mode: "friend" }, 12), "");
    assert.equal(noReplyNote(outcomes, { personId: 1, mode: "talk" }, 11), "");
    assert.equal(noReplyNote(outcomes, { personId: 1, mode: "friend", groupId: 5 }, 11), "");
  });
});
