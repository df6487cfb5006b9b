/**
 * host/net.sh against the real ip and nft, each test inside network
 * namespaces it creates (never the machine's own): the bridge, TAPs, forwarding
 * and NAT appear, up again changes nothing, traffic crosses the bridge and is
 * masqueraded, down restores the namespace exactly, foreign devices and tables
 * are refused and survive, a failure half way is undone.
 */
import { after, before, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { constants } from "../../components/constants";
import { haveCommand, isRoot, requireTools } from "../helpers/tools";
import { startProviderPlugin, type DiffResult, type ProviderPlugin } from "../helpers/providerPlugin";
import { destroyAllNetns, Netns, startListener, tcpExchange, vethPair, type LinkJson, type NetnsSnapshot, type RunOptions } from "../helpers/netns";

const REPO = path.resolve(__dirname, "..", "..");
const NET_SH = path.join(REPO, "host", "net.sh");
const net = constants.network;
const PREFIX_LEN = net.subnet.split("/")[1];
const GATEWAY_CIDR = `${net.gateway}/${PREFIX_LEN}`;
const TAP0 = `${net.tapPrefix}0`;
const TAP1 = `${net.tapPrefix}1`;
const TAP2 = `${net.tapPrefix}2`;
const OWNER = "nobody";
/** The listener port: any port works inside our namespace; pmcd's is what a VM would reach. */
const PORT = constants.ports.pmcd;
/**
 * A stand-in for the world beyond the host, in a namespace of the test's own
 * (198.18.0.0/15 is reserved for network tests, RFC 2544). Test fixture, not a
 * product number.
 */
const UPSTREAM_HOST = "198.18.0.1";
const UPSTREAM_PEER = "198.18.0.2";
const UPSTREAM_LEN = "24";

interface Item {
    kind: string;
    name: string;
    detail?: string;
}

interface ChangeResult {
    verb: string;
    changed: boolean;
    created: Item[];
    updated: Item[];
    removed: Item[];
    left: Item[];
    bridge: string | null;
    nftTable: string | null;
    taps: string[];
    stateFile: string;
    message?: string;
}

interface StatusResult {
    verb: "status";
    recorded: boolean;
    privilege: string;
    bridge: { name: string; recorded: boolean; exists: boolean; ours: boolean; addresses?: string[]; up?: boolean };
    nft: { table: string; recorded: boolean; exists: boolean | null; ours: boolean | null };
    ipForward: { value: string; changedByUs: boolean; previous: string | null };
    taps: Array<{ name: string; recorded: boolean; exists: boolean; ours: boolean; owner?: string; multiQueue?: boolean; vnetHdr?: boolean; master?: string }>;
}

interface CheckResult {
    verb: "check";
    ok: boolean;
    privilege: string;
    missing: string[];
    needs: Array<{ name: string; status: string; detail: string; fix?: string }>;
    warnings: Array<{ name: string; detail: string }>;
}

interface NetRun<T> {
    status: number | null;
    stdout: string;
    stderr: string;
    json: T | undefined;
}

/** Runs net.sh inside `ns`. On success stdout must be exactly one JSON line. */
function netsh<T = ChangeResult>(ns: Netns, args: string[], opts: RunOptions & { script?: string } = {}): NetRun<T> {
    const r = ns.run("bash", [opts.script ?? NET_SH, ...args], opts);
    let json: T | undefined;
    if (r.status === 0 || (args[0] === "check" && r.stdout !== "")) {
        const lines = r.stdout.split("\n").filter((l) => l !== "");
        assert.equal(lines.length, 1, `net.sh ${args.join(" ")} must print one JSON line, got:\n${r.stdout}\nstderr:\n${r.stderr}`);
        json = JSON.parse(lines[0]!) as T;
    }
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, json };
}

function netshOk<T = ChangeResult>(ns: Netns, args: string[], opts: RunOptions & { script?: string } = {}): T {
    const r = netsh<T>(ns, args, opts);
    assert.equal(r.status, 0, `net.sh ${args.join(" ")} failed (${r.status}):\n${r.stderr}`);
    return r.json!;
}

/**
 * What TapBridge does for a stack with these TAP VMs: bridge-up, then one
 * tap-up per TAP (each a resource of its own). Returns every change made.
 */
function upAll(ns: Netns, stateDir: string, taps: string[], opts: RunOptions = {}): ChangeResult {
    const runs = [netshOk(ns, ["bridge-up", "--state-dir", stateDir], opts),
        ...taps.map((tap) => netshOk(ns, ["tap-up", "--state-dir", stateDir, "--tap", tap, "--owner", OWNER], opts))];
    return {
        ...runs.at(-1)!,
        changed: runs.some((r) => r.changed),
        created: runs.flatMap((r) => r.created),
        updated: runs.flatMap((r) => r.updated),
        removed: runs.flatMap((r) => r.removed),
    };
}

function reEscape(text: string): string {
    return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

function names(items: Item[]): string[] {
    return items.map((i) => `${i.kind}:${i.name}`).sort();
}

function needsNetns(t: TestContext): boolean {
    return requireTools(t, ["ip", "nft", "jq", "flock", "sysctl", "setpriv",
        ["root (network namespaces need it)", isRoot]]);
}

interface World {
    ns: Netns;
    stateDir: string;
}

/**
 * A namespace standing in for the host, holding someone else's things that
 * net.sh must never touch: a veth pair with an address, an nftables table with
 * a rule, forwarding off and accept_redirects off (a hardened host; turning
 * ip_forward on and off again makes the kernel rewrite it).
 */
function world(t: TestContext): World {
    const ns = Netns.create("pe4");
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "pe4-state-"));
    t.after(() => {
        ns.destroy();
        fs.rmSync(stateDir, { recursive: true, force: true });
    });
    ns.ip(["link", "add", "pe4keep0", "type", "veth", "peer", "name", "pe4keep1"]);
    ns.ip(["addr", "add", "192.0.2.1/24", "dev", "pe4keep0"]);
    ns.ip(["link", "set", "dev", "pe4keep0", "up"]);
    ns.runOk("nft", ["-f", "-"], {
        input: "table inet pe4_foreign {\n chain input { type filter hook input priority 0; policy accept; tcp dport 9 counter; }\n"
            + " chain post { type nat hook postrouting priority srcnat; policy accept; }\n}\n",
    });
    ns.setSysctl("net.ipv4.ip_forward", "0");
    ns.setSysctl("net.ipv4.conf.all.accept_redirects", "0");
    return { ns, stateDir };
}

/**
 * A stand-in VM: its own namespace, a veth whose host end (pe4vm0) is a
 * bridge port, the first VM address, default route via the gateway.
 */
function standInVm(t: TestContext, ns: Netns): Netns {
    const vm = Netns.create("pe4");
    t.after(() => vm.destroy());
    vethPair(ns, "pe4vm0", vm, "pe4vm1");
    ns.ip(["link", "set", "dev", "pe4vm0", "master", net.bridge]);
    ns.ip(["link", "set", "dev", "pe4vm0", "up"]);
    vm.ip(["addr", "add", `${net.firstVmAddress}/${PREFIX_LEN}`, "dev", "pe4vm1"]);
    vm.ip(["link", "set", "dev", "pe4vm1", "up"]);
    vm.ip(["route", "add", "default", "via", net.gateway]);
    return vm;
}

