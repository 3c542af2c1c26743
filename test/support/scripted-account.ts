import { Api } from "telegram";
import { FloodWaitError, RPCError } from "telegram/errors/index.js";
import { markedPeer } from "../../src/userbot/live-message.ts";
import type { TelegramHistoryClient } from "../../src/userbot/pull.ts";

/**
 * A scripted Telegram account for the userbot's tests: it answers getDialogs and getHistory with
 * real gramjs `Api` objects, as Telegram's servers would, and can misbehave on cue (flood waits,
 * a crash after some requests). Messages are generated from a seed so a test knows what to expect.
 */

const big = (n: number) => BigInt(n) as never;
const BASE_DATE = 1_700_000_000;

export type ScriptedChat = {
  peer: Api.TypePeer;
  entity: Api.User | Api.Chat | Api.Channel;
  messages: (Api.Message | Api.MessageService)[];
};

export class ScriptedAccount implements TelegramHistoryClient {
  readonly owner = new Api.User({
    id: big(121569222),
    self: true,
    firstName: "Hamid",
    lastName: "Khorshidian",
    accessHash: big(1),
  });
  readonly users = new Map<number, Api.User>([[121569222, this.owner]]);
  readonly chats: ScriptedChat[] = [];
  readonly historyCalls: { chat: number; afterId: number }[] = [];
  requests = 0;
  /** Fail the request with this number (1-based, all requests counted) with a flood wait. */
  floodWaits = new Map<number, number>();
  /** Throw after this many requests, as a crashed process would stop. */
  crashAfter: number | undefined;
  /** A takeout session: granted, or delayed by this many seconds (TAKEOUT_INIT_DELAY_n). */
  takeout: "grant" | number = "grant";
  takeoutsFinished: boolean[] = [];

  async startTakeout(): Promise<void> {
    if (this.takeout === undefined)
      throw new RPCError("TAKEOUT_REQUIRED", new Api.account.InitTakeoutSession({}), 400);
    if (this.takeout !== "grant") {
      throw new RPCError(`TAKEOUT_INIT_DELAY_${this.takeout}`, new Api.account.InitTakeoutSession({}), 420);
    }
  }

  async finishTakeout(success: boolean): Promise<void> {
    this.takeoutsFinished.push(success);
  }

  addUser(
    id: number,
    firstName: string,
    extra: Partial<ConstructorParameters<typeof Api.User>[0]> = {},
  ): Api.User {
    const user = new Api.User({ id: big(id), firstName, accessHash: big(id * 7), ...extra });
    this.users.set(id, user);
    return user;
  }

  /** A personal chat with `user` of `count` messages, both sides writing, some stickers, replies and edits. */
  personalChat(user: Api.User, count: number): ScriptedChat {
    const peer = new Api.PeerUser({ userId: user.id });
    const chat: ScriptedChat = { peer, entity: user, messages: [] };
    this.chats.push(chat);
    this.extend(chat, count);
    return chat;
  }

  /** A supergroup where `members` write, one of them a deleted account, with a service message first. */
  group(id: number, title: string, members: Api.User[], count: number): ScriptedChat {
    const channel = new Api.Channel({
      id: big(id),
      title,
      megagroup: true,
      accessHash: big(id * 3),
      photo: new Api.ChatPhotoEmpty(),
      date: BASE_DATE,
    });
    const peer = new Api.PeerChannel({ channelId: channel.id });
    const chat: ScriptedChat = { peer, entity: channel, messages: [] };
    chat.messages.push(
      new Api.MessageService({
        id: 1,
        peerId: peer,
        fromId: new Api.PeerUser({ userId: this.owner.id }),
        date: BASE_DATE,
        action: new Api.MessageActionChannelCreate({ title }),
      }),
    );
    for (let i = 2; i <= count; i++) {
      const author = members[i % members.length] as Api.User;
      chat.messages.push(
        new Api.Message({
          id: i,
          peerId: peer,
          fromId: new Api.PeerUser({ userId: author.id }),
          date: BASE_DATE + i * 60,
          message: `group message ${i}`,
        }),
      );
    }
    this.chats.push(chat);
    return chat;
  }

