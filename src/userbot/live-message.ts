import { Api } from "telegram";
import { markPeer } from "../history/identity.ts";
import type { MessageKind, MessageRecord } from "../history/message.ts";

/**
 * gramjs messages as history rows (pure), field for field what the desktop import writes for the
 * same message, so a chat imported from a file and then pulled live merges instead of doubling.
 * Where the two sources cannot agree, the live row says what it knows (see live-message.test.ts).
 */

/** The users and chats a response carried, by bare id: names, usernames, deleted accounts. */
export type Entities = {
  users: Map<string, Api.TypeUser>;
  chats: Map<string, Api.TypeChat>;
};

export type LiveContext = Entities & {
  /** The dialog's key (Bot-API marked id). */
  chatId: number;
  ownerId: number;
};

export function entitiesOf(response: { users: Api.TypeUser[]; chats: Api.TypeChat[] }): Entities {
  return {
    users: new Map(response.users.map((user) => [user.id.toString(), user])),
    chats: new Map(response.chats.map((chat) => [chat.id.toString(), chat])),
  };
}

/** A peer as a marked id. */
export function markedPeer(peer: Api.TypePeer): number {
  if (peer instanceof Api.PeerUser) return markPeer("user", Number(peer.userId));
  if (peer instanceof Api.PeerChat) return markPeer("chat", Number(peer.chatId));
  return markPeer("channel", Number((peer as Api.PeerChannel).channelId));
}

/** A person's name as the export writes it, "First Last"; null for a deleted account. */
export function userName(user: Api.User): string | null {
  return user.deleted ? null : [user.firstName, user.lastName].filter(Boolean).join(" ") || null;
}

/** A display name as the export writes it: "First Last" for people, the title for chats; null when deleted. */
export function peerName(peer: Api.TypePeer, entities: Entities): string | null {
  if (peer instanceof Api.PeerUser) {
    const user = entities.users.get(peer.userId.toString());
    return user instanceof Api.User ? userName(user) : null;
  }
  const id = peer instanceof Api.PeerChat ? peer.chatId : (peer as Api.PeerChannel).channelId;
  const chat = entities.chats.get(id.toString());
  return chat && "title" in chat ? chat.title : null;
}

function documentKind(media: Api.MessageMediaDocument): MessageKind {
  const document = media.document instanceof Api.Document ? media.document : undefined;
  const attributes = document?.attributes ?? [];
  if (attributes.some((a) => a instanceof Api.DocumentAttributeSticker)) return "sticker";
  if (media.voice || attributes.some((a) => a instanceof Api.DocumentAttributeAudio && a.voice))
    return "voice";
  if (media.round || attributes.some((a) => a instanceof Api.DocumentAttributeVideo && a.roundMessage)) {
    return "video_message";
  }
  if (attributes.some((a) => a instanceof Api.DocumentAttributeAnimated)) return "animation";
  if (media.video || attributes.some((a) => a instanceof Api.DocumentAttributeVideo)) return "video";
  if (attributes.some((a) => a instanceof Api.DocumentAttributeAudio)) return "audio";
  return "file";
}

export function liveKind(message: Api.Message | Api.MessageService): MessageKind {
  if (message instanceof Api.MessageService) return "service";
  const media = message.media;
  if (!media || media instanceof Api.MessageMediaEmpty || media instanceof Api.MessageMediaWebPage)
    return "text";
  if (media instanceof Api.MessageMediaPhoto) return "photo";
  if (media instanceof Api.MessageMediaDocument) return documentKind(media);
  if (media instanceof Api.MessageMediaPoll) return "poll";
  if (media instanceof Api.MessageMediaVenue) return "venue";
  if (media instanceof Api.MessageMediaGeo || media instanceof Api.MessageMediaGeoLive) return "location";
  if (media instanceof Api.MessageMediaContact) return "contact";
  if (media instanceof Api.MessageMediaGame) return "game";
  if (media instanceof Api.MessageMediaInvoice) return "invoice";
  if (media instanceof Api.MessageMediaDice) return "dice";
  if (media instanceof Api.MessageMediaGiveaway) return "giveaway";
  if (media instanceof Api.MessageMediaStory) return "story";
  return "unsupported";
}

