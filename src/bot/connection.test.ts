import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { GrammyError, HttpError } from "grammy";
import {
  connectAttempts,
  connectWait,
  DEFAULT_CONNECT_SECONDS,
  displayApiRoot,
  failureReason,
  pollingWait,
} from "./connection.ts";

describe("the connection to the Bot API", () => {
  it("fits its attempts in the bound: 1, 2, 4, 8, 16, then 30 s between them", () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map(connectWait), [1, 2, 4, 8, 16, 30, 30, 30]);
    assert.equal(DEFAULT_CONNECT_SECONDS, 120);
    assert.equal(connectAttempts(120), 8, "attempts at 0, 1, 3, 7, 15, 31, 61 and 91 s");
    assert.equal(connectAttempts(3), 3, "at 0, 1 and 3 s");
    assert.equal(connectAttempts(2), 2);
    assert.equal(connectAttempts(1), 2);
  });

  it("polls again after 1, 2, 4 … s, at most a minute", () => {
    assert.deepEqual([1, 2, 3, 6, 7, 8, 50].map(pollingWait), [1, 2, 4, 32, 60, 60, 60]);
  });

  it("shows the API root without a user or password", () => {
    assert.equal(displayApiRoot("https://api.telegram.org"), "https://api.telegram.org");
    assert.equal(displayApiRoot("http://user:pass@127.0.0.1:8081/"), "http://127.0.0.1:8081");
  });

  it("says why a call failed without the request's URL", () => {
    const refused = Object.assign(
      new Error(
        "request to http://127.0.0.1:9/bot123:SECRET/getMe failed, reason: connect ECONNREFUSED 127.0.0.1:9",
      ),
      { code: "ECONNREFUSED", type: "system" },
    );
    assert.equal(
      failureReason(new HttpError("Network request for 'getMe' failed!", refused)),
      "connect ECONNREFUSED 127.0.0.1:9",
    );
    const html = Object.assign(
      new Error("invalid json response body at http://x/bot123:SECRET/getMe reason: …"),
      {
        type: "invalid-json",
      },
    );
    assert.match(failureReason(new HttpError("x", html)), /not JSON/);
    assert.equal(
      failureReason(new HttpError("x", new Error("Request to 'getMe' timed out after 10 seconds"))),
      "no answer within 10 s",
    );
    assert.equal(
      failureReason(
        new GrammyError(
          "Call to 'getMe' failed!",
          { ok: false, error_code: 502, description: "Bad Gateway" },
          "getMe",
          {},
        ),
      ),
      "502 Bad Gateway",
    );
  });
});
