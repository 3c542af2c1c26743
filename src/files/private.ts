import fs from "node:fs/promises";

/**
 * Files that hold people's messages (dataset output, adapters, conversation states, reports) are
 * readable by this user alone: 0600, in 0700 folders. bin/twin.js also sets the umask to 077, so
 * every file twin and its children create starts that way; these make sure of it where a folder
 * or file may already exist with wider rights.
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
