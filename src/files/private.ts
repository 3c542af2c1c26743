import fs from "node:fs/promises";

/**
 * Files that hold people's messages (dataset output, adapters, conversation states, reports) are
 * readable by this user alone: 0600, in 0700 folders, even where a folder or file already existed
 * with wider rights. (Not a process-wide umask: the embedded PostgreSQL, started as its own user
 * when twin runs as root, must read what it is handed.)
 */
export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

/** Creates `dir` (with its parents) if needed and makes it 0700, even when it already existed. */
export async function privateDir(dir: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await fs.chmod(dir, PRIVATE_DIR_MODE);
  return dir;
}

/** Makes existing files 0600 (a file rewritten in place keeps the rights it was created with). */
export async function makePrivate(files: string[]): Promise<void> {
  await Promise.all(files.map((file) => fs.chmod(file, PRIVATE_FILE_MODE)));
}
