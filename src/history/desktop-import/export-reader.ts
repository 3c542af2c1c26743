import { exportChatKind, markPeer } from "../identity.ts";
import type { ChatRecord, MessageRecord } from "../message.ts";
import { parseExportMessage } from "./export-message.ts";
import { ExportFormatError, JsonSyntaxError, MessageShapeError } from "./import.errors.ts";
import { JsonSplitter } from "./json-splitter.ts";

/**
 * Reads a Telegram Desktop export as a stream of chats and messages. Both layouts:
 * a whole-account export (`personal_information`, `chats.list`, `left_chats.list`) and a
 * single-chat export (`{name, type, id, messages}` at the top level).
 */

type Role = "root" | "section" | "chatList" | "chat" | "messages";

export type PersonalInformation = { userId: number; name: string | null };

/** Where a repair of the input first happened: the byte offset, and the chat and message there. */
export type InputPlace = { offset: number; chatId?: number | undefined; messageId?: number | undefined };

/**
 * What the reader repaired rather than refused: NUL characters removed (PostgreSQL text cannot
 * hold them) and invalid UTF-8 read as U+FFFD, counted, with the place of the first of each.
 */
export type InputRepairs = {
  nul: { count: number; first?: InputPlace | undefined };
  invalidUtf8: { count: number; first?: InputPlace | undefined };
};

export type ExportEvents = {
  onPersonalInformation(info: PersonalInformation): void;
  /** A chat's messages begin; called before its first message. */
  onChat(chat: ChatRecord): void;
  onMessage(message: MessageRecord): void;
  /** A message id that appeared earlier in the same chat: the first one is kept. */
  onDuplicate(chatId: number, messageId: number): void;
};

const chatFields = new Set(["id", "type", "name"]);

export class ExportReader {
  private readonly splitter: JsonSplitter<Role>;
  private header: Record<string, unknown> = {};
  private chat: ChatRecord | undefined;
  private lastMessageId: number | undefined;
  private seenIds = new SeenIds();
  private readonly places: { nul?: InputPlace; invalidUtf8?: InputPlace } = {};

  constructor(
    private readonly file: string,
    private readonly timeZone: string,
    private readonly events: ExportEvents,
  ) {
    this.splitter = new JsonSplitter<Role>({
      decide: (parent, key) => this.decide(parent, key),
      onEnter: (role, offset) => this.enter(role, offset),
      onExit: (role) => {
        if (role === "messages") this.leaveChat();
      },
      onValue: (parent, key, value, offset) => this.value(parent, key, value, offset),
    });
  }

  /** What was repaired so far, and where first. */
  get repairs(): InputRepairs {
    const { nul, invalidUtf8 } = this.splitter.repairs;
    return {
      nul: { count: nul, first: this.places.nul },
      invalidUtf8: { count: invalidUtf8, first: this.places.invalidUtf8 },
    };
  }

  /** Bytes of the input fully handled: every message before this offset has been emitted. */
  get offset(): number {
    return this.splitter.offset;
  }

  push(chunk: Buffer): void {
    this.guard(() => this.splitter.push(chunk));
  }

  end(): void {
    this.guard(() => this.splitter.end());
  }

  private guard(step: () => void): void {
    try {
      step();
    } catch (error) {
      if (error instanceof JsonSyntaxError) {
        throw new ExportFormatError({
          file: this.file,
          offset: error.offset,
          chatId: this.chat?.id,
          afterMessageId: this.lastMessageId,
          problem: `invalid JSON: expected ${error.expected}${error.detail ? ` (${error.detail})` : ""}`,
          path: error.path,
        });
      }
      throw error;
    }
  }

  private decide(parent: Role | undefined, key: string | number) {
    switch (parent) {
      case undefined:
        return { action: "descend", role: "root", expect: "object" } as const;
      case "root":
        if (key === "chats" || key === "left_chats")
          return { action: "descend", role: "section", expect: "object" } as const;
        if (key === "messages") return { action: "descend", role: "messages", expect: "array" } as const;
        if (key === "personal_information" || chatFields.has(key as string))
          return { action: "capture" } as const;
        return { action: "skip" } as const;
      case "section":
        return key === "list"
          ? ({ action: "descend", role: "chatList", expect: "array" } as const)
          : ({ action: "skip" } as const);
      case "chatList":
        return { action: "descend", role: "chat", expect: "object" } as const;
      case "chat":
        if (key === "messages") return { action: "descend", role: "messages", expect: "array" } as const;
        return chatFields.has(key as string)
          ? ({ action: "capture" } as const)
          : ({ action: "skip" } as const);
      case "messages":
        return { action: "capture" } as const;
    }
  }

