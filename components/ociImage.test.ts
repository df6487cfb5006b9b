/**
 * OciImage under Pulumi's mocks: the Container runs exactly as
 * ociContainerSpec says (the integration test runs the same spec in a real
 * dockerd), a bound port is caught before the Container, pmcd is waited for
 * on the published port after it, and destroy removes only the loaded tag.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { describe, it } from "node:test";
import { ContainerConfig } from "./config";
import { constants } from "./constants";
import { containerSpec, dockerRunArgs } from "./ociContainerSpec";
import { OciImage } from "./ociImage";
import { recordProgram } from "../test/helpers/mocks";

const projectDir = path.resolve(__dirname, "..");

function build(container?: ContainerConfig) {
    return recordProgram(
        () =>
            new OciImage("pcp-image", {
                stack: "unit",
                flake: "/srv/pcp-eval/nix",
                system: "x86_64-linux",
                stateDir: "/srv/pcp-eval/.pcp-eval-state/unit",
                hostCommands: "command",
                projectDir,
                storePath: `/nix/store/${"f".repeat(32)}-pcp-container.tar.gz`,
                container,
            }),
        { stack: "unit" },
    );
}

const container: ContainerConfig = { hostAddress: "127.0.0.1", pmcdPort: 45321, pmproxyPort: 45322 };

interface ContainerInputs {
    name: string;
    image: string;
    user: string;
    restart: string;
    mustRun: boolean;
    wait: boolean;
    waitTimeout: number;
    stopTimeout: number;
    destroyGraceSeconds: number;
    ports: Array<{ internal: number; external: number; ip: string; protocol: string }>;
    healthcheck: { tests: string[]; interval: string; timeout: string; startPeriod: string; retries: number };
    labels: Array<{ label: string; value: string }>;
}

describe("OciImage", () => {
    it("runs the container as the spec says: UID, ports on the host address, restart, health check, labels, graceful stop", async () => {
        const { recording } = await build(container);
        const inputs = recording.byName("pcp-image-container").inputs as unknown as ContainerInputs;
        const spec = containerSpec({ stack: "unit", projectDir, ...container });
        assert.equal(inputs.name, "pcp-eval-unit");
        assert.equal(inputs.image, "pcp-eval:00000000000000000000000000000000");
        assert.equal(inputs.user, String(constants.container.uid));
        assert.equal(inputs.restart, "unless-stopped");
        assert.equal(inputs.mustRun, true);
        assert.deepEqual(inputs.ports, [
            { internal: constants.ports.pmcd, external: 45321, ip: "127.0.0.1", protocol: "tcp" },
            { internal: constants.ports.pmproxy, external: 45322, ip: "127.0.0.1", protocol: "tcp" },
        ]);
        assert.deepEqual(inputs.healthcheck.tests, ["CMD", "pmprobe", "-h", "127.0.0.1", "pmcd.version"]);
        assert.equal(inputs.healthcheck.retries, spec.healthcheck.retries);
        assert.equal(inputs.healthcheck.interval, `${spec.healthcheck.intervalSeconds}s`);
        assert.deepEqual(Object.fromEntries(inputs.labels.map((l) => [l.label, l.value])), spec.labels);
        assert.equal(spec.labels["pcp-eval.stack"], "unit");
        assert.equal(inputs.wait, true);
        assert.equal(inputs.waitTimeout, constants.timeoutsSeconds.services);
        assert.equal(inputs.stopTimeout, constants.timeoutsSeconds.shutdown);
        assert.equal(inputs.destroyGraceSeconds, constants.timeoutsSeconds.shutdown);
    });

    it("checks the host ports before the container and waits for pmcd on the published port after it", async () => {
        const { recording } = await build(container);
        const ports = recording.byName("pcp-image-ports").inputs as { create: string };
        assert.equal(ports.create, "bash host/oci.sh check-ports --address 127.0.0.1 --port 45321 --port 45322");
        assert.deepEqual(recording.dependencyNames("pcp-image-container").sort(), ["pcp-image-load-state", "pcp-image-ports"]);
        const ready = recording.byName("pcp-image-pmcd-ready").inputs as { create: string };
        assert.equal(ready.create, `bash host/oci.sh wait-pmcd --address 127.0.0.1 --port 45321 --timeout ${constants.timeoutsSeconds.services}`);
        assert.ok(recording.dependencyNames("pcp-image-pmcd-ready").includes("pcp-image-container"));
    });

    it("waits on loopback when the ports are published on every address", async () => {
        const { recording } = await build({ hostAddress: "0.0.0.0", pmcdPort: 46321, pmproxyPort: 46322 });
        const ready = recording.byName("pcp-image-pmcd-ready").inputs as { create: string };
        assert.match(ready.create, /wait-pmcd --address 127\.0\.0\.1 --port 46321 /);
        const inputs = recording.byName("pcp-image-container").inputs as unknown as ContainerInputs;
        assert.ok(inputs.ports.every((p) => p.ip === "0.0.0.0"));
    });

    it("loads by the store path and removes, on destroy, only the tag it loaded", async () => {
        const { recording } = await build(container);
        const load = recording.byName("pcp-image-load").inputs as { create: string; delete: string };
        assert.match(load.create, /^bash host\/oci\.sh load --tarball \/nix\/store\/f{32}-pcp-container\.tar\.gz --repo pcp-eval$/);
        assert.match(load.delete, /^bash host\/oci\.sh remove --tarball \/nix\/store\/f{32}-pcp-container\.tar\.gz --repo pcp-eval$/);
    });

    it("rebuilds and reloads exactly when the evaluated store path changes", async () => {
        const { recording } = await build(container);
        const planned = `/nix/store/${"f".repeat(32)}-pcp-container.tar.gz`;
        assert.deepEqual((recording.byName("pcp-image-image-build").inputs as { triggers: unknown[] }).triggers, [planned]);
        assert.deepEqual((recording.byName("pcp-image-load").inputs as { triggers: unknown[] }).triggers, [planned]);
    });

    it("runs no container, port check or wait when only the cluster needs the image", async () => {
        const { recording } = await build(undefined);
        for (const name of ["pcp-image-container", "pcp-image-ports", "pcp-image-pmcd-ready"]) assert.equal(recording.has(name), false, name);
        assert.ok(recording.has("pcp-image-load"));
    });

    it("gives docker run the same settings (what the integration test runs)", () => {
        const spec = containerSpec({ stack: "unit", projectDir, ...container });
        const args = dockerRunArgs(spec, "pcp-eval:abc");
        const flag = (name: string): string[] => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []));
        assert.deepEqual(flag("--user"), [String(constants.container.uid)]);
        assert.deepEqual(flag("--publish"), [`127.0.0.1:45321:${constants.ports.pmcd}/tcp`, `127.0.0.1:45322:${constants.ports.pmproxy}/tcp`]);
        assert.deepEqual(flag("--restart"), ["unless-stopped"]);
        assert.deepEqual(flag("--health-cmd"), ["pmprobe -h 127.0.0.1 pmcd.version"]);
        assert.ok(flag("--label").includes("pcp-eval.stack=unit"));
        assert.equal(args[args.length - 1], "pcp-eval:abc");
    });
});
