/**
 * PCP against node_exporter: both read the same kernel counters, so their
 * figures must agree within the tolerance in nix/constants.json.
 */

/** How far `other` is from the PCP `reference`, as a fraction of it (Infinity when PCP reads 0 and the other does not). */
export function relativeDeviation(reference: number, other: number): number {
    if (reference === other) return 0;
    if (reference === 0) return Infinity;
    return Math.abs(other - reference) / Math.abs(reference);
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
    if (!Number.isFinite(fraction)) return "\u221e%";
    const p = fraction * 100;
    return `${p < 10 ? p.toFixed(1) : p.toFixed(0)}%`;
}
