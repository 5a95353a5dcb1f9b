// A small seeded PRNG (mulberry32) for the fuzzers, so a failure is reproducible: each test
// prints its seed; FUZZ_SEED=<seed> runs the same requests again.

export interface Rng {
  seed: number;
  next(): number; // [0, 1)
  int(min: number, max: number): number; // inclusive
  pick<T>(items: readonly T[]): T;
  chance(p: number): boolean;
  string(maxLength: number, alphabet?: string): string;
}

export function seedFromEnv(): number {
  const given = Deno.env.get("FUZZ_SEED");
  return given ? Number(given) >>> 0 : (crypto.getRandomValues(new Uint32Array(1))[0]);
}

const WIDE = "abcXYZ019 _-:/.'\"\\%\u00e9\u00df\u4e2d\u{1F600}\u200b\ufeff\u0301";

export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  return {
    seed,
    next,
    int,
    pick: (items) => items[Math.floor(next() * items.length)],
    chance: (p) => next() < p,
    string(maxLength, alphabet = WIDE) {
      const chars = [...alphabet];
      let s = "";
      const n = int(0, maxLength);
      for (let i = 0; i < n; i++) s += chars[Math.floor(next() * chars.length)];
      return s;
    },
  };
}

/** A JSON value nested `depth` levels deep. */
export function deep(depth: number, leaf: unknown = 1): unknown {
  let v: unknown = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { a: v };
  return v;
}
