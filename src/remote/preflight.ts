/**
 * What a remote machine has, as a POSIX shell script there reports it (Python, GPUs, disk, memory)
 * and as twin reads it (pure). Nothing is installed or downloaded by the preflight.
 */

/** Where twin keeps its things on the remote: one folder, removed whole by `--purge`. */
export const REMOTE_HOME = "$HOME/.cache/twin-worker";

export type Gpu = { name: string; memoryGb: number; driver: string };

export type Preflight = {
  /** A Python ≥ 3.11 with venv and ensurepip, by path; undefined when there is none. */
  python: string | undefined;
  pythonVersion: string | undefined;
  /** Python ≥ 3.11 found, but it cannot make a venv (Debian: python3-venv missing). */
  venvMissing: boolean;
  gpus: Gpu[];
  diskFreeGb: number | undefined;
  memoryGb: number | undefined;
  arch: string | undefined;
  /** The trainer's venv for these sources is there, ready. */
  venvReady: boolean;
};

/** The script (sh) that prints `key=value` lines; `venvDir` is checked for a finished venv. */
export function preflightScript(venvDir: string): string {
  return `
found=""
venv_missing=""
for candidate in python3.13 python3.12 python3.11 python3; do
  path=$(command -v "$candidate" 2>/dev/null) || continue
  "$path" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || continue
  if "$path" -c 'import venv, ensurepip' 2>/dev/null; then found="$path"; break; fi
  venv_missing="$path"
done
echo "python=$found"
[ -n "$found" ] && echo "python_version=$("$found" -c 'import platform; print(platform.python_version())')"
[ -n "$venv_missing" ] && echo "venv_missing=$venv_missing"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits 2>/dev/null |
    while IFS= read -r line; do echo "gpu=$line"; done
fi
mkdir -p "${REMOTE_HOME}" 2>/dev/null && chmod 700 "${REMOTE_HOME}" 2>/dev/null
echo "disk_free_kb=$(df -Pk "${REMOTE_HOME}" 2>/dev/null | awk 'NR == 2 { print $4 }')"
echo "memory_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo 2>/dev/null)"
echo "arch=$(uname -m 2>/dev/null)"
[ -f "${venvDir}/.ready" ] && echo "venv=ready"
exit 0
`;
}

/** The script's lines as facts (pure). */
export function parsePreflight(output: string): Preflight {
  const values = new Map<string, string[]>();
  for (const line of output.split("\n")) {
    const at = line.indexOf("=");
    if (at <= 0) continue;
    const key = line.slice(0, at).trim();
    values.set(key, [...(values.get(key) ?? []), line.slice(at + 1).trim()]);
  }
  const one = (key: string) => values.get(key)?.[0] || undefined;
  const kilobytes = (key: string) => {
    const value = Number(one(key));
    return one(key) && Number.isFinite(value) ? Math.round((value / 2 ** 20) * 10) / 10 : undefined;
  };
  const gpus = (values.get("gpu") ?? []).flatMap((line): Gpu[] => {
    const [name, memoryMib, driver] = line.split(",").map((part) => part.trim());
    const memory = Number(memoryMib);
    if (!name || !Number.isFinite(memory)) return [];
    return [{ name, memoryGb: Math.round((memory / 1024) * 10) / 10, driver: driver ?? "" }];
  });
  return {
    python: one("python"),
    pythonVersion: one("python_version"),
    venvMissing: !one("python") && one("venv_missing") !== undefined,
    gpus,
    diskFreeGb: kilobytes("disk_free_kb"),
    memoryGb: kilobytes("memory_kb"),
    arch: one("arch"),
    venvReady: one("venv") === "ready",
  };
}

/** One line for the owner: GPU, VRAM, driver, free disk, Python (pure). */
export function describePreflight(host: string, facts: Preflight): string {
  const gpu = facts.gpus[0]
    ? `${facts.gpus.length > 1 ? `${facts.gpus.length} × ` : ""}${facts.gpus[0].name} (${facts.gpus[0].memoryGb} GB), driver ${facts.gpus[0].driver}`
    : "no NVIDIA GPU (trains on the CPU)";
  const disk = facts.diskFreeGb !== undefined ? `${facts.diskFreeGb} GB free disk` : "free disk unknown";
  const memory = facts.memoryGb !== undefined ? `, ${facts.memoryGb} GB memory` : "";
  return `${host}: ${gpu}; ${disk}${memory}; Python ${facts.pythonVersion ?? "?"}`;
}
