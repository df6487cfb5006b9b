/**
 * The machine-readable description of everything a stack provisions, as the
 * `targets` stack output; `npm run verify` reads it.
 */
import { Networking } from "./config";
import { Variant } from "./constants";

export interface Target {
    kind: "vm" | "container" | "daemonset";
    variant?: Variant;
    networking?: Networking;
    pmcd: { host: string; port: number };
    pmproxyUrl: string;
    nodeExporterUrl?: string;
    grafanaUrl?: string;
    prometheusUrl?: string;
    consoles?: { host: string; serial: number; virtio: number };
    /** identityFile is the stack's generated key; absent when the user supplied pcp-eval:sshPublicKey. */
    ssh?: { host: string; port: number; user: string; identityFile?: string };
    features: { linuxPmda: boolean; bpf: boolean; pmieTest: boolean; nodeExporter: boolean };
}
