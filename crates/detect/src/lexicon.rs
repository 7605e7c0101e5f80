//! Fixed word lists looked up in time that does not grow with the list.
//!
//! The assignment judge asks, for every candidate value, whether it is one of a
//! few hundred stand-ins, whether it holds one of dozens of template marks, and
//! whether it ends in one of dozens of file extensions. Text dense with keywords
//! reaches the judge on every few bytes, so a linear pass over each list (and a
//! substring searcher built per mark) made such text cost ten times ordinary text.
//! A [`Lexicon`] is a small hash table; [`Marks`] is one Aho-Corasick
//! automaton over all the marks.

/// A set of byte strings, built once, with a membership test in constant time.
///
/// Words of up to [`PACKED`] bytes (nearly all) are packed into one integer each
/// and kept in an open-addressing table at most half full, so a lookup is a
/// multiply and one or two integer compares; longer words are kept sorted as
/// slices and bisected.
pub(crate) struct Lexicon {
    /// Packed words; [`EMPTY`] marks a free slot. The length is a power of two.
    slots: Vec<u128>,
    shift: u32,
    long: Vec<&'static [u8]>,
}

/// The longest word packed into a `u128`: its bytes, and its length in the last.
const PACKED: usize = 15;

/// No packed word is all zeros: the empty word has length 0 but is never stored.
const EMPTY: u128 = 0;

/// `w` (at most [`PACKED`] bytes) as one integer, built in registers: a copy
/// into a stack buffer read back whole stalls on store forwarding, which cost
/// more than the rest of a lookup.
fn pack(w: &[u8]) -> u128 {
    let bytes = w
        .iter()
        .enumerate()
        .fold(0u128, |k, (i, &b)| k | u128::from(b) << (8 * i));
    bytes | u128::from(w.len() as u8) << 120
}

impl Lexicon {
    /// The union of `lists` (empty words are left out).
    pub(crate) fn of(lists: &[&[&'static str]]) -> Lexicon {
        let words = lists
            .iter()
            .flat_map(|l| l.iter().map(|w| w.as_bytes()))
            .filter(|w| !w.is_empty());
        let (short, mut long): (Vec<&[u8]>, Vec<&[u8]>) = words.partition(|w| w.len() <= PACKED);
        long.sort_unstable();
        long.dedup();
        let bits = (short.len() * 2)
            .max(2)
            .next_power_of_two()
            .trailing_zeros();
        let mut l = Lexicon {
            slots: vec![EMPTY; 1 << bits],
            shift: 64 - bits,
            long,
        };
        for w in short {
            let key = pack(w);
            let mut i = l.slot(key);
            while l.slots[i] != EMPTY && l.slots[i] != key {
                i = (i + 1) & (l.slots.len() - 1);
            }
            l.slots[i] = key;
        }
        l
    }

    /// Where probing for `key` starts.
    fn slot(&self, key: u128) -> usize {
        let folded = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
        (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// True when `w` is one of the words, byte for byte.
    pub(crate) fn contains(&self, w: &[u8]) -> bool {
        if w.len() > PACKED {
            return self.long.binary_search(&w).is_ok();
        }
        if w.is_empty() {
            return false;
        }
        let key = pack(w);
        let mut i = self.slot(key);
        loop {
            match self.slots[i] {
                EMPTY => return false,
                k if k == key => return true,
                _ => i = (i + 1) & (self.slots.len() - 1),
            }
        }
    }
}

/// Substrings of which any one marks a value; one pass finds whether any occurs.
pub(crate) struct Marks {
    automaton: aho_corasick::AhoCorasick,
}

impl Marks {
    /// The automaton over `marks`.
    pub(crate) fn of(marks: &[&str]) -> Marks {
        Marks {
            automaton: aho_corasick::AhoCorasick::builder()
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(marks)
                .expect("marks build an automaton"),
        }
    }

    /// True when one of the marks occurs in `hay`.
    pub(crate) fn any_in(&self, hay: &[u8]) -> bool {
        self.automaton.is_match(hay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lexicon_holds_exactly_its_words() {
        let long = "a-word-of-more-than-fifteen-bytes";
        let l = Lexicon::of(&[
            &["beta", "alpha", long],
            &["gamma", "alpha", "fifteen-bytes-x"],
        ]);
        for w in ["alpha", "beta", "gamma", long, "fifteen-bytes-x"] {
            assert!(l.contains(w.as_bytes()), "{w}");
        }
        for w in [
            "",
            "alph",
            "alphas",
            "Alpha",
            "delta",
            "alpha\0",
            "fifteen-bytes-",
            "a-word-of-more-than-fifteen-byte",
        ] {
            assert!(!l.contains(w.as_bytes()), "{w}");
        }
    }

    #[test]
    fn marks_are_found_anywhere() {
        let m = Marks::of(&["${", "xxxx", "::"]);
        assert!(m.any_in(b"a${b}"));
        assert!(m.any_in(b"xxxx"));
        assert!(m.any_in(b"mod::f"));
        assert!(!m.any_in(b"xxx$x{:"));
        assert!(!m.any_in(b""));
    }
}
