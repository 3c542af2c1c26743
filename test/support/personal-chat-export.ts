import fs from "node:fs";
import path from "node:path";
import { exportTextMessage } from "./telegram-export.ts";

/**
 * A small Telegram Desktop export (current format) of personal chats, one per friend, written by
 * the test or benchmark that needs it: the real fixtures hold only group chats, and the bot's
 * friend chats need a personal history between the owner and a friend. Short sessions of
 * several-message turns, as people text.
 */
export function writePersonalChatExport(
  dir: string,
  owner: { id: number; name: string },
  friends: { id: number; name: string } | { id: number; name: string }[],
): string {
  const script: [who: "owner" | "friend", text: string][][] = [
    [
      ["friend", "hey"],
      ["friend", "are you around tonight?"],
      ["owner", "yeah"],
      ["owner", "what's up"],
      ["friend", "wanna grab pizza at 8?"],
      ["owner", "sure"],
      ["owner", "the usual place?"],
      ["friend", "yes!"],
    ],
    [
      ["owner", "running late"],
      ["owner", "10 min"],
      ["friend", "no worries"],
      ["friend", "i'll order"],
      ["owner", "thanks!!"],
    ],
    [
      ["friend", "did you see the match"],
      ["owner", "lol yes"],
      ["owner", "that last goal"],
      ["owner", "unreal"],
      ["friend", "right??"],
      ["friend", "rematch on sunday"],
      ["owner", "count me in"],
    ],
  ];
  const start = Date.UTC(2024, 4, 1, 18, 0, 0) / 1000;
  const chatOf = (friend: { id: number; name: string }) => {
    let id = 1;
    const messages = script.flatMap((session, s) =>
      session.map(([who, text], m) => {
        const unix = start + s * 86_400 + m * 40;
        return exportTextMessage(id++, who === "owner" ? owner : friend, unix, text);
      }),
    );
    return { name: friend.name, type: "personal_chat", id: friend.id, messages };
  };
  const file = path.join(dir, "personal_chat_export.json");
  fs.writeFileSync(
    file,
    JSON.stringify({
      personal_information: {
        user_id: owner.id,
        first_name: owner.name,
        last_name: "",
        phone_number: "",
        bio: "",
      },
      chats: { about: "", list: (Array.isArray(friends) ? friends : [friends]).map(chatOf) },
    }),
  );
  return file;
}
