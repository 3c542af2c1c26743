import { Api } from "telegram";
import { BatchBuilder } from "../history/batch-builder.ts";
import type { BatchResult, HistoryBatch, ImportSession } from "../history/history.repository.ts";
import type { MessageRecord } from "../history/message.ts";
import { saveCursor } from "./cursors.ts";
import type { Dialog } from "./dialogs.ts";
import { type Entities, entitiesOf, liveMessageRecord, userName } from "./live-message.ts";

/**
 * One chat pulled oldest-first from its cursor, a page at a time, each page written with its
 * cursor in one transaction: a crash or a restart continues where it stopped, and a second pull
 * fetches only what is new.
 */

type PageMessage = Api.Message | Api.MessageService;

/** The messages of a page above the cursor, the oldest first. */
function newMessages(
  response: Exclude<Api.messages.TypeMessages, Api.messages.MessagesNotModified>,
  afterId: number,
): PageMessage[] {
  return response.messages
    .filter((m): m is PageMessage => m instanceof Api.Message || m instanceof Api.MessageService)
    .filter((m) => m.id > afterId)
    .sort((a, b) => a.id - b.id);
}

/** A migrated group's ids moved as Telegram Desktop exports them (see MIGRATED_ID_SHIFT). */
function shifted(record: MessageRecord, idShift: number): MessageRecord {
  if (idShift === 0) return record;
  return {
    ...record,
    messageId: record.messageId + idShift,
    replyToMessageId: record.replyToMessageId === null ? null : record.replyToMessageId + idShift,
  };
}

/** One page as a batch: the chat, the people the response named (as of `now`), the messages. */
function pageBatch(
  page: PageMessage[],
  entities: Entities,
  { importId, dialog, ownerId, now }: { importId: number; dialog: Dialog; ownerId: number; now: number },
): HistoryBatch {
  const context = { ...entities, chatId: dialog.chat.id, ownerId };
  const batch = new BatchBuilder(importId, () => dialog.chat, "userbot");
  batch.addChat(dialog.chat);
  for (const user of entities.users.values()) {
    if (user instanceof Api.User) batch.addPerson({ id: Number(user.id), name: userName(user), seenAt: now });
  }
  for (const message of page) batch.addMessage(shifted(liveMessageRecord(message, context), dialog.idShift));
  return batch.seal();
}

/** Pages `dialog` from `cursor` on until Telegram has nothing newer, telling `onPage` each write. */
export async function pullChat(
  dialog: Dialog,
  {
    cursor: from,
    fetchPage,
    session,
    importId,
    ownerId,
    onPage,
  }: {
    /** The newest message id already stored. */
    cursor: number;
    /** Up to a page of messages above `afterId` (messages.getHistory). */
    fetchPage: (afterId: number) => Promise<Api.messages.TypeMessages>;
    session: ImportSession;
    importId: number;
    ownerId: number;
    onPage: (page: { messages: number } & BatchResult) => void;
  },
): Promise<void> {
  let cursor = from;
  for (;;) {
    const response = await fetchPage(cursor);
    if (response instanceof Api.messages.MessagesNotModified) break;
    const entities = entitiesOf(response);
    const page = newMessages(response, cursor);
    if (page.length === 0) break;
    const batch = pageBatch(page, entities, { importId, dialog, ownerId, now: Date.now() });
    cursor = (page.at(-1) as PageMessage).id;
    const result = await session.writeBatch(batch, {
      importId,
      alsoWrite: saveCursor(dialog.cursorKey, cursor),
    });
    onPage({ messages: page.length, ...result });
  }
}