  private enter(role: Role, offset: number): void {
    if (role === "chat") this.header = {};
    if (role === "messages") this.beginChat(offset);
  }

  private beginChat(offset: number): void {
    const { id, type, name } = this.header;
    const fail = (problem: string) =>
      new ExportFormatError({ file: this.file, offset, problem, path: this.splitter.path });
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id <= 0) {
      throw fail(
        `expected the chat's "id" (a positive integer) before its messages, got ${JSON.stringify(id)}`,
      );
    }
    const kind = typeof type === "string" ? exportChatKind(type) : undefined;
    if (!kind) throw fail(`chat ${id} has an unknown "type" ${JSON.stringify(type)}`);
    this.chat = {
      id: markPeer(kind, id),
      type: type as string,
      title: typeof name === "string" ? name : null,
    };
    this.lastMessageId = undefined;
    this.seenIds = new SeenIds();
    this.events.onChat(this.chat);
  }

  private leaveChat(): void {
    this.chat = undefined;
    this.seenIds = new SeenIds();
  }

  private value(parent: Role | undefined, key: string | number, value: unknown, offset: number): void {
    if (this.splitter.lastRepaired) this.notePlace(value, offset);
    if (parent === "messages") {
      this.message(value, offset);
      return;
    }
    if (parent === "root" && key === "personal_information") {
      const info = value as { user_id?: unknown; first_name?: unknown; last_name?: unknown } | null;
      if (typeof info?.user_id !== "number") {
        throw new ExportFormatError({
          file: this.file,
          offset,
          problem: 'expected "personal_information.user_id" to be a number',
          path: "personal_information",
        });
      }
      const name = [info.first_name, info.last_name].filter((p) => typeof p === "string" && p).join(" ");
      this.events.onPersonalInformation({ userId: info.user_id, name: name || null });
      return;
    }
    this.header[key as string] = value;
  }

  private notePlace(value: unknown, offset: number): void {
    const { firstNulAt, firstInvalidUtf8At } = this.splitter.repairs;
    const id = (value as { id?: unknown } | null)?.id;
    const place = {
      offset,
      chatId: this.chat?.id,
      messageId: typeof id === "number" && this.chat ? id : undefined,
    };
    if (firstNulAt === offset) this.places.nul ??= place;
    if (firstInvalidUtf8At === offset) this.places.invalidUtf8 ??= place;
  }

  private message(value: unknown, offset: number): void {
    const chat = this.chat as ChatRecord;
    let message: MessageRecord;
    try {
      message = parseExportMessage(value, { chatId: chat.id, timeZone: this.timeZone });
    } catch (error) {
      if (!(error instanceof MessageShapeError)) throw error;
      throw new ExportFormatError({
        file: this.file,
        offset,
        chatId: chat.id,
        messageId: error.messageId,
        afterMessageId: error.messageId === undefined ? this.lastMessageId : undefined,
        problem: error.message,
        path: this.splitter.path,
      });
    }
    if (!this.seenIds.add(message.messageId)) {
      this.events.onDuplicate(chat.id, message.messageId);
      return;
    }
    this.lastMessageId = message.messageId;
    this.events.onMessage(message);
  }
}

/**
 * A chat's message ids so far. Exports list them in increasing order, so those go into a sorted
 * array (a comparison and a push, a quarter of a Set's memory); an id out of order is looked up
 * there by bisection and kept in a Set.
 */
export class SeenIds {
  private readonly ascending: number[] = [];
  private readonly others = new Set<number>();

  /** Adds `id`; false when it was seen before. */
  add(id: number): boolean {
    const last = this.ascending.at(-1);
    if (last === undefined || id > last) {
      this.ascending.push(id);
      return true;
    }
    if (this.others.has(id) || this.inAscending(id)) return false;
    this.others.add(id);
    return true;
  }

  private inAscending(id: number): boolean {
    let low = 0;
    let high = this.ascending.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const at = this.ascending[middle] as number;
      if (at === id) return true;
      if (at < id) low = middle + 1;
      else high = middle - 1;
    }
    return false;
  }
}
