import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CopyBuffer, isoTime } from "./copy-format.ts";

describe("isoTime", () => {
  it("writes what toISOString writes, across days, years, leap days and the ends of its range", () => {
    const samples = [
      0,
      1,
      999,
      -1,
      -86_400_001,
      Date.UTC(2020, 1, 29, 23, 59, 59, 999),
      Date.UTC(2021, 2, 1, 0, 0, 0, 0),
      Date.UTC(1969, 11, 31, 23, 59, 59, 1),
      -62_167_219_200_000,
      -62_167_219_200_001,
      253_402_300_799_999,
      253_402_300_800_000,
    ];
    let seed = 7;
    for (let i = 0; i < 5000; i++) {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      samples.push(Math.round((seed / 2 ** 31) * 4e12) - 1e12);
    }
    for (const ms of samples) assert.equal(isoTime(ms), new Date(ms).toISOString(), `at ${ms}`);
  });
});

describe("CopyBuffer", () => {
  it("holds every appended line as UTF-8, in order, across its encoding steps and a reset", () => {
    const buffer = new CopyBuffer();
    const lines = Array.from({ length: 20_000 }, (_, i) => `${i}\tПривет, ${"é".repeat(i % 7)} 👋\n`);
    for (const line of lines) buffer.append(line);
    assert.equal(buffer.lines, lines.length);
    assert.equal(buffer.contents().toString("utf8"), lines.join(""));
    buffer.reset();
    buffer.append("only\n");
    assert.equal(buffer.contents().toString("utf8"), "only\n");
    assert.equal(buffer.lines, 1);
  });
});