/** The world beyond the host: a namespace on a veth (host end pe4up0, UPSTREAM_HOST; peer UPSTREAM_PEER). */
function upstreamOf(t: TestContext, ns: Netns): Netns {
    const upstream = Netns.create("pe4");
    t.after(() => upstream.destroy());
    vethPair(ns, "pe4up0", upstream, "pe4up1");
    ns.ip(["addr", "add", `${UPSTREAM_HOST}/${UPSTREAM_LEN}`, "dev", "pe4up0"]);
    ns.ip(["link", "set", "dev", "pe4up0", "up"]);
    upstream.ip(["addr", "add", `${UPSTREAM_PEER}/${UPSTREAM_LEN}`, "dev", "pe4up1"]);
    upstream.ip(["link", "set", "dev", "pe4up1", "up"]);
    return upstream;
}

function linkNames(s: NetnsSnapshot): string[] {
    return s.links.map((l) => l.ifname).sort();
}

/** The snapshot without the named links (their link and address entries, and their sysctls). */
function without(s: NetnsSnapshot, drop: string[]): NetnsSnapshot {
    const keep = (l: { ifname: string }) => !drop.includes(l.ifname);
    const sysctl = Object.fromEntries(Object.entries(s.sysctl).filter(([k]) => !drop.some((d) => k === `net.ipv4.conf.${d}.forwarding`)));
    return { links: s.links.filter(keep), addrs: (s.addrs as Array<{ ifname: string }>).filter(keep), ruleset: s.ruleset, sysctl };
}

function ourTable(ns: Netns): string | undefined {
    const r = ns.run("nft", ["list", "table", "ip", net.nftTable]);
    return r.status === 0 ? r.stdout : undefined;
}

let hostLinksBefore: string[] = [];
const OURS_IN_HOST = (n: string) => n === net.bridge || n.startsWith(net.tapPrefix) || n.startsWith("pe4");

function hostLinkNames(): string[] {
    return (JSON.parse(execFileSync("ip", ["-j", "link", "show"], { encoding: "utf8" })) as LinkJson[]).map((l) => l.ifname);
}

before(() => {
    if (haveCommand("ip")) hostLinksBefore = hostLinkNames();
});

after(() => {
    destroyAllNetns();
    if (!haveCommand("ip")) return;
    // The machine's own namespace never gained a bridge, TAP or test link of ours.
    const gained = hostLinkNames().filter((n) => OURS_IN_HOST(n) && !hostLinksBefore.includes(n));
    assert.deepEqual(gained, [], "links of this test leaked into the machine's own network namespace");
});

