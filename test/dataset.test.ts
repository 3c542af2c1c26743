import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { createFriendsRepository } from "../src/access/friends.repository.ts";
import { buildDataset, type DatasetOptions, defaultDatasetOptions } from "../src/dataset/build.usecase.ts";
import { IM_END, joinSegments } from "../src/dataset/chatml.ts";
import { createDatasetRepository } from "../src/dataset/dataset.repository.ts";
import { loadGgufTokenizer } from "../src/dataset/tokenizer.ts";
import { importDesktopExport } from "../src/history/desktop-import/import.usecase.ts";
import { createHistoryRepository } from "../src/history/history.repository.ts";
import { appOf } from "./support/app.ts";
import { backends, stopEmbedded, type TestDatabase } from "./support/databases.ts";
import { fixtureOwners, fixtures, readJson } from "./support/fixtures.ts";
import { testModel } from "./support/models.ts";

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "twin-dataset-test-"));
after(async () => {
  fs.rmSync(scratch, { recursive: true, force: true });
  await stopEmbedded();
});

const defaults = (overrides: Partial<DatasetOptions> = {}): DatasetOptions => ({
  ...defaultDatasetOptions("UTC"),
  groups: true,
  since: null,
  memory: undefined, // the conversation itself; memory turns are dataset-memory.test.ts's
  ...overrides,
});

/** Sessions counted straight from the raw export, by the rules in the issue, without our code. */
function independentSessionCounts(file: string, ownerId: number, gapMinutes: number) {
  const raw = readJson(file);
  const chats = raw.chats ? [...raw.chats.list, ...(raw.left_chats?.list ?? [])] : [raw];
  let sessions = 0;
  let messages = 0;
  for (const chat of chats) {
    const usable = chat.messages
      .filter((m: any) => m.type === "message" && typeof m.from_id === "string")
      .map((m: any) => {
        const text =
          typeof m.text === "string"
            ? m.text
            : m.text.map((p: any) => (typeof p === "string" ? p : p.text)).join("");
        const media =
          m.photo || m.file || m.media_type || m.poll || m.location_information || m.contact_information;
        return {
          at: Date.parse(`${m.date}Z`),
          id: m.id,
          who: m.from_id,
          ok: text.trim() !== "" || Boolean(media),
        };
      })
      .filter((m: any) => m.ok)
      .sort((a: any, b: any) => a.at - b.at || a.id - b.id);
    let current: { who: string; n: number }[] = [];
    let last = Number.NEGATIVE_INFINITY;
    const close = () => {
      if (current.length >= 2 && current.slice(1).some((t) => t.who === `user${ownerId}`)) {
        sessions++;
        messages += current.reduce((a, t) => a + t.n, 0);
      }
    };
    for (const m of usable) {
      if (m.at - last > gapMinutes * 60_000) {
        close();
        current = [];
      }
      const turn = current.at(-1);
      if (turn && turn.who === m.who) turn.n++;
      else current.push({ who: m.who, n: 1 });
      last = m.at;
    }
    close();
  }
  return { sessions, messages };
}

