import type { Api } from "telegram";
import type { HistoryRepository, ImportSession } from "../history/history.repository.ts";
import type { ImportCounts } from "../history/message.ts";
import { pullChat } from "./chat-pages.ts";
import { type DialogPage, listDialogs } from "./dialogs.ts";
import { type TakeoutClient, TelegramRequests, withTakeout } from "./requests.ts";

/**
 * Pulling the owner's history live: dialogs (dialogs.ts), then each chat oldest-first from its
 * cursor (chat-pages.ts), every request paced and flood waits handled (requests.ts). Telegram's
 * answers are gramjs `Api` objects; the client behind them is an interface (tests script it).
 */

export interface TelegramHistoryClient extends TakeoutClient {
  /** One page of the dialog list (messages.getDialogs). */
  dialogs(page: DialogPage, limit: number): Promise<Api.messages.TypeDialogs>;
  /** Up to `limit` messages of `peer` with ids above `afterId`, the oldest first (messages.getHistory). */
  history(peer: Api.TypeInputPeer, afterId: number, limit: number): Promise<Api.messages.TypeMessages>;
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

export async function pullHistory(
  client: TelegramHistoryClient,
  {
    historyRepository,
    cursors,
  }: { historyRepository: HistoryRepository; cursors: (chatId: number) => Promise<number> },
  options: PullOptions,
): Promise<PullSummary> {
  const pageSize = options.pageSize ?? 100;
  const counts: ImportCounts = { chats: 0, messages: 0, new: 0, updated: 0, unchanged: 0, skipped: {} };
  const progress: PullProgress = {
    chatsDone: 0,
    chatsTotal: 0,
    messages: 0,
    chat: undefined,
    floodWaitSeconds: 0,
  };
  // A copy each time: the receiver may keep it while the pull goes on.
  const report = () => options.onProgress?.({ ...progress });
  const requests = new TelegramRequests({
    paceMs: options.paceMs,
    maxFloodWaitSeconds: options.maxFloodWaitSeconds,
    signal: options.signal,
    sleep: options.sleep,
    onFloodWait: (total) => {
      progress.floodWaitSeconds = total;
      report();
    },
  });
  const notice = (text: string) => {
    progress.notice = text;
    report();
  };

  const importId = await withTakeout(client, notice, async () => {
    const dialogs = await listDialogs(
      (page, limit) => requests.send(() => client.dialogs(page, limit)),
      options,
    );
    progress.chatsTotal = dialogs.length;
    return asImport(historyRepository, options.ownerId, counts, async (id, session) => {
      for (const dialog of dialogs) {
        progress.chat = dialog.chat.title ?? String(dialog.chat.id);
        counts.chats++;
        await pullChat(dialog, {
          cursor: await cursors(dialog.cursorKey),
          fetchPage: (afterId) => requests.send(() => client.history(dialog.peer, afterId, pageSize)),
          session,
          importId: id,
          ownerId: options.ownerId,
          onPage: (page) => {
            counts.messages += page.messages;
            counts.new += page.inserted;
            counts.updated += page.updated;
            counts.unchanged += page.messages - page.inserted - page.updated;
            progress.messages = counts.messages;
            report();
          },
        });
        progress.chatsDone++;
        report();
      }
      return id;
    });
  });
  return { ...counts, importId, requests: requests.count, floodWaitSeconds: requests.floodWaitSeconds };
}

/**
 * `work` recorded as one import, as the desktop import records its own: succeeded with `counts`
 * as they are when it ends, or failed with its error (thrown on).
 */
async function asImport<T>(
  historyRepository: HistoryRepository,
  ownerId: number,
  counts: ImportCounts,
  work: (importId: number, session: ImportSession) => Promise<T>,
): Promise<T> {
  const importId = await historyRepository.startImport({ source: "userbot", fileName: "live", fileBytes: 0 });
  const session = await historyRepository.openImportSession();
  try {
    const result = await work(importId, session);
    await historyRepository.finishImport(importId, { status: "succeeded", counts, ownerId });
    return result;
  } catch (error) {
    await historyRepository
      .finishImport(importId, { status: "failed", counts, ownerId, error: (error as Error).message })
      .catch(() => undefined);
    throw error;
  } finally {
    await session.release();
  }
}
