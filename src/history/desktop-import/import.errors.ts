import { TwinError } from "../../errors.ts";

/**
 * The export file is not what it should be. The message names the file, the byte offset, the chat
 * and message where it was found, and what was expected there.
 */
export class ExportFormatError extends TwinError {
  readonly file: string;
  readonly offset: number;
  readonly chatId: number | undefined;
  readonly messageId: number | undefined;
  constructor(where: {
    file: string;
    offset: number;
    problem: string;
    path?: string;
    chatId?: number | undefined;
    messageId?: number | undefined;
    afterMessageId?: number | undefined;
  }) {
    const place = [
      `byte ${where.offset}`,
      where.path ? `at ${where.path}` : undefined,
      where.chatId !== undefined ? `chat ${where.chatId}` : undefined,
      where.messageId !== undefined ? `message ${where.messageId}` : undefined,
      where.afterMessageId !== undefined ? `after message ${where.afterMessageId}` : undefined,
    ].filter(Boolean);
    super(`${where.file}: ${place.join(", ")}: ${where.problem}`);
    this.file = where.file;
    this.offset = where.offset;
    this.chatId = where.chatId;
    this.messageId = where.messageId;
  }
}

/** The export does not say whose it is and the owner was not given. */
export class OwnerUnknownError extends TwinError {
  constructor(file: string) {
    super(
      `${file}: this export does not say whose account it is (no personal_information). ` +
        "Pass the owner with --owner <telegram user id or display name>, e.g. twin import result.json --owner 123456789.",
    );
  }
}

/** The import was stopped (SIGTERM, Ctrl-C): what was committed stays, and the same import resumes it. */
export class ImportInterruptedError extends TwinError {
  constructor(file: string) {
    super(`import of ${file} stopped; what was committed stays: import the same file again to resume`);
  }
}

/** Where in the input the splitter stopped and what it expected there. */
export class JsonSyntaxError extends TwinError {
  readonly offset: number;
  readonly path: string;
  readonly expected: string;
  readonly detail: string | undefined;
  constructor(offset: number, path: string, expected: string, detail?: string) {
    super(`at byte ${offset} (${path || "top level"}): expected ${expected}${detail ? ` — ${detail}` : ""}`);
    this.offset = offset;
    this.path = path;
    this.expected = expected;
    this.detail = detail;
  }
}

/** A message object that does not have the export's shape; `field` and `expected` say what is wrong. */
export class MessageShapeError extends TwinError {
  readonly messageId: number | undefined;
  constructor(messageId: number | undefined, problem: string) {
    super(problem);
    this.messageId = messageId;
  }
}
