/**
 * The running process of one MicroVM as a Pulumi dynamic resource around
 * host/vm.sh (start / status / stop).
 *
 * - create runs `vm.sh start`: the runner starts detached and create returns
 *   only when every readiness phase answered. vm.sh's progress lines (VM,
 *   phase, elapsed) go to this provider's stderr, which Pulumi shows.
 * - read runs `vm.sh status`: a VM that died reads as gone, so
 *   `pulumi refresh` drops it and the next `pulumi up` starts it again.
 * - diff also checks the live process, so a plain `pulumi up` (or preview)
 *   already plans to replace a VM that died.
 * - delete runs `vm.sh stop` (graceful, then TERM, then KILL).
 *
 * Pulumi serializes the provider with its closure serializer: everything it
 * uses is plain data in its inputs (the script path too) and node modules are
 * required inside the functions.
 */
import * as pulumi from "@pulumi/pulumi";
import { projectWorkDir, runJson, sameStateDir } from "./run";

/** Inputs of one VM process; every field is plain data so the provider can be serialized. */
export interface MicroVmProcessInputs {
    /** VM instance name; its state lives in `<stateDir>/<name>`. */
    name: string;
    /**
     * Working directory of vm.sh (the project): stateDir and scriptPath may be
     * relative to it, so a moved checkout changes only this, an update that
     * leaves the running VM alone.
     */
    dir?: string;
    /** Store path of the runner; `<runner>/bin/microvm-run` starts the VM. */
    runner: string;
    /**
     * The accelerator setting (pcp-eval:vmAccel), passed to `vm.sh start
     * --accel`: the accelerator is chosen when the VM starts, not built into
     * the runner, so a changed KVM verdict (a host fact) replaces nothing; auto
     * reads the verdict remembered for this boot in kvmVerdict. A changed
     * setting restarts the VM, with "accel" as the plan's reason.
     */
    accel?: "auto" | "kvm" | "tcg";
    /** The KVM verdict file host/kvm-probe.sh writes (preflight runs it on up), read by accel auto. */
    kvmVerdict?: string;
    /** Directory holding one sub-directory per VM (absolute, or relative to dir). */
    stateDir: string;
    /** Path of host/vm.sh (absolute, or relative to dir). */
    scriptPath: string;
    /** Host ports (forwards and consoles) that must be free before start. */
    ports: number[];
    /** Readiness probes, PHASE=SPEC (tcp:HOST:PORT, console:HOST:PORT or http://...), in phase order. */
    probes: string[];
    /**
     * Timeouts in seconds: per readiness phase ("process", or its alias
     * "start", and the probe phases), plus "shutdown" and "exit" for stop.
     * Absent ones default to nix/constants.json in vm.sh.
     */
    timeouts: Record<string, number>;
}

export interface MicroVmProcessState extends MicroVmProcessInputs {
    pid: number;
    startedAt: string;
    /** Milliseconds from launch until every phase answered. */
    readyMs: number;
    /** The VM's state dir (pid file, logs, QMP socket). */
    vmDir: string;
    /** The accelerator this start used (absent: the runner's default). */
    accelUsed?: "kvm" | "tcg";
}

/** `vm.sh start` stdout. */
export interface VmStartResult {
    name: string;
    pid: number;
    startedAt: string;
    readyMs: number;
    phases: Record<string, number>;
    ports: number[];
    stateDir: string;
    log: string;
    accel?: "kvm" | "tcg" | null;
}

/** `vm.sh stop` stdout. */
export interface VmStopResult {
    name: string;
    stopped: boolean;
    how: "graceful" | "term" | "kill" | "not-running";
    /** Milliseconds from the stop request until the VM was gone (0 when it was not running). */
    stopMs: number;
}

/** `vm.sh status` stdout (and each element of `vm.sh list`). */
export interface VmStatus {
    name: string;
    running: boolean;
    pid?: number;
    uptimeSeconds?: number;
    startedAt?: string;
    ports?: number[];
    /** A pid file remained, but its process is gone. */
    stale?: boolean;
    reason?: string;
}

/** The vm.sh command line (after the script path) for one verb. */
/** purge: a stop that also removes the VM's logs and directory (destroy). */
export interface VmShOptions {
    purge?: boolean;
}

