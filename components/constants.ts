/**
 * The numbers of nix/constants.json, typed, plus the arithmetic every part
 * derives from them (forwarded ports, console ports). Nix reads the same file
 * with builtins.fromJSON; nothing here restates a number.
 */
import constantsJson from "../nix/constants.json";

export const constants = constantsJson;

export type Variant = keyof typeof constantsJson.variants;
export const variants = Object.keys(constantsJson.variants) as Variant[];

export function isVariant(name: string): name is Variant {
    return Object.prototype.hasOwnProperty.call(constantsJson.variants, name);
}

/** A variant's feature switches, as nix/constants.json gives them. */
export type Features = (typeof constantsJson.variants)[Variant]["features"];
/** Switches mkMicrovmRunner's enable<Feature> arguments may override (undefined: the variant's). */
export type FeatureOverrides = Partial<Features>;
/** Features after the rule of nix/lib/rules.nix (resolveFeatures). */
export type ResolvedFeatures = Features & { nodeExporter: boolean };

/**
 * The feature rule of nix/lib/rules.nix: node_exporter runs where the
 * evaluation tools or Grafana do. test/integration/nix.test.ts compares this
 * with the Nix side over every variant and every override.
 */
export function resolveFeatures(variant: Variant, overrides: FeatureOverrides = {}): ResolvedFeatures {
    const f: Features = { ...constantsJson.variants[variant].features };
    for (const [k, v] of Object.entries(overrides) as Array<[keyof Features, boolean | undefined]>) {
        if (v !== undefined) f[k] = v;
    }
    return { ...f, nodeExporter: f.evalTools || f.grafana };
}

/** Host ports a user-networked VM of `variant` forwards to its guest ports (the forward rule of nix/lib/rules.nix). */
export interface ForwardedPorts {
    ssh: number;
    pmcd: number;
    pmproxy: number;
    /** Only on variants whose guest runs these services. */
    grafana?: number;
    prometheus?: number;
    nodeExporter?: number;
}

export function forwardedPorts(variant: Variant, overrides: FeatureOverrides = {}): ForwardedPorts {
    const v = constantsJson.variants[variant];
    const features = resolveFeatures(variant, overrides);
    const f = constantsJson.hostForwards;
    const ports: ForwardedPorts = {
        ssh: f.ssh + v.portOffset,
        pmcd: f.pmcd + v.portOffset,
        pmproxy: f.pmproxy + v.portOffset,
    };
    if (features.grafana) {
        ports.grafana = f.grafana;
        ports.prometheus = f.prometheus;
    }
    if (features.nodeExporter) {
        ports.nodeExporter = f.nodeExporter + v.portOffset;
    }
    return ports;
}

export interface ConsolePorts {
    serial: number;
    virtio: number;
}

export function consolePorts(variant: Variant): ConsolePorts {
    const c = constantsJson.consoles;
    const block = c.base + constantsJson.variants[variant].consoleBlock;
    return { serial: block + c.serialOffset, virtio: block + c.virtioOffset };
}

/** Per-phase lifecycle timeouts in seconds; grafana VMs get the longer services wait. */
export function servicesTimeoutSeconds(variant: Variant): number {
    const t = constantsJson.timeoutsSeconds;
    return constantsJson.variants[variant].features.grafana ? t.servicesGrafana : t.services;
}
