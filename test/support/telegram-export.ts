import fs from "node:fs";
import path from "node:path";

/** Someone in an export: a Telegram user id and a display name. */
export type ExportPerson = { id: number; name: string };

/** One text message of a Telegram Desktop export (current format), sent at `unix` seconds. */
export function exportTextMessage(id: number, who: ExportPerson, unix: number, text: string) {
  return {
    id,
    type: "message",
    date: new Date(unix * 1000).toISOString().slice(0, 19),
    date_unixtime: String(unix),
    from: who.name,
    from_id: `user${who.id}`,
    text,
    text_entities: [{ type: "plain", text }],
  };
}

/** A whole-account export of `owner` holding `chats`, written as `dir`/result.json; returns its path. */
export function writeAccountExport(dir: string, owner: ExportPerson, chats: object[]): string {
  const file = path.join(dir, "result.json");
  const me = { user_id: owner.id, first_name: owner.name, last_name: "", phone_number: "", bio: "" };
  fs.writeFileSync(file, JSON.stringify({ personal_information: me, chats: { about: "", list: chats } }));
  return file;
}
