import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { trainerDir } from "../../src/training/local-worker.ts";

/**
 * Files a remote test machine (another unix user on this one, in a namespace without a network)
 * must read: a folder outside root's home, open to everyone.
 */
const SHARED = "/var/tmp/twin-test-remote";

function shared(...parts: string[]): string {
  fs.mkdirSync(SHARED, { recursive: true, mode: 0o755 });
  fs.chmodSync(SHARED, 0o755);
  return path.join(SHARED, ...parts);
}

/**
 * The trainer's pinned packages as wheels, for a remote that cannot reach PyPI: downloaded once per
 * version of trainer/pyproject.toml with the trainer's own pip (torch from this machine's disk).
 */
export function trainerWheelhouse(): string {
  const pyproject = fs.readFileSync(path.join(trainerDir, "pyproject.toml"));
  const dir = shared(`wheels-${createHash("sha256").update(pyproject).digest("hex").slice(0, 12)}`);
  if (fs.existsSync(path.join(dir, ".complete"))) return dir;
  const python = path.join(trainerDir, ".venv/bin/python");
  const requirements = execFileSync(
    python,
    [
      "-c",
      "import sys, tomllib; print('\\n'.join(tomllib.load(open(sys.argv[1], 'rb'))['project']['dependencies']))",
      path.join(trainerDir, "pyproject.toml"),
    ],
    { encoding: "utf8" },
  );
  const partial = `${dir}.partial`;
  fs.rmSync(partial, { recursive: true, force: true });
  fs.mkdirSync(partial, { recursive: true });
  fs.writeFileSync(path.join(partial, "requirements.txt"), requirements);
  execFileSync(
    python,
    [
      "-m",
      "pip",
      "download",
      "--quiet",
      "--disable-pip-version-check",
      "-d",
      partial,
      "-r",
      path.join(partial, "requirements.txt"),
    ],
    {
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  for (const name of fs.readdirSync(partial)) fs.chmodSync(path.join(partial, name), 0o644);
  fs.chmodSync(partial, 0o755);
  fs.writeFileSync(path.join(partial, ".complete"), "");
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(partial, dir);
  return dir;
}
