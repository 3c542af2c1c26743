import { once } from "node:events";
import fs from "node:fs";

/**
 * Writes a synthetic whole-account Telegram Desktop export (current format, pretty-printed like
 * Telegram writes it) with realistic shapes: short bursts, Cyrillic, emoji, entity arrays, replies,
 * edits, stickers, photos, voice, forwards and service messages. Deterministic for a given seed,
 * chat by chat: with `grow` (e.g. 1.1) each chat holds that many times its messages, the first ones
 * exactly as without it — the newer export of the same account, as a re-export gives.
 */

const OWNER_ID = 5_000_001;
const ru =
  "привет как дела что делаешь сегодня завтра давай ну да нет может быть слушай короче вообще блин норм пойдём".split(
    " ",
  );
const en =
  "hey ok yeah sure lol what are you doing tonight maybe later cool thanks see you soon sounds good".split(
    " ",
  );
const emoji = ["😂", "👍", "❤️", "🔥", "😅", "🙈", "🎉", "🤔", "😭", "👌"];

/**
 * How many messages each of `chats` chats holds (Zipf-like: a few chats hold most messages, as in
 * a real account), each at least `least`, `messages` in all.
 */
export function messagesPerChat(chats: number, messages: number, least: number): number[] {
  const weights = Array.from({ length: chats }, (_, i) => 1 / (i + 1) ** 0.8);
  const totalWeight = weights.reduce((a, b) => a + b, 0);
  const perChat = weights.map((w) => Math.max(least, Math.round((w / totalWeight) * messages)));
  perChat[0] = (perChat[0] as number) + messages - perChat.reduce((a, b) => a + b, 0);
  return perChat;
}

/** An export file's text up to its first chat: the owner's personal information, the list opened. */
export function exportOpening(ownerId: number): string {
  return `{\n "about": "Here is the data you requested.",\n "personal_information": ${pretty(
    {
      user_id: ownerId,
      first_name: "Алексей",
      last_name: "Смирнов",
      phone_number: "+7 000 000 0000",
      bio: "",
    },
    " ",
  )},\n "chats": {\n  "about": "This page lists all chats from this export.",\n  "list": [\n`;
}

/** mulberry32: a small seeded generator, so every bench generates the same export for a seed. */
export function random(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** JSON as Telegram Desktop indents it, nested under `indent`. */
export function pretty(value: unknown, indent: string): string {
  return JSON.stringify(value, null, 1).replace(/\n/g, `\n${indent}`);
}

export async function generateExport(
  file: string,
  options: { messages: number; chats: number; seed?: number; grow?: number },
) {
  const seed = options.seed ?? 42;
  let rand = random(seed);
  const pick = <T>(items: readonly T[]) => items[Math.floor(rand() * items.length)] as T;
  const out = fs.createWriteStream(file);
  let pending = "";
  const write = async (text: string) => {
    pending += text;
    if (pending.length > 1 << 20) {
      if (!out.write(pending)) await once(out, "drain");
      pending = "";
    }
  };

  const words = (n: number) => {
    const lang = rand() < 0.6 ? ru : en;
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(pick(lang));
    if (rand() < 0.25) parts.push(pick(emoji));
    return parts.join(" ");
  };

  const perChat = messagesPerChat(options.chats, options.messages, 1);
  await write(exportOpening(OWNER_ID));
  for (let c = 0; c < options.chats; c++) {
    rand = random(seed * 7919 + c); // each chat its own stream: growing one leaves the others as they were
    const group = c % 10 === 9;
    const chatId = group ? 1_700_000_000 + c : 6_000_000 + c;
    const members = group
      ? [OWNER_ID, ...Array.from({ length: 8 }, (_, i) => 7_000_000 + c * 10 + i)]
      : [OWNER_ID, chatId];
    const names = new Map(
      members.map((id, i) => [id, id === OWNER_ID ? "Алексей Смирнов" : `Друг ${c}-${i} ${pick(emoji)}`]),
    );
    await write(
      `   {\n    "name": ${JSON.stringify(group ? `Группа ${c}` : names.get(chatId))},\n    "type": "${
        group ? "private_supergroup" : "personal_chat"
      }",\n    "id": ${chatId},\n    "messages": [\n`,
    );
    let time = 1_600_000_000 + Math.floor(rand() * 10_000_000);
    let speaker = pick(members);
    const count = Math.round((perChat[c] as number) * (options.grow ?? 1));
    for (let m = 1; m <= count; m++) {
      time += rand() < 0.8 ? 5 + Math.floor(rand() * 120) : 3600 + Math.floor(rand() * 86_400 * 3);
      if (rand() < 0.4) speaker = pick(members);
      const date = new Date(time * 1000).toISOString().slice(0, 19);
      const message: Record<string, unknown> = { id: m, type: "message", date, date_unixtime: String(time) };
      const roll = rand();
      if (roll < 0.01) {
        Object.assign(message, {
          type: "service",
          actor: names.get(speaker),
          actor_id: `user${speaker}`,
          action: "pin_message",
          message_id: Math.max(1, m - 3),
          text: "",
          text_entities: [],
        });
      } else {
        message.from = names.get(speaker);
        message.from_id = `user${speaker}`;
        if (rand() < 0.05) Object.assign(message, { edited: date, edited_unixtime: String(time + 30) });
        if (rand() < 0.15 && m > 1)
          message.reply_to_message_id = m - 1 - Math.floor(rand() * Math.min(m - 1, 5));
        if (rand() < 0.01)
          Object.assign(message, {
            forwarded_from: "Канал новостей",
            forwarded_from_id: "channel1500000001",
          });
        const text = words(1 + Math.floor(rand() < 0.9 ? rand() * 8 : rand() * 60));
        if (roll < 0.04) {
          Object.assign(message, {
            file: "(File not included. Change data exporting settings to download.)",
            file_name: "sticker.webp",
            thumbnail: "(File not included. Change data exporting settings to download.)",
            media_type: "sticker",
            sticker_emoji: pick(emoji),
            width: 512,
            height: 512,
            text: "",
            text_entities: [],
          });
        } else if (roll < 0.07) {
          Object.assign(message, {
            photo: "(File not included. Change data exporting settings to download.)",
            width: 1280,
            height: 960,
            text: rand() < 0.5 ? "" : text,
            text_entities: [],
          });
        } else if (roll < 0.08) {
          Object.assign(message, {
            file: "(File not included. Change data exporting settings to download.)",
            media_type: "voice_message",
            mime_type: "audio/ogg",
            duration_seconds: 1 + Math.floor(rand() * 60),
            text: "",
            text_entities: [],
          });
        } else if (roll < 0.18) {
          const link = "https://example.com/article";
          message.text = [`${text} `, { type: "link", text: link }, " 👀"];
          message.text_entities = [
            { type: "plain", text: `${text} ` },
            { type: "link", text: link },
            { type: "plain", text: " 👀" },
          ];
        } else {
          message.text = text;
          message.text_entities = [{ type: "plain", text }];
        }
      }
      await write(`     ${pretty(message, "     ")}${m < count ? "," : ""}\n`);
    }
    await write(`    ]\n   }${c < options.chats - 1 ? "," : ""}\n`);
  }
  await write("  ]\n }\n}\n");
  out.end(pending);
  await once(out, "finish");
  return { ownerId: OWNER_ID, bytes: fs.statSync(file).size };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, messages] = process.argv.slice(2);
  const result = await generateExport(file as string, { messages: Number(messages ?? 1000), chats: 500 });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
