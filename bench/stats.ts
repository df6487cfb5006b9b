/** What the bench scripts share. */

/** The median (the mean of the middle two for an even count); throws on no values. */
export function median(values: readonly number[]): number {
    if (values.length === 0) throw new Error("median of no values");
    const s = [...values].sort((a, b) => a - b);
    const mid = Math.floor(s.length / 2);
    return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
