import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";
import { ConfigError } from "./config.errors.ts";
import { loadConfig } from "./config.ts";

describe("config", () => {
  it("fills in defaults when nothing is set", () => {
    const config = loadConfig({});
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.dataDir, path.resolve("./data"));
    assert.equal(config.importBatchSize, 25_000);
    assert.equal(config.timeZone, undefined, "the time zone falls back later: stored, then this machine's");
  });

  it("reads the variables it knows", () => {
    const config = loadConfig({
      DATABASE_URL: "postgres://u@h:5432/db",
      TWIN_TZ: "Europe/Moscow",
      TWIN_DATA_DIR: "/tmp/x",
      TWIN_IMPORT_BATCH: "500",
    });
    assert.deepEqual(config, {
      databaseUrl: "postgres://u@h:5432/db",
      dataDir: "/tmp/x",
      timeZone: "Europe/Moscow",
      embeddedPgPort: 0,
      importBatchSize: 500,
    });
  });

  it("treats empty values as unset", () => {
    assert.equal(loadConfig({ DATABASE_URL: "" }).databaseUrl, undefined);
  });

  it("rejects an unknown TWIN_ variable by name", () => {
    assert.throws(
      () => loadConfig({ TWIN_DATADIR: "/tmp" }),
      (error) => error instanceof ConfigError && error.variable === "TWIN_DATADIR",
    );
  });

  it("rejects a malformed value and names the variable, not the value", () => {
    assert.throws(
      () => loadConfig({ TWIN_TZ: "Mars/Olympus" }),
      (error) => error instanceof ConfigError && error.variable === "TWIN_TZ" && /IANA/.test(error.message),
    );
    assert.throws(
      () => loadConfig({ DATABASE_URL: "mysql://root:hunter2@h/db" }),
      (error) =>
        error instanceof ConfigError &&
        error.variable === "DATABASE_URL" &&
        !error.message.includes("hunter2"),
    );
    assert.throws(() => loadConfig({ TWIN_IMPORT_BATCH: "lots" }), /TWIN_IMPORT_BATCH/);
  });
});
