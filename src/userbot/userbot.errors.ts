import { TwinError } from "../errors.ts";

/** A sealed userbot session cannot be opened: wrong key or damaged. */
export class SealedSessionError extends TwinError {}

export class PullPausedError extends TwinError {
  constructor(readonly seconds: number) {
    super(`Telegram asks to wait ${seconds} s before more requests; the pull pauses and resumes by itself`);
  }
}
