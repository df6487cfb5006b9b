/**
 * The container path with a real dockerd and a real PCP image, following the
 * phases of the old pcp-container-test: load; start with port mappings;
 * pmcd running as UID 990; port 44321 listening; kernel.all.load,
 * kernel.all.cpu.user and mem.physmem read from the host through the
 * published port; graceful stop; nothing left (container, tag).
 *
 * The image is built without Nix by test/fixtures/pcp-image/build.sh (Debian's
 * pcp, packed like dockerTools.buildLayeredImage's output, cached by content).
 * The container runs with the flags OciImage gives Docker (ociContainerSpec),
 * on free host ports of 127.0.0.1, never the production 44321/44322. Every
 * name here starts with pe6- and the test removes only what it created.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it, before, after } from "node:test";
import { constants } from "../../components/constants";
import { containerSpec, dockerRunArgs } from "../../components/ociContainerSpec";
import { buildPcpImage, buildScript, PcpImage } from "../fixtures/pcp-image/fixture";
import { DockerDaemon, dockerUnavailableReason, ensureDockerd } from "../helpers/dockerd";
import { freePort } from "../helpers/ports";
import { firstUnmet, isRoot, requireTools } from "../helpers/tools";

const repoRoot = path.resolve(__dirname, "../..");
const ociScript = path.join(repoRoot, "host/oci.sh");

const runId = crypto.randomBytes(3).toString("hex");
const repo = "pe6-pcp-eval";
const stack = `pe6-test-${runId}`;

interface Result {
    code: number | null;
    stdout: string;
    stderr: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 120000): Result {
    const r = spawnSync(cmd, args, { env, encoding: "utf8", timeout: timeoutMs, cwd: repoRoot });
    return { code: r.status, stdout: r.stdout ?? "", stderr: (r.stderr ?? "") + (r.error ? String(r.error) : "") };
}

/** Like run, without blocking the event loop (for servers this process itself runs). */
function runAsync(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 120000): Promise<Result> {
    return new Promise((resolve) => {
        execFile(cmd, args, { env, encoding: "utf8", timeout: timeoutMs, cwd: repoRoot }, (err, stdout, stderr) => {
            const code = err === null ? 0 : typeof err.code === "number" ? err.code : null;
            resolve({ code, stdout, stderr });
        });
    });
}

function oci(args: string[], env: NodeJS.ProcessEnv): Result {
    return run("bash", [ociScript, ...args], env);
}

function lastJson<T>(r: Result, what: string): T {
    assert.equal(r.code, 0, `${what} failed: ${r.stderr}`);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, 1, `${what}: expected one line on stdout, got ${JSON.stringify(r.stdout)}`);
    return JSON.parse(lines[0]) as T;
}


function listen(port: number, onConnection?: (s: net.Socket) => void): Promise<net.Server> {
    return new Promise((resolve, reject) => {
        const srv = net.createServer((s) => {
            s.on("error", () => {}); // a client that resets is none of the server's business
            (onConnection ?? ((sock: net.Socket) => sock.end()))(s);
        });
        srv.once("error", reject);
        srv.listen(port, "127.0.0.1", () => resolve(srv));
    });
}

function closeServer(srv: net.Server): Promise<void> {
    return new Promise((resolve) => srv.close(() => resolve()));
}

function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Values of `pminfo -f` output for one metric: instance name (or "") -> number. */
function pminfoValues(output: string, metric: string): Map<string, number> {
    const values = new Map<string, number>();
    const block = output.split(/\n\s*\n/).find((b) => b.trim().split("\n")[0].trim() === metric);
    assert.ok(block, `pminfo printed no block for ${metric}:\n${output}`);
    for (const line of block.split("\n").slice(1)) {
        const m = /^\s*(?:inst \[\d+ or "([^"]*)"\] )?value (\S+)/.exec(line);
        if (m) values.set(m[1] ?? "", Number(m[2]));
    }
    return values;
}

function hostMemTotalKb(): number {
    const m = /^MemTotal:\s+(\d+) kB/m.exec(fs.readFileSync("/proc/meminfo", "utf8"));
    assert.ok(m);
    return Number(m[1]);
}

