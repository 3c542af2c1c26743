import { once } from "node:events";
import fs from "node:fs";
import { exportOpening, messagesPerChat, pretty, random } from "../import/generate-export.ts";
import { type TextSource, textSource } from "./corpus.ts";

/**
 * Writes a whole-account Telegram Desktop export (result.json, the shape of
 * bench/import/generate-export.ts: the same message kinds, entity arrays, replies, edits, forwards,
 * pretty-printed like Telegram) whose text is realistic (corpus.ts) and whose timing has sessions:
 * bursts of messages seconds to minutes apart, separated by hours or days. Half the chats are
 * Russian, half English; every tenth chat is a group of 3–8 members; the owner writes in every
 * chat. Deterministic for a given seed.
 */

export const OWNER_ID = 5_000_001;
const OWNER_NAME = "Алексей Смирнов";
const emoji = ["😂", "👍", "❤️", "🔥", "😅", "🙈", "🎉", "🤔", "😭", "👌"];
const ruFirst = [
  "Маша",
  "Дима",
  "Оля",
  "Саша",
  "Катя",
  "Игорь",
  "Лена",
  "Миша",
  "Настя",
  "Женя",
  "Таня",
  "Костя",
];
const ruLast = ["Иванов", "Петрова", "Соколов", "Кузнецова", "Попов", "Лебедева", "Новиков", "Морозова"];
const enFirst = [
  "Alice",
  "Ben",
  "Chloe",
  "Dan",
  "Emma",
  "Finn",
  "Grace",
  "Harry",
  "Ivy",
  "Jack",
  "Kate",
  "Leo",
];
const enLast = ["Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Thomas", "Walker"];
/** The span one chat's sessions are spread over, so busy chats have hours between sessions, quiet ones days. */
const CHAT_SPAN_SECONDS = 3 * 365 * 86_400;
const MEAN_SESSION_MESSAGES = 12;

export type CorpusSummary = {
  ownerId: number;
  bytes: number;
  messages: number;
  chats: number;
  groups: number;
  /** Messages with text per language, for the report. */
  textMessages: { ru: number; en: number };
  samples: { ru: string[]; en: string[] };
};

