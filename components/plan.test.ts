import { strict as assert } from "node:assert";
import { describe, it } from "node:test";
import { parseConfig } from "./config";
import { constants, Variant, variants } from "./constants";
import { hostPorts } from "./microVm";
import { parseCidr } from "./net";
import { planTaps, slotAddress } from "./plan";


const subnet = parseCidr(constants.network.subnet)!;

/** A small deterministic PRNG (mulberry32), so a failing case can be replayed from its seed. */
function prng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

function shuffle<T>(items: readonly T[], rand: () => number): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
}

/** A random valid stack: each variant at most once (console ports are per variant), random names and networking. */
function randomVms(rand: () => number): Array<{ entry: string; name: string; variant: Variant; tap: boolean }> {
    return shuffle(variants, rand)
        .filter(() => rand() < 0.7)
        .map((variant, i) => {
            const name = rand() < 0.5 ? variant : `vm${i}-${Math.floor(rand() * 1000)}`;
            const tap = rand() < 0.6;
            return { entry: `${variant}:${tap ? "tap" : "user"},name=${name}`, name, variant, tap };
        });
}

const raw = (vms: string[]): Record<string, string> => ({ "pcp-eval:bridgeEnabled": "true", "pcp-eval:vms": JSON.stringify(vms) });

/** Everything about a VM that its neighbours must never change. */
function identity(vms: string[]): Map<string, string> {
    const cfg = parseConfig(raw(vms), "prop", "/project");
    return new Map(cfg.vms.map((vm) => [vm.name, JSON.stringify({ tap: vm.tap, variant: vm.variant, ports: hostPorts(vm) })]));
}

describe("TAP plan (components/plan.ts)", () => {
    it("gives each variant its tapIndex slot: device, MAC and address", () => {
        const plan = planTaps([{ name: "b", variant: "eval" }, { name: "a", variant: "base" }], subnet);
        assert.deepEqual(plan.a, { index: 0, device: `${constants.network.tapPrefix}0`, mac: `${constants.network.macPrefix}:01`, address: constants.network.firstVmAddress });
        assert.deepEqual(plan.b, { index: 1, device: `${constants.network.tapPrefix}1`, mac: `${constants.network.macPrefix}:02`, address: slotAddress(1) });
    });

    it("leaves the address out where the subnet has no room for the slot", () => {
        const plan = planTaps([{ name: "a", variant: "bpf" }], parseCidr("192.168.7.0/29"));
        assert.equal(plan.a!.address, undefined);
        assert.equal(plan.a!.device, `${constants.network.tapPrefix}3`);
    });

    it("every variant has a slot of its own: no two share an index, device, MAC or address, in any order", () => {
        const all = variants.map((variant) => ({ name: `vm-${variant}`, variant }));
        const plan = planTaps(all, subnet);
        const slots = Object.values(plan);
        assert.equal(slots.length, variants.length);
        for (const field of ["index", "device", "mac", "address"] as const) {
            assert.equal(new Set(slots.map((s) => s[field])).size, variants.length, `two variants share a ${field}`);
        }
        assert.deepEqual(planTaps([...all].reverse(), subnet), plan);
    });

    it("property: adding or removing any VM changes no other VM's TAP, MAC, address or ports (500 random valid stacks)", () => {
        const rand = prng(1500);
        for (let run = 0; run < 500; run++) {
            const vms = randomVms(rand);
            if (vms.length === 0) continue;
            const full = identity(vms.map((v) => v.entry));
            for (let drop = 0; drop < vms.length; drop++) {
                const rest = vms.filter((_, i) => i !== drop);
                const fewer = identity(rest.map((v) => v.entry));
                for (const [name, id] of fewer) assert.equal(id, full.get(name), `run ${run}: removing ${vms[drop]!.name} changed ${name}`);
            }
        }
    });

    it("the issue's case: removing base:tap leaves eval:tap on its device, address and MAC", () => {
        const before = parseConfig(raw(["bpf:user", "base:tap", "eval:tap"]), "prop", "/project").vms.find((v) => v.name === "eval")!;
        const after = parseConfig(raw(["bpf:user", "eval:tap"]), "prop", "/project").vms.find((v) => v.name === "eval")!;
        assert.deepEqual(after.tap, before.tap);
        assert.equal(after.tap!.address, slotAddress(1));
    });
});
