import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BaseModel } from "../models/models.repository.ts";
import type { TrainingRun } from "../training/runs.repository.ts";
import { describePreflight, parsePreflight } from "./preflight.ts";
import { tunnelledUrl, workerCommand } from "./remote-worker.ts";
import { basesToSend } from "./send-bases.ts";
import { describeSshFailure, shellQuote, sshArgs } from "./ssh.ts";
import { parseSshTarget } from "./ssh-target.ts";

describe("an ssh:// address", () => {
  it("names a user, a host and a port, and the run target of that host", () => {
    assert.deepEqual(parseSshTarget("ssh://ubuntu@gpu-box:2222"), {
      user: "ubuntu",
      host: "gpu-box",
      port: 2222,
      destination: "ubuntu@gpu-box",
      runTarget: "remote:gpu-box",
    });
    assert.equal(parseSshTarget("ssh://203.0.113.7").destination, "203.0.113.7");
  });

  it("is refused with its form when it is no ssh:// address, carries a password or a path", () => {
    assert.throws(() => parseSshTarget("ubuntu@gpu-box"), /write ssh:\/\/user@host/);
    assert.throws(() => parseSshTarget("http://gpu-box"), /write ssh:\/\/user@host/);
    assert.throws(() => parseSshTarget("ssh://u:secret@gpu-box"), /use a key/);
    assert.throws(() => parseSshTarget("ssh://u@gpu-box/home"), /no path/);
  });
});

describe("ssh as twin calls it", () => {
  it("keeps OpenSSH's host-key checking and never prompts", () => {
    const args = sshArgs(parseSshTarget("ssh://u@h:2"), { configFile: "/c", identity: "/k" }, ["-R", "x"]);
    assert.deepEqual(args.slice(0, 6), ["-F", "/c", "-i", "/k", "-p", "2"]);
    assert.ok(args.includes("BatchMode=yes"));
    assert.ok(!args.some((arg) => /StrictHostKeyChecking/.test(arg)), "the user's host-key policy stays");
    assert.deepEqual(args.slice(-3), ["x", "--", "u@h"]);
  });

  it("quotes a script as one shell word", () => {
    assert.equal(shellQuote("echo 'hi' $HOME"), `'echo '"'"'hi'"'"' $HOME'`);
  });

  it("says what failed: host key, login, refused connection, lost link", () => {
    const failure = (stderr: string) => describeSshFailure("box", { code: 255, stderr });
    assert.match(
      failure("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@") ?? "",
      /host key has changed/,
    );
    assert.match(failure("Host key verification failed.") ?? "", /host key is not known/);
    assert.match(failure("u@box: Permission denied (publickey).") ?? "", /authentication failed/);
    assert.match(
      failure("ssh: connect to host box port 22: Connection refused") ?? "",
      /refused the connection/,
    );
    assert.match(failure("client_loop: send disconnect: Broken pipe") ?? "", /link to box was lost/);
    assert.equal(
      describeSshFailure("box", { code: 1, stderr: "Permission denied" }),
      undefined,
      "the remote command's own failure",
    );
  });
});

describe("a remote machine's preflight", () => {
  it("reads Python, the GPUs, the disk and the memory, and says them in one line", () => {
    const facts = parsePreflight(
      [
        "python=/usr/bin/python3.11",
        "python_version=3.11.9",
        "gpu=NVIDIA H200, 143771, 570.124.06",
        "gpu=NVIDIA H200, 143771, 570.124.06",
        "disk_free_kb=524288000",
        "memory_kb=2113929216",
        "arch=x86_64",
      ].join("\n"),
    );
    assert.equal(facts.gpus.length, 2);
    assert.deepEqual(facts.gpus[0], { name: "NVIDIA H200", memoryGb: 140.4, driver: "570.124.06" });
    assert.equal(facts.diskFreeGb, 500);
    assert.equal(facts.venvReady, false);
    assert.equal(
      describePreflight("box", facts),
      "box: 2 × NVIDIA H200 (140.4 GB), driver 570.124.06; 500 GB free disk, 2016 GB memory; Python 3.11.9",
    );
  });

  it("tells no Python from a Python that cannot make a venv", () => {
    assert.equal(parsePreflight("python=\narch=x86_64").python, undefined);
    assert.equal(parsePreflight("python=\nvenv_missing=/usr/bin/python3").venvMissing, true);
  });
});

describe("the remote worker's start", () => {
  it("has no secret on its command line: they go on its stdin", () => {
    const command = workerCommand("$HOME/.cache/twin-worker/abc", {
      target: parseSshTarget("ssh://u@box"),
      idleExitMinutes: 5,
      staleSeconds: 60,
    });
    assert.match(
      command,
      /twin_trainer worker --link --until-idle --idle-exit-seconds 300 --target remote:box --methods lora,qlora/,
    );
    assert.doesNotMatch(command, /postgres|DATABASE_URL|HF_TOKEN|password/i);
  });

  it("reaches PostgreSQL through the tunnel's end on the remote's loopback, as the role", () => {
    const url = tunnelledUrl(
      "postgres://twin:superuser-secret@127.0.0.1:5432/twin?sslmode=disable",
      { name: "twin_worker_ab", password: "p/w+=" },
      34567,
    );
    assert.equal(url, "postgres://twin_worker_ab:p%2Fw%2B%3D@127.0.0.1:34567/twin");
    assert.doesNotMatch(url, /superuser-secret/);
  });
});

describe("the bases a remote needs", () => {
  it("are the GGUFs of the waiting runs' bases without HF weights, each once", () => {
    const model = (id: number, hfSource: string | null) => ({ id, name: `m${id}`, hfSource }) as BaseModel;
    const models = [model(1, null), model(2, "Qwen/Qwen2.5-7B-Instruct"), model(3, null), model(4, null)];
    const runs = [1, 2, 1, 4].map((baseModelId) => ({ baseModelId }) as TrainingRun);
    assert.deepEqual(
      basesToSend(runs, models).map((m) => m.name),
      ["m1", "m4"],
    );
    assert.deepEqual(basesToSend([], models), []);
  });
});
