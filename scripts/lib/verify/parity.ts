/**
 * PCP against node_exporter: both read the same kernel counters, so their
 * figures must agree within the tolerance in nix/constants.json.
 */

/** |a-b| relative to the larger magnitude; 0 when both are 0. */
export function relativeDeviation(a: number, b: number): number {
    if (a === b) return 0;
    const scale = Math.max(Math.abs(a), Math.abs(b));
    return scale === 0 ? 0 : Math.abs(a - b) / scale;
}

export interface ParityVerdict {
    ok: boolean;
    /** Smallest relative deviation between `other` and any PCP sample. */
    deviation: number;
    /** True when `other` lies between two PCP samples taken before and after it. */
    bracketed: boolean;
}

/**
 * Compares one node_exporter value with PCP samples taken just before and just
 * after it. Load averages move every few seconds; a value that lies between the
 * two PCP samples was simply read in between, and agrees by construction.
 */
export function compareWithSamples(pcpSamples: readonly number[], other: number, tolerance: number): ParityVerdict {
    if (pcpSamples.length === 0) throw new Error("compareWithSamples: no PCP samples");
    const deviation = Math.min(...pcpSamples.map((p) => relativeDeviation(p, other)));
    const lo = Math.min(...pcpSamples);
    const hi = Math.max(...pcpSamples);
    const bracketed = pcpSamples.length > 1 && lo <= other && other <= hi;
    return { ok: deviation <= tolerance || bracketed, deviation, bracketed };
}

export function percent(fraction: number): string {
    const p = fraction * 100;
    return `${p < 10 ? p.toFixed(1) : p.toFixed(0)}%`;
}
