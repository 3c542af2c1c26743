/**
 * One key space for chats and people, as the Bot API marks them: a user is `+id`, a basic group
 * `-id`, a supergroup or channel `-100…id` (that is, -(1e12 + id)). The desktop export and gramjs
 * both map here, so the same chat or person gets the same key from either source.
 */

const CHANNEL_OFFSET = 1_000_000_000_000;

export type PeerKind = "user" | "chat" | "channel";

export function markPeer(kind: PeerKind, bareId: number): number {
  if (!Number.isSafeInteger(bareId) || bareId <= 0) throw new RangeError(`not a Telegram id: ${bareId}`);
  if (kind === "user") return bareId;
  if (kind === "chat") return -bareId;
  return -(CHANNEL_OFFSET + bareId);
}

export function peerKindOf(markedId: number): PeerKind {
  if (markedId > 0) return "user";
  return -markedId > CHANNEL_OFFSET ? "channel" : "chat";
}

/** Chat types of the desktop export: personal and bot chats are users, basic groups chats, the rest channels. */
export function exportChatKind(type: string): PeerKind | undefined {
  switch (type) {
    case "personal_chat":
    case "bot_chat":
    case "saved_messages":
      return "user";
    case "private_group":
      return "chat";
    case "private_supergroup":
    case "public_supergroup":
    case "private_channel":
    case "public_channel":
      return "channel";
    default:
      return undefined;
  }
}

/**
 * A sender id of the desktop export: `user123`, `channel123`, `chat123`; very old exports give a
 * bare integer, which is a user.
 */
export function markExportPeer(fromId: string | number): number | undefined {
  if (typeof fromId === "number") return Number.isSafeInteger(fromId) && fromId > 0 ? fromId : undefined;
  // The same few senders repeat across millions of messages: remember their keys.
  const known = exportPeerCache.get(fromId);
  if (known !== undefined) return known;
  const match = /^(user|channel|chat)(\d+)$/.exec(fromId);
  if (!match) return undefined;
  const marked = markPeer(match[1] as PeerKind, Number(match[2]));
  if (exportPeerCache.size >= 100_000) exportPeerCache.clear();
  exportPeerCache.set(fromId, marked);
  return marked;
}

const exportPeerCache = new Map<string, number>();
