import * as pulumi from "@pulumi/pulumi";

/** Inputs of one VM process; every field is plain data so the provider can be serialized. */
export interface MicroVmProcessInputs {
    name: string;
    /** Store path of the runner; `<runner>/bin/microvm-run` starts the VM. */
    runner: string;
    stateDir: string;
    /** Absolute path of scripts/vm.sh. */
    scriptPath: string;
    /** Host ports (forwards and consoles) that must be free before start. */
    ports: number[];
    /** Readiness probes, PHASE=SPEC (tcp:HOST:PORT or http://...). */
    probes: string[];
    /** Per-phase timeouts in seconds. */
    timeouts: Record<string, number>;
}

export interface MicroVmProcessState extends MicroVmProcessInputs {
    pid: number;
    startedAt: string;
}

type Args = { [K in keyof MicroVmProcessInputs]: pulumi.Input<MicroVmProcessInputs[K]> };

function vmScript(inputs: MicroVmProcessInputs, verb: string, extra: string[]): Record<string, unknown> {
    // Required inside the method: the provider is serialized by closure capture.
    const childProcess: typeof import("node:child_process") = require("node:child_process");
    const stdout = childProcess.execFileSync("bash", [inputs.scriptPath, verb, "--name", inputs.name, "--state-dir", inputs.stateDir, ...extra], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"],
        maxBuffer: 16 * 1024 * 1024,
    });
    const line = stdout.trim().split("\n").pop() ?? "{}";
    return JSON.parse(line) as Record<string, unknown>;
}

const provider: pulumi.dynamic.ResourceProvider<MicroVmProcessInputs, MicroVmProcessState> = {
    async create(inputs) {
        const extra = [
            "--runner", inputs.runner,
            ...inputs.ports.flatMap((p) => ["--port", String(p)]),
            ...inputs.probes.flatMap((p) => ["--probe", p]),
            ...Object.entries(inputs.timeouts).flatMap(([phase, s]) => ["--timeout", `${phase}=${s}`]),
        ];
        const started = vmScript(inputs, "start", extra);
        return {
            id: `${inputs.stateDir}/${inputs.name}`,
            outs: { ...inputs, pid: Number(started.pid), startedAt: String(started.startedAt) },
        };
    },
    async read(id, props) {
        if (props === undefined) return { id };
        const status = vmScript(props, "status", []);
        // A VM that died is gone: refresh drops it from state and the next `up` starts it again.
        if (status.running !== true) return { id: "", props: undefined };
        return { id, props: { ...props, pid: Number(status.pid) } };
    },
    async delete(_id, props) {
        vmScript(props, "stop", ["--shutdown-timeout", String(props.timeouts.shutdown ?? 30), "--exit-timeout", String(props.timeouts.exit ?? 60)]);
    },
    async diff(_id, olds, news) {
        const replaces = (["name", "runner", "stateDir", "ports", "probes"] as const).filter(
            (k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]),
        );
        const changed = replaces.length > 0 || JSON.stringify(olds.timeouts) !== JSON.stringify(news.timeouts) || olds.scriptPath !== news.scriptPath;
        return { changes: changed, replaces, deleteBeforeReplace: true };
    },
    async update(_id, _olds, news) {
        // Only timeouts or the script path changed: nothing to do to the running VM.
        const status = vmScript(news, "status", []);
        return { outs: { ...news, pid: Number(status.pid), startedAt: String(status.startedAt ?? "") } };
    },
};

/**
 * The running QEMU process of one MicroVM, as a dynamic resource whose read
 * checks the live process, so `pulumi refresh` notices a VM that died.
 */
export class MicroVmProcess extends pulumi.dynamic.Resource {
    public declare readonly pid: pulumi.Output<number>;
    public declare readonly startedAt: pulumi.Output<string>;

    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(provider, name, { ...args, pid: undefined, startedAt: undefined }, opts, "pcp-eval", "MicroVmProcess");
    }
}
