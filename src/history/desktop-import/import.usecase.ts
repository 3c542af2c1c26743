import fs from "node:fs";
import path from "node:path";
import createDebug from "debug";
import { ownerTimeZone } from "../../config/config.ts";
import { addTime, describeTimings } from "../../step-timings.ts";
import { BatchBuilder } from "../batch-builder.ts";
import { HistoryError } from "../history.errors.ts";
import type { HistoryRepository } from "../history.repository.ts";
import type { ImportCounts } from "../history.tables.ts";
import type { ChatRecord } from "../message.ts";
import { chooseOwner, type Owner, parseOwnerHint, surveyExport } from "./export-owner.ts";
import { ExportReader, type InputPlace, type InputRepairs } from "./export-reader.ts";
import { fileChunks } from "./file-chunks.ts";
import { ImportInterruptedError } from "./import.errors.ts";

const debug = createDebug("twin:import");

export type ImportProgress = { bytes: number; totalBytes: number; messages: number };

export type ImportOptions = {
  /** result.json, or the export folder that holds it. */
  input: string;
  /**
   * `--owner`, for exports without personal_information: a user or channel id (`123`, `user123`,
   * `channel123`, `-100123`) or a display name, matched against the export's senders.
   */
  owner?: string | undefined;
  /** The owner's time zone for old exports' local dates; default: the stored one, else this machine's. */
  timeZone?: string | undefined;
  batchSize: number;
  onProgress?: (progress: ImportProgress) => void;
  /** Stops between read chunks; every batch committed before stays. */
  signal?: AbortSignal | undefined;
  /** An import silent this long has lost its process (TWIN_WORKER_STALE_S); default 60. */
  staleSeconds?: number | undefined;
};

export type ImportSummary = ImportCounts & {
  importId: number;
  file: string;
  owner: { id: number; name: string | null };
  timeZone: string;
  seconds: number;
  /** What was taken but repaired or is suspect, each with where it first occurred. */
  warnings: string[];
};

/** Messages dated later than this past the import's own clock are suspect (a wrong clock, an edited file). */
const FUTURE_TOLERANCE_MS = 24 * 3_600_000;

/** "byte 1234, chat -100…, message 55": where something was found (pure). */
export function describePlace(place: InputPlace): string {
  return [
    `byte ${place.offset}`,
    place.chatId !== undefined ? `chat ${place.chatId}` : undefined,
    place.messageId !== undefined ? `message ${place.messageId}` : undefined,
  ]
    .filter(Boolean)
    .join(", ");
}

/** The summary's warnings (pure): repairs of the input and messages dated in the future. */
export function importWarnings(
  repairs: InputRepairs,
  future: { count: number; first?: { chatId: number; messageId: number; sentAt: number } | undefined },
): string[] {
  const warnings: string[] = [];
  if (repairs.nul.count > 0)
    warnings.push(
      `${repairs.nul.count} NUL character(s) removed from texts (PostgreSQL cannot store them); first at ${repairs.nul.first ? describePlace(repairs.nul.first) : "?"}`,
    );
  if (repairs.invalidUtf8.count > 0)
    warnings.push(
      `${repairs.invalidUtf8.count} invalid UTF-8 sequence(s) read as U+FFFD; first at ${repairs.invalidUtf8.first ? describePlace(repairs.invalidUtf8.first) : "?"}`,
    );
  if (future.count > 0 && future.first)
    warnings.push(
      `${future.count} message(s) dated in the future, first chat ${future.first.chatId}, message ${future.first.messageId} (${new Date(future.first.sentAt).toISOString()}); datasets count their --since window from the latest message not in the future`,
    );
  return warnings;
}

/** Accepts the export folder (Telegram Desktop writes result.json into it) or the file itself. */
export function resolveExportFile(input: string): string {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(input);
  } catch {
    throw new HistoryError(`${input}: no such file or folder`);
  }
  if (!stat.isDirectory()) return input;
  const file = path.join(input, "result.json");
  if (!fs.existsSync(file))
    throw new HistoryError(`${input}: the folder holds no result.json (is it a JSON export?)`);
  return file;
}

/**
 * Imports a Telegram Desktop export into the history store, streaming: memory holds one read
 * chunk and one batch whatever the file size. Each batch is its own transaction, written while the
 * next one is parsed; a failure keeps every batch committed before it, and a re-run adds only what
 * is missing because messages are keyed (chat_id, message_id).
 */
