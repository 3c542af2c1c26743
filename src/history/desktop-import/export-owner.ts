import path from "node:path";
import { TwinError } from "../../errors.ts";
import { plural } from "../../plural.ts";
import { HistoryError } from "../history.errors.ts";
import { markExportPeer, markPeer, peerKindOf } from "../identity.ts";
import { ExportReader, type PersonalInformation } from "./export-reader.ts";
import { fileChunks } from "./file-chunks.ts";
import { ExportFormatError, ImportInterruptedError, OwnerUnknownError } from "./import.errors.ts";

/**
 * Whose export this is, decided before a row is written: from `personal_information`, else from
 * `--owner` matched against the senders of the file, else the database's stored owner.
 * A channel can be the owner (a channel export's posts all come from the channel itself).
 */

/** `--owner` as given: ids it may mean (a bare number is a user or a channel), or a display name. */
export type OwnerHint = { text: string } & ({ ids: number[] } | { name: string });

/** Who wrote in the export: marked id → latest name and message count. */
export type SenderTally = Map<number, { name: string | null; messages: number }>;

export type ExportSurvey = {
  personal?: PersonalInformation | undefined;
  senders: SenderTally;
  /** The file's first format error, if the survey stopped at one: the import reports it at its place. */
  broken?: ExportFormatError | undefined;
};

export type Owner = { id: number; name: string | null };

/** Reads `--owner` (pure): `123` (user or channel 123), `user123`, `channel123`, `-100123`, or a name. */
export function parseOwnerHint(text: string): OwnerHint {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) {
    const id = Number(trimmed);
    if (!Number.isSafeInteger(id) || id <= 0) return { text: trimmed, name: trimmed };
    return { text: trimmed, ids: [id, markPeer("channel", id)] };
  }
  if (/^-\d+$/.test(trimmed) && Number.isSafeInteger(Number(trimmed))) {
    return { text: trimmed, ids: [Number(trimmed)] };
  }
  const exported = markExportPeer(trimmed);
  if (exported !== undefined) return { text: trimmed, ids: [exported] };
  return { text: trimmed, name: trimmed };
}

const describe = (id: number, name: string | null) =>
  `${name ?? "?"} (${peerKindOf(id) === "user" ? id : `${peerKindOf(id)} ${id}`})`;

function mostActive(senders: SenderTally, limit = 5): string {
  const top = [...senders.entries()].sort((a, b) => b[1].messages - a[1].messages).slice(0, limit);
  if (top.length === 0) return "nobody wrote in it";
  return `most active: ${top.map(([id, s]) => `${describe(id, s.name)} ${plural(s.messages, "message")}`).join(", ")}`;
}

/**
 * Decides the owner (pure). Throws a HistoryError that says what to pass instead when the export,
 * `--owner` and the stored owner disagree or leave it open.
 */
export function chooseOwner(input: {
  file: string;
  survey: ExportSurvey;
  hint?: OwnerHint | undefined;
  stored?: Owner | undefined;
}): Owner {
  const { file, survey, hint, stored } = input;
  const owner = pick();
  if (stored && owner.id !== stored.id) {
    throw new HistoryError(
      `${file} is the history of ${describe(owner.id, owner.name)}, but this database holds ` +
        `${describe(stored.id, stored.name)}; use another TWIN_DATA_DIR or DATABASE_URL.`,
    );
  }
  return owner;

  function pick(): Owner {
    if (survey.personal) {
      const { userId, name } = survey.personal;
      if (hint && "ids" in hint && !hint.ids.includes(userId)) {
        throw new HistoryError(
          `${file} belongs to user ${userId}, but --owner says ${hint.text}; drop --owner or fix it.`,
        );
      }
      return { id: userId, name };
    }
    if (!hint) {
      if (stored) return stored;
      if (survey.broken) throw survey.broken;
      throw new OwnerUnknownError(file);
    }
    const matches =
      "ids" in hint
        ? hint.ids.filter((id) => survey.senders.has(id))
        : [...survey.senders.entries()].filter(([, s]) => s.name === hint.name).map(([id]) => id);
    if (matches.length === 1) {
      const id = matches[0] as number;
      return { id, name: survey.senders.get(id)?.name ?? null };
    }
    if (matches.length > 1) {
      throw new HistoryError(
        `--owner ${hint.text} is ambiguous in ${file}: ${matches
          .map((id) => `${describe(id, survey.senders.get(id)?.name ?? null)}`)
          .join(" or ")}; pass ${"ids" in hint ? "user<id> or -100<id>" : "the id"} instead.`,
      );
    }
    // Nobody of that id wrote here: the stored owner may still be meant (they wrote elsewhere),
    // or a user who only read (the other side of a personal chat); a channel must have posted.
    if (stored && "ids" in hint && hint.ids.includes(stored.id)) return stored;
    if (stored && "name" in hint && hint.name === stored.name) return stored;
    if (survey.broken) throw survey.broken;
    const user = "ids" in hint ? hint.ids.find((id) => peerKindOf(id) === "user") : undefined;
    if (user !== undefined) return { id: user, name: null };
    throw new HistoryError(
      `--owner ${hint.text}: ${"ids" in hint ? "no channel of that id" : "nobody of that name"} ` +
        `wrote in ${file} (${mostActive(survey.senders)}); pass one of those ids.`,
    );
  }
}

/** Stops the survey once the export has said whose it is. */
class Settled extends TwinError {}

/**
 * Reads the export once for its owner: stops at `personal_information` (the top of a whole-account
 * export), else tallies every sender. A format error ends the survey with what was read before it.
 */
export async function surveyExport(
  file: string,
  timeZone: string,
  signal?: AbortSignal | undefined,
): Promise<ExportSurvey> {
  const survey: ExportSurvey = { senders: new Map() };
  const reader = new ExportReader(path.basename(file), timeZone, {
    onPersonalInformation(info) {
      survey.personal = info;
      throw new Settled();
    },
    onChat() {},
    onMessage(message) {
      if (message.senderId === null || message.kind === "service") return;
      const known = survey.senders.get(message.senderId);
      if (known) {
        known.messages++;
        known.name = message.senderName ?? known.name;
      } else survey.senders.set(message.senderId, { name: message.senderName, messages: 1 });
    },
    onDuplicate() {},
  });
  try {
    for await (const chunk of fileChunks(file)) {
      if (signal?.aborted) throw new ImportInterruptedError(path.basename(file));
      reader.push(chunk);
    }
    reader.end();
  } catch (error) {
    if (error instanceof Settled) return survey;
    if (error instanceof ExportFormatError) return { ...survey, broken: error };
    throw error;
  }
  return survey;
}
