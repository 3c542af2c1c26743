/** Memory's query: the messages of the last turns before a reply, where its topic is. */
export const MEMORY_QUERY_TURNS = 3;
/**
 * The query for a reply (pure): the messages of the last `queryTurns` turns before `turns[at]`,
 * never that turn's own nor any later one's, so the answer cannot reach the search.
 */
export function memoryQuery(
  turns: readonly { messages: readonly string[] }[],
  at: number,
  queryTurns: number,
) {
  return turns.slice(Math.max(0, at - queryTurns), Math.max(0, at)).flatMap((turn) => [...turn.messages]);
}
