// Seeded randomness for reproducible tests: the same seed gives the same choices on every run.

export type Rng = () => number;

/** A small seeded PRNG (xorshift32): values in [0, 1). */
export function prng(seed: number): Rng {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 0x100000000;
  };
}
