/**
 * vm.sh keeps what a VM prints (its log and the console logs, where a debug
 * login or a service's secret may appear) readable by the user alone. A
 * stand-in runner writes the console logs as QEMU's chardev logfile= does, in
 * the VM's directory with the umask it inherits; no QEMU needed.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, it } from "node:test";
import { freePorts, processAlive, standInRunner, vmSh } from "../fixtures/vm/fixture";
import { requireTools } from "../helpers/tools";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "pe20-vmlogs-"));
const started: number[] = [];
after(() => {
    for (const pid of started) if (processAlive(pid)) process.kill(pid, "SIGKILL");
    fs.rmSync(root, { recursive: true, force: true });
});

it("vm.log, serial.log and virtio.log are 0600 and the VM's directory 0700, whatever the caller's umask", async (t) => {
    if (!requireTools(t, ["jq", "setsid", "flock", "timeout", "ss"])) return;
    const runner = standInRunner(path.join(root, "runner"), ["echo 'login: root' >serial.log", "echo hvc0 >virtio.log", "exec sleep 600"]);
    const stateDir = path.join(root, "state");
    // nix-build.sh makes the VM's directory first (for the runner link), with the caller's umask.
    fs.mkdirSync(path.join(stateDir, "logs"), { recursive: true, mode: 0o755 });
    const [serial] = await freePorts(1);
    const old = process.umask(0o022);
    let res;
    try {
        res = await vmSh(["start", "--name", "logs", "--state-dir", stateDir, "--runner", runner,
            "--probe", `serial=console:127.0.0.1:${serial}`, "--timeout", "serial=1"]);
    } finally {
        process.umask(old);
    }
    const pid = Number(/started pid (\d+)/.exec(res.stderr)?.[1]);
    if (pid) started.push(pid);
    assert.equal(res.code, 1, res.stderr);
    const dir = path.join(stateDir, "logs");
    for (const f of ["vm.log", "serial.log", "virtio.log"]) {
        assert.equal((fs.statSync(path.join(dir, f)).mode & 0o777).toString(8), "600", f);
    }
    assert.equal((fs.statSync(dir).mode & 0o777).toString(8), "700", "the VM's directory");
});