export async function generateCorpus(
  file: string,
  options: { messages: number; chats: number; seed?: number; text?: TextSource },
): Promise<CorpusSummary> {
  const rand = random(options.seed ?? 42);
  const pick = <T>(items: readonly T[]) => items[Math.floor(rand() * items.length)] as T;
  const text = options.text ?? textSource();
  const out = fs.createWriteStream(file);
  let pending = "";
  const write = async (chunk: string) => {
    pending += chunk;
    if (pending.length > 1 << 20) {
      if (!out.write(pending)) await once(out, "drain");
      pending = "";
    }
  };
  const summary: CorpusSummary = {
    ownerId: OWNER_ID,
    bytes: 0,
    messages: 0,
    chats: options.chats,
    groups: 0,
    textMessages: { ru: 0, en: 0 },
    samples: { ru: [], en: [] },
  };

  // Sized as bench/import sizes its chats (a few hold most messages), at least 2 each.
  const perChat = messagesPerChat(options.chats, options.messages, 2);
  await write(exportOpening(OWNER_ID));
  for (let c = 0; c < options.chats; c++) {
    const group = c % 10 === 9;
    // c % 4 alternates the language of groups (c = 9, 19, 29…) as well as of private chats.
    const russian = c % 4 < 2;
    const chatId = group ? 1_700_000_000 + c : 6_000_000 + c;
    const others = group
      ? Array.from({ length: 2 + Math.floor(rand() * 6) }, (_, i) => 7_000_000 + c * 10 + i)
      : [chatId];
    const members = [OWNER_ID, ...others];
    const names = new Map<number, string>([[OWNER_ID, OWNER_NAME]]);
    for (const id of others)
      names.set(
        id,
        russian
          ? `${pick(ruFirst)} ${pick(ruLast)}`
          : `${pick(enFirst)} ${pick(enLast)} ${rand() < 0.2 ? pick(emoji) : ""}`.trim(),
      );
    if (group) summary.groups++;
    const count = perChat[c] as number;
    const line = () => (russian ? text.russian(rand) : text.english(rand));
    await write(
      `   {\n    "name": ${JSON.stringify(group ? (russian ? `Группа ${c}` : `Group ${c}`) : names.get(chatId))},\n    "type": "${
        group ? "private_supergroup" : "personal_chat"
      }",\n    "id": ${chatId},\n    "messages": [\n`,
    );

    const sessions = Math.max(1, count / MEAN_SESSION_MESSAGES);
    // Busy chats: hours between sessions; quiet ones: up to a month (they end sooner, not in the future).
    const meanGap = Math.min(30 * 86_400, Math.max(3600, CHAT_SPAN_SECONDS / sessions));
    let time = 1_500_000_000 + Math.floor(rand() * 20_000_000);
    let left = 0; // messages left in the current session
    let speaker = OWNER_ID;
    for (let m = 1; m <= count; m++) {
      if (left === 0) {
        // A new session: at least 15 minutes after the last (past the 10-minute session gap),
        // usually hours, for quiet chats days; it opens with anyone.
        if (m > 1) time += 900 + Math.floor(-Math.log(1 - rand()) * meanGap);
        left = 1 + Math.floor(-Math.log(1 - rand()) * (MEAN_SESSION_MESSAGES - 1));
        speaker = pick(members);
      } else {
        time += 3 + Math.floor(rand() < 0.8 ? rand() * 90 : rand() * 400);
        // Bursts: a speaker often sends several messages in a row. In groups the owner is one
        // voice of several but still a frequent one.
        if (rand() < 0.45) speaker = group && rand() < 0.3 ? OWNER_ID : pick(members);
      }
      left--;
      const date = new Date(time * 1000).toISOString().slice(0, 19);
      const message: Record<string, unknown> = { id: m, type: "message", date, date_unixtime: String(time) };
      const roll = rand();
      if (m === 1 && group) {
        // The group's creation names its members, as a real export's service message does.
        Object.assign(message, {
          type: "service",
          actor: OWNER_NAME,
          actor_id: `user${OWNER_ID}`,
          action: "invite_members",
          members: others.map((id) => names.get(id)),
          text: "",
          text_entities: [],
        });
      } else if (roll < 0.01) {
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
            forwarded_from: russian ? "Канал новостей" : "News channel",
            forwarded_from_id: "channel1500000001",
          });
        // Stickers and voice carry no text; half the photos have a caption.
        const textless = roll < 0.04 || (roll >= 0.07 && roll < 0.08) || (roll < 0.07 && rand() < 0.5);
        const body = textless ? "" : line();
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
            text: body,
            text_entities: body ? [{ type: "plain", text: body }] : [],
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
        } else if (roll < 0.12) {
          const link = "https://example.com/article";
          message.text = [`${body} `, { type: "link", text: link }, " 👀"];
          message.text_entities = [
            { type: "plain", text: `${body} ` },
            { type: "link", text: link },
            { type: "plain", text: " 👀" },
          ];
        } else {
          message.text = body;
          message.text_entities = [{ type: "plain", text: body }];
        }
        if (body) {
          const lang = russian ? "ru" : "en";
          summary.textMessages[lang]++;
          if (summary.samples[lang].length < 8 && rand() < 0.01) summary.samples[lang].push(body);
        }
      }
      summary.messages++;
      await write(`     ${pretty(message, "     ")}${m < count ? "," : ""}\n`);
    }
    await write(`    ]\n   }${c < options.chats - 1 ? "," : ""}\n`);
  }
  await write("  ]\n }\n}\n");
  out.end(pending);
  await once(out, "finish");
  summary.bytes = fs.statSync(file).size;
  return summary;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, messages] = process.argv.slice(2);
  const result = await generateCorpus(file as string, { messages: Number(messages ?? 1000), chats: 500 });
  process.stdout.write(`${JSON.stringify(result, null, 1)}\n`);
}