  /**
   * The basic group `successor` was migrated from: a dialog of its own, with its own message ids,
   * ending in the migration's service message.
   */
  migratedGroup(id: number, successor: ScriptedChat, members: Api.User[], count: number): ScriptedChat {
    const channel = successor.entity as Api.Channel;
    const group = new Api.Chat({
      id: big(id),
      title: channel.title,
      photo: new Api.ChatPhotoEmpty(),
      participantsCount: members.length,
      date: BASE_DATE,
      version: 1,
      deactivated: true,
      migratedTo: new Api.InputChannel({ channelId: channel.id, accessHash: channel.accessHash ?? big(0) }),
    });
    const peer = new Api.PeerChat({ chatId: group.id });
    const chat: ScriptedChat = { peer, entity: group, messages: [] };
    for (let i = 1; i < count; i++) {
      const author = members[i % members.length] as Api.User;
      chat.messages.push(
        new Api.Message({
          id: i,
          peerId: peer,
          fromId: new Api.PeerUser({ userId: author.id }),
          date: BASE_DATE - (count - i) * 60,
          message: `old group message ${i}`,
          ...(i % 5 === 0 ? { replyTo: new Api.MessageReplyHeader({ replyToMsgId: i - 1 }) } : {}),
        }),
      );
    }
    chat.messages.push(
      new Api.MessageService({
        id: count,
        peerId: peer,
        fromId: new Api.PeerUser({ userId: this.owner.id }),
        date: BASE_DATE,
        action: new Api.MessageActionChatMigrateTo({ channelId: channel.id }),
      }),
    );
    this.chats.push(chat);
    return chat;
  }

  /** New messages in a personal chat (for incremental pulls). */
  extend(chat: ScriptedChat, count: number): void {
    const peer = chat.peer as Api.PeerUser;
    const start = chat.messages.length;
    for (let n = start + 1; n <= start + count; n++) {
      const out = n % 3 === 0;
      const base = { id: n, peerId: peer, out, date: BASE_DATE + n * 90 };
      if (n % 17 === 0) {
        chat.messages.push(new Api.Message({ ...base, message: "", media: sticker(n % 2 ? "😂" : "👍") }));
      } else {
        chat.messages.push(
          new Api.Message({
            ...base,
            message: `${out ? "me" : "them"}: message ${n}`,
            ...(n % 11 === 0 ? { replyTo: new Api.MessageReplyHeader({ replyToMsgId: n - 1 }) } : {}),
            ...(n % 13 === 0 ? { editDate: base.date + 30 } : {}),
          }),
        );
      }
    }
  }

  /**
   * Personal chats (their first `upTo` messages) as a Telegram Desktop export writes them: the
   * same history the account serves live, for checking that both sources give the same rows.
   */
  exportOf(chats: ScriptedChat[], upTo = Number.POSITIVE_INFINITY) {
    const name = (u: Api.User) => [u.firstName, u.lastName].filter(Boolean).join(" ");
    const list = chats.map((chat) => {
      const user = chat.entity as Api.User;
      const messages = chat.messages.slice(0, upTo).map((m) => {
        const message = m as Api.Message;
        const author = message.out ? this.owner : user;
        const media = message.media as Api.MessageMediaDocument | undefined;
        const sticker =
          media?.document instanceof Api.Document
            ? (media.document.attributes.find(
                (a) => a instanceof Api.DocumentAttributeSticker,
              ) as Api.DocumentAttributeSticker)
            : undefined;
        const reply = message.replyTo as Api.MessageReplyHeader | undefined;
        return {
          id: message.id,
          type: "message",
          date: new Date(message.date * 1000).toISOString().slice(0, 19),
          date_unixtime: String(message.date),
          ...(message.editDate ? { edited_unixtime: String(message.editDate) } : {}),
          from: name(author),
          from_id: `user${author.id}`,
          ...(reply ? { reply_to_message_id: reply.replyToMsgId } : {}),
          ...(sticker
            ? {
                media_type: "sticker",
                sticker_emoji: sticker.alt,
                file: "(File not included. Change data exporting settings to download.)",
              }
            : {}),
          text: message.message,
        };
      });
      return { name: name(user), type: "personal_chat", id: Number(user.id), messages };
    });
    return {
      personal_information: {
        user_id: Number(this.owner.id),
        first_name: this.owner.firstName,
        last_name: this.owner.lastName,
      },
      chats: { list },
    };
  }

