import { TwinError } from "../errors.ts";
import { describeCandidate, type PersonCandidate } from "./person-lookup.ts";

/** The history store refused an operation; the message says why and what to do. */
export class HistoryError extends TwinError {}

/** Candidates one per line, for the two errors below. */
const listed = (candidates: PersonCandidate[]) =>
  candidates.map((person) => `  ${describeCandidate(person)}`).join("\n");

/** A name that is not one person's exact name: the candidates, listed; the CLI exits with 2. */
export class AmbiguousPersonError extends TwinError {
  readonly exitCode = 2;
  constructor(
    readonly option: string,
    readonly query: string,
    readonly candidates: PersonCandidate[],
  ) {
    super(
      `${option} “${query}” is not one person's exact name; pass one of these ids:\n${listed(candidates)}`,
    );
  }
}

/** A name nobody in the history has: the people the owner talks with most, to pick from; exit 2. */
export class NoSuchPersonError extends TwinError {
  readonly exitCode = 2;
  constructor(
    readonly option: string,
    readonly query: string,
    readonly candidates: PersonCandidate[],
  ) {
    super(
      candidates.length === 0
        ? `${option} “${query}”: nobody of that name in the history, and nobody to suggest (import your history first)`
        : `${option} “${query}”: nobody of that name in the history; the people you talk with most:\n${listed(candidates)}`,
    );
  }
}