/** Service actions under the names Telegram Desktop's export gives them. */
const actionNames: Record<string, string> = {
  MessageActionChatCreate: "create_group",
  MessageActionChannelCreate: "create_channel",
  MessageActionChatEditTitle: "edit_group_title",
  MessageActionChatEditPhoto: "edit_group_photo",
  MessageActionChatDeletePhoto: "delete_group_photo",
  MessageActionChatAddUser: "invite_members",
  MessageActionChatDeleteUser: "remove_members",
  MessageActionChatJoinedByLink: "join_group_by_link",
  MessageActionChatJoinedByRequest: "join_group_by_request",
  MessageActionChatMigrateTo: "migrate_to_supergroup",
  MessageActionChannelMigrateFrom: "migrate_from_group",
  MessageActionPinMessage: "pin_message",
  MessageActionHistoryClear: "clear_history",
  MessageActionGameScore: "score_in_game",
  MessageActionPhoneCall: "phone_call",
  MessageActionScreenshotTaken: "take_screenshot",
  MessageActionContactSignUp: "joined_telegram",
  MessageActionGroupCall: "group_call",
  MessageActionInviteToGroupCall: "invite_to_group_call",
  MessageActionSetMessagesTTL: "set_messages_ttl",
  MessageActionSetChatTheme: "edit_chat_theme",
  MessageActionTopicCreate: "topic_created",
  MessageActionTopicEdit: "topic_edit",
  MessageActionBoostApply: "boost_apply",
};

function senderOf(message: Api.Message | Api.MessageService, context: LiveContext): Api.TypePeer | undefined {
  if (message.fromId) return message.fromId;
  // Private chats leave fromId out: the other person wrote unless the owner did; channel posts
  // come from the channel itself.
  if (message.peerId instanceof Api.PeerUser) {
    return message.out ? new Api.PeerUser({ userId: context.ownerId as never }) : message.peerId;
  }
  return message.peerId instanceof Api.PeerChannel && message.post ? message.peerId : undefined;
}

function viaBotName(message: Api.Message, context: LiveContext): string | null {
  if (!message.viaBotId) return null;
  const bot = context.users.get(message.viaBotId.toString());
  return bot instanceof Api.User && bot.username ? `@${bot.username}` : null;
}

/** A poll as the desktop export writes it (`{poll: {question, answers: [{text}]}}`), for the dataset's poll line. */
function pollDetails(poll: Api.Poll): Record<string, unknown> {
  return {
    poll: {
      question: poll.question.text,
      answers: poll.answers.map((answer) => ({ text: answer.text.text })),
    },
  };
}

export function liveMessageRecord(
  message: Api.Message | Api.MessageService,
  context: LiveContext,
): MessageRecord {
  const kind = liveKind(message);
  const sender = senderOf(message, context);
  const plain = message instanceof Api.Message ? message : undefined;
  const media = plain?.media;
  const forward = plain?.fwdFrom;
  const reply = message.replyTo instanceof Api.MessageReplyHeader ? message.replyTo : undefined;
  let emoji: string | null = null;
  if (media instanceof Api.MessageMediaDice) emoji = media.emoticon;
  if (
    kind === "sticker" &&
    media instanceof Api.MessageMediaDocument &&
    media.document instanceof Api.Document
  ) {
    const sticker = media.document.attributes.find((a) => a instanceof Api.DocumentAttributeSticker);
    emoji = (sticker as Api.DocumentAttributeSticker | undefined)?.alt || null;
  }
  return {
    chatId: context.chatId,
    messageId: message.id,
    senderId: sender ? markedPeer(sender) : null,
    senderName: sender ? peerName(sender, context) : null,
    sentAt: message.date * 1000,
    editedAt: plain?.editDate && !plain.editHide ? plain.editDate * 1000 : null,
    kind,
    text: plain?.message ?? "",
    emoji,
    replyToMessageId: reply?.replyToMsgId && !reply.replyToPeerId ? reply.replyToMsgId : null,
    // A forward whose author Telegram does not name keeps an empty name, as the desktop import does.
    forwardedFromName: forward
      ? ((forward.fromId ? peerName(forward.fromId, context) : forward.fromName) ?? "")
      : null,
    forwardedFromId: forward?.fromId ? markedPeer(forward.fromId) : null,
    viaBot: plain ? viaBotName(plain, context) : null,
    action: message instanceof Api.MessageService ? (actionNames[message.action.className] ?? null) : null,
    details: media instanceof Api.MessageMediaPoll ? pollDetails(media.poll) : null,
  };
}
