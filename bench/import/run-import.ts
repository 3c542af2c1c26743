/**
 * One measured import, run as its own process so its peak RSS is its own:
 *   run-import.ts streaming <file> <database url>   our importer (twin import)
 *   run-import.ts whole <file> <database url>       baseline: JSON.parse the whole file, same bulk path
 * Prints one JSON line: {mode, messages, seconds, peakRssMb}.
 */
import fs from "node:fs";
import { loadConfig } from "../../src/config/config.ts";
import { openDatabase } from "../../src/db/client.ts";
import { BatchBuilder } from "../../src/history/batch-builder.ts";
import { parseExportMessage } from "../../src/history/desktop-import/export-message.ts";
import { importDesktopExport } from "../../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../../src/history/history.repository.ts";
import { exportChatKind, markPeer } from "../../src/history/identity.ts";
import type { ChatRecord } from "../../src/history/message.ts";

const [mode, file, url] = process.argv.slice(2) as [string, string, string];
const BATCH = 25_000;
const database = await openDatabase(loadConfig({ DATABASE_URL: url }));
const historyRepository = createHistoryRepository(database);
const started = performance.now();
let messages = 0;

if (mode === "streaming") {
  const summary = await importDesktopExport(
    { historyRepository },
    { input: file, timeZone: "UTC", batchSize: BATCH },
  );
  messages = summary.new;
} else {
  // The obvious approach, done well: one JSON.parse, then the same COPY batches, written while
  // the next batch is built, exactly as the streaming importer does.
  const root = JSON.parse(fs.readFileSync(file, "utf8"));
  const chats = [...root.chats.list, ...(root.left_chats?.list ?? [])];
  const importId = await historyRepository.startImport({
    source: "desktop_export",
    fileName: "baseline",
    fileBytes: 0,
  });
  const session = await historyRepository.openImportSession();
  let open: ChatRecord | undefined;
  const batch = new BatchBuilder(importId, () => open);
  let inFlight: Promise<unknown> = Promise.resolve();
  const flush = async () => {
    await inFlight;
    inFlight = session.writeBatch(batch.seal(), { importId, committedBytes: 0 });
  };
  for (const chat of chats) {
    open = {
      id: markPeer(exportChatKind(chat.type) ?? "user", chat.id),
      type: chat.type,
      title: chat.name ?? null,
    };
    batch.addChat(open);
    const seen = new Set<number>();
    for (const raw of chat.messages) {
      const message = parseExportMessage(raw, { chatId: open.id, timeZone: "UTC" });
      if (seen.has(message.messageId)) continue;
      seen.add(message.messageId);
      batch.addMessage(message);
      messages++;
      if (batch.size >= BATCH) await flush();
    }
  }
  await flush();
  await inFlight;
  await session.release();
  await historyRepository.setOwner(root.personal_information.user_id, null, "UTC");
}

const seconds = (performance.now() - started) / 1000;
await database.close();
const peakRssMb = process.resourceUsage().maxRSS / 1024;
process.stdout.write(`${JSON.stringify({ mode, messages, seconds, peakRssMb })}\n`);
process.exit(0);
