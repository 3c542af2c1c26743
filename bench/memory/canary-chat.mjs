// A small personal chat of the IRC fixture's owner with a made-up friend, as a Telegram Desktop
// export: the second chat of a multi-chat history, where the memory bench plants its canary.
//   node bench/memory/canary-chat.mjs <irc export.json> <out.json>
import { readFileSync, writeFileSync } from "node:fs";

const [source, out] = process.argv.slice(2);
const { personal_information: me } = JSON.parse(readFileSync(source, "utf8"));
const friend = { id: 5_550_001, name: "Morgan" };
const lines = [
  ["Morgan", "hey, are you around this weekend?"],
  ["me", "yeah mostly, fixing the home server on saturday"],
  ["Morgan", "the old dell one?"],
  ["me", "that one, the disk keeps dropping out of the raid"],
  ["Morgan", "want me to bring the spare drive?"],
  ["me", "that would be great, thanks"],
  ["Morgan", "cool, see you at noon"],
  ["me", "noon works"],
];
const messages = [];
let id = 1;
for (let day = 0; day < 12; day++) {
  lines.forEach(([who, text], i) => {
    const when = new Date(Date.UTC(2008, 4, 1 + day, 18, i * 2));
    const author =
      who === "me"
        ? { from: me.first_name, from_id: `user${me.user_id}` }
        : { from: friend.name, from_id: `user${friend.id}` };
    messages.push({
      id: id++,
      type: "message",
      date: when.toISOString().slice(0, 19),
      date_unixtime: String(Math.floor(when.getTime() / 1000)),
      ...author,
      text: day === 0 ? text : `${text} (${day})`,
      text_entities: [{ type: "plain", text: day === 0 ? text : `${text} (${day})` }],
    });
  });
}
const chat = { name: friend.name, type: "personal_chat", id: friend.id, messages };
writeFileSync(out, JSON.stringify({ personal_information: me, chats: { about: "", list: [chat] } }, null, 1));
