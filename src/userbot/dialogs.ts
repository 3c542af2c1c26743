import { Api } from "telegram";
import { markPeer } from "../history/identity.ts";
import type { ChatRecord } from "../history/message.ts";
import { type Entities, entitiesOf, markedPeer, userName } from "./live-message.ts";

/**
 * The owner's dialog list as the chats to pull: each dialog as the chat row an imported export
 * would have, with the peer to ask Telegram for its messages. Telegram's paging is followed here;
 * the requests themselves are the caller's (paced, flood waits handled).
 */

export type Dialog = {
  chat: ChatRecord;
  peer: Api.TypeInputPeer;
  kind: "user" | "bot" | "group" | "channel";
  /** Whose cursor: the dialog's own key (a migrated group's differs from the chat it is stored in). */
  cursorKey: number;
  /** Added to message ids as stored (a migrated group's messages, as Telegram Desktop exports them). */
  idShift: number;
};

/** Where a page of the dialog list starts (messages.getDialogs' offsets). */
export type DialogPage = { offsetDate: number; offsetId: number; offsetPeer: Api.TypeInputPeer };

/**
 * Telegram Desktop exports a basic group migrated to a supergroup as one chat: the supergroup,
 * with the old group's messages under ids shifted by this much (the negative ids in exports).
 */
export const MIGRATED_ID_SHIFT = -1_000_000_000;

const DIALOG_PAGE = 100;

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

/** The page after `response`, or undefined when it was the last. */
function nextPage(
  response: Exclude<Api.messages.TypeDialogs, Api.messages.DialogsNotModified>,
  entities: Entities,
  ownerId: number,
): DialogPage | undefined {
  const last = response.dialogs.at(-1);
  const lastMessage = response.messages.at(-1);
  if (
    !(response instanceof Api.messages.DialogsSlice) ||
    response.dialogs.length < DIALOG_PAGE ||
    !last ||
    !lastMessage
  )
    return undefined;
  const next = dialogOf(last.peer, entities, ownerId);
  if (!next) return undefined;
  return {
    offsetDate: "date" in lastMessage ? lastMessage.date : 0,
    offsetId: last.topMessage,
    offsetPeer: next.peer,
  };
}

/** Personal chats always; groups and channels when asked. Each dialog once, in Telegram's order. */
export async function listDialogs(
  fetchPage: (page: DialogPage, limit: number) => Promise<Api.messages.TypeDialogs>,
  options: { ownerId: number; groups?: boolean | undefined; channels?: boolean | undefined },
): Promise<Dialog[]> {
  const dialogs: Dialog[] = [];
  const seen = new Set<number>();
  let page: DialogPage | undefined = { offsetDate: 0, offsetId: 0, offsetPeer: new Api.InputPeerEmpty() };
  while (page) {
    const response = await fetchPage(page, DIALOG_PAGE);
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
    page = nextPage(response, entities, options.ownerId);
  }
  return dialogs;
}