export function vmShArgs(inputs: MicroVmProcessInputs, verb: "start" | "stop" | "status", options: VmShOptions = {}): string[] {
    const base = [verb, "--name", inputs.name, "--state-dir", inputs.stateDir];
    const timeouts = inputs.timeouts ?? {};
    if (verb === "start") {
        const args = [...base, "--runner", inputs.runner];
        if (inputs.accel !== undefined) args.push("--accel", inputs.accel);
        if (inputs.accel === "auto" && inputs.kvmVerdict !== undefined) args.push("--kvm-verdict", inputs.kvmVerdict);
        for (const p of inputs.ports) args.push("--port", String(p));
        for (const p of inputs.probes) args.push("--probe", p);
        for (const [phase, seconds] of Object.entries(timeouts)) {
            args.push("--timeout", `${phase === "start" ? "process" : phase}=${seconds}`);
        }
        return args;
    }
    if (verb === "stop") {
        const args = [...base];
        if (timeouts.shutdown !== undefined) args.push("--shutdown-timeout", String(timeouts.shutdown));
        if (timeouts.exit !== undefined) args.push("--exit-timeout", String(timeouts.exit));
        if (options.purge === true) args.push("--purge");
        return args;
    }
    return base;
}

/**
 * Runs vm.sh (components/run.ts) and resolves with its one JSON line. stderr
 * lines are passed on to this process's stderr as they come (Pulumi shows a
 * dynamic provider's stderr); a failure rejects with vm.sh's error report.
 */
export function runVmSh<T>(inputs: MicroVmProcessInputs, verb: "start" | "stop" | "status", echo = true, options: VmShOptions = {}): Promise<T> {
    return runJson<T>("bash", [inputs.scriptPath, ...vmShArgs(inputs, verb, options)], {
        cwd: projectWorkDir(inputs.dir),
        label: `vm.sh ${verb} ${inputs.name}`,
        echo,
        // vm.sh's failure report: the phase, the probe error and the VM's log tails.
        tailLines: 160,
    });
}

/** Input problems, as Pulumi check failures; values still unknown (preview) are not judged. */
export function checkInputs(news: MicroVmProcessInputs): Array<{ property: string; reason: string }> {
    // Required here, not taken from the import: the closure serializer would copy
    // the imported namespace object (not the module itself) into the provider by value.
    const runtime: typeof import("@pulumi/pulumi/runtime") = require("@pulumi/pulumi/runtime");
    const unknown = runtime.unknownValue;
    const known = (v: unknown): boolean => v !== unknown && v !== undefined;
    const failures: Array<{ property: string; reason: string }> = [];
    const fail = (property: string, reason: string): void => {
        failures.push({ property, reason });
    };
    if (known(news.name) && !/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/.test(String(news.name))) {
        fail("name", `'${news.name}': use letters, digits, '.', '_' and '-' (at most 63, not starting with a symbol)`);
    }
    if (known(news.dir) && !String(news.dir).startsWith("/")) fail("dir", `'${news.dir}' must be an absolute path`);
    for (const key of ["stateDir", "scriptPath"] as const) {
        if (known(news[key]) && !String(news[key]).startsWith("/") && news.dir === undefined) {
            fail(key, `'${news[key]}' must be an absolute path, or give dir to resolve it against`);
        }
    }
    if (known(news.runner) && String(news.runner).trim() === "") fail("runner", "must be the runner's store path");
    if (known(news.ports)) {
        if (!Array.isArray(news.ports)) {
            fail("ports", "must be a list of TCP ports");
        } else {
            news.ports.forEach((p, i) => {
                if (known(p) && !(Number.isInteger(p) && p >= 1 && p <= 65535)) fail(`ports[${i}]`, `${p} is not a TCP port (1-65535)`);
            });
            const dup = news.ports.filter((p, i) => known(p) && news.ports.indexOf(p) !== i);
            if (dup.length > 0) fail("ports", `listed twice: ${[...new Set(dup)].join(", ")}`);
        }
    }
    if (known(news.probes)) {
        if (!Array.isArray(news.probes)) {
            fail("probes", "must be a list of PHASE=SPEC strings");
        } else {
            news.probes.forEach((p, i) => {
                if (!known(p)) return;
                const m = /^([a-zA-Z][a-zA-Z0-9_-]*)=(.*)$/.exec(String(p));
                if (!m || m[1] === "process" || !/^(tcp:|console:)[^:]+:\d+$|^https?:\/\/./.test(m[2])) {
                    fail(`probes[${i}]`, `'${p}' must be PHASE=tcp:HOST:PORT, PHASE=console:HOST:PORT or PHASE=http://HOST:PORT/PATH (PHASE not "process")`);
                }
            });
        }
    }
    if (known(news.timeouts)) {
        for (const [phase, seconds] of Object.entries(news.timeouts ?? {})) {
            if (known(seconds) && !(typeof seconds === "number" && seconds > 0 && Number.isFinite(seconds))) {
                fail(`timeouts.${phase}`, `${seconds} must be a positive number of seconds`);
            }
        }
    }
    return failures;
}