export async function importDesktopExport(
  { historyRepository }: { historyRepository: HistoryRepository },
  options: ImportOptions,
): Promise<ImportSummary> {
  const started = performance.now();
  const file = resolveExportFile(options.input);
  const totalBytes = fs.statSync(file).size;
  const storedOwner = await historyRepository.getOwner();
  const timeZone = ownerTimeZone(options.timeZone, storedOwner?.timeZone);
  const fileName = path.basename(file);
  const hint = options.owner?.trim() ? parseOwnerHint(options.owner) : undefined;
  const stored = storedOwner ? { id: storedOwner.personId, name: storedOwner.name } : undefined;
  // The owner is decided before a row is written. With a stored owner that --owner does not
  // contradict, the stream itself checks personal_information, so the file is read once.
  const settled = stored && (!hint || ("ids" in hint && hint.ids.includes(stored.id)));
  const survey = settled ? undefined : await surveyExport(file, timeZone, options.signal);
  const expectedOwner: Owner = survey
    ? chooseOwner({ file: fileName, survey, hint, stored })
    : (stored as Owner);
  const ownerSilent = survey !== undefined && !survey.personal && !survey.senders.has(expectedOwner.id);

  let openChat: ChatRecord | undefined;
  const chatIds = new Set<number>();
  const counts: ImportCounts = { chats: 0, messages: 0, new: 0, updated: 0, unchanged: 0, skipped: {} };
  const future: { count: number; first?: { chatId: number; messageId: number; sentAt: number } } = {
    count: 0,
  };
  const now = Date.now();
  const skip = (reason: string) => {
    counts.skipped[reason] = (counts.skipped[reason] ?? 0) + 1;
  };

  const staleSeconds = options.staleSeconds ?? 60;
  for (const gone of await historyRepository.markInterruptedImports(staleSeconds))
    debug("import %d of %s lost its process: marked interrupted", gone.id, gone.fileName);
  const importId = await historyRepository.startImport({
    source: "desktop_export",
    fileName,
    fileBytes: totalBytes,
  });
  const heartbeat = historyRepository.keepImportAlive(importId, staleSeconds);
  const batch = new BatchBuilder(importId, () => openChat);
  const session = await historyRepository.openImportSession({ bulkIfEmpty: true });
  const timings = session.timings;
  let inFlight: Promise<void> = Promise.resolve();

  const flush = async (committedBytes: number) => {
    const waiting = performance.now();
    await inFlight;
    addTime(timings, "parser waits for the database", waiting);
    const sealed = batch.seal();
    inFlight = session.writeBatch(sealed, { importId, committedBytes }).then((result) => {
      counts.new += result.inserted;
      counts.updated += result.updated;
      counts.unchanged += sealed.messageCount - result.inserted - result.updated;
      debug("batch of %d committed up to byte %d", sealed.messageCount, committedBytes);
    });
    // Report a failure at the next await, not as an unhandled rejection meanwhile.
    inFlight.catch(() => undefined);
  };

  const reader = new ExportReader(fileName, timeZone, {
    onPersonalInformation(info) {
      if (info.userId !== expectedOwner.id) {
        throw new HistoryError(
          `${fileName} is the history of user ${info.userId}, but this database holds ` +
            `${expectedOwner.name ?? "another account"} (${expectedOwner.id}); use another TWIN_DATA_DIR or DATABASE_URL.`,
        );
      }
    },
    onChat(chat) {
      openChat = chat;
      chatIds.add(chat.id);
      counts.chats = chatIds.size;
      batch.addChat(chat);
    },
    onMessage(message) {
      counts.messages++;
      if (message.sentAt > now + FUTURE_TOLERANCE_MS) {
        future.count++;
        future.first ??= { chatId: message.chatId, messageId: message.messageId, sentAt: message.sentAt };
      }
      batch.addMessage(message);
    },
    onDuplicate() {
      skip("duplicate message id in the same chat");
    },
  });

  try {
    let bytes = 0;
    for await (const chunk of fileChunks(file)) {
      if (options.signal?.aborted) throw new ImportInterruptedError(fileName);
      const parsing = performance.now();
      reader.push(chunk);
      addTime(timings, "parse and encode", parsing);
      bytes += chunk.length;
      if (batch.size >= options.batchSize) await flush(reader.offset);
      options.onProgress?.({ bytes, totalBytes, messages: counts.messages });
    }
    reader.end();
    await flush(totalBytes);
    await inFlight;
    await session.finishLoad();
    // A stored owner keeps the name it has; a new one is named by the export.
    await historyRepository.setOwner(expectedOwner.id, expectedOwner.name, timeZone);
    await historyRepository.finishImport(importId, {
      status: "succeeded",
      counts,
      ownerId: expectedOwner.id,
    });
    return {
      ...counts,
      importId,
      file,
      owner: expectedOwner,
      timeZone,
      seconds: (performance.now() - started) / 1000,
      warnings: [
        ...(ownerSilent
          ? [
              `the owner (${expectedOwner.id}) wrote nothing in ${fileName}: its chats give the dataset no examples`,
            ]
          : []),
        ...importWarnings(reader.repairs, future),
      ],
    };
  } catch (error) {
    // The batch being written commits or rolls back; the one being filled is never written.
    await inFlight.catch(() => undefined);
    await historyRepository
      .finishImport(importId, {
        status: error instanceof ImportInterruptedError ? "interrupted" : "failed",
        counts,
        ownerId: stored?.id ?? null,
        error: (error as Error).message,
      })
      .catch(() => undefined);
    throw error;
  } finally {
    heartbeat.stop();
    await session.release();
    debug("time by step: %s", describeTimings(timings));
  }
}