const baseNeeds: Array<string | [string, () => boolean]> = ["docker", "jq", "ss", "tar"];
const imageNeeds: Array<string | [string, () => boolean]> = [
    ["building the fixture image needs root", isRoot],
    "apt-get",
    "dpkg-deb",
    "gzip",
    "pminfo",
    "pmval",
    ["a Docker daemon (running, or dockerd to start)", () => dockerUnavailableReason() === undefined],
];

describe("oci.sh without Docker", () => {
    it("wait-pmcd fails clearly when nothing listens, and when the listener is not pmcd", async (t) => {
        if (!requireTools(t, ["jq"])) return;
        const port = await freePort();
        const refused = oci(["wait-pmcd", "--address", "127.0.0.1", "--port", String(port), "--timeout", "1"], process.env);
        assert.notEqual(refused.code, 0);
        assert.match(refused.stderr, new RegExp(`pmcd did not answer on 127\\.0\\.0\\.1:${port} within 1s.*connection refused`));
        assert.equal(refused.stdout, "");

        // A TCP server that greets with something else than a PCP PDU.
        const srv = await listen(port, (s) => s.end("HTTP/1.0 400 Bad Request\r\n\r\n"));
        try {
            const wrong = await runAsync("bash", [ociScript, "wait-pmcd", "--address", "127.0.0.1", "--port", String(port), "--timeout", "1"]);
            assert.notEqual(wrong.code, 0);
            assert.match(wrong.stderr, /not pmcd's/);
        } finally {
            await closeServer(srv);
        }
    });

    it("rejects bad arguments naming the flag", (t) => {
        if (!requireTools(t, ["jq"])) return;
        const cases: Array<[string[], RegExp]> = [
            [["load"], /--tarball PATH is required/],
            [["load", "--tarball", "/nonexistent/pe6.tar.gz"], /--tarball \/nonexistent\/pe6\.tar\.gz: no such file/],
            [["remove"], /--image REF .* or --tarball PATH is required/],
            [["remove", "--image", "sha256:0123"], /not a repo:tag reference/],
            [["load", "--tarball", buildScript, "--repo", "Bad Repo"], /--repo 'Bad Repo' is not a Docker repository name/],
            [["wait-pmcd", "--address", "127.0.0.1", "--port", "70000"], /--port '70000' is not a port number/],
            [["check-ports", "--address", "300.1.1.1", "--port", "1"], /--address '300\.1\.1\.1' is not an IPv4 address/],
            [["cluster-load", "--image", "pe6:x"], /--context C is required/],
            [["frobnicate"], /unknown verb/],
        ];
        for (const [args, pattern] of cases) {
            const r = oci(args, process.env);
            assert.notEqual(r.code, 0, `${args.join(" ")} should fail`);
            assert.match(r.stderr, pattern, `${args.join(" ")}: ${r.stderr}`);
            assert.equal(r.stdout, "", `${args.join(" ")} printed on stdout`);
        }
    });

    it("check-ports names a port that is already bound, and passes free ones", async (t) => {
        if (!requireTools(t, ["jq", "ss"])) return;
        const busy = await freePort();
        const free = await freePort();
        const srv = await listen(busy);
        try {
            const r = oci(["check-ports", "--address", "127.0.0.1", "--port", String(free), "--port", String(busy)], process.env);
            assert.notEqual(r.code, 0);
            assert.match(r.stderr, new RegExp(`already bound on 127\\.0\\.0\\.1: ${busy} \\(taken by: 127\\.0\\.0\\.1:${busy}`));
            assert.ok(!r.stderr.includes(`${free} (`), "the free port is not reported");
            const ok = lastJson<{ free: boolean; ports: number[] }>(oci(["check-ports", "--address", "127.0.0.1", "--port", String(free)], process.env), "check-ports");
            assert.deepEqual(ok, { address: "127.0.0.1", ports: [free], free: true });
        } finally {
            await closeServer(srv);
        }
    });

    it("every verb that needs Docker fails clearly when no daemon is reachable", (t) => {
        if (!requireTools(t, ["docker", "jq"])) return;
        const dead = fs.mkdtempSync(path.join(os.tmpdir(), "pe6-dead-"));
        try {
            const env = { ...process.env, DOCKER_HOST: `unix://${path.join(dead, "docker.sock")}` };
            const tarball = path.join(dead, "0123456789abcdfghijklmnpqrsvwxyz-pcp-container.tar.gz");
            fs.writeFileSync(tarball, "");
            for (const args of [
                ["load", "--tarball", tarball],
                ["status", "--tarball", tarball],
                ["remove", "--image", "pe6-pcp-eval:0123"],
                ["remove", "--tarball", tarball],
                ["cluster-load", "--image", "pe6-pcp-eval:0123", "--context", "docker-desktop"],
            ]) {
                const r = oci(args, env);
                assert.notEqual(r.code, 0, `${args[0]} should fail without a daemon`);
                assert.match(r.stderr, new RegExp(`no Docker daemon answers at unix://${dead}/docker\\.sock.*point DOCKER_HOST at a running daemon`), r.stderr);
                assert.equal(r.stdout, "");
            }
        } finally {
            fs.rmSync(dead, { recursive: true, force: true });
        }
    });

    it("cluster-load refuses a context it cannot load images into", (t) => {
        if (!requireTools(t, ["jq"])) return;
        const r = oci(["cluster-load", "--image", "pe6-pcp-eval:0123", "--context", `pe6-no-such-context-${runId}`], process.env);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /no known way to load images into the cluster of context 'pe6-no-such-context-/);
    });
});

describe("the PCP image in a real dockerd", () => {
    let daemon: DockerDaemon | undefined;
    let env: NodeJS.ProcessEnv = process.env;
    let fixture: PcpImage | undefined;
    let setupError: unknown;
    const containerName = `pe6-pcp-${runId}`;

    const docker = (args: string[], timeoutMs?: number): Result => run("docker", args, env, timeoutMs);
    const ourContainers = (): string[] =>
        docker(["ps", "-a", "--filter", `label=pcp-eval.stack=${stack}`, "--format", "{{.Names}}"]).stdout.split("\n").filter((s) => s !== "");
    const tagExists = (ref: string): boolean => docker(["image", "inspect", ref]).code === 0;
    const imageIds = (): string[] => docker(["images", "-aq", "--no-trunc"]).stdout.split("\n").filter((s) => s !== "").sort();

    before(async () => {
        if (firstUnmet([...baseNeeds, ...imageNeeds]) !== undefined) return;
        try {
            fixture = buildPcpImage();
            daemon = await ensureDockerd();
            env = daemon.env;
            // Leftovers of an earlier, interrupted run of this test (only pe6- names).
            for (const name of ourContainers()) docker(["rm", "-f", name]);
            if (fixture && tagExists(`${repo}:${fixture.hash}`)) docker(["image", "rm", `${repo}:${fixture.hash}`]);
        } catch (err) {
            setupError = err;
        }
    });

    after(async () => {
        if (daemon) {
            for (const name of ourContainers()) docker(["rm", "-f", name]);
            if (fixture && tagExists(`${repo}:${fixture.hash}`)) docker(["image", "rm", `${repo}:${fixture.hash}`]);
            await daemon.stop();
        }
    });

    const ready = (t: Parameters<typeof requireTools>[0]): boolean => {
        if (!requireTools(t, [...baseNeeds, ...imageNeeds])) return false;
        if (setupError !== undefined) throw setupError;
        assert.ok(fixture && daemon);
        return true;
    };

    it("builds the fixture image as a docker-archive named by its content hash, and reuses it", (t) => {
        if (!ready(t) || !fixture) return;
        assert.match(path.basename(fixture.tarball), new RegExp(`^${fixture.hash}-pcp-fixture-image\\.tar\\.gz$`));
        const manifest = JSON.parse(run("tar", ["-xOzf", fixture.tarball, "manifest.json"]).stdout) as Array<{ RepoTags: string[]; Layers: string[]; Config: string }>;
        assert.equal(manifest.length, 1);
        assert.deepEqual(manifest[0].RepoTags, [fixture.repoTag]);
        const again = buildPcpImage();
        assert.equal(again.tarball, fixture.tarball);
        assert.equal(again.cached, true);
    });

    it(`phases: load, start, pmcd as UID ${constants.container.uid}, port listening, metrics from the host, graceful stop, nothing left`, async (t) => {
        if (!ready(t) || !fixture) return;
        const f = fixture;
        const ref = `${repo}:${f.hash}`;
        const imagesBefore = imageIds();
        const archiveTagExisted = tagExists(f.repoTag);

        // Load: tagged by the content hash; the archive's own tag is not left behind.
        const loaded = lastJson<{ image: string; loaded: boolean; id: string }>(oci(["load", "--tarball", f.tarball, "--repo", repo], env), "load");
        assert.equal(loaded.image, ref);
        assert.equal(loaded.loaded, true);
        assert.ok(tagExists(ref));
        assert.equal(tagExists(f.repoTag), archiveTagExisted, "load leaves the archive's own tag as it found it");
        // An unchanged image is not loaded again.
        const again = lastJson<{ image: string; loaded: boolean; id: string }>(oci(["load", "--tarball", f.tarball, "--repo", repo], env), "second load");
        assert.deepEqual(again, { ...loaded, loaded: false });
        const config = JSON.parse(docker(["image", "inspect", ref]).stdout) as Array<{ Config: { User: string; ExposedPorts: Record<string, unknown> } }>;
        assert.equal(config[0].Config.User, `${constants.container.uid}:${constants.container.gid}`);
        assert.deepEqual(Object.keys(config[0].Config.ExposedPorts).sort(), [`${constants.ports.pmcd}/tcp`, `${constants.ports.pmproxy}/tcp`]);

        try {
            // Start with port mappings on free ports of 127.0.0.1, as OciImage would run it.
            const pmcdPort = await freePort();
            let pmproxyPort = await freePort();
            while (pmproxyPort === pmcdPort) pmproxyPort = await freePort();
            lastJson(oci(["check-ports", "--address", "127.0.0.1", "--port", String(pmcdPort), "--port", String(pmproxyPort)], env), "check-ports");
            const spec = containerSpec({ stack, projectDir: repoRoot, hostAddress: "127.0.0.1", pmcdPort, pmproxyPort, name: containerName });
            const started = docker(["run", ...dockerRunArgs(spec, ref)]);
            assert.equal(started.code, 0, `docker run: ${started.stderr}`);
            const waited = lastJson<{ port: number; readyMs: number }>(oci(["wait-pmcd", "--address", "127.0.0.1", "--port", String(pmcdPort)], env), "wait-pmcd");
            assert.equal(waited.port, pmcdPort);

            const inspect = JSON.parse(docker(["inspect", containerName]).stdout) as Array<{
                Config: { User: string; Labels: Record<string, string> };
                HostConfig: { RestartPolicy: { Name: string }; PortBindings: Record<string, Array<{ HostIp: string; HostPort: string }>> };
                State: { Running: boolean; Health?: { Status: string } };
            }>;
            assert.equal(inspect[0].Config.User, spec.user);
            assert.equal(inspect[0].Config.Labels["pcp-eval.stack"], stack);
            assert.equal(inspect[0].HostConfig.RestartPolicy.Name, "unless-stopped");
            assert.deepEqual(inspect[0].HostConfig.PortBindings[`${constants.ports.pmcd}/tcp`], [{ HostIp: "127.0.0.1", HostPort: String(pmcdPort) }]);
            assert.deepEqual(inspect[0].HostConfig.PortBindings[`${constants.ports.pmproxy}/tcp`], [{ HostIp: "127.0.0.1", HostPort: String(pmproxyPort) }]);

            // pmcd (and pmproxy) run as the pcp user, UID 990; nothing runs as root.
            const top = docker(["top", containerName, "-eo", "pid,uid,comm"]);
            assert.equal(top.code, 0, top.stderr);
            const procs = top.stdout
                .trim()
                .split("\n")
                .slice(1)
                .map((l) => l.trim().split(/\s+/).slice(1));
            const uidOf = (comm: string): string[] => procs.filter((p) => p[1] === comm).map((p) => p[0]);
            assert.deepEqual(uidOf("pmcd"), [String(constants.container.uid)], top.stdout);
            assert.deepEqual(uidOf("pmproxy"), [String(constants.container.uid)], top.stdout);
            assert.ok(procs.every((p) => p[0] === String(constants.container.uid)), `a process not running as ${constants.container.uid}:\n${top.stdout}`);

            // Port 44321 listening inside the container on every address (0.0.0.0).
            // (read from the host, through the network namespace of the container's first process)
            const pid = docker(["inspect", "--format", "{{.State.Pid}}", containerName]).stdout.trim();
            const tcp = { stdout: fs.readFileSync(`/proc/${pid}/net/tcp`, "utf8") };
            const pmcdHex = constants.ports.pmcd.toString(16).toUpperCase().padStart(4, "0");
            assert.ok(
                tcp.stdout.split("\n").some((l) => {
                    const cols = l.trim().split(/\s+/);
                    return cols[1] === `00000000:${pmcdHex}` && cols[3] === "0A";
                }),
                `nothing listens on 0.0.0.0:${constants.ports.pmcd} in the container:\n${tcp.stdout}`,
            );

            // The health check (pmcd answering inside) turns healthy.
            const deadline = Date.now() + constants.timeoutsSeconds.services * 1000;
            let health = "";
            while (Date.now() < deadline) {
                health = docker(["inspect", "--format", "{{.State.Health.Status}}", containerName]).stdout.trim();
                if (health === "healthy" || health === "unhealthy") break;
                await sleep(500);
            }
            assert.equal(health, "healthy");

            // The required metrics, read from the host through the published port.
            const target = `127.0.0.1:${pmcdPort}`;
            const info = run("pminfo", ["-h", target, "-f", ...constants.metrics.required]);
            assert.equal(info.code, 0, `pminfo: ${info.stderr}`);
            const load = pminfoValues(info.stdout, "kernel.all.load");
            assert.deepEqual([...load.keys()].sort(), ["1 minute", "15 minute", "5 minute"]);
            assert.ok([...load.values()].every((v) => Number.isFinite(v) && v >= 0));
            const cpuUser = pminfoValues(info.stdout, "kernel.all.cpu.user").get("");
            assert.ok(cpuUser !== undefined && Number.isFinite(cpuUser) && cpuUser > 0, `kernel.all.cpu.user: ${cpuUser}`);
            // The container sees the host's memory: mem.physmem (kbyte) is MemTotal.
            assert.equal(pminfoValues(info.stdout, "mem.physmem").get(""), hostMemTotalKb());
            const val = run("pmval", ["-h", target, "-s", "2", "-t", "1", "kernel.all.cpu.user"]);
            assert.equal(val.code, 0, `pmval: ${val.stderr}`);
            assert.match(val.stdout, /^metric:\s+kernel\.all\.cpu\.user$/m);
            assert.equal(val.stdout.trim().split("\n").filter((l) => /^\s*\d+(\.\d+)?([eE][-+]?\d+)?\s*$/.test(l)).length, 2, val.stdout);
            // And pmproxy's REST API answers through its published port.
            const res = await fetch(`http://127.0.0.1:${pmproxyPort}/pmapi/fetch?names=kernel.all.load`);
            assert.equal(res.status, 200);
            const body = (await res.json()) as { values: Array<{ name: string; instances: Array<{ value: number }> }> };
            assert.equal(body.values[0].name, "kernel.all.load");
            assert.equal(body.values[0].instances.length, 3);

            // Graceful stop: SIGTERM ends pmcd and pmproxy, the container exits 0 (not killed).
            const stop = docker(["stop", "--time", String(spec.stopTimeoutSeconds), containerName], (spec.stopTimeoutSeconds + 30) * 1000);
            assert.equal(stop.code, 0, stop.stderr);
            const state = JSON.parse(docker(["inspect", "--format", "{{json .State}}", containerName]).stdout) as { Running: boolean; ExitCode: number; OOMKilled: boolean };
            assert.equal(state.Running, false);
            assert.equal(state.ExitCode, 0, "exit 137 would mean docker had to kill it");
            assert.match(docker(["logs", containerName]).stderr, /pcp-entrypoint: stopped/);
            const pmcdLog = docker(["cp", `${containerName}:/var/log/pcp/pmcd/pmcd.log`, "-"]);
            assert.match(pmcdLog.stdout, /pmcd caught SIGTERM/);

            // Nothing left: the container, then the tag (and with its last tag, the image).
            assert.equal(docker(["rm", containerName]).code, 0);
            const removed = lastJson<{ image: string; removed: boolean }>(oci(["remove", "--tarball", f.tarball, "--repo", repo], env), "remove");
            assert.deepEqual(removed, { image: ref, removed: true });
            assert.equal(tagExists(ref), false);
            assert.deepEqual(ourContainers(), []);
            assert.deepEqual(imageIds(), imagesBefore, "the daemon holds the images it held before");
            // Removing again is a no-op.
            assert.deepEqual(lastJson(oci(["remove", "--image", ref], env), "second remove"), { image: ref, removed: false });
        } finally {
            // On failure, take away what this test made so the next tests start clean.
            if (docker(["inspect", containerName]).code === 0) docker(["rm", "-f", containerName]);
            if (tagExists(ref)) oci(["remove", "--tarball", f.tarball, "--repo", repo], env);
        }
    });

    it("load points a tag the archive carries back where it was; remove leaves a tag that a container still uses", (t) => {
        if (!ready(t) || !fixture) return;
        const ref = `${repo}:${fixture.hash}`;
        // Another image (made here, empty) already holds the archive's own tag, as an
        // older Nix build would hold pcp-eval:nix.
        assert.equal(tagExists(fixture.repoTag), false, `${fixture.repoTag} exists before the test`);
        const imported = run("sh", ["-c", 'tar -cf - -T /dev/null | docker import --message pe6-placeholder - "$1"', "sh", fixture.repoTag], env);
        assert.equal(imported.code, 0, imported.stderr);
        const placeholderId = docker(["image", "inspect", "--format", "{{.Id}}", fixture.repoTag]).stdout.trim();
        try {
            const loaded = lastJson<{ id: string; loaded: boolean }>(oci(["load", "--tarball", fixture.tarball, "--repo", repo], env), "load");
            assert.equal(loaded.loaded, true);
            assert.notEqual(loaded.id, placeholderId);
            // status reads the tag without loading: what refresh compares with the load's record.
            assert.deepEqual(lastJson(oci(["status", "--tarball", fixture.tarball, "--repo", repo], env), "status"), { image: ref, id: loaded.id });
            assert.equal(docker(["image", "inspect", "--format", "{{.Id}}", fixture.repoTag]).stdout.trim(), placeholderId);
        } finally {
            docker(["image", "rm", fixture.repoTag]);
        }
        const name = `${containerName}-user`;
        const created = docker(["create", "--name", name, "--label", `pcp-eval.stack=${stack}`, ref]);
        assert.equal(created.code, 0, created.stderr);
        const kept = lastJson<{ removed: boolean; inUseBy: string[] }>(oci(["remove", "--image", ref], env), "remove in use");
        assert.deepEqual(kept, { image: ref, removed: false, inUseBy: [name] });
        assert.ok(tagExists(ref));
        assert.equal(docker(["rm", name]).code, 0);
        assert.deepEqual(lastJson(oci(["remove", "--image", ref], env), "remove"), { image: ref, removed: true });
        // A tag gone is drift refresh reports (id null), not an error.
        assert.deepEqual(lastJson(oci(["status", "--tarball", fixture.tarball, "--repo", repo], env), "status after remove"), { image: ref, id: null });
    });

    it("a rebuilt image (another store hash) is a new tag; a tarball without a store hash is tagged by its content", (t) => {
        if (!ready(t) || !fixture) return;
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe6-rebuilt-"));
        const place = (name: string): string => {
            const target = path.join(dir, name);
            try {
                fs.linkSync(fixture!.tarball, target);
            } catch {
                fs.copyFileSync(fixture!.tarball, target);
            }
            return target;
        };
        const refs: string[] = [];
        try {
            const first = lastJson<{ image: string; id: string }>(oci(["load", "--tarball", fixture.tarball, "--repo", repo], env), "load");
            refs.push(first.image);
            const otherHash = crypto.createHash("sha256").update(`rebuilt-${runId}`).digest("hex").slice(0, 32);
            const rebuilt = lastJson<{ image: string; loaded: boolean; id: string }>(oci(["load", "--tarball", place(`${otherHash}-pcp-fixture-image.tar.gz`), "--repo", repo], env), "load rebuilt");
            refs.push(rebuilt.image);
            assert.deepEqual(rebuilt, { image: `${repo}:${otherHash}`, loaded: true, id: first.id });
            assert.ok(tagExists(first.image), "the earlier tag stays until its own remove");

            const plain = place("pcp-image.tar.gz");
            const contentHash = crypto.createHash("sha256").update(fs.readFileSync(plain)).digest("hex").slice(0, 32);
            const byContent = lastJson<{ image: string; loaded: boolean }>(oci(["load", "--tarball", plain, "--repo", repo], env), "load by content");
            refs.push(byContent.image);
            assert.equal(byContent.image, `${repo}:${contentHash}`);

            // Each remove takes its own tag; the image goes with the last one.
            for (const [i, ref] of refs.entries()) {
                assert.deepEqual(lastJson(oci(["remove", "--image", ref], env), `remove ${ref}`), { image: ref, removed: true });
                assert.equal(docker(["image", "inspect", first.id]).code === 0, i < refs.length - 1);
            }
        } finally {
            for (const ref of refs) if (tagExists(ref)) docker(["image", "rm", ref]);
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("a tarball that is no image: a clear error and nothing loaded", (t) => {
        if (!ready(t)) return;
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pe6-notimage-"));
        try {
            const junk = path.join(dir, "junk.tar.gz");
            fs.writeFileSync(junk, crypto.randomBytes(4096));
            // A real gzipped tar, but of a text file, not an image.
            fs.writeFileSync(path.join(dir, "README"), "not an image\n");
            const plainTar = path.join(dir, "plain.tar.gz");
            assert.equal(run("tar", ["-czf", plainTar, "-C", dir, "README"]).code, 0);
            const before = imageIds();
            for (const file of [junk, plainTar]) {
                const r = oci(["load", "--tarball", file, "--repo", repo], env);
                assert.notEqual(r.code, 0);
                assert.match(r.stderr, new RegExp(`--tarball ${file.replace(/[.]/g, "\\.")} is not a Docker image archive`));
                assert.equal(r.stdout, "");
            }
            assert.deepEqual(imageIds(), before);
            assert.equal(docker(["images", "-q", repo]).stdout.trim(), "");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("a host port already bound: check-ports names it, docker cannot start on it, nothing is left", async (t) => {
        if (!ready(t) || !fixture) return;
        const ref = `${repo}:${fixture.hash}`;
        lastJson(oci(["load", "--tarball", fixture.tarball, "--repo", repo], env), "load");
        const busy = await freePort();
        const other = await freePort();
        const srv = await listen(busy);
        try {
            const check = oci(["check-ports", "--address", "127.0.0.1", "--port", String(busy), "--port", String(other)], env);
            assert.notEqual(check.code, 0);
            assert.match(check.stderr, new RegExp(`already bound on 127\\.0\\.0\\.1: ${busy} `));
            // What check-ports prevents: Docker creates the container, then cannot start it.
            const spec = containerSpec({ stack, projectDir: repoRoot, hostAddress: "127.0.0.1", pmcdPort: busy, pmproxyPort: other, name: `${containerName}-busy` });
            const r = docker(["run", ...dockerRunArgs(spec, ref)]);
            assert.notEqual(r.code, 0);
            assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${busy}.*(address already in use|port is already allocated)`));
        } finally {
            await closeServer(srv);
            docker(["rm", "-f", `${containerName}-busy`]);
        }
        assert.deepEqual(ourContainers(), []);
        assert.deepEqual(lastJson(oci(["remove", "--image", ref], env), "remove"), { image: ref, removed: true });
    });

});

describe("the dockerd harness", () => {
    it("starts a dockerd of its own and stops exactly it, leaving nothing", async (t) => {
        if (!requireTools(t, ["docker", "dockerd", "ip", ["starting dockerd needs root", isRoot]])) return;
        const own = await ensureDockerd({ own: true });
        let stopped = false;
        try {
            assert.equal(own.started, true);
            assert.ok(own.pid !== undefined && own.dir !== undefined && own.bridge !== undefined);
            assert.equal(fs.readFileSync(`/proc/${own.pid}/comm`, "utf8").trim(), "dockerd");
            assert.equal(own.host, `unix://${own.dir}/docker.sock`);
            const info = run("docker", ["info", "--format", "{{.DockerRootDir}}"], own.env);
            assert.equal(info.stdout.trim(), path.join(own.dir, "data"));
            assert.equal(run("ip", ["link", "show", own.bridge]).code, 0);
            const pid = own.pid;
            const { dir, bridge } = own;
            await own.stop();
            stopped = true;
            assert.equal(fs.existsSync(`/proc/${pid}`), false, "dockerd is gone");
            assert.equal(fs.existsSync(dir), false, "its dir is gone");
            assert.notEqual(run("ip", ["link", "show", bridge]).code, 0, "its bridge is gone");
            assert.ok(!fs.readFileSync("/proc/self/mountinfo", "utf8").includes(dir), "nothing mounted below its dir");
        } finally {
            if (!stopped) await own.stop();
        }
    });
});