const replaceKeys = ["name", "runner", "stateDir", "ports"] as const;
const updateKeys = ["scriptPath", "probes", "timeouts", "dir", "kvmVerdict"] as const;

export const microVmProcessProvider: pulumi.dynamic.ResourceProvider<MicroVmProcessInputs, MicroVmProcessState> = {
    async check(_olds, news) {
        return { inputs: news, failures: checkInputs(news) };
    },

    async create(inputs) {
        // A VM of this name in our state dir that runs although the state has no
        // resource for it was started by an interrupted `pulumi up`: stop it, so
        // the next `up` converges instead of failing on "already running".
        // (A status that fails is left to start, which reports the cause.)
        const leftover = await runVmSh<VmStatus>(inputs, "status", false).catch(() => undefined);
        if (leftover?.running) await runVmSh<VmStopResult>(inputs, "stop");
        const started = await runVmSh<VmStartResult>(inputs, "start");
        const outs: MicroVmProcessState = {
            ...inputs,
            pid: started.pid,
            startedAt: started.startedAt,
            readyMs: started.readyMs,
            vmDir: started.stateDir,
            ...(started.accel ? { accelUsed: started.accel } : {}),
        };
        return { id: started.stateDir, outs };
    },

    async read(id, props) {
        if (props === undefined) return { id };
        const status = await runVmSh<VmStatus>(props, "status", false);
        // A VM that died is gone: refresh drops it from state and the next `up` starts it again.
        if (!status.running || status.pid === undefined) return { id: "" };
        return { id, props: { ...props, pid: status.pid, startedAt: status.startedAt ?? props.startedAt } };
    },

    async diff(_id, olds, news) {
        const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
        // A state dir written differently (absolute before, project-relative now) but naming the same place is no move.
        const replaces: string[] = replaceKeys.filter((k) => (k === "stateDir" ? !sameStateDir(olds, news) : !same(olds[k], news[k])));
        // The accelerator setting (never the KVM verdict, which is read at start); a state recorded before accel was an input has none: no change.
        if (olds.accel !== undefined && news.accel !== undefined && olds.accel !== news.accel) replaces.push("accel");
        // Without a refresh, `up` still notices a VM whose process died. A
        // host error (vm.sh missing, a broken state dir) fails the diff with
        // its message rather than planning nothing.
        if (replaces.length === 0 && olds.pid !== undefined) {
            // Asked where the VM is now: the same VM, but a moved checkout's old place is gone.
            const status = await runVmSh<VmStatus>({ ...olds, dir: news.dir ?? olds.dir, scriptPath: news.scriptPath }, "status", false);
            if (!status.running || status.pid !== olds.pid) replaces.push("pid");
        }
        const changes = replaces.length > 0 || updateKeys.some((k) => !same(olds[k], news[k]));
        return { changes, replaces, deleteBeforeReplace: true };
    },

    async update(_id, olds, news) {
        // Only probes, timeouts or the script path changed: the running VM stays as it is.
        return { outs: { ...news, pid: olds.pid, startedAt: olds.startedAt, readyMs: olds.readyMs, vmDir: olds.vmDir, ...(olds.accelUsed ? { accelUsed: olds.accelUsed } : {}) } };
    },

    async delete(_id, props) {
        // Destroy leaves nothing of the VM: its logs and directory go too.
        await runVmSh<VmStopResult>(props, "stop", true, { purge: true });
    },
};

type Args = { [K in keyof MicroVmProcessInputs]: pulumi.Input<MicroVmProcessInputs[K]> };

/**
 * The running QEMU process of one MicroVM, as a dynamic resource whose read
 * checks the live process, so `pulumi refresh` notices a VM that died.
 */
export class MicroVmProcess extends pulumi.dynamic.Resource {
    public declare readonly pid: pulumi.Output<number>;
    public declare readonly startedAt: pulumi.Output<string>;
    public declare readonly readyMs: pulumi.Output<number>;
    public declare readonly vmDir: pulumi.Output<string>;

    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(
            microVmProcessProvider,
            name,
            { ...args, pid: undefined, startedAt: undefined, readyMs: undefined, vmDir: undefined },
            opts,
            "pcp-eval",
            "MicroVmProcess",
        );
    }
}
