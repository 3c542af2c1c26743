import {
  escapeControl,
  IM_END,
  IM_START,
  MESSAGE_PREFIX,
  SYSTEM_ROLE,
  turnBody,
  unescapeControl,
} from "../dataset/chatml.ts";
import { plural } from "../plural.ts";
import { PromptTooLongError } from "./inference.errors.ts";
import { cutAtTurnEnd } from "./reply-shape.ts";

/**
 * Prompts in the training format (pure), as pieces that keep our own control tokens apart from
 * everything people wrote: only `special` pieces may become <|im_start|>/<|im_end|> tokens, and
 * the engine tokenizes `text` pieces as plain text. Message text is escaped as in the dataset, so
 * the model reads exactly what it was trained on.
 */

export type PromptPiece =
  | { special: true; text: typeof IM_START | typeof IM_END }
  | { special: false; text: string };

export type PromptTurn = { speaker: string; messages: string[] };

export type PromptRequest = {
  /** The system header line (chat kind, participants, local time), as the dataset writes it. */
  header: string;
  /**
   * Past exchanges recalled for this conversation (dataset/memory-turn.ts renders them): one
   * untrained system turn after the header, before the history. Empty or absent: no such turn.
   */
  memory?: string | undefined;
  /** Real turns from the history store between the same people, oldest first. */
  history: PromptTurn[];
  /** The live conversation so far, oldest first. */
  live: PromptTurn[];
  /** Who speaks next: the prompt ends with this speaker's open turn. */
  replyAs: string;
  /** The most tokens the prompt may take (the context size less the room kept for the reply). */
  maxTokens: number;
  /** Counts the tokens of rendered prompt text (with its control strings as single tokens). */
  countTokens: (text: string) => number;
};

export type Prompt = {
  pieces: PromptPiece[];
  /** The token count the request's counter gives the whole prompt. */
  tokens: number;
  /** Turns left out to fit: history first, then the memory turn, then the oldest live turns. */
  droppedHistoryTurns: number;
  droppedMemory: boolean;
  droppedLiveTurns: number;
  /** Everyone who speaks in the prompt, the replying speaker included: a line with one of these names ends a reply. */
  speakers: string[];
};

function turnPieces(speaker: string, body: string): PromptPiece[] {
  // The body ends with the IM_END that turnBody appends; split it off as our own token.
  return [
    { special: true, text: IM_START },
    { special: false, text: `${speaker}\n${body.slice(0, -IM_END.length)}` },
    { special: true, text: IM_END },
    { special: false, text: "\n" },
  ];
}

function renderText(pieces: PromptPiece[]): string {
  return pieces.map((piece) => piece.text).join("");
}

/** header turn, the memory turn, then history, then the live conversation, then `<|im_start|>{replyAs}\n`. */
export function buildPrompt(request: PromptRequest): Prompt {
  const header = turnPieces(SYSTEM_ROLE, `${escapeControl(request.header)}${IM_END}`);
  const opening: PromptPiece[] = [
    { special: true, text: IM_START },
    { special: false, text: `${request.replyAs}\n` },
  ];
  // Escaped like the header: recalled messages are people's text and may hold control strings.
  const memory = request.memory ? turnPieces(SYSTEM_ROLE, `${escapeControl(request.memory)}${IM_END}`) : [];
  const rendered = (turns: PromptTurn[]) => turns.map((t) => turnPieces(t.speaker, turnBody(t.messages)));
  const history = rendered(request.history);
  const live = rendered(request.live);
  const cost = (pieces: PromptPiece[]) => request.countTokens(renderText(pieces));
  // Per-turn costs add up to the whole within a token or two at turn boundaries: check the total.
  const fixed = cost(header) + cost(opening);
  const historyCosts = history.map(cost);
  const liveCosts = live.map(cost);
  const memoryCost = memory.length > 0 ? cost(memory) : 0;
  let total =
    fixed + memoryCost + historyCosts.reduce((a, b) => a + b, 0) + liveCosts.reduce((a, b) => a + b, 0);
  let droppedHistory = 0;
  let droppedLive = 0;
  while (total > request.maxTokens && droppedHistory < history.length) {
    total -= historyCosts[droppedHistory] as number;
    droppedHistory++;
  }
  // Recalled exchanges were picked for what is said now, the oldest history turns were not: those go
  // first; the memory goes before any live turn.
  const droppedMemory = total > request.maxTokens && memory.length > 0;
  if (droppedMemory) total -= memoryCost;
  // The latest live turn is what is being answered: it always stays.
  while (total > request.maxTokens && droppedLive < live.length - 1) {
    total -= liveCosts[droppedLive] as number;
    droppedLive++;
  }
  const pieces = [
    ...header,
    ...(droppedMemory ? [] : memory),
    ...history.slice(droppedHistory).flat(),
    ...live.slice(droppedLive).flat(),
    ...opening,
  ];
  const tokens = cost(pieces);
  if (tokens > request.maxTokens) {
    throw new PromptTooLongError(
      `the prompt needs ${plural(tokens, "token")} even with only the header and the latest turn; the limit is ${request.maxTokens}`,
    );
  }
  const speakers = [...new Set([...request.history, ...request.live].map((t) => t.speaker))];
  return {
    pieces,
    tokens,
    droppedHistoryTurns: droppedHistory,
    droppedMemory,
    droppedLiveTurns: droppedLive,
    speakers: speakers.includes(request.replyAs) ? speakers : [...speakers, request.replyAs],
  };
}

/**
 * A generated turn body as the messages it holds: one per `>>> ` line, continuation lines kept
 * with their message, control strings unescaped; empty messages dropped. The body ends where
 * another turn begins: a role line (a name among `speakers`, or a ChatML role) or a control string
 * written as text (reply-shape.ts), so no message ever carries one.
 */
export function splitReply(text: string, speakers: readonly string[] = []): string[] {
  const body = cutAtTurnEnd(text.endsWith(IM_END) ? text.slice(0, -IM_END.length) : text, speakers).body;
  const messages: string[] = [];
  for (const line of body.split("\n")) {
    if (line.startsWith(MESSAGE_PREFIX) || line.startsWith(MESSAGE_PREFIX.trimEnd())) {
      messages.push(
        line.slice(line.startsWith(MESSAGE_PREFIX) ? MESSAGE_PREFIX.length : MESSAGE_PREFIX.length - 1),
      );
    } else if (messages.length > 0) {
      messages[messages.length - 1] += `\n${line}`;
    } else {
      messages.push(line);
    }
  }
  return messages.map((m) => unescapeControl(m).trim()).filter((m) => m.length > 0);
}

/** The prompt's text as the model reads it (control pieces as their strings). */
export function promptText(pieces: PromptPiece[]): string {
  return renderText(pieces);
}

/** The pieces after the first `offset` characters of the prompt's text (a piece may be cut). */
export function piecesFrom(pieces: PromptPiece[], offset: number): PromptPiece[] {
  const rest: PromptPiece[] = [];
  let position = 0;
  for (const piece of pieces) {
    const end = position + piece.text.length;
    if (end > offset) {
      if (position >= offset) rest.push(piece);
      else if (!piece.special) rest.push({ special: false, text: piece.text.slice(offset - position) });
      else return []; // a cut through a control token: no clean continuation
    }
    position = end;
  }
  return rest;
}
