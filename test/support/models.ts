import fs from "node:fs";

/** The SmolLM2-135M-Instruct GGUF that scripts/run-tests.mjs puts in the cache and names in TWIN_TEST_MODEL. */
export function testModel(): string {
  const model = process.env.TWIN_TEST_MODEL;
  if (!model || !fs.existsSync(model)) {
    throw new Error("TWIN_TEST_MODEL is not set to an existing GGUF: run the tests through `npm test`");
  }
  return model;
}
