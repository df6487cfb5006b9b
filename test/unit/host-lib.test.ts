/**
 * host/lib.sh, the library the host scripts source: its validation rules agree
 * with config.ts (both read nix/constants.json's "rules"), its CIDR maths with
 * components/net.ts, its TCP probe and port-holder lookup with real sockets on
 * 127.0.0.1.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as net from "node:net";
import * as path from "node:path";
import { describe, it } from "node:test";
import { ConfigError, parseConfig } from "../../components/config";
import { parseCidr, parseIpv4 } from "../../components/net";
import { freePort } from "../helpers/ports";
import { requireTools } from "../helpers/tools";

const lib = path.resolve(__dirname, "..", "..", "host", "lib.sh");

/** Runs `source lib.sh; SCRIPT` in bash; resolves with the exit status and output. */
function libSh(script: string): Promise<{ status: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
        execFile("bash", ["-c", `set -euo pipefail; PROG=test; source "$1"; ${script}`, "lib-test", lib], (err, stdout, stderr) => {
            const status = err === null ? 0 : typeof err.code === "number" ? err.code : 1;
            resolve({ status, stdout, stderr });
        });
    });
}

/** The config problems of a bridge setting, or [] when config.ts accepts it. */
function configProblems(settings: Record<string, string>): string[] {
    const raw = Object.fromEntries(Object.entries({ bridgeEnabled: "true", ...settings }).map(([k, v]) => [`pcp-eval:${k}`, v]));
    try {
        parseConfig(raw, "unit", "/srv/pcp-eval");
        return [];
    } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.problems;
    }
}

describe("host/lib.sh rules agree with config.ts", () => {
    const names = ["evalbr1", "br-0.x", "a", "-bridge", ".br", "bridge_name_16ch", "br idge", "0br"];
    for (const name of names) {
        it(`interface name '${name}'`, async () => {
            const shell = (await libSh(`valid_ifname '${name}'`)).status === 0;
            const ts = !configProblems({ bridgeName: name }).some((p) => p.includes("bridgeName"));
            assert.equal(shell, ts, `lib.sh says ${shell}, config.ts says ${ts}`);
        });
    }

    // gateway/len on the shell side, the subnet and gateway on config's side.
    const cidrs: Array<[string, string, string]> = [
        ["10.42.7.1/24", "10.42.7.0/24", "10.42.7.1"],
        ["10.0.0.1/8", "10.0.0.0/8", "10.0.0.1"],
        ["10.0.0.1/7", "10.0.0.0/7", "10.0.0.1"],
        ["10.42.7.1/29", "10.42.7.0/29", "10.42.7.1"],
        ["10.42.7.1/30", "10.42.7.0/30", "10.42.7.1"],
        ["10.42.7.0/24", "10.42.7.0/24", "10.42.7.0"],
        ["10.42.7.255/24", "10.42.7.0/24", "10.42.7.255"],
        ["10.42.7.01/24", "10.42.7.0/24", "10.42.7.01"],
        ["10.42.7.256/24", "10.42.7.0/24", "10.42.7.256"],
    ];
    for (const [cidr, subnet, gateway] of cidrs) {
        it(`gateway ${cidr}`, async () => {
            const r = await libSh(`host_cidr '${cidr}' && echo "$CIDR_NET" || { echo "$CIDR_ERR"; exit 1; }`);
            const ts = configProblems({ bridgeSubnet: subnet, bridgeGateway: gateway }).filter((p) => /bridge(Subnet|Gateway)/.test(p));
            assert.equal(r.status === 0, ts.length === 0, `lib.sh: ${r.stdout.trim()}; config.ts: ${ts.join("; ")}`);
            if (r.status === 0) assert.equal(r.stdout.trim(), parseCidr(subnet)?.text);
        });
    }

    it("IPv4 addresses", async () => {
        for (const a of ["127.0.0.1", "0.0.0.0", "255.255.255.255", "1.2.3", "01.2.3.4", "1.2.3.256", "a.b.c.d"]) {
            const shell = (await libSh(`valid_ipv4 '${a}'`)).status === 0;
            assert.equal(shell, parseIpv4(a) !== undefined, a);
        }
    });
});

describe("host/lib.sh sockets", () => {
    it("tcp_probe reads the first bytes a server sends, and says refused when nothing listens", async (t) => {
        requireTools(t, ["timeout", "od"]);
        const srv = net.createServer((c) => c.end(Buffer.from([0, 0, 0, 12, 0, 0, 0x70, 0, 1, 2, 3, 4])));
        await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
        t.after(() => srv.close());
        const port = (srv.address() as net.AddressInfo).port;
        const ok = await libSh(`tcp_probe 127.0.0.1 ${port} 2000 "" 12 && echo "$PROBE_DATA"`);
        assert.equal(ok.status, 0, ok.stderr);
        assert.equal(ok.stdout.trim(), "00 00 00 0c 00 00 70 00 01 02 03 04");
        const short = await libSh(`tcp_probe 127.0.0.1 ${port} 2000 "" 20 || echo "$PROBE_ERR"`);
        assert.match(short.stdout, /closed the connection after 12 of 20 bytes/);
        const free = await freePort();
        const refused = await libSh(`tcp_probe 127.0.0.1 ${free} 2000 "" 1 || echo "$PROBE_ERR"`);
        assert.equal(refused.stdout.trim(), "connection refused");
    });

    it("tcp_probe sends first when asked (a console), and times out on a silent peer", async (t) => {
        requireTools(t, ["timeout", "od"]);
        const silent = net.createServer(() => undefined);
        const echo = net.createServer((c) => c.once("data", (d) => c.end(d)));
        await Promise.all([silent, echo].map((s) => new Promise<void>((r) => s.listen(0, "127.0.0.1", r))));
        t.after(() => {
            silent.close();
            echo.close();
        });
        const portOf = (s: net.Server): number => (s.address() as net.AddressInfo).port;
        const answered = await libSh(`tcp_probe 127.0.0.1 ${portOf(echo)} 2000 '\\r\\n' 2 && echo "$PROBE_DATA"`);
        assert.equal(answered.stdout.trim(), "0d 0a");
        const quiet = await libSh(`tcp_probe 127.0.0.1 ${portOf(silent)} 300 "" 1 || echo "$PROBE_ERR"`);
        assert.equal(quiet.stdout.trim(), "connected, but nothing received within 0.3 s");
    });

    it("port_holders names the listener's address, pid and command; nothing for a free port", async (t) => {
        requireTools(t, ["ss"]);
        const srv = net.createServer();
        await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
        t.after(() => srv.close());
        const port = (srv.address() as net.AddressInfo).port;
        const held = await libSh(`port_holders ${port} 127.0.0.1`);
        assert.equal(held.status, 0, held.stderr);
        assert.match(held.stdout, new RegExp(`^127\\.0\\.0\\.1:${port} pid ${process.pid} \\(node`));
        // Another address does not clash with a listener on 127.0.0.1.
        assert.equal((await libSh(`port_holders ${port} 127.0.0.2`)).status, 1);
        assert.equal((await libSh(`port_holders ${await freePort()}`)).status, 1);
    });

    it("die and die_fix write one line naming the program, with the status asked for", async () => {
        const plain = await libSh(`die "no such thing"`);
        assert.deepEqual([plain.status, plain.stderr], [1, "test: no such thing\n"]);
        const fix = await libSh(`die_fix 2 --bridge "'x y' is not a name" "pass evalbr1"`);
        assert.deepEqual([fix.status, fix.stderr], [2, "test: error: --bridge: 'x y' is not a name; fix: pass evalbr1\n"]);
    });
});