for (const backend of backends()) {
  describe(`dataset builder on ${backend.name} PostgreSQL`, () => {
    let database: TestDatabase;
    before(async () => {
      database = await backend.fresh();
    });
    after(() => database.close());

    const importOnly = async (file: string, owner?: string) => {
      await database.pool.query("TRUNCATE messages, chats, people, owner, imports, datasets CASCADE");
      await importDesktopExport(
        { historyRepository: createHistoryRepository(database) },
        { input: file, owner, timeZone: "UTC", batchSize: 5000 },
      );
    };

    // ENSIA's owner never answers within 10 minutes of someone else: a 3-hour gap finds sessions.
    for (const [name, file, owner, gap] of [
      ["ENSIA", fixtures.ensia, fixtureOwners.ensia, 180],
      ["CUDA", fixtures.cuda, fixtureOwners.cuda, 10],
    ] as const) {
      it(`counts the same sessions in ${name} as a count made from the raw JSON`, async () => {
        await importOnly(file, owner);
        const expected = independentSessionCounts(file, Number(owner), gap);
        assert.ok(expected.sessions > 0, "the fixture has sessions where the owner answers");
        const { manifest } = await buildDataset(
          appOf(database),
          defaults({ maxTokens: 100_000, evalFraction: 0, gapMinutes: gap }),
        );
        assert.equal(manifest.counts.sessions, expected.sessions);
        assert.equal(manifest.counts.messages, expected.messages);
        assert.equal(manifest.counts.examples, expected.sessions, "no session needed splitting");
        assert.equal(manifest.owner.id, Number(owner));
      });
    }

    it("with --allowed-only, learns only from personal chats with people the owner allowed", async () => {
      await database.pool.query(
        "TRUNCATE messages, chats, people, owner, imports, datasets, friends CASCADE",
      );
      const chat = (friend: number) => ({
        name: `Friend ${friend}`,
        type: "personal_chat",
        id: friend,
        messages: [1, 2, 3, 4].map((n) => ({
          id: n,
          type: "message",
          date: "2024-05-01T10:00:00",
          date_unixtime: String(1714557600 + n * 60),
          from: n % 2 ? `Friend ${friend}` : "Me",
          from_id: n % 2 ? `user${friend}` : "user1",
          text: `message ${n}`,
        })),
      });
      const file = path.join(scratch, "friends.json");
      fs.writeFileSync(
        file,
        JSON.stringify({
          personal_information: { user_id: 1, first_name: "Me" },
          chats: { list: [chat(2), chat(3)] },
        }),
      );
      await importDesktopExport(
        { historyRepository: createHistoryRepository(database) },
        { input: file, timeZone: "UTC", batchSize: 100 },
      );
      const friends = createFriendsRepository(database);
      await friends.allow(2);
      await friends.allow(3);
      await friends.revoke(3);
      const everyone = await buildDataset(appOf(database), defaults({ groups: false, evalFraction: 0 }));
      assert.equal(everyone.manifest.counts.chats, 2);
      const allowed = await buildDataset(
        appOf(database),
        defaults({ groups: false, evalFraction: 0, allowedOnly: true }),
      );
      const examples = await createDatasetRepository(database).examples(allowed.datasetId);
      assert.deepEqual([...new Set(examples.map((e) => e.chat_id))], [2]);
    });

    it("needs --groups for group chats", async () => {
      await importOnly(fixtures.cuda, fixtureOwners.cuda);
      const { manifest } = await buildDataset(appOf(database), defaults({ groups: false }));
      assert.equal(manifest.counts.examples, 0);
    });

    it("a channel owner's posts reach a dataset only with --channels, each session a trained monologue", async () => {
      const post = (id: number, minutes: number, text: string) => ({
        id,
        type: "message",
        date: "2024-03-01T10:00:00",
        date_unixtime: String(1709287200 + minutes * 60),
        from: "Daily Notes",
        from_id: "channel1500",
        text,
      });
      const file = path.join(scratch, "channel.json");
      fs.writeFileSync(
        file,
        JSON.stringify({
          name: "Daily Notes",
          type: "public_channel",
          id: 1500,
          // Two sessions: three posts within minutes, then one three hours later.
          messages: [
            post(1, 0, "morning"),
            post(2, 2, "coffee first"),
            post(3, 4, "then code"),
            post(4, 180, "night"),
          ],
        }),
      );
      await importOnly(file, "1500");
      await assert.rejects(
        buildDataset(appOf(database), defaults()),
        /channel Daily Notes \(-1000000001500\).*--channels/,
      );
      const { datasetId, manifest } = await buildDataset(
        appOf(database),
        defaults({ channels: true, evalFraction: 0 }),
      );
      assert.equal(manifest.counts.examples, 2);
      const examples = await createDatasetRepository(database).examples(datasetId);
      const first = examples.find((e) => joinSegments(e.segments).includes("morning"));
      assert.ok(first, "the first session is an example");
      assert.match(
        joinSegments(first.segments),
        /^<\|im_start\|>system\nTelegram channel “Daily Notes” · Daily Notes · 2024-03-01/,
      );
      const trained = first.segments.filter((segment) => segment.train).map((segment) => segment.text);
      assert.deepEqual(trained, [`>>> morning\n>>> coffee first\n>>> then code${IM_END}`]);
    });

    describe("on the #ubuntu IRC export", () => {
      let result: Awaited<ReturnType<typeof buildDataset>>;
      const outDir = path.join(scratch, backend.name);
      before(async () => {
        await importOnly(fixtures.irc);
        // An earlier run's folder and file, readable by anyone: the new output is not.
        fs.mkdirSync(outDir, { recursive: true });
        fs.chmodSync(outDir, 0o755);
        fs.writeFileSync(path.join(outDir, "train.jsonl"), "{}\n");
        fs.chmodSync(path.join(outDir, "train.jsonl"), 0o644);
        result = await buildDataset(
          appOf(database),
          defaults({ loss: { kind: "owner" }, outDir, excludePeople: [41893988], redact: true }),
        );
      });

      it("holds out the latest sessions of each chat and never puts a session in both sets", async () => {
        const examples = await createDatasetRepository(database).examples(result.datasetId);
        const session = (id: string) => id.split(":").slice(0, 2).join(":");
        const train = examples.filter((e) => e.split === "train");
        const held = examples.filter((e) => e.split === "eval");
        assert.ok(held.length > 0, "some examples held out");
        const trainSessions = new Set(train.map((e) => session(e.id)));
        assert.ok(
          held.every((e) => !trainSessions.has(session(e.id))),
          "no session on both sides",
        );
        const lastTrain = Math.max(...train.map((e) => Date.parse(e.started_at)));
        const firstEval = Math.min(...held.map((e) => Number(session(e.id).split(":")[1])));
        assert.ok(lastTrain < firstEval, "evaluation is the future of training");
      });

      it("trains only the owner's turns, text plus <|im_end|>, and keeps every example within the length", async () => {
        const examples = await createDatasetRepository(database).examples(result.datasetId);
        for (const example of examples) {
          for (const segment of example.segments) {
            if (!segment.train) continue;
            assert.equal(segment.speaker, "ActionParsnip");
            assert.ok(segment.text.startsWith(">>> ") && segment.text.endsWith(IM_END), segment.text);
          }
          const text = joinSegments(example.segments);
          assert.ok(text.startsWith("<|im_start|>system\nTelegram group “#ubuntu” · "), "header first");
          assert.ok(!text.endsWith("\n"), "no trailing newline");
        }
        assert.equal(result.manifest.lengthHistogram.at(-1)?.examples, 0, "nothing above --max-tokens");
        assert.ok(
          examples.some((e) => e.segments.some((s) => s.train)),
          "the owner is trained somewhere",
        );
      });

      it("with a real tokenizer, keeps every example within --max-tokens as that tokenizer counts", async () => {
        const tokenizer = await loadGgufTokenizer(testModel());
        try {
          const counted = await buildDataset(appOf(database), defaults({ maxTokens: 512, tokenizer }));
          const examples = await createDatasetRepository(database).examples(counted.datasetId);
          const lengths = examples.map((e) => tokenizer.tokenize(joinSegments(e.segments)));
          assert.ok(Math.max(...lengths) <= 512, `longest example: ${Math.max(...lengths)} tokens`);
          assert.ok(
            lengths.filter((n) => n > 256).length > examples.length / 2,
            "pieces are filled, not tiny",
          );
          assert.equal(counted.manifest.settings.tokenizer, "SmolLM2-135M-Instruct.Q4_1.gguf");
        } finally {
          await tokenizer.close();
        }
      });

      it("leaves excluded people out and writes the same examples to JSONL with a manifest", async () => {
        const examples = await createDatasetRepository(database).examples(result.datasetId);
        assert.ok(
          examples.every((e) => e.speakers.every((s) => s.id !== 41893988)),
          "ubottu excluded",
        );
        const lines = ["train", "eval"].flatMap((split) =>
          fs
            .readFileSync(path.join(outDir, `${split}.jsonl`), "utf8")
            .trim()
            .split("\n")
            .map((l) => JSON.parse(l)),
        );
        assert.equal(lines.length, examples.length);
        const byId = new Map(examples.map((e) => [e.id, e]));
        for (const line of lines) assert.deepEqual(line, byId.get(line.id));
        const manifest = JSON.parse(fs.readFileSync(path.join(outDir, "manifest.json"), "utf8"));
        assert.equal(manifest.counts.examples, examples.length);
        assert.equal(manifest.owner.name, "ActionParsnip");
        assert.equal(manifest.formatVersion, 2, "markers: format version 2");
        assert.ok(manifest.speakers[0].messageShare > 0, "per-speaker shares");
      });

      it("records each file's line count and sha256, and a rebuild stopped midway leaves the folder as it was", async () => {
        const read = (name: string) => fs.readFileSync(path.join(outDir, name));
        const manifest = JSON.parse(read("manifest.json").toString("utf8"));
        for (const name of ["train.jsonl", "eval.jsonl"]) {
          const content = read(name);
          assert.deepEqual(manifest.files[name], {
            lines: content.toString("utf8").split("\n").length - 1,
            sha256: createHash("sha256").update(content).digest("hex"),
          });
        }
        const before = ["train.jsonl", "eval.jsonl", "manifest.json"].map((name) =>
          read(name).toString("hex"),
        );
        const stop = new AbortController();
        const rebuild = buildDataset(appOf(database), {
          ...defaults({ loss: { kind: "all" }, outDir }),
          onProgress: ({ examples }) => {
            if (examples > 200) stop.abort(); // midway, with part of the new files written
          },
          signal: stop.signal,
        });
        await assert.rejects(rebuild, /cancelled/);
        assert.deepEqual(
          ["train.jsonl", "eval.jsonl", "manifest.json"].map((name) => read(name).toString("hex")),
          before,
          "the previous folder is whole and unchanged",
        );
        assert.deepEqual(
          fs.readdirSync(scratch).filter((name) => name.includes(".partial-")),
          [],
          "no staging folder is left behind",
        );
      });

      it("writes its files for the owner alone: 0600 in a 0700 folder, even over an earlier run's", () => {
        const mode = (file: string) => fs.statSync(file).mode & 0o777;
        assert.equal(mode(outDir), 0o700, "the folder");
        assert.deepEqual(result.files.map(mode), [0o600, 0o600, 0o600], "train, eval and the manifest");
      });
    });
  });
}
