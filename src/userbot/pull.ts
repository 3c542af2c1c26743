import { Api } from "telegram";
import { FloodWaitError } from "telegram/errors/index.js";
import { BatchBuilder } from "../history/desktop-import/batch-builder.ts";
import type { HistoryRepository } from "../history/history.repository.ts";
import type { ImportCounts } from "../history/history.tables.ts";
import { markPeer } from "../history/identity.ts";
import type { ChatRecord } from "../history/message.ts";
import { rpcMessage } from "./auth.ts";
import { type Entities, entitiesOf, liveMessageRecord, markedPeer, userName } from "./live-message.ts";

/**
 * Pulling the owner's history live: dialogs, then each chat oldest-first from its cursor, a page
 * at a time, each page written with its cursor in one transaction — so a crash or a restart
 * continues where it stopped, and a second pull fetches only what is new. Telegram's answers are
 * gramjs `Api` objects; the client behind them is an interface (tests script it).
 */

export interface TelegramHistoryClient {
  /** One page of the dialog list (messages.getDialogs). */
  dialogs(
    page: { offsetDate: number; offsetId: number; offsetPeer: Api.TypeInputPeer },
    limit: number,
  ): Promise<Api.messages.TypeDialogs>;
  /** Up to `limit` messages of `peer` with ids above `afterId`, the oldest first (messages.getHistory). */
  history(peer: Api.TypeInputPeer, afterId: number, limit: number): Promise<Api.messages.TypeMessages>;
  /**
   * Routes the following requests through a takeout session (account.initTakeoutSession), which
   * Telegram limits less for a data export; throws TAKEOUT_INIT_DELAY_n until the owner approves.
   */
  startTakeout?(): Promise<void>;
  finishTakeout?(success: boolean): Promise<void>;
}

export type PullOptions = {
  ownerId: number;
  /** Personal chats always; groups and channels when asked. */
  groups?: boolean | undefined;
  channels?: boolean | undefined;
  pageSize?: number | undefined;
  /** Pause between requests: gramjs paces nothing itself (its waitTime is slept as milliseconds). */
  paceMs?: number | undefined;
  /** Flood waits up to this long are slept through; longer ones end the pull with PullPausedError. */
  maxFloodWaitSeconds?: number | undefined;
  signal?: AbortSignal | undefined;
  sleep?: ((ms: number) => Promise<void>) | undefined;
  onProgress?: ((progress: PullProgress) => void) | undefined;
};

export type PullProgress = {
  chatsDone: number;
  chatsTotal: number;
  messages: number;
  chat: string | undefined;
  floodWaitSeconds: number;
  /** Something the owner should know or do (approve the takeout in the Telegram app). */
  notice?: string | undefined;
};

export type PullSummary = ImportCounts & { importId: number; requests: number; floodWaitSeconds: number };

export class PullPausedError extends Error {
  constructor(readonly seconds: number) {
    super(`Telegram asks to wait ${seconds} s before more requests; the pull pauses and resumes by itself`);
  }
}

type Dialog = {
  chat: ChatRecord;
  peer: Api.TypeInputPeer;
  kind: "user" | "bot" | "group" | "channel";
  /** Whose cursor: the dialog's own key (a migrated group's differs from the chat it is stored in). */
  cursorKey: number;
  /** Added to message ids as stored (a migrated group's messages, as Telegram Desktop exports them). */
  idShift: number;
};

/**
 * Telegram Desktop exports a basic group migrated to a supergroup as one chat: the supergroup,
 * with the old group's messages under ids shifted by this much (the negative ids in exports).
 */
export const MIGRATED_ID_SHIFT = -1_000_000_000;

