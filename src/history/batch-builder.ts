import { CopyBuffer, messageCopyLine } from "./copy-format.ts";
import type { HistoryBatch } from "./history.repository.ts";
import type { ChatRecord, MessageRecord, PersonSighting } from "./message.ts";

/**
 * Collects one transaction's rows while the reader streams; sealed when full. Two COPY buffers
 * alternate: one is being written to the database while the other fills.
 */
export class BatchBuilder {
  private filling = new CopyBuffer();
  private spare = new CopyBuffer();
  private chats = new Map<number, ChatRecord>();
  private people = new Map<number, PersonSighting>();

  constructor(
    private readonly importId: number,
    private readonly currentChat: () => ChatRecord | undefined,
    private readonly source: "desktop_export" | "userbot" = "desktop_export",
  ) {}

  get size(): number {
    return this.filling.lines;
  }

  addChat(chat: ChatRecord): void {
    this.chats.set(chat.id, chat);
  }

  /** A person's current name (the userbot learns names from each response's users). */
  addPerson(person: PersonSighting): void {
    const known = this.people.get(person.id);
    if (!known || known.seenAt <= person.seenAt) this.people.set(person.id, person);
  }

  addMessage(message: MessageRecord): void {
    this.filling.append(messageCopyLine(message, this.source, this.importId));
    if (message.senderId !== null) {
      const known = this.people.get(message.senderId);
      if (!known || known.seenAt <= message.sentAt) {
        this.people.set(message.senderId, {
          id: message.senderId,
          name: message.senderName,
          seenAt: message.sentAt,
        });
      }
    }
  }

  /**
   * Hands over what was collected and starts a new batch that still knows the open chat.
   * The batch's bytes stay valid until the next seal, so write it before sealing again.
   */
  seal(): HistoryBatch {
    const sealed = this.filling;
    const batch = {
      chats: [...this.chats.values()],
      people: [...this.people.values()],
      messageData: sealed.contents(),
      messageCount: sealed.lines,
    };
    this.filling = this.spare;
    this.filling.reset();
    this.spare = sealed;
    this.people = new Map();
    this.chats = new Map();
    const open = this.currentChat();
    if (open) this.chats.set(open.id, open);
    return batch;
  }
}
