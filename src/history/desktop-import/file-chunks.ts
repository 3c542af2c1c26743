import fs from "node:fs/promises";

/**
 * A file's bytes, chunk by chunk, read into one reused buffer: each chunk is valid only until the
 * next one is asked for. A read stream allocates a buffer per chunk instead, and at hundreds of
 * megabytes glibc keeps much of that as the process's RSS.
 */
export async function* fileChunks(file: string, chunkBytes = 1 << 20): AsyncGenerator<Buffer> {
  const handle = await fs.open(file, "r");
  try {
    const buffer = Buffer.allocUnsafe(chunkBytes);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, chunkBytes, null);
      if (bytesRead === 0) return;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}