const DIALOG_PAGE = 100;
const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The export's chat types, so a pulled chat is the row an imported one is. */
function dialogOf(peer: Api.TypePeer, entities: Entities, ownerId: number): Dialog | undefined {
  if (peer instanceof Api.PeerUser) {
    const user = entities.users.get(peer.userId.toString());
    if (!(user instanceof Api.User)) return undefined;
    const type =
      user.self || Number(user.id) === ownerId ? "saved_messages" : user.bot ? "bot_chat" : "personal_chat";
    const title = userName(user);
    return {
      chat: { id: markedPeer(peer), type, title },
      peer: new Api.InputPeerUser({ userId: user.id, accessHash: user.accessHash ?? (BigInt(0) as never) }),
      kind: user.bot ? "bot" : "user",
      cursorKey: markedPeer(peer),
      idShift: 0,
    };
  }
  const id = peer instanceof Api.PeerChat ? peer.chatId : (peer as Api.PeerChannel).channelId;
  const chat = entities.chats.get(id.toString());
  if (chat instanceof Api.Chat) {
    const input = new Api.InputPeerChat({ chatId: chat.id });
    if (chat.migratedTo instanceof Api.InputChannel) {
      const successor = entities.chats.get(chat.migratedTo.channelId.toString());
      const visibility = successor instanceof Api.Channel && successor.username ? "public" : "private";
      return {
        chat: {
          id: markPeer("channel", Number(chat.migratedTo.channelId)),
          type: `${visibility}_supergroup`,
          title: successor && "title" in successor ? successor.title : chat.title,
        },
        peer: input,
        kind: "group",
        cursorKey: markedPeer(peer),
        idShift: MIGRATED_ID_SHIFT,
      };
    }
    return {
      chat: { id: markedPeer(peer), type: "private_group", title: chat.title },
      peer: input,
      kind: "group",
      cursorKey: markedPeer(peer),
      idShift: 0,
    };
  }
  if (chat instanceof Api.Channel) {
    const visibility = chat.username ? "public" : "private";
    return {
      chat: {
        id: markedPeer(peer),
        type: chat.megagroup ? `${visibility}_supergroup` : `${visibility}_channel`,
        title: chat.title,
      },
      peer: new Api.InputPeerChannel({
        channelId: chat.id,
        accessHash: chat.accessHash ?? (BigInt(0) as never),
      }),
      kind: chat.megagroup ? "group" : "channel",
      cursorKey: markedPeer(peer),
      idShift: 0,
    };
  }
  return undefined;
}

