/**
 * The export file is not what it should be. The message names the file, the byte offset, the chat
 * and message where it was found, and what was expected there.
 */
export class ExportFormatError extends Error {
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
    this.name = "ExportFormatError";
    this.file = where.file;
    this.offset = where.offset;
    this.chatId = where.chatId;
    this.messageId = where.messageId;
  }
}

/** The export does not say whose it is and the owner was not given. */
export class OwnerUnknownError extends Error {
  constructor(file: string) {
    super(
      `${file}: this export does not say whose account it is (no personal_information). ` +
        "Pass the owner with --owner <telegram user id or display name>, e.g. twin import result.json --owner 123456789.",
    );
    this.name = "OwnerUnknownError";
  }
}