  async dialogs(): Promise<Api.messages.TypeDialogs> {
    this.tick();
    const tops = this.chats.map((chat) => chat.messages.at(-1) as Api.Message);
    return new Api.messages.Dialogs({
      dialogs: this.chats.map(
        (chat, i) =>
          new Api.Dialog({
            peer: chat.peer,
            topMessage: (tops[i] as Api.Message).id,
            readInboxMaxId: 0,
            readOutboxMaxId: 0,
            unreadCount: 0,
            unreadMentionsCount: 0,
            unreadReactionsCount: 0,
            notifySettings: new Api.PeerNotifySettings({}),
          }),
      ),
      messages: tops,
      chats: this.chats
        .map((c) => c.entity)
        .filter((e): e is Api.Channel | Api.Chat => !(e instanceof Api.User)),
      users: [...this.users.values()],
    });
  }

  async history(peer: Api.TypeInputPeer, afterId: number, limit: number): Promise<Api.messages.TypeMessages> {
    this.tick();
    const chat = this.chats.find((c) => sameChat(c, peer));
    if (!chat) throw new Error("PEER_ID_INVALID");
    this.historyCalls.push({ chat: markedPeer(chat.peer), afterId });
    const page = chat.messages.filter((m) => m.id > afterId).slice(0, limit);
    // Telegram answers newest first, with the users the page mentions.
    return new Api.messages.Messages({
      messages: [...page].reverse(),
      chats: chat.entity instanceof Api.User ? [] : [chat.entity],
      users: [...this.users.values()],
    });
  }

  private tick(): void {
    this.requests++;
    if (this.crashAfter !== undefined && this.requests > this.crashAfter) {
      this.crashAfter = undefined;
      throw new Error("connection lost (scripted crash)");
    }
    const wait = this.floodWaits.get(this.requests);
    if (wait !== undefined) {
      this.floodWaits.delete(this.requests);
      throw new FloodWaitError({ request: new Api.messages.GetHistory({}) as never, capture: wait } as never);
    }
  }
}

function sameChat(chat: ScriptedChat, peer: Api.TypeInputPeer): boolean {
  if (peer instanceof Api.InputPeerUser)
    return chat.peer instanceof Api.PeerUser && chat.peer.userId.toString() === peer.userId.toString();
  if (peer instanceof Api.InputPeerChannel)
    return (
      chat.peer instanceof Api.PeerChannel && chat.peer.channelId.toString() === peer.channelId.toString()
    );
  if (peer instanceof Api.InputPeerChat)
    return chat.peer instanceof Api.PeerChat && chat.peer.chatId.toString() === peer.chatId.toString();
  return false;
}

function sticker(alt: string): Api.MessageMediaDocument {
  return new Api.MessageMediaDocument({
    document: new Api.Document({
      id: big(1),
      accessHash: big(1),
      fileReference: Buffer.alloc(0),
      date: BASE_DATE,
      mimeType: "image/webp",
      size: big(100),
      dcId: 2,
      attributes: [new Api.DocumentAttributeSticker({ alt, stickerset: new Api.InputStickerSetEmpty() })],
    }),
  });
}
