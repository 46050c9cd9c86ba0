//! SplitMix64 (Steele, Lea and Flood 2014): the mixing function behind the
//! crate's seeded randomness (the retry jitter's per-call seeds, the fault
//! layer's per-call streams). Written out rather than taken from `rand`, so
//! a seed gives the same values on every platform and `rand` version.

/// The golden-ratio increment of SplitMix64's state.
pub(crate) const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function applied to `x + GOLDEN`.
#[inline]
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(GOLDEN);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // The first outputs of SplitMix64 seeded with 0 (state += GOLDEN,
        // then mix), as published with the algorithm.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(GOLDEN), 0x6E78_9E6A_A1B9_65F4);
    }
}
