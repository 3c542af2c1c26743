import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { choosePerson, describeCandidate, parsePersonQuery } from "./person-lookup.ts";

const person = (id: number, name: string | null, messages: number) => ({
  id,
  name,
  messages,
  lastMessageAt: new Date("2008-06-05T10:00:00Z"),
});

describe("the person lookup rule", () => {
  it("reads an id, a name (without its @), or nothing", () => {
    assert.deepEqual(parsePersonQuery(" 10313586 "), { id: 10313586 });
    assert.deepEqual(parsePersonQuery("@Dr_Willis"), { name: "Dr_Willis" });
    assert.equal(parsePersonQuery("  @ "), undefined);
  });

  it("takes only a single exact, case-sensitive match; otherwise offers candidates, busiest first", () => {
    const matches = [person(65413223, "dr_willis", 40), person(10313586, "Dr_Willis", 696)];
    assert.equal(choosePerson("Dr_Willis", matches).found?.id, 10313586);
    assert.deepEqual(
      choosePerson("DR_WILLIS", matches).candidates?.map((p) => p.id),
      [10313586, 65413223],
    );
    const twins = [person(1, "Sam", 3), person(2, "Sam", 9), person(3, "Sammy", 50)];
    assert.deepEqual(
      choosePerson("Sam", twins).candidates?.map((p) => p.id),
      [2, 1],
      "two exact matches: only they are offered",
    );
    assert.equal(
      describeCandidate(person(10313586, "Dr_Willis", 696)),
      "Dr_Willis (10313586) · 696 messages · last 2008-06-05",
    );
  });
});
