import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { SealedSessionError } from "./userbot.errors.ts";

/**
 * The gramjs session string is a full login to the owner's account. It is stored only sealed:
 * AES-256-GCM under the key from config, with the owner's id as associated data, so a sealed
 * session copied to another owner's row, or opened with another key, fails instead of working.
 * Format: "v1." + base64url(iv ‖ tag ‖ ciphertext).
 */

const VERSION = "v1.";
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A 32-byte key from base64 or hex text (TWIN_SESSION_KEY); the error never repeats the value. */
export function parseSessionKey(text: string): Buffer {
  const trimmed = text.trim();
  const key = /^[0-9a-f]{64}$/i.test(trimmed) ? Buffer.from(trimmed, "hex") : Buffer.from(trimmed, "base64");
  if (key.length !== 32) {
    throw new SealedSessionError("the session key must be 32 bytes, written as 64 hex digits or base64");
  }
  return key;
}

const associatedData = (ownerId: number) => Buffer.from(`twin-session:${ownerId}`, "utf8");

export function sealSession(session: string, key: Buffer, ownerId: number): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(associatedData(ownerId));
  const ciphertext = Buffer.concat([cipher.update(session, "utf8"), cipher.final()]);
  return VERSION + Buffer.concat([iv, cipher.getAuthTag(), ciphertext]).toString("base64url");
}

export function openSession(sealed: string, key: Buffer, ownerId: number): string {
  if (!sealed.startsWith(VERSION))
    throw new SealedSessionError("the stored session is not in a format this version reads");
  const bytes = Buffer.from(sealed.slice(VERSION.length), "base64url");
  if (bytes.length <= IV_BYTES + TAG_BYTES) throw new SealedSessionError("the stored session is truncated");
  const decipher = createDecipheriv("aes-256-gcm", key, bytes.subarray(0, IV_BYTES));
  decipher.setAAD(associatedData(ownerId));
  decipher.setAuthTag(bytes.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(bytes.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString(
      "utf8",
    );
  } catch {
    throw new SealedSessionError(
      "the stored session does not open with TWIN_SESSION_KEY for this owner (another key, or another owner's session)",
    );
  }
}
