import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { type SshAlias, type SshRemote, sshRemoteUnavailable, startSshRemote } from "./support/ssh-remote.ts";

type Result = { code: number | null; stdout: string; stderr: string };

function sshSpawn(remote: SshRemote, alias: SshAlias, command: string, options: string[] = []): ChildProcess {
  return spawn("ssh", ["-F", remote.configFile, ...options, alias, command], { stdio: "pipe" });
}

function finished(child: ChildProcess, timeoutMs = 15_000): Promise<Result> {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk) => {
    stdout += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`ssh still running after ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function ssh(remote: SshRemote, alias: SshAlias, command: string, options: string[] = []): Promise<Result> {
  const child = sshSpawn(remote, alias, command, options);
  child.stdin?.end();
  return finished(child);
}

async function eventually(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Exists and is no zombie (a killed process stays one until its parent, or init, reaps it). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

describe("the SSH remote harness", { skip: sshRemoteUnavailable() }, () => {
  let remote: SshRemote;
  before(async () => {
    remote = await startSshRemote();
  });
  after(async () => {
    await remote?.stop();
  });

  test("a login on the remote runs the command as twinremote in its home directory", async () => {
    const result = await ssh(remote, "remote", "id -un; echo $HOME");
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "twinremote\n/home/twinremote\n");
    assert.equal(remote.url(), "ssh://twinremote@remote");
    assert.equal(remote.url("remote-nopython"), "ssh://twinnopython@remote-nopython");
  });

  test("the remote cannot reach the host's loopback, but a reverse tunnel opened by the client can", async () => {
    // A host service on loopback, as PostgreSQL on 127.0.0.1:5432, greeting with a token of its own.
    const token = `host-service-${randomBytes(4).toString("hex")}`;
    const server = net.createServer((socket) => socket.end(`${token}\n`));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as net.AddressInfo;
    try {
      // sshd listens on 127.0.0.1:22 inside: the probe itself works.
      assert.equal(await remote.reachableFromRemote("127.0.0.1", 22), true);
      assert.equal(await remote.reachableFromRemote("127.0.0.1", port), false);
      assert.equal(await remote.reachableFromRemote("127.0.0.1", 5432), false);

      const read = `import socket; s = socket.create_connection(("127.0.0.1", 15432), 5); print(s.makefile().readline(), end="")`;
      const result = await ssh(remote, "remote", `/usr/bin/python3 -c '${read}'`, [
        "-o",
        "ExitOnForwardFailure=yes",
        "-R",
        `127.0.0.1:15432:127.0.0.1:${port}`,
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${token}\n`);
    } finally {
      server.close();
    }
  });

  test("a remote whose host key differs from known_hosts is refused as a changed identification", async () => {
    const result = await ssh(remote, "remote-changed-key", "true");
    assert.equal(result.code, 255);
    assert.match(result.stderr, /REMOTE HOST IDENTIFICATION HAS CHANGED/);
  });

  test("a key the remote does not authorize is refused with Permission denied", async () => {
    const result = await ssh(remote, "remote-wrong-identity", "true");
    assert.equal(result.code, 255);
    assert.match(result.stderr, /Permission denied/);
  });

  test("sessions of twinnopython find no python3 while the shell and its usual tools work", async () => {
    const result = await ssh(remote, "remote-nopython", "if command -v python3; then exit 3; fi; id -un");
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, "twinnopython\n");
    // The same check on twinremote finds it: the difference is the user's environment.
    const withPython = await ssh(remote, "remote", "command -v python3");
    assert.equal(withPython.code, 0, withPython.stderr);
  });

  test("dropping the connections makes ssh exit with an error and ends the session that lost its stdin", async () => {
    // The session watches its stdin, as the remote worker does; the client's stdin stays open.
    const client = sshSpawn(remote, "remote", "sleep 60 & read -r line; kill $!");
    const result = finished(client);
    await eventually(
      () => remote.processes().some((p) => p.user === "twinremote" && p.command === "sleep 60"),
      "sleep 60 runs on the remote",
    );
    const sleep = remote.processes().find((p) => p.command === "sleep 60");
    assert.ok(sleep && remote.environ(sleep.pid).includes("USER=twinremote"));

    const dropped = Date.now();
    await remote.dropConnections();
    const { code } = await result;
    assert.notEqual(code, 0);
    assert.ok(Date.now() - dropped < 5_000, "ssh noticed the drop within 5 s");
    await eventually(
      () => !remote.processes().some((p) => p.user === "twinremote"),
      "no process of twinremote remains",
    );
    client.stdin?.end();
  });

  test("stop leaves no process of the remote users behind", async () => {
    const clients = [sshSpawn(remote, "remote", "sleep 60"), sshSpawn(remote, "remote-nopython", "sleep 60")];
    const results = clients.map((client) => finished(client));
    await eventually(
      () => new Set(remote.processes().map((p) => p.user)).size === 2,
      "both remote users run sessions",
    );
    const pids = remote.processes().map((p) => p.pid);

    await remote.stop();
    // The namespace is gone with them, so look the pids up in /proc directly.
    assert.deepEqual(pids.filter(running), []);
    for (const result of results) assert.notEqual((await result).code, 0);
  });
});
