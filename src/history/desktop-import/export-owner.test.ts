import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HistoryError } from "../history.errors.ts";
import { chooseOwner, type ExportSurvey, parseOwnerHint } from "./export-owner.ts";
import { OwnerUnknownError } from "./import.errors.ts";

const CHANNEL_1500 = -1_000_000_001_500;

const survey = (senders: [number, string | null, number][], personal?: ExportSurvey["personal"]) => ({
  personal,
  senders: new Map(senders.map(([id, name, messages]) => [id, { name, messages }])),
});

describe("the export's owner", () => {
  it("reads --owner as a user or channel id in every form, else a name", () => {
    assert.deepEqual(parseOwnerHint("1500"), { text: "1500", ids: [1500, CHANNEL_1500] });
    assert.deepEqual(parseOwnerHint(" -1000000001500 "), { text: "-1000000001500", ids: [CHANNEL_1500] });
    assert.deepEqual(parseOwnerHint("channel1500"), { text: "channel1500", ids: [CHANNEL_1500] });
    assert.deepEqual(parseOwnerHint("user7"), { text: "user7", ids: [7] });
    assert.deepEqual(parseOwnerHint("Daily Notes"), { text: "Daily Notes", name: "Daily Notes" });
    assert.deepEqual(parseOwnerHint("99999999999999999999"), {
      text: "99999999999999999999",
      name: "99999999999999999999",
    });
  });

  it("takes the channel a bare id names when the channel wrote, the user when the user did", () => {
    const file = "result.json";
    const channelPosts = survey([[CHANNEL_1500, "Daily Notes", 40]]);
    assert.deepEqual(chooseOwner({ file, survey: channelPosts, hint: parseOwnerHint("1500") }), {
      id: CHANNEL_1500,
      name: "Daily Notes",
    });
    const chat = survey([
      [1500, "Ann", 3],
      [2, "Bob", 5],
    ]);
    assert.deepEqual(chooseOwner({ file, survey: chat, hint: parseOwnerHint("1500") }), {
      id: 1500,
      name: "Ann",
    });
    const both = survey([
      [1500, "Ann", 3],
      [CHANNEL_1500, "Daily Notes", 1],
    ]);
    assert.throws(() => chooseOwner({ file, survey: both, hint: parseOwnerHint("1500") }), /ambiguous/);
  });

  it("prefers personal_information, and refuses an --owner id that contradicts it", () => {
    const file = "result.json";
    const whole = survey([], { userId: 7, name: "Me" });
    assert.deepEqual(chooseOwner({ file, survey: whole }), { id: 7, name: "Me" });
    assert.throws(
      () => chooseOwner({ file, survey: whole, hint: parseOwnerHint("8") }),
      /result\.json belongs to user 7, but --owner says 8/,
    );
  });

  it("refuses another owner than the database's, and an export that names none", () => {
    const file = "result.json";
    assert.throws(
      () =>
        chooseOwner({
          file,
          survey: survey([[CHANNEL_1500, "Daily Notes", 4]]),
          hint: parseOwnerHint("Daily Notes"),
          stored: { id: 7, name: "Me" },
        }),
      (error) => error instanceof HistoryError && /this database holds Me \(7\)/.test(error.message),
    );
    assert.throws(() => chooseOwner({ file, survey: survey([[2, "Bob", 1]]) }), OwnerUnknownError);
    assert.deepEqual(chooseOwner({ file, survey: survey([[2, "Bob", 1]]), stored: { id: 7, name: "Me" } }), {
      id: 7,
      name: "Me",
    });
  });
});
