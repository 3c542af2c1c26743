import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

/**
 * The shape of src/ as the design wants it (docs/architecture.md): no import cycles between
 * modules (folders), and each module's tables reached only through its own repository.
 */

const srcDir = path.dirname(fileURLToPath(import.meta.url));
const files = (fs.readdirSync(srcDir, { recursive: true }) as string[]).filter(
  (file) => file.endsWith(".ts") && !file.endsWith(".test.ts"),
);
const importsOf = (file: string): string[] => {
  const text = fs.readFileSync(path.join(srcDir, file), "utf8");
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^"';]*?from\s*"(\.{1,2}\/[^"]+)"/g)].map((m) =>
    path.normalize(path.join(path.dirname(file), m[1] as string)),
  );
};
/** A file's module: its top folder under src/ (history/desktop-import belongs to history). */
const moduleOf = (file: string) => file.split(path.sep)[0] as string;

/** One cycle in `edges`, as a path that ends where it starts, or undefined. */
function findCycle(edges: Map<string, Set<string>>): string[] | undefined {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (node: string): string[] | undefined => {
    state.set(node, "open");
    stack.push(node);
    for (const next of edges.get(node) ?? []) {
      if (state.get(next) === "open") return [...stack.slice(stack.indexOf(next)), next];
      if (!state.has(next)) {
        const found = visit(next);
        if (found) return found;
      }
    }
    stack.pop();
    state.set(node, "done");
    return undefined;
  };
  for (const node of edges.keys()) {
    if (!state.has(node)) {
      const found = visit(node);
      if (found) return found;
    }
  }
  return undefined;
}

describe("architecture", () => {
  it("has no import cycle between files", () => {
    const edges = new Map(files.map((file) => [file, new Set(importsOf(file))]));
    const cycle = findCycle(edges);
    assert.equal(cycle, undefined, `import cycle: ${cycle?.join(" → ")}`);
  });

  // Schema files aside: the schema index (db/) and a table's foreign key, which must name the table
  // it points to (drizzle's references()); the database, not the code, then holds them together.
  it("reaches another module's tables only through its repository", () => {
    const astray = files.flatMap((file) =>
      importsOf(file)
        .filter((target) => target.endsWith(".tables.ts") && moduleOf(target) !== moduleOf(file))
        .filter(() => !file.startsWith(`db${path.sep}`) && !file.endsWith(".tables.ts"))
        .map((target) => `${file} → ${target}`),
    );
    assert.deepEqual(astray, []);
  });

  it("names a module's tables in SQL text only inside that module", () => {
    const owners = new Map<string, string>();
    for (const file of files.filter((file) => file.endsWith(".tables.ts"))) {
      const text = fs.readFileSync(path.join(srcDir, file), "utf8");
      for (const [, table] of text.matchAll(/pgTable\(\s*"(\w+)"/g))
        owners.set(table as string, moduleOf(file));
    }
    assert.ok(owners.has("messages") && owners.has("training_runs"), "found the tables");
    const astray = files
      .filter((file) => !file.startsWith(`db${path.sep}`))
      .flatMap((file) => {
        const text = fs.readFileSync(path.join(srcDir, file), "utf8");
        return [...text.matchAll(/\b(?:FROM|JOIN|INTO|UPDATE|COPY)\s+([a-z_]+)\b/g)]
          .map((match) => match[1] as string)
          .filter((table) => owners.has(table) && owners.get(table) !== moduleOf(file))
          .map((table) => `${file} → ${table} (${owners.get(table)})`);
      });
    assert.deepEqual(astray, []);
  });

  // drizzle runs every query; the pool only where drizzle has no API (COPY, server-side cursors,
  // the roles of remote workers).
  it("uses the pg pool directly only for COPY and cursors", () => {
    const direct = files.filter(
      (file) =>
        !file.startsWith(`db${path.sep}`) &&
        /\bpool\.(?:query|connect)\(/.test(fs.readFileSync(path.join(srcDir, file), "utf8")),
    );
    for (const file of direct) {
      const text = fs.readFileSync(path.join(srcDir, file), "utf8");
      assert.ok(
        /\bCOPY |DECLARE \w+ (?:NO SCROLL )?CURSOR|CREATE ROLE /.test(text),
        `${file} queries the pool directly`,
      );
    }
  });

  // The bot, `twin chat` and `twin eval` show the model a conversation one way: the use case's.
  it("builds prompts only through the conversation-context use case", () => {
    const builders = new Set([
      path.join("inference", "prompt.ts"),
      path.join("inference", "conversation-context.ts"),
    ]);
    const astray = files.filter(
      (file) =>
        !builders.has(file) && /\bbuildPrompt\b/.test(fs.readFileSync(path.join(srcDir, file), "utf8")),
    );
    assert.deepEqual(astray, [], "these build a prompt of their own instead of buildConversationContext");
  });

  it("has a README of at most ~250 lines whose links all resolve inside the repository", () => {
    const root = path.resolve(srcDir, "..");
    const pages = ["README.md", ...fs.readdirSync(path.join(root, "docs")).map((page) => `docs/${page}`)];
    assert.ok(fs.readFileSync(path.join(root, "README.md"), "utf8").split("\n").length <= 250);
    for (const page of pages) {
      const text = fs.readFileSync(path.join(root, page), "utf8");
      for (const [, target] of text.matchAll(/\]\(([^)#]+)[^)]*\)/g)) {
        assert.ok(!/^[a-z]+:/.test(target as string), `${page} links outside: ${target}`);
        assert.ok(
          fs.existsSync(path.resolve(root, path.dirname(page), target as string)),
          `${page} → ${target}`,
        );
      }
    }
  });
});