export async function pullHistory(
  client: TelegramHistoryClient,
  {
    historyRepository,
    cursors,
  }: { historyRepository: HistoryRepository; cursors: (chatId: number) => Promise<number> },
  options: PullOptions,
): Promise<PullSummary> {
  const pageSize = options.pageSize ?? 100;
  const sleep = options.sleep ?? defaultSleep;
  const maxFlood = options.maxFloodWaitSeconds ?? 300;
  const counts: ImportCounts = { chats: 0, messages: 0, new: 0, updated: 0, unchanged: 0, skipped: {} };
  let requests = 0;
  let floodWaitSeconds = 0;
  const progress: PullProgress = {
    chatsDone: 0,
    chatsTotal: 0,
    messages: 0,
    chat: undefined,
    floodWaitSeconds: 0,
  };

  /** One request, paced, with flood waits slept through (or the pull paused when they are long). */
  const request = async <T>(call: () => Promise<T>): Promise<T> => {
    for (;;) {
      if (options.signal?.aborted) throw new Error("the pull was cancelled");
      try {
        requests++;
        const result = await call();
        if (options.paceMs) await sleep(options.paceMs);
        return result;
      } catch (error) {
        if (!(error instanceof FloodWaitError)) throw error;
        if (error.seconds > maxFlood) throw new PullPausedError(error.seconds);
        floodWaitSeconds += error.seconds;
        progress.floodWaitSeconds = floodWaitSeconds;
        options.onProgress?.({ ...progress });
        await sleep(error.seconds * 1000);
      }
    }
  };

  let takeout = false;
  if (client.startTakeout) {
    try {
      await client.startTakeout();
      takeout = true;
    } catch (error) {
      const delay = /^TAKEOUT_INIT_DELAY_(\d+)$/.exec(rpcMessage(error) ?? "");
      if (!delay) throw error;
      progress.notice =
        "Telegram wants you to approve this data export: open Telegram on a phone and allow the request " +
        `(it says it can be granted in ${delay[1]} s). Pulling without it meanwhile, more slowly.`;
      options.onProgress?.({ ...progress });
    }
  }
  let succeeded = false;
  try {
    const summary = await pullDialogs();
    succeeded = true;
    return summary;
  } finally {
    // Finished in every case; a finish Telegram refuses only lets the takeout expire on its own.
    if (takeout) await client.finishTakeout?.(succeeded).catch(() => undefined);
  }

  async function pullDialogs(): Promise<PullSummary> {
    const dialogs: Dialog[] = [];
    const seen = new Set<number>();
    let page = { offsetDate: 0, offsetId: 0, offsetPeer: new Api.InputPeerEmpty() as Api.TypeInputPeer };
    for (;;) {
      const response = await request(() => client.dialogs(page, DIALOG_PAGE));
      if (response instanceof Api.messages.DialogsNotModified) break;
      const entities = entitiesOf(response);
      for (const dialog of response.dialogs) {
        const found = dialogOf(dialog.peer, entities, options.ownerId);
        if (!found || seen.has(found.cursorKey)) continue;
        seen.add(found.cursorKey);
        const wanted =
          found.kind === "user" ||
          (found.kind === "group" && options.groups) ||
          (found.kind === "channel" && options.channels);
        if (wanted) dialogs.push(found);
      }
      const last = response.dialogs.at(-1);
      const lastMessage = response.messages.at(-1);
      if (
        !(response instanceof Api.messages.DialogsSlice) ||
        response.dialogs.length < DIALOG_PAGE ||
        !last ||
        !lastMessage
      )
        break;
      const next = dialogOf(last.peer, entities, options.ownerId);
      if (!next) break;
      page = {
        offsetDate: "date" in lastMessage ? lastMessage.date : 0,
        offsetId: last.topMessage,
        offsetPeer: next.peer,
      };
    }
    progress.chatsTotal = dialogs.length;

    const importId = await historyRepository.startImport({
      source: "userbot",
      fileName: "live",
      fileBytes: 0,
    });
    const session = await historyRepository.openImportSession();
    try {
      for (const dialog of dialogs) {
        progress.chat = dialog.chat.title ?? String(dialog.chat.id);
        counts.chats++;
        let cursor = await cursors(dialog.cursorKey);
        for (;;) {
          const response = await request(() => client.history(dialog.peer, cursor, pageSize));
          if (response instanceof Api.messages.MessagesNotModified) break;
          const entities = entitiesOf(response);
          const context = { ...entities, chatId: dialog.chat.id, ownerId: options.ownerId };
          const page = response.messages
            .filter(
              (m): m is Api.Message | Api.MessageService =>
                m instanceof Api.Message || m instanceof Api.MessageService,
            )
            .filter((m) => m.id > cursor)
            .sort((a, b) => a.id - b.id);
          if (page.length === 0) break;
          const batch = new BatchBuilder(importId, () => dialog.chat, "userbot");
          batch.addChat(dialog.chat);
          const now = Date.now();
          for (const user of entities.users.values()) {
            if (user instanceof Api.User) {
              batch.addPerson({
                id: Number(user.id),
                name: userName(user),
                seenAt: now,
              });
            }
          }
          for (const message of page) {
            const record = liveMessageRecord(message, context);
            batch.addMessage(
              dialog.idShift === 0
                ? record
                : {
                    ...record,
                    messageId: record.messageId + dialog.idShift,
                    replyToMessageId:
                      record.replyToMessageId === null ? null : record.replyToMessageId + dialog.idShift,
                  },
            );
          }
          cursor = (page.at(-1) as Api.Message).id;
          const result = await session.writeBatch(batch.seal(), {
            importId,
            cursors: [{ chatId: dialog.cursorKey, lastMessageId: cursor }],
          });
          counts.messages += page.length;
          counts.new += result.inserted;
          counts.updated += result.updated;
          counts.unchanged += page.length - result.inserted - result.updated;
          progress.messages = counts.messages;
          options.onProgress?.({ ...progress });
        }
        progress.chatsDone++;
        options.onProgress?.({ ...progress });
      }
      await historyRepository.finishImport(importId, {
        status: "succeeded",
        counts,
        ownerId: options.ownerId,
      });
      return { ...counts, importId, requests, floodWaitSeconds };
    } catch (error) {
      await historyRepository
        .finishImport(importId, {
          status: "failed",
          counts,
          ownerId: options.ownerId,
          error: (error as Error).message,
        })
        .catch(() => undefined);
      throw error;
    } finally {
      await session.release();
    }
  }
}
