import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import { trainerDir } from "../training/local-worker.ts";
import { REMOTE_HOME } from "./preflight.ts";

/** What of the trainer goes to a remote: its package, its configs and its pins. */
const BUNDLED = ["twin_trainer", "configs", "pyproject.toml"];

function bundledFiles(root = trainerDir): string[] {
  const walk = (relative: string): string[] => {
    const full = path.join(root, relative);
    if (!fs.statSync(full).isDirectory()) return [relative];
    return fs
      .readdirSync(full)
      .filter((name) => name !== "__pycache__" && !name.endsWith(".pyc"))
      .flatMap((name) => walk(path.join(relative, name)));
  };
  return BUNDLED.flatMap(walk).sort();
}

/**
 * The remote venv's name: a hash of the trainer's sources and pins, and of how it is installed
 * (torch's build, the owner's pip options), so a change to any of them makes a fresh venv and an
 * unchanged trainer reuses the last one.
 */
export function bundleHash(
  install: { flavour: "cuda" | "cpu"; pipOptions: string },
  root = trainerDir,
): string {
  const hash = createHash("sha256");
  for (const file of bundledFiles(root)) {
    hash.update(`${file}\0`);
    hash.update(fs.readFileSync(path.join(root, file)));
  }
  hash.update(`\0${install.flavour}\0${install.pipOptions}`);
  return hash.digest("hex").slice(0, 16);
}

/** The remote folder of this venv (a shell word: `$HOME` expands there). */
export function remoteVenvDir(hash: string): string {
  return `${REMOTE_HOME}/${hash}`;
}

/** The trainer's files as a gzipped tar stream (the system `tar`, no caches). */
export function bundleStream(root = trainerDir): Readable {
  const child = spawn("tar", ["-czf", "-", "-C", root, ...bundledFiles(root)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return child.stdout;
}

/** torch's pin as pyproject.toml writes it (`torch==2.13.0`). */
export function torchPin(root = trainerDir): string {
  const pin = /"(torch==[^"]+)"/.exec(fs.readFileSync(path.join(root, "pyproject.toml"), "utf8"))?.[1];
  if (!pin) throw new Error("trainer/pyproject.toml pins no torch");
  return pin;
}

/** The PyTorch index of CPU builds: PyPI's torch for Linux is the CUDA build (GBs). */
export const TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu";

/**
 * The remote script that unpacks the bundle from stdin into a fresh venv folder and installs the
 * trainer's pins there; the folder is marked ready only at the very end, so a broken install is
 * redone next time. Older venvs of other trainer versions are removed once this one works.
 */
export function installScript(input: {
  dir: string;
  python: string;
  flavour: "cuda" | "cpu";
  torch: string;
  pipOptions: string;
}): string {
  const pip = `"${input.dir}/venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off ${input.pipOptions}`;
  const torchIndex = input.flavour === "cpu" && !input.pipOptions ? `--index-url ${TORCH_CPU_INDEX}` : "";
  return `
set -eu
dir="${input.dir}"
rm -rf "$dir"
mkdir -p "$dir/trainer"
chmod 700 "${REMOTE_HOME}" "$dir"
tar -xzf - -C "$dir/trainer"
echo "phase=venv"
"${input.python}" -m venv "$dir/venv"
"$dir/venv/bin/python" - "$dir/trainer/pyproject.toml" > "$dir/requirements.txt" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as file:
    print("\\n".join(d for d in tomllib.load(file)["project"]["dependencies"] if not d.startswith("torch")))
PY
echo "phase=torch"
${pip} ${torchIndex} "${input.torch}"
echo "phase=packages"
${pip} -r "$dir/requirements.txt"
echo "phase=check"
"$dir/venv/bin/python" -c "import torch, transformers, peft, gguf, psycopg"
touch "$dir/.ready"
for other in "${REMOTE_HOME}"/*/; do
  [ -f "$other/.ready" ] && [ "$other" != "$dir/" ] && rm -rf "$other"
done
echo "phase=ready"
`;
}
