import Table from "cli-table3";

/** A terminal table; plain (no colour codes) when the output is piped or redirected. */
export function table(head?: string[]): Table.Table {
  const plain = !process.stdout.isTTY;
  return new Table({ ...(head ? { head } : {}), ...(plain ? { style: { head: [], border: [] } } : {}) });
}
