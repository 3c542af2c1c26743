import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidArgumentError } from "commander";
import { dateOrAll, fraction, integer, keyValue, many, personName, telegramId, timeZone } from "./options.ts";

const refuses = (parse: (value: string) => unknown, value: string, pattern: RegExp) =>
  assert.throws(
    () => parse(value),
    (error) => error instanceof InvalidArgumentError && pattern.test(error.message),
    `“${value}” is refused`,
  );

describe("command-line values", () => {
  it("dates: a day or an ISO time, or all; anything else names the option and the form", () => {
    assert.equal(dateOrAll("--since")("2023-01-31"), "2023-01-31T00:00:00.000Z");
    assert.equal(dateOrAll("--since")("2023-01-31T10:00:00Z"), "2023-01-31T10:00:00.000Z");
    assert.equal(dateOrAll("--since")("all"), "all");
    for (const bad of ["notadate", "2023-13-45", "yesterday", ""])
      refuses(dateOrAll("--since"), bad, /^--since must be a date such as 2023-01-31, or "all"/);
  });

  it("ids: Telegram's, negative for groups; never text or fractions", () => {
    assert.equal(telegramId("--exclude-chat")("-1001234567890"), -1001234567890);
    assert.deepEqual(many(telegramId("--exclude-chat"))("5", [3]), [3, 5]);
    for (const bad of ["abc", "1.5", "", "12345678901234567890"])
      refuses(telegramId("--exclude-chat"), bad, /^--exclude-chat must be a chat or person id/);
  });

  it("fractions in [0, 1), integers above their least value", () => {
    assert.equal(fraction("--eval-fraction")("0.05"), 0.05);
    for (const bad of ["abc", "1", "-0.1", "NaN", ""])
      refuses(fraction("--eval-fraction"), bad, /^--eval-fraction must be a number from 0/);
    assert.equal(integer("--top", 1)("10"), 10);
    for (const bad of ["0", "ten", "2.5", ""])
      refuses(integer("--top", 1), bad, /^--top must be an integer ≥ 1/);
  });

  it("time zones, key=value pairs and person names, each with the option and the form in the refusal", () => {
    assert.equal(timeZone("--tz")("Europe/Berlin"), "Europe/Berlin");
    for (const bad of ["Mars/Olympus", "+3", ""])
      refuses(timeZone("--tz"), bad, /^--tz must be an IANA time zone/);
    assert.deepEqual(keyValue("--set")("lr=1e-4"), ["lr", "1e-4"]);
    assert.deepEqual(keyValue("--set")("target=a=b"), ["target", "a=b"], "the value may hold =");
    for (const bad of ["lr", "=3", "lr="]) refuses(keyValue("--set"), bad, /^--set must be key=value/);
    assert.deepEqual(personName("--name")("12345=Sasha K"), [12345, "Sasha K"]);
    for (const bad of ["Sasha=12345", "12345", "12345="])
      refuses(personName("--name"), bad, /^--name must be <person id>=<name>/);
  });
});
