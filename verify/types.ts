/**
 * The shapes `npm run verify` and `npm run lifecycle` work with: the stack's
 * `targets` output (see /work/notes/CONTRACTS.md, "Stack outputs"), and the
 * results every check produces.
 */

export type TargetKind = "vm" | "container" | "daemonset";
export type VmVariantName = "base" | "eval" | "grafana" | "bpf";
export type NetworkingMode = "user" | "tap";

export interface HostPort {
    host: string;
    port: number;
}

export interface ConsoleEndpoints {
    host: string;
    serial: number;
    virtio: number;
}

export interface SshEndpoint {
    host: string;
    port: number;
    user: string;
    /** The stack's generated key; absent when the user supplied their own public key (ssh then uses theirs). */
    identityFile?: string;
}

export interface TargetFeatures {
    linuxPmda: boolean;
    bpf: boolean;
    pmieTest: boolean;
    nodeExporter: boolean;
}

/** One element of the `targets` stack output. Absent parts have no key. */
export interface Target {
    kind: TargetKind;
    variant?: VmVariantName;
    networking?: NetworkingMode;
    pmcd: HostPort;
    pmproxyUrl: string;
    nodeExporterUrl?: string;
    grafanaUrl?: string;
    prometheusUrl?: string;
    consoles?: ConsoleEndpoints;
    ssh?: SshEndpoint;
    features: TargetFeatures;
}

/** The part of the stack outputs verify reads; other outputs are kept but not interpreted. */
export interface StackOutputs {
    targets: Record<string, Target>;
    grafanaUrl?: string;
    /** A direct URL per provisioned dashboard, keyed by uid. */
    grafanaDashboards?: Record<string, string>;
    /** Secret; "[secret]" when read from `pulumi stack output --json` without --show-secrets. */
    grafanaAdminPassword?: string;
    prometheusUrl?: string;
    summary?: string;
}

/** Verify's phases, in the order they run for each target. */
export const verifyPhases = ["services", "metrics", "consoles", "parity", "pmie"] as const;
export type VerifyPhase = (typeof verifyPhases)[number];

/** Lifecycle phases around verify's, run once for the whole stack. */
export const stackPhases = ["up", "destroy", "leftovers"] as const;
export type StackPhase = (typeof stackPhases)[number];
export type Phase = VerifyPhase | StackPhase;

export type CheckStatus = "PASS" | "FAIL" | "SKIP";

/** What one check decided; `message` says what was seen (PASS), what failed and where (FAIL), or why not run (SKIP). */
export interface CheckOutcome {
    status: CheckStatus;
    message: string;
}

export interface CheckResult extends CheckOutcome {
    target: string;
    phase: Phase;
    name: string;
    ms: number;
    attempts: number;
}

export const pass = (message: string): CheckOutcome => ({ status: "PASS", message });
export const fail = (message: string): CheckOutcome => ({ status: "FAIL", message });
export const skip = (message: string): CheckOutcome => ({ status: "SKIP", message });