test("bridge-up and tap-up make the bridge, TAPs, forwarding and NAT; again they change nothing; bridge-down restores the namespace exactly", (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    const before = ns.snapshot();

    const up = upAll(ns, stateDir, [TAP0, TAP1]);
    assert.equal(up.changed, true);
    assert.deepEqual(names(up.created), ["bridge:" + net.bridge, "nftables:ip " + net.nftTable,
        "sysctl:net.ipv4.ip_forward", `tap:${TAP0}`, `tap:${TAP1}`].sort());
    assert.deepEqual(up.taps, [TAP0, TAP1]);

    // The bridge: ours (marked), up, with the gateway address and a pinned MAC.
    const br = ns.link(net.bridge)!;
    assert.ok(br, "bridge exists");
    assert.equal((br.linkinfo as { info_kind: string }).info_kind, "bridge");
    assert.match(br.ifalias ?? "", /^pcp-eval:/);
    assert.ok(br.flags?.includes("UP"));
    const addrs = JSON.parse(ns.ip(["-j", "addr", "show", "dev", net.bridge])) as Array<{ addr_info: Array<{ family: string; local: string; prefixlen: number }> }>;
    assert.deepEqual(addrs[0]!.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`), [GATEWAY_CIDR]);
    assert.equal(ns.runOk("cat", [`/sys/class/net/${net.bridge}/addr_assign_type`]).trim(), "3", "bridge MAC is set explicitly");

    // TAPs: tap mode, the flags microvm.nix's QEMU runner opens them with, the VM user's, on the bridge, up.
    for (const name of [TAP0, TAP1]) {
        const l = ns.link(name)!;
        const info = (l.linkinfo as { info_kind: string; info_data: Record<string, unknown> });
        assert.equal(info.info_kind, "tun");
        assert.equal(info.info_data.type, "tap");
        assert.equal(info.info_data.vnet_hdr, true);
        assert.equal(info.info_data.multi_queue, constants.vm.vcpus > 1);
        assert.equal(info.info_data.pi, false);
        assert.equal(info.info_data.persist, true);
        assert.equal(String(info.info_data.user), OWNER);
        assert.equal(l.master, net.bridge);
        assert.ok(l.flags?.includes("UP"));
        assert.equal(l.ifalias, br.ifalias);
    }

    // Forwarding on; NAT in a table of our own; the foreign table untouched.
    assert.equal(ns.sysctl("net.ipv4.ip_forward"), "1");
    const table = ourTable(ns)!;
    assert.match(table, /type nat hook postrouting priority srcnat/);
    assert.match(table, new RegExp(`ip saddr ${reEscape(net.subnet)} ip daddr != ${reEscape(net.subnet)} masquerade`));
    const foreignBefore = before.ruleset.filter((e) => JSON.stringify(e).includes("pe4_foreign"));
    const afterUp = ns.snapshot();
    assert.deepEqual(afterUp.ruleset.filter((e) => JSON.stringify(e).includes("pe4_foreign")), foreignBefore);

    // status: everything exists and is ours.
    const st = netshOk<StatusResult>(ns, ["status", "--state-dir", stateDir]);
    assert.equal(st.recorded, true);
    assert.deepEqual([st.bridge.exists, st.bridge.ours, st.nft.exists, st.nft.ours], [true, true, true, true]);
    assert.deepEqual(st.taps.map((x) => [x.name, x.exists, x.ours, x.master]), [[TAP0, true, true, net.bridge], [TAP1, true, true, net.bridge]]);
    assert.deepEqual(st.ipForward, { value: "1", changedByUs: true, previous: "0" });

    // Again: nothing changes, and it says so.
    const again = upAll(ns, stateDir, [TAP0, TAP1]);
    assert.equal(again.changed, false);
    assert.deepEqual([again.created, again.updated, again.removed], [[], [], []]);
    assert.match(again.message ?? "", /nothing changed/);
    assert.deepEqual(ns.snapshot(), afterUp);
    assert.equal(netshOk(ns, ["tap-up", "--state-dir", stateDir, "--tap", TAP0, "--owner", OWNER, "--bridge", net.bridge]).changed, false);

    // bridge-down: exactly the state before, state file gone; twice is fine.
    const down = netshOk(ns, ["bridge-down", "--state-dir", stateDir]);
    assert.equal(down.changed, true);
    assert.deepEqual(names(down.removed), ["bridge:" + net.bridge, "nftables:ip " + net.nftTable,
        "sysctl:net.ipv4.ip_forward", `tap:${TAP0}`, `tap:${TAP1}`].sort());
    assert.deepEqual(down.left, []);
    assert.deepEqual(ns.snapshot(), before);
    assert.deepEqual(fs.readdirSync(stateDir), []);
    const twice = netshOk(ns, ["bridge-down", "--state-dir", stateDir]);
    assert.equal(twice.changed, false);
    assert.deepEqual(ns.snapshot(), before);
});

test("traffic from a veth peer reaches a listener on the gateway through the bridge, and leaves masqueraded", async (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    const before = ns.snapshot();
    upAll(ns, stateDir, [TAP0]);

    const vm = standInVm(t, ns);

    // The gateway address answers, and sees the VM's own address: the bridge carried it.
    const listener = await startListener(ns, net.gateway, PORT);
    t.after(() => listener.close());
    const atGateway = tcpExchange(vm, net.gateway, PORT, "hello gateway");
    assert.deepEqual(atGateway, { remoteAddress: net.firstVmAddress, received: "hello gateway" });
    listener.close();

    // Beyond the host: forwarded and masqueraded. The upstream side has no route
    // back to the VM subnet, so the answer arrives only through NAT.
    const upstream = upstreamOf(t, ns);
    const far = await startListener(upstream, UPSTREAM_PEER, PORT);
    t.after(() => far.close());
    const beyond = tcpExchange(vm, UPSTREAM_PEER, PORT, "hello world");
    assert.deepEqual(beyond, { remoteAddress: UPSTREAM_HOST, received: "hello world" });
    far.close();

    // Test plumbing away, then down: the namespace is as before.
    ns.ip(["link", "del", "dev", "pe4vm0"]);
    ns.ip(["link", "del", "dev", "pe4up0"]);
    netshOk(ns, ["bridge-down", "--state-dir", stateDir]);
    assert.deepEqual(ns.snapshot(), before);
});

test("a foreign bridge of the same name is refused before anything is made and survives bridge-down", (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    ns.ip(["link", "add", net.bridge, "type", "bridge"]);
    ns.ip(["addr", "add", "192.0.2.77/32", "dev", net.bridge]);
    const before = ns.snapshot();

    const r = netsh(ns, ["bridge-up", "--state-dir", stateDir]);
    assert.equal(r.status, 4);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, new RegExp(`error: --bridge: a device named ${net.bridge} exists and is not ours`));
    assert.match(r.stderr, /fix: choose another bridge name/);
    assert.deepEqual(ns.snapshot(), before, "nothing was made");
    assert.deepEqual(fs.readdirSync(stateDir), []);

    const st = netshOk<StatusResult>(ns, ["status", "--state-dir", stateDir]);
    assert.deepEqual([st.bridge.name, st.bridge.exists, st.bridge.ours, st.bridge.recorded], [net.bridge, true, false, false]);

    const down = netshOk(ns, ["bridge-down", "--state-dir", stateDir]);
    assert.equal(down.changed, false);
    assert.deepEqual(ns.snapshot(), before, "the foreign bridge survives bridge-down");
});

test("a foreign nftables table of the same name is refused and survives bridge-down", (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    ns.runOk("nft", ["-f", "-"], { input: `table ip ${net.nftTable} {\n chain c { type filter hook forward priority 0; policy accept; }\n}\n` });
    const before = ns.snapshot();

    const r = netsh(ns, ["bridge-up", "--state-dir", stateDir]);
    assert.equal(r.status, 4);
    assert.match(r.stderr, new RegExp(`error: --nft-table: an nftables table 'ip ${net.nftTable}' exists and is not ours`));
    assert.deepEqual(ns.snapshot(), before, "nothing was made");

    const st = netshOk<StatusResult>(ns, ["status", "--state-dir", stateDir]);
    assert.deepEqual([st.nft.exists, st.nft.ours], [true, false]);
    netshOk(ns, ["bridge-down", "--state-dir", stateDir]);
    assert.deepEqual(ns.snapshot(), before);
});

test("a TAP name taken by a foreign device is refused before anything is made", (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    ns.ip(["tuntap", "add", "dev", TAP1, "mode", "tap"]);
    const before = ns.snapshot();

    upAll(ns, stateDir, [TAP0]);
    const withTap0 = ns.snapshot();
    const stateWithTap0 = fs.readFileSync(path.join(stateDir, "net.json"), "utf8");
    const r = netsh(ns, ["tap-up", "--state-dir", stateDir, "--tap", TAP1, "--owner", OWNER]);
    assert.equal(r.status, 4);
    assert.match(r.stderr, new RegExp(`error: --tap: a device named ${TAP1} exists and is not ours`));
    assert.deepEqual(ns.snapshot(), withTap0);
    assert.equal(fs.readFileSync(path.join(stateDir, "net.json"), "utf8"), stateWithTap0);
    netshOk(ns, ["bridge-down", "--state-dir", stateDir]);
    assert.deepEqual(ns.snapshot(), before, "the foreign TAP survives bridge-down");
});

/**
 * An `ip` in front of the real one that, just before `ip tuntap add dev NAME`,
 * makes a foreign TAP of that name: the race a pre-check cannot see, so the
 * real `ip tuntap add` fails half way through the run.
 */
/** An `nft` in front of the real one that refuses to load a ruleset (`nft -f`): bridge-up's last step fails. */
function failingNft(dir: string): string {
    const sub = path.join(dir, "nft-fails");
    fs.mkdirSync(sub, { recursive: true });
    const realNft = execFileSync("sh", ["-c", "command -v nft"], { encoding: "utf8" }).trim();
    fs.writeFileSync(path.join(sub, "nft"), `#!/bin/sh\ncase " $* " in *" -f "*) echo "nft: refused by the test" >&2; exit 1 ;; esac\nexec "${realNft}" "$@"\n`, { mode: 0o755 });
    return sub;
}

function racingIp(dir: string, name: string): string {
    const realIp = execFileSync("sh", ["-c", "command -v ip"], { encoding: "utf8" }).trim();
    const shim = path.join(dir, "ip");
    fs.writeFileSync(shim, `#!/bin/sh\ncase " $* " in *" tuntap add dev ${name} "*) "${realIp}" tuntap add dev ${name} mode tap ;; esac\nexec "${realIp}" "$@"\n`, { mode: 0o755 });
    return dir;
}

test("a failure half way undoes what that run made, and only that", (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    const shimDir = fs.mkdtempSync(path.join(os.tmpdir(), "pe4-shim-"));
    t.after(() => fs.rmSync(shimDir, { recursive: true, force: true }));
    const env = { PATH: `${racingIp(shimDir, TAP1)}:${process.env.PATH ?? ""}` };
    const before = ns.snapshot();

    // A fresh bridge-up whose last step (NAT) fails: bridge and forwarding are undone.
    const r = netsh(ns, ["bridge-up", "--state-dir", stateDir], { env: { PATH: `${failingNft(shimDir)}:${process.env.PATH ?? ""}` } });
    assert.equal(r.status, 1);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /a command failed/);
    assert.match(r.stderr, /rolling back what this run made/);
    assert.deepEqual(ns.snapshot(), before, "everything the run made is gone; forwarding and accept_redirects restored");
    assert.deepEqual(fs.readdirSync(stateDir), [], "no state recorded");

    // A tap-up on top of an earlier bridge-up and tap-up: only its own TAP is undone.
    upAll(ns, stateDir, [TAP0]);
    const upBefore = ns.snapshot();
    const stateBefore = fs.readFileSync(path.join(stateDir, "net.json"), "utf8");
    const r2 = netsh(ns, ["tap-up", "--state-dir", stateDir, "--tap", TAP1, "--owner", OWNER], { env });
    assert.equal(r2.status, 1);
    assert.match(r2.stderr, new RegExp(`error: --tap ${TAP1}: a command failed`));
    assert.deepEqual(without(ns.snapshot(), [TAP1]), upBefore, "the earlier bridge, TAP0, NAT and forwarding stay");
    assert.equal(fs.readFileSync(path.join(stateDir, "net.json"), "utf8"), stateBefore);
    ns.ip(["link", "del", "dev", TAP1]);
    netshOk(ns, ["bridge-down", "--state-dir", stateDir]);
    assert.deepEqual(ns.snapshot(), before);
});

test("adding a TAP touches only that TAP; removing one removes only its device", (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    const before = ns.snapshot();
    upAll(ns, stateDir, [TAP0]);
    const one = ns.snapshot();

    const add = netshOk(ns, ["tap-up", "--state-dir", stateDir, "--tap", TAP1, "--owner", OWNER, "--bridge", net.bridge, "--multi-queue", "off"]);
    assert.deepEqual(names(add.created), [`tap:${TAP1}`]);
    assert.deepEqual([add.updated, add.removed], [[], []]);
    const two = ns.snapshot();
    assert.deepEqual(linkNames(two), [...linkNames(one), TAP1].sort());
    assert.deepEqual(without(two, [TAP1]), one, "bridge (MAC included), TAP0, NAT and forwarding untouched");
    assert.equal((ns.link(TAP1)!.linkinfo as { info_data: { multi_queue: boolean } }).info_data.multi_queue, false);

    const rm = netshOk(ns, ["tap-down", "--state-dir", stateDir, "--tap", TAP1]);
    assert.deepEqual(names(rm.removed), [`tap:${TAP1}`]);
    assert.deepEqual(ns.snapshot(), one);
    assert.equal(netshOk(ns, ["tap-down", "--state-dir", stateDir, "--tap", TAP1]).changed, false, "tap-down twice is fine");

    // bridge-up again leaves the TAPs alone.
    assert.equal(netshOk(ns, ["bridge-up", "--state-dir", stateDir]).changed, false);
    assert.ok(ns.link(TAP0));

    netshOk(ns, ["bridge-down", "--state-dir", stateDir]);
    assert.deepEqual(ns.snapshot(), before);
});

test("parallel tap-up calls are serialised by the state lock and all recorded", async (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    const before = ns.snapshot();
    netshOk(ns, ["bridge-up", "--state-dir", stateDir]);
    const taps = [TAP0, TAP1, TAP2];
    const results = await Promise.all(taps.map((tap) =>
        ns.runAsync("bash", [NET_SH, "tap-up", "--state-dir", stateDir, "--tap", tap, "--owner", OWNER])));
    for (const r of results) assert.equal(r.status, 0, r.stderr);
    const st = netshOk<StatusResult>(ns, ["status", "--state-dir", stateDir]);
    assert.deepEqual(st.taps.map((x) => [x.name, x.ours]), taps.map((x) => [x, true]));
    netshOk(ns, ["bridge-down", "--state-dir", stateDir]);
    assert.deepEqual(ns.snapshot(), before);
});

test("a tap-up killed after making its TAP (tagged with this state's marker, not yet recorded) is finished by the next tap-up; a same-named TAP without the marker is refused", (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    const before = ns.snapshot();
    netshOk(ns, ["bridge-up", "--state-dir", stateDir]);
    const marker = (JSON.parse(fs.readFileSync(path.join(stateDir, "net.json"), "utf8")) as { marker: string }).marker;
    // What the killed run left: the device made and tagged, the state not yet saved.
    ns.ip(["tuntap", "add", "dev", TAP0, "mode", "tap", "user", OWNER, "vnet_hdr"]);
    ns.ip(["link", "set", "dev", TAP0, "alias", marker]);
    const finished = netshOk(ns, ["tap-up", "--state-dir", stateDir, "--tap", TAP0, "--owner", OWNER]);
    assert.equal(finished.changed, true);
    const recorded = JSON.parse(fs.readFileSync(path.join(stateDir, "net.json"), "utf8")) as { taps: Record<string, unknown> };
    assert.ok(recorded.taps[TAP0], "the TAP is recorded now");
    assert.equal(ns.link(TAP0)!.master, net.bridge);

    // A device of someone else's under the other TAP name: refused, left alone.
    ns.ip(["tuntap", "add", "dev", TAP1, "mode", "tap"]);
    const refused = netsh(ns, ["tap-up", "--state-dir", stateDir, "--tap", TAP1, "--owner", OWNER]);
    assert.equal(refused.status, 4, refused.stderr);
    assert.match(refused.stderr, /a device named \S+ exists and is not ours: it is not recorded/);
    ns.ip(["link", "del", "dev", TAP1]);
    netshOk(ns, ["bridge-down", "--state-dir", stateDir]);
    assert.deepEqual(ns.snapshot(), before);
});

test("devices gone behind our back (a reboot) are made again by the up verbs; a replaced one is left alone by bridge-down", (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    const before = ns.snapshot();
    upAll(ns, stateDir, [TAP0, TAP1]);

    // As after a reboot: links and table gone, forwarding back to 0; the state file remains.
    ns.ip(["link", "del", "dev", TAP0]);
    ns.ip(["link", "del", "dev", TAP1]);
    ns.ip(["link", "del", "dev", net.bridge]);
    ns.runOk("nft", ["delete", "table", "ip", net.nftTable]);
    ns.setSysctl("net.ipv4.ip_forward", "0");
    ns.setSysctl("net.ipv4.conf.all.accept_redirects", "0");
    const st = netshOk<StatusResult>(ns, ["status", "--state-dir", stateDir]);
    assert.deepEqual([st.bridge.recorded, st.bridge.exists, st.nft.exists], [true, false, false]);

    const again = upAll(ns, stateDir, [TAP0, TAP1]);
    assert.equal(again.changed, true);
    assert.deepEqual(names(again.created), ["bridge:" + net.bridge, "nftables:ip " + net.nftTable,
        "sysctl:net.ipv4.ip_forward", `tap:${TAP0}`, `tap:${TAP1}`].sort());

    // Someone replaces TAP1 with a device of their own: bridge-down leaves it.
    ns.ip(["link", "del", "dev", TAP1]);
    ns.ip(["tuntap", "add", "dev", TAP1, "mode", "tap"]);
    const down = netshOk(ns, ["bridge-down", "--state-dir", stateDir]);
    assert.deepEqual(down.left.map((i) => `${i.kind}:${i.name}`), [`tap:${TAP1}`]);
    assert.ok(ns.link(TAP1), "the replacement survives");
    ns.ip(["link", "del", "dev", TAP1]);
    assert.deepEqual(ns.snapshot(), before);
});

/** net.sh and constants.json copied where an unprivileged user can read them. */
function readableCopy(t: TestContext): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe4-repo-"));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.chmodSync(dir, 0o755);
    for (const rel of ["host/net.sh", "host/lib.sh", "nix/constants.json"]) {
        fs.mkdirSync(path.join(dir, path.dirname(rel)), { recursive: true, mode: 0o755 });
        fs.copyFileSync(path.join(REPO, rel), path.join(dir, rel));
        fs.chmodSync(path.join(dir, rel), 0o755);
    }
    return path.join(dir, "host", "net.sh");
}

