import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { hubAnswerError, hubEndpoint, networkFailure, resolveUrl } from "./hub.ts";
import { HubAccessError, HubNotFoundError, HubUnreachableError, ModelSourceError } from "./models.errors.ts";

const hub = { endpoint: "https://hf-mirror.example", token: undefined };
const about = { repo: "org/repo", what: "org/repo/model.gguf" };

describe("hub answers", () => {
  it("are successes below 400", () => {
    assert.equal(hubAnswerError(hub, { status: 302 }, about), undefined);
  });

  it("send a gated repository's user to its page to accept the licence, then to HF_TOKEN", () => {
    const error = hubAnswerError(hub, { status: 401, errorCode: "GatedRepo" }, about);
    assert.ok(error instanceof HubAccessError);
    assert.match(
      error.message,
      /accept the licence at https:\/\/hf-mirror\.example\/org\/repo, then set HF_TOKEN/,
    );
    const refused = hubAnswerError({ ...hub, token: "hf_secret" }, { status: 403 }, about);
    assert.match(String(refused?.message), /refused HF_TOKEN for org\/repo \(403\)/);
    assert.ok(!String(refused?.message).includes("hf_secret"));
  });

  it("take the hub's 401 for a missing repository (RepoNotFound) as missing, not gated", () => {
    const error = hubAnswerError(hub, { status: 401, errorCode: "RepoNotFound" }, about);
    assert.ok(error instanceof HubNotFoundError);
    assert.equal(
      error.message,
      "org/repo is not on https://hf-mirror.example (a private repository needs HF_TOKEN)",
    );
  });

  it("name a missing quantization (the manifest's 400) and a missing file (404)", () => {
    const missing = "org/repo has no Q3_K_S GGUF";
    assert.equal(hubAnswerError(hub, { status: 400 }, { ...about, missing })?.message, missing);
    assert.ok(hubAnswerError(hub, { status: 404 }, about) instanceof HubNotFoundError);
  });

  it("blame the hub for a 5xx or 429, and point at `twin model add`", () => {
    const error = hubAnswerError(hub, { status: 503, statusText: "Service Unavailable" }, about);
    assert.ok(error instanceof HubUnreachableError);
    assert.match(
      error.message,
      /answered 503 Service Unavailable for org\/repo\/model\.gguf: try again later, .*twin model add <file\.gguf>/,
    );
    assert.ok(hubAnswerError(hub, { status: 429 }, about) instanceof HubUnreachableError);
  });
});

describe("hub addresses", () => {
  it("take HF_ENDPOINT without its trailing slash, huggingface.co when it is unset", () => {
    assert.equal(hubEndpoint(undefined), "https://huggingface.co");
    assert.equal(hubEndpoint("https://hf-mirror.com/"), "https://hf-mirror.com");
    assert.throws(() => hubEndpoint("hf-mirror.com"), ModelSourceError);
  });

  it("resolve a file at a revision, each path segment encoded", () => {
    assert.equal(
      resolveUrl(hub, "org/repo", "main", "Q4 K/model.gguf"),
      "https://hf-mirror.example/org/repo/resolve/main/Q4%20K/model.gguf",
    );
  });

  it("say which network failure it was", () => {
    const refused = new TypeError("fetch failed", {
      cause: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9"), { code: "ECONNREFUSED" }),
    });
    assert.equal(networkFailure(refused), "ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9");
  });
});
