import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JsonSyntaxError } from "./import.errors.ts";
import { type Decision, JsonSplitter } from "./json-splitter.ts";

type Role = "root" | "items";

/** Splits `text` fed in chunks of `size` bytes; captures root keys and every element of "items". */
function split(text: string, size: number) {
  const captured: [string | number, unknown, number][] = [];
  const splitter = new JsonSplitter<Role>({
    decide(parent, key): Decision<Role> {
      if (parent === undefined) return { action: "descend", role: "root", expect: "object" };
      if (parent === "root" && key === "items") return { action: "descend", role: "items", expect: "array" };
      if (parent === "root" && key === "ignored") return { action: "skip" };
      return { action: "capture" };
    },
    onValue(_parent, key, value, offset) {
      captured.push([key, value, offset]);
    },
  });
  const bytes = Buffer.from(text);
  for (let at = 0; at < bytes.length; at += size) splitter.push(bytes.subarray(at, at + size));
  splitter.end();
  return captured;
}

const document = JSON.stringify(
  {
    name: 'quote " and \\ backslash',
    ignored: { deep: [1, { x: "}" }], s: "]" },
    KEY: -12.5e3,
    items: [
      { id: 1, text: "привет 👋 {not a brace}", nested: [[], {}, ['a\\"b']] },
      { id: 2, text: ["x", { type: "link", text: "https://e.com" }] },
      "plain string",
      42,
      true,
      null,
    ],
    last: false,
  },
  null,
  1,
).replace('"KEY"', '"k\\u00e9y"'); // a key written with an escape, as JSON allows

describe("JsonSplitter", () => {
  it("hands every captured value to JSON.parse whole, whatever the chunk size", () => {
    const expected = JSON.parse(document);
    for (const size of [1, 2, 3, 7, 64, 1 << 20]) {
      const values = split(document, size);
      assert.deepEqual(
        values.map(([key, value]) => [key, value]),
        [
          ["name", expected.name],
          ["kéy", expected.kéy],
          ...expected.items.map((item: unknown, index: number) => [index, item]),
          ["last", false],
        ],
        `chunk size ${size}`,
      );
    }
  });

  it("reports each value's byte offset in the whole input", () => {
    const bytes = Buffer.from(document);
    for (const [, value, offset] of split(document, 5)) {
      const text = JSON.stringify(value, null, 1);
      if (typeof value === "object" && value !== null) {
        assert.equal(bytes[offset], text.charCodeAt(0));
      } else {
        assert.equal(
          bytes.toString("utf8", offset, offset + Buffer.byteLength(JSON.stringify(value))),
          JSON.stringify(value),
        );
      }
    }
  });

  it("says where a truncated document ends", () => {
    const cut = document.slice(0, document.indexOf('"id": 2'));
    assert.throws(
      () => split(cut, 16),
      (error) =>
        error instanceof JsonSyntaxError &&
        error.offset === Buffer.byteLength(cut.slice(0, cut.lastIndexOf("{"))) &&
        error.path === "items[1]" &&
        /truncated/.test(error.message),
    );
  });

  it("says what it expected when the outline is broken", () => {
    assert.throws(
      () => split('{"items" [1]}', 4),
      (e) => e instanceof JsonSyntaxError && e.expected === '":"' && e.offset === 9,
    );
    assert.throws(
      () => split('{"items": {"a": 1}}', 4),
      (e) => e instanceof JsonSyntaxError && e.expected === "an array",
    );
    assert.throws(
      () => split('{"a": 1} {"b": 2}', 4),
      (e) => e instanceof JsonSyntaxError && /extra data/.test(e.message),
    );
  });

  it("rejects invalid JSON inside a captured value with its offset", () => {
    const broken = '{"items": [{"id": 1}, {"id": 2,, "x": 1}]}';
    assert.throws(
      () => split(broken, 8),
      (e) => e instanceof JsonSyntaxError && e.offset === broken.indexOf('{"id": 2') && e.path === "items[1]",
    );
  });
});