test("without root: no --sudo, or sudo that wants a password, is a clear error before anything is made", (t) => {
    if (!needsNetns(t)) return;
    if (!requireTools(t, ["sudo"])) return;
    const { ns, stateDir } = world(t);
    const script = readableCopy(t);
    const sub = path.join(stateDir, "stack");
    const before = ns.snapshot();

    const plain = netsh(ns, ["bridge-up", "--state-dir", sub], { user: OWNER, script });
    assert.equal(plain.status, 3);
    assert.equal(plain.stdout, "");
    assert.match(plain.stderr, /error: privileges: 'bridge-up' changes host networking and needs root, but runs as nobody without --sudo; fix: run as root, or pass --sudo/);

    const sudo = netsh(ns, ["bridge-up", "--state-dir", sub, "--sudo"], { user: OWNER, script });
    assert.equal(sudo.status, 3);
    assert.match(sudo.stderr, /error: --sudo: 'sudo -n \S+\/host\/net\.sh' is not allowed for nobody .*; fix: install the helper .* and allow only it: echo 'nobody ALL=\(root\) NOPASSWD: \S+\/host\/net\.sh' \| sudo tee /);
    assert.doesNotMatch(sudo.stderr, /for ip, nft and sysctl/, "the broad rule is no longer suggested");

    for (const verb of [["bridge-down"], ["tap-up", "--tap", TAP0]]) {
        const r = netsh(ns, [verb[0]!, "--state-dir", sub, ...verb.slice(1)], { user: OWNER, script });
        if (verb[0] === "bridge-down") {
            assert.equal(r.status, 0, "down with nothing recorded needs no privilege");
        } else {
            assert.equal(r.status, 3, `${verb[0]}: ${r.stderr}`);
        }
    }
    assert.equal(fs.existsSync(sub), false, "not even the state directory was made");
    assert.deepEqual(ns.snapshot(), before);
});

