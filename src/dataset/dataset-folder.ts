import { createHash, type Hash } from "node:crypto";
import { once } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { PRIVATE_FILE_MODE } from "../files/private.ts";
import type { Example } from "./examples.ts";
import type { Manifest } from "./manifest.ts";

/** What the manifest of a dataset folder says of each data file, so a reader can check it is whole. */
export type FileCheck = { lines: number; sha256: string };
export type FolderManifest = Manifest & { files: Record<"train.jsonl" | "eval.jsonl", FileCheck> };

const SPLITS = { train: "train.jsonl", eval: "eval.jsonl" } as const;

/**
 * Writes `twin dataset --out DIR` atomically: train.jsonl, eval.jsonl and manifest.json go into a
 * private staging folder beside DIR, which replaces DIR only once all three are complete. A run
 * killed midway leaves the previous folder as it was (and a staging folder the next run removes),
 * never truncated files beside an older manifest. The manifest records each file's line count and
 * sha256, which the trainer checks.
 */
export async function openDatasetFolder(outDir: string) {
  const target = path.resolve(outDir);
  const parent = path.dirname(target);
  const stagingPrefix = `.${path.basename(target)}.partial-`;
  await fs.promises.mkdir(parent, { recursive: true });
  for (const name of await fs.promises.readdir(parent)) {
    if (name.startsWith(stagingPrefix))
      await fs.promises.rm(path.join(parent, name), { recursive: true, force: true }); // a killed run's
  }
  const staging = await fs.promises.mkdtemp(path.join(parent, stagingPrefix)); // 0700
  const open = (split: keyof typeof SPLITS) => ({
    stream: fs.createWriteStream(path.join(staging, SPLITS[split]), { mode: PRIVATE_FILE_MODE }),
    hash: createHash("sha256") as Hash,
    lines: 0,
  });
  const files = { train: open("train"), eval: open("eval") };
  return {
    async write(examples: Example[]) {
      for (const split of ["train", "eval"] as const) {
        const rows = examples.filter((e) => e.split === split).map((e) => `${JSON.stringify(e)}\n`);
        if (rows.length === 0) continue;
        const file = files[split];
        const text = rows.join("");
        file.hash.update(text);
        file.lines += rows.length;
        if (!file.stream.write(text)) await once(file.stream, "drain");
      }
    },
    /** Completes the folder and puts it in place of `outDir`; returns the three files' paths there. */
    async finish(manifest: Manifest): Promise<string[]> {
      await Promise.all(
        Object.values(files).map(({ stream }) => new Promise((resolve) => stream.end(resolve))),
      );
      const complete: FolderManifest = {
        ...manifest,
        files: {
          "train.jsonl": { lines: files.train.lines, sha256: files.train.hash.digest("hex") },
          "eval.jsonl": { lines: files.eval.lines, sha256: files.eval.hash.digest("hex") },
        },
      };
      await fs.promises.writeFile(
        path.join(staging, "manifest.json"),
        `${JSON.stringify(complete, null, 2)}\n`,
        {
          mode: PRIVATE_FILE_MODE,
        },
      );
      const retired = `${staging}.old`;
      const previous = await fs.promises.rename(target, retired).then(
        () => true,
        (error: NodeJS.ErrnoException) => {
          if (error.code === "ENOENT") return false;
          throw error;
        },
      );
      await fs.promises.rename(staging, target);
      if (previous) await fs.promises.rm(retired, { recursive: true, force: true });
      return [...Object.values(SPLITS), "manifest.json"].map((name) => path.join(target, name));
    },
    async abort() {
      for (const { stream } of Object.values(files)) stream.destroy();
      await fs.promises.rm(staging, { recursive: true, force: true });
    },
  };
}
