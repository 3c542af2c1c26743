import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { TwinError } from "./errors.ts";

const srcDir = path.dirname(fileURLToPath(import.meta.url));
const sources = (fs.readdirSync(srcDir, { recursive: true }) as string[])
  .filter((file) => file.endsWith(".ts") && !file.endsWith(".test.ts"))
  .map((file) => ({ file, text: fs.readFileSync(path.join(srcDir, file), "utf8") }));

describe("errors", () => {
  it("carry their class name, so logs say which", () => {
    class SampleError extends TwinError {}
    const error = new SampleError("what happened", { cause: new Error("why") });
    assert.equal(error.name, "SampleError");
    assert.equal(String(error), "SampleError: what happened");
    assert.ok(error instanceof Error);
  });

  it("are all TwinErrors, exported from each module's *.errors.ts", () => {
    const bare = sources.filter(({ text }) => /class \w+ extends Error\b/.test(text)).map((s) => s.file);
    assert.deepEqual(bare, ["errors.ts"], "only TwinError itself extends Error");
    const astray = sources
      .filter(
        ({ file, text }) =>
          file !== "errors.ts" &&
          !file.endsWith(".errors.ts") &&
          /export class \w+ extends \w*Error\b/.test(text),
      )
      .map((s) => s.file);
    assert.deepEqual(astray, [], "exported error classes live in *.errors.ts");
  });
});