/**
 * Runs ARGV as OWNER with the sudoers RULE. The rule lives in a temporary
 * directory bind-mounted over /etc/sudoers.d inside the mount namespace `ip
 * netns exec` makes for this one command (mounts there do not propagate
 * back): the machine's sudoers are never touched.
 */
function asUserWithRule<T = ChangeResult>(ns: Netns, rule: string, argv: string[], env: Record<string, string> = {}): NetRun<T> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe4-sudoers-"));
    try {
        fs.chmodSync(dir, 0o755);
        fs.writeFileSync(path.join(dir, "pe4"), rule, { mode: 0o440 });
        const r = ns.run("sh", ["-c", 'd=$1; u=$2; shift 2; mount --bind "$d" /etc/sudoers.d && exec setpriv --reuid="$u" --regid="$(id -g "$u")" --clear-groups "$@"',
            "sh", dir, OWNER, ...argv], { env });
        let json: T | undefined;
        if (r.status === 0 && r.stdout.trim() !== "") json = JSON.parse(r.stdout.trim()) as T;
        return { status: r.status, stdout: r.stdout, stderr: r.stderr, json };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

/** Runs net.sh as OWNER with the older, broad rule (ip, nft, sysctl, unshare), which still works. */
function netshWithSudoRule<T = ChangeResult>(ns: Netns, script: string, args: string[]): NetRun<T> {
    const tools = ["ip", "nft", "sysctl", "unshare"].map((c) => execFileSync("sh", ["-c", `command -v ${c}`], { encoding: "utf8" }).trim());
    return asUserWithRule<T>(ns, `${OWNER} ALL=(root) NOPASSWD: ${tools.join(", ")}\n`, ["bash", script, ...args]);
}

/** A state directory below `stateDir` that OWNER owns (and can reach). */
function ownersStateDir(stateDir: string): string {
    const userState = path.join(stateDir, "stack");
    fs.mkdirSync(userState);
    execFileSync("chown", [OWNER, userState]);
    fs.chmodSync(stateDir, 0o755);
    return userState;
}

const sudoersIncludesDir = (): boolean => {
    try {
        return /^[@#]includedir\s+\/etc\/sudoers\.d\s*$/m.test(fs.readFileSync("/etc/sudoers", "utf8"));
    } catch {
        return false;
    }
};

test("with --sudo and passwordless sudo an unprivileged user brings the network up and down", (t) => {
    if (!needsNetns(t)) return;
    if (!requireTools(t, ["sudo", "mount", ["/etc/sudoers reads /etc/sudoers.d", sudoersIncludesDir]])) return;
    const { ns, stateDir } = world(t);
    const script = readableCopy(t);
    const userState = ownersStateDir(stateDir);
    const before = ns.snapshot();

    const up = netshWithSudoRule(ns, script, ["bridge-up", "--sudo", "--state-dir", userState]);
    assert.equal(up.status, 0, up.stderr);
    assert.equal(up.json!.changed, true);
    const tap = netshWithSudoRule(ns, script, ["tap-up", "--sudo", "--state-dir", userState, "--tap", TAP0]);
    assert.equal(tap.status, 0, tap.stderr);
    assert.equal(String((ns.link(TAP0)!.linkinfo as { info_data: { user: unknown } }).info_data.user), OWNER, "TAP owned by the invoking user");
    assert.equal(fs.statSync(path.join(userState, "net.json")).uid, Number(execFileSync("id", ["-u", OWNER], { encoding: "utf8" })), "state file written as the user");
    const st = netshWithSudoRule<StatusResult>(ns, script, ["status", "--sudo", "--state-dir", userState]);
    assert.equal(st.json!.privilege, "sudo");
    assert.deepEqual([st.json!.bridge.ours, st.json!.nft.ours, st.json!.taps[0]!.ours], [true, true, true]);

    const down = netshWithSudoRule(ns, script, ["bridge-down", "--sudo", "--state-dir", userState]);
    assert.equal(down.status, 0, down.stderr);
    assert.deepEqual(ns.snapshot(), before);
    assert.deepEqual(fs.readdirSync(userState), []);
});

test("bad input is refused with the field and the fix, before anything is made", (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    const before = ns.snapshot();
    const cases: Array<[string[], RegExp]> = [
        [["frob"], /error: verb: unknown verb 'frob'; fix: use one of/],
        [["up"], /error: verb: unknown verb 'up'; fix: use one of bridge-up, bridge-down, tap-up, tap-down, status, check/],
        [["bridge-up"], /error: --state-dir: is required for 'bridge-up'; fix: pass --state-dir DIR/],
        [["bridge-up", "--state-dir", stateDir, "--gateway-cidr", net.subnet], new RegExp(`error: --gateway-cidr: '${reEscape(net.subnet)}' is the subnet's network address.*; fix: pass the gateway address with its prefix length, e\\.g\\. ${reEscape(GATEWAY_CIDR)}`)],
        [["bridge-up", "--state-dir", stateDir, "--gateway-cidr", "10.300.0.1/24"], /error: --gateway-cidr: .* octet above 255/],
        [["bridge-up", "--state-dir", stateDir, "--bridge", "a-name-far-too-long"], /error: --bridge: 'a-name-far-too-long' is not a usable interface name .*; fix: /],
        [["bridge-up", "--state-dir", stateDir, "--nft-table", "bad table"], /error: --nft-table: 'bad table' is not a usable nftables table name/],
        [["bridge-up", "--state-dir", stateDir, "--gateway-cidr", "10.0.0.1/7"], /error: --gateway-cidr: prefix length \/7 is outside 8\.\.29/],
        [["bridge-up", "--state-dir", stateDir, "--bridge", "-pcpbr"], /error: --bridge: '-pcpbr' is not a usable interface name/],
        [["tap-up", "--state-dir", stateDir, "--tap", TAP0, "--owner", "pe4-no-such-user"], /error: --owner: user 'pe4-no-such-user' does not exist on this host; fix: pass the user that runs the MicroVMs/],
        [["tap-up", "--state-dir", stateDir, "--tap", TAP0, "--multi-queue", "maybe"], /error: --multi-queue: 'maybe' is neither on nor off; fix: /],
        [["tap-up", "--state-dir", stateDir], /error: --tap: is required for tap-up; fix: pass --tap NAME/],
        [["tap-up", "--state-dir", stateDir, "--tap", TAP0, "--owner", OWNER], /error: --bridge: no bridge is recorded in .*; fix: run 'net.sh bridge-up/],
        [["bridge-up", "--state-dir", stateDir, "--frobnicate"], /error: --frobnicate: unknown option for 'bridge-up'/],
    ];
    for (const [args, re] of cases) {
        const r = netsh(ns, args);
        assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
        assert.equal(r.stdout, "");
        assert.match(r.stderr, re);
    }
    assert.deepEqual(ns.snapshot(), before);
    assert.deepEqual(fs.readdirSync(stateDir), []);
});

test("check lists what TAP networking needs and what is missing", (t) => {
    if (!needsNetns(t)) return;
    const { ns } = world(t);
    const before = ns.snapshot();
    const root = netsh<CheckResult>(ns, ["check", "--owner", OWNER]);
    assert.equal(root.status, 0, root.stderr);
    const ok = root.json!;
    assert.equal(ok.ok, true);
    assert.deepEqual(ok.missing, []);
    const needNames = ok.needs.map((n) => n.name);
    for (const n of ["ip", "nft", "/dev/net/tun", "privileges", "probe", "kernel:bridge", "kernel:tun", "kernel:nf_tables",
        "kernel:nft_masq", "net.ipv4.ip_forward", `owner:${OWNER}`]) {
        assert.ok(needNames.includes(n), `check lists ${n}`);
    }
    assert.equal(ok.needs.find((n) => n.name === "probe")!.status, "ok", "the probe made a bridge, TAP and NAT table in a scratch namespace");
    assert.equal(ok.warnings.filter((w) => w.name.startsWith("forward-drop:")).length, 0);
    assert.deepEqual(ns.snapshot(), before, "check changes nothing");

    // Someone else's forward chain with policy drop (as Docker's FORWARD) is warned about.
    ns.runOk("nft", ["-f", "-"], { input: "table ip pe4_dropper {\n chain pe4fwd { type filter hook forward priority 0; policy drop; }\n}\n" });
    const dropped = netsh<CheckResult>(ns, ["check"]).json!;
    assert.equal(dropped.ok, true, "a warning, not a missing need");
    const w = dropped.warnings.find((x) => x.name === "forward-drop:ip pe4_dropper pe4fwd");
    assert.ok(w, JSON.stringify(dropped.warnings));
    assert.match(w.detail, new RegExp(`allow ${reEscape(net.subnet)} there yourself`));
    // A large ruleset (kube-proxy on nftables, a big firewall): its chain listing is over what one argument may hold.
    const many = Array.from({ length: 2500 }, (_, i) => ` chain pe4_many_chain_${String(i).padStart(5, "0")} { }`).join("\n");
    ns.runOk("nft", ["-f", "-"], { input: `table ip pe4_many {\n${many}\n}\n` });
    assert.ok(ns.runOk("nft", ["-j", "list", "chains"]).length > 128 * 1024, "the listing is larger than one argument may be");
    const large = netsh<CheckResult>(ns, ["check"]);
    assert.equal(large.status, 0, large.stderr);
    assert.ok(large.json!.warnings.some((x) => x.name === "forward-drop:ip pe4_dropper pe4fwd"), JSON.stringify(large.json!.warnings));
    ns.runOk("nft", ["delete", "table", "ip", "pe4_many"]);

    const script = readableCopy(t);
    const user = netsh<CheckResult>(ns, ["check"], { user: OWNER, script });
    assert.equal(user.status, 1);
    assert.equal(user.json!.ok, false);
    assert.ok(user.json!.missing.includes("privileges"));
    const priv = user.json!.needs.find((n) => n.name === "privileges")!;
    assert.match(priv.fix ?? "", /run as root, or pass --sudo \(pulumi config set pcp-eval:useSudo true\) and install the helper/);
    // The rule offered is the narrow one: the root-owned helper alone, never ip, nft or sysctl.
    assert.match(priv.fix ?? "", /ALL=\(root\) NOPASSWD: \S+\/host\/net\.sh/);
    assert.doesNotMatch(priv.fix ?? "", /for ip, nft and sysctl/);
    assert.match(user.stderr, /missing: privileges/);
});

/**
 * The provider plugin (provider/), started inside `ns` as the engine starts it
 * on the host, so the net.sh it runs acts on the test's namespace. The test
 * reaches its port (on the namespace's loopback) through a unix socket that a
 * socat inside the namespace forwards. Ended with the test (and by `ns.destroy`, by PID).
 */
async function pluginIn(t: TestContext, ns: Netns): Promise<ProviderPlugin> {
    const sockets = fs.mkdtempSync(path.join(os.tmpdir(), "pe4-plugin-"));
    const socket = path.join(sockets, "plugin.sock");
    const plugin = await startProviderPlugin({
        launch: (file, args) => ns.spawn(file, args),
        target: async (port) => {
            ns.spawn("socat", [`UNIX-LISTEN:${socket},fork`, `TCP:127.0.0.1:${port}`]);
            for (let i = 0; i < 250 && !fs.existsSync(socket); i++) await new Promise((r) => setTimeout(r, 20));
            assert.ok(fs.existsSync(socket), "socat listens on the plugin's socket");
            return `unix:${socket}`;
        },
    });
    t.after(async () => {
        await plugin.close();
        fs.rmSync(sockets, { recursive: true, force: true });
    });
    return plugin;
}

type NetOuts = Record<string, unknown> & { live: string };
const plan = ({ changes, replaces, deleteBeforeReplace }: DiffResult) => ({ changes, replaces, deleteBeforeReplace });

test("the plugin's NetBridge and NetTap: read sees drift, diff reports it, update repairs it, delete leaves the namespace as before", async (t) => {
    if (!needsNetns(t) || !requireTools(t, ["socat"])) return;
    const { ns, stateDir } = world(t);
    const plugin = await pluginIn(t, ns);
    const bridge = plugin.resource<NetOuts>("NetBridge");
    const tap = plugin.resource<NetOuts>("NetTap");
    const before = ns.snapshot();
    const bIn = { scriptPath: NET_SH, stateDir, bridge: net.bridge, gatewayCidr: GATEWAY_CIDR, nftTable: net.nftTable, sudo: false };
    const tIn = { scriptPath: NET_SH, stateDir, bridge: net.bridge, tap: TAP0, owner: OWNER, multiQueue: true, sudo: false };

    const b = await bridge.create(bIn);
    assert.equal(b.outs.live, "ok");
    const tp = await tap.create(tIn);
    assert.equal(tp.outs.live, "ok");
    assert.equal((await bridge.read(b.id, b.outs)).props!.live, "ok");
    assert.equal((await tap.read(tp.id, tp.outs)).props!.live, "ok");
    assert.equal((await bridge.diff(b.id, b.outs, bIn)).changes, false);
    assert.equal((await tap.diff(tp.id, tp.outs, tIn)).changes, false);

    // A firewall reload flushed our table: refresh sees it, up repairs it.
    ns.runOk("nft", ["delete", "table", "ip", net.nftTable]);
    const rb = await bridge.read(b.id, b.outs);
    assert.equal(rb.props!.live, "degraded");
    assert.deepEqual(plan(await bridge.diff(b.id, rb.props!, bIn)), { changes: true, replaces: [], deleteBeforeReplace: true });
    assert.equal((await bridge.update(b.id, rb.props!, bIn)).outs.live, "ok");
    assert.ok(ourTable(ns), "table made again");

    // The TAP was detached from the bridge by hand: the same.
    ns.ip(["link", "set", "dev", TAP0, "nomaster"]);
    const rt = await tap.read(tp.id, tp.outs);
    assert.equal(rt.props!.live, "degraded");
    assert.equal((await tap.diff(tp.id, rt.props!, tIn)).changes, true);
    await tap.update(tp.id, rt.props!, tIn);
    assert.equal(ns.link(TAP0)!.master, net.bridge);

    // A VM now with one vCPU: its TAP is made again without multi_queue. A new bridge name replaces.
    const single = { ...tIn, multiQueue: false };
    assert.deepEqual(await tap.diff(tp.id, tp.outs, single), { changes: true, replaces: [], deleteBeforeReplace: true, diffs: ["multiQueue"] });
    await tap.update(tp.id, tp.outs, single);
    assert.equal((ns.link(TAP0)!.linkinfo as { info_data: { multi_queue: boolean } }).info_data.multi_queue, false);
    assert.deepEqual((await bridge.diff(b.id, b.outs, { ...bIn, bridge: "pe4other" })).replaces, ["bridge"]);

    // Destroy: TAP then bridge; the namespace is as before, and read then says gone.
    await tap.delete(tp.id, { ...single, live: "ok" });
    await bridge.delete(b.id, b.outs);
    assert.deepEqual(ns.snapshot(), before);
    assert.deepEqual(await bridge.read(b.id, b.outs), { id: "" });
    assert.deepEqual(await tap.read(tp.id, tp.outs), { id: "" });

    // A failing verb surfaces net.sh's own error (field and fix).
    ns.ip(["link", "add", "name", net.bridge, "type", "bridge"]);
    await assert.rejects(bridge.create(bIn), /net\.sh bridge-up failed \(exit 4\):\n(.*\n)*net\.sh: error: --bridge: a device named .* is not ours.*fix: /);
});

/**
 * net.json sits in a directory the user writes; down, status and up run with
 * privilege. A tampered state file must never widen what they touch: each case
 * below is refused (exit 2, the field named) and the namespace, including the
 * foreign bridge and tables it points at, is exactly as before.
 */
test("a tampered net.json (empty marker, injected table name, marker injection) is refused and touches nothing foreign", (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    // Someone else's things, with no alias and no comment: what an empty marker would match.
    ns.ip(["link", "add", "pe4br9", "type", "bridge"]);
    ns.ip(["tuntap", "add", "dev", "pe4tap9", "mode", "tap"]);
    ns.runOk("nft", ["-f", "-"], { input: "table ip keepme {\n chain c { type filter hook forward priority 0; policy accept; }\n}\n" });
    const before = ns.snapshot();
    const stateFile = path.join(stateDir, "net.json");
    const okMarker = "pcp-eval:0b9b7a55-5e44-4c1a-9d0e-2f6a1b2c3d4e";
    const base = (over: Record<string, unknown>) => ({
        version: 1, marker: okMarker, ipForward: null,
        bridge: { name: "pe4br9", gatewayCidr: GATEWAY_CIDR, subnet: net.subnet, address: "02:00:00:00:00:01" },
        nft: { family: "ip", table: "keepme", subnet: net.subnet, digest: "x" },
        taps: { pe4tap9: { owner: OWNER, uid: 65534, multiQueue: false, vnetHdr: true, bridge: "pe4br9" } },
        ...over,
    });
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
        ["marker null", base({ marker: null }), /error: state: .*marker/],
        ["marker empty", base({ marker: "" }), /error: state: .*marker/],
        ["marker injected into nft -f input", base({ marker: 'pcp-eval:x" }\ndelete table ip keepme\ntable ip y { comment "' }), /error: state: .*marker/],
        ["table name injected into nft's command line", base({ nft: { family: "ip", table: "a; delete table ip keepme", subnet: net.subnet, digest: "x" } }), /error: state: .*nft\.table/],
        ["bridge name not an interface name", base({ bridge: { name: "-x", gatewayCidr: GATEWAY_CIDR, subnet: net.subnet, address: "" } }), /error: state: .*bridge\.name/],
        ["TAP name not an interface name", base({ taps: { "a b": { owner: OWNER } } }), /error: state: .*taps/],
        ["forwarding value not 0 or 1", base({ ipForward: { previous: "0 kernel.core_pattern=|/x", acceptRedirects: "1", devicesForwarding: [] } }), /error: state: .*ipForward/],
        ["forwarding device not an interface name", base({ ipForward: { previous: "0", acceptRedirects: "1", devicesForwarding: ["../../../kernel"] } }), /error: state: .*ipForward/],
    ];
    for (const [what, state, re] of cases) {
        for (const verb of [["bridge-down"], ["status"], ["bridge-up"], ["tap-down", "--tap", "pe4tap9"]]) {
            fs.writeFileSync(stateFile, JSON.stringify(state));
            const r = netsh(ns, [...verb, "--state-dir", stateDir]);
            assert.equal(r.status, 2, `${what}, ${verb[0]}: exit ${r.status}\n${r.stderr}`);
            assert.equal(r.stdout, "", `${what}, ${verb[0]}`);
            assert.match(r.stderr, re, `${what}, ${verb[0]}`);
            assert.match(r.stderr, /fix: /, `${what}, ${verb[0]}`);
            assert.deepEqual(ns.snapshot(), before, `${what}, ${verb[0]}: the namespace changed`);
            assert.equal(fs.readFileSync(stateFile, "utf8"), JSON.stringify(state), `${what}, ${verb[0]}: the state file was rewritten`);
        }
    }
    // status refuses an injected table name given as a flag too.
    fs.rmSync(stateFile);
    const r = netsh(ns, ["status", "--state-dir", stateDir, "--nft-table", "a; delete table ip keepme"]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /error: --nft-table: /);
    assert.deepEqual(ns.snapshot(), before);
});

/**
 * net.sh turns IPv4 forwarding on host-wide; its forward rule keeps that from
 * exposing the VMs: a host that routes the subnet through this one reaches
 * none of their ports, while the VMs still reach out (NAT, replies admitted)
 * and this host still reaches them.
 */
test("forwarding exposes no VM: traffic from beyond the host to the subnet is dropped; replies and the host's own traffic pass", async (t) => {
    if (!needsNetns(t)) return;
    const { ns, stateDir } = world(t);
    upAll(ns, stateDir, [TAP0]);
    assert.match(ourTable(ns)!, /type filter hook forward/);

    const vm = standInVm(t, ns);

    // A neighbour that routes the VM subnet through this host.
    const outside = upstreamOf(t, ns);
    outside.ip(["route", "add", net.subnet, "via", UPSTREAM_HOST]);

    const inVm = await startListener(vm, net.firstVmAddress, PORT);
    t.after(() => inVm.close());
    // This host reaches the VM.
    assert.deepEqual(tcpExchange(ns, net.firstVmAddress, PORT, "from the host"), { remoteAddress: net.gateway, received: "from the host" });
    // The neighbour does not: its SYN is dropped in forward.
    assert.throws(() => tcpExchange(outside, net.firstVmAddress, PORT, "from outside", 3_000), /timed out/);
    inVm.close();

    // The VM still reaches out, and the replies come back.
    const far = await startListener(outside, UPSTREAM_PEER, PORT);
    t.after(() => far.close());
    assert.deepEqual(tcpExchange(vm, UPSTREAM_PEER, PORT, "out"), { remoteAddress: UPSTREAM_HOST, received: "out" });
    far.close();
});

/**
 * The narrow privilege: sudo allows one root-owned copy of net.sh (which
 * validates every argument and its state) and nothing else, instead of ip,
 * nft, sysctl and unshare (root-equivalent: `ip netns exec … sh`).
 */
test("with --sudo and a sudoers rule for the root-owned net.sh helper alone, a user brings the network up and down", (t) => {
    if (!needsNetns(t)) return;
    if (!requireTools(t, ["sudo", "mount", ["/etc/sudoers reads /etc/sudoers.d", sudoersIncludesDir]])) return;
    const { ns, stateDir } = world(t);
    // The helper as an administrator installs it: root-owned, nobody else may write it.
    const helperRoot = fs.mkdtempSync(path.join(os.tmpdir(), "pe4-helper-"));
    t.after(() => fs.rmSync(helperRoot, { recursive: true, force: true }));
    fs.chmodSync(helperRoot, 0o755);
    fs.mkdirSync(path.join(helperRoot, "host"), { mode: 0o755 });
    fs.mkdirSync(path.join(helperRoot, "nix"), { mode: 0o755 });
    const helper = path.join(helperRoot, "host", "net.sh");
    fs.copyFileSync(NET_SH, helper);
    fs.chmodSync(helper, 0o755);
    fs.copyFileSync(path.join(REPO, "host", "lib.sh"), path.join(helperRoot, "host", "lib.sh"));
    fs.chmodSync(path.join(helperRoot, "host", "lib.sh"), 0o644);
    fs.copyFileSync(path.join(REPO, "nix", "constants.json"), path.join(helperRoot, "nix", "constants.json"));
    fs.chmodSync(path.join(helperRoot, "nix", "constants.json"), 0o644);
    const rule = `${OWNER} ALL=(root) NOPASSWD: ${helper}\n`;
    const env = { PCP_EVAL_NET_HELPER: helper };
    const script = readableCopy(t);
    const userState = ownersStateDir(stateDir);
    const before = ns.snapshot();

    // The rule allows the helper only: ip itself is refused.
    assert.notEqual(asUserWithRule(ns, rule, ["sudo", "-n", "ip", "-V"]).status, 0, "sudo -n ip must not be allowed");

    const up = asUserWithRule(ns, rule, ["bash", script, "bridge-up", "--sudo", "--state-dir", userState], env);
    assert.equal(up.status, 0, up.stderr);
    assert.equal(up.json!.changed, true);
    const tap = asUserWithRule(ns, rule, ["bash", script, "tap-up", "--sudo", "--state-dir", userState, "--tap", TAP0], env);
    assert.equal(tap.status, 0, tap.stderr);
    assert.equal(String((ns.link(TAP0)!.linkinfo as { info_data: { user: unknown } }).info_data.user), OWNER, "TAP owned by the invoking user");
    const uid = Number(execFileSync("id", ["-u", OWNER], { encoding: "utf8" }));
    assert.equal(fs.statSync(path.join(userState, "net.json")).uid, uid, "state file handed to the user");

    // The helper refuses a state directory that is not the invoking user's.
    const rootOwned = fs.mkdtempSync(path.join(os.tmpdir(), "pe4-rootdir-"));
    t.after(() => fs.rmSync(rootOwned, { recursive: true, force: true }));
    fs.chmodSync(rootOwned, 0o755);
    const foreign = asUserWithRule(ns, rule, ["sudo", "-n", helper, "bridge-up", "--state-dir", rootOwned]);
    assert.equal(foreign.status, 2, foreign.stderr);
    assert.match(foreign.stderr, /error: --state-dir: .* is not owned by nobody/);
    assert.deepEqual(fs.readdirSync(rootOwned), []);

    const down = asUserWithRule(ns, rule, ["bash", script, "bridge-down", "--sudo", "--state-dir", userState], env);
    assert.equal(down.status, 0, down.stderr);
    assert.deepEqual(ns.snapshot(), before);
    assert.deepEqual(fs.readdirSync(userState), []);
});
