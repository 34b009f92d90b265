//! Cutting special tokens out of a text before BPE, as llama.cpp does
//! (`tokenizer_st_partition`).
//!
//! llama.cpp takes the special tokens (control, user-defined, unknown) longest
//! first and, for each one, splits every remaining text fragment at each of
//! its occurrences, left to right. With `parse_special = false` control and
//! unknown tokens are skipped, so only user-defined tokens are cut out (their
//! text in user input is still that token, as in Hugging Face `tokenizers`).
//! A token with `LSTRIP`/`RSTRIP` also eats the ASCII whitespace next to it.
//!
//! This is not the same as a leftmost-longest scan when two special tokens
//! overlap in the text, so the order is reproduced exactly. To stay fast with
//! the thousands of special tokens some vocabularies have, one Aho-Corasick
//! pass first finds which special tokens occur at all; only those are
//! processed (a token absent from the text cannot be in any fragment of it).

use std::ops::Range;

use aho_corasick::AhoCorasick;

use crate::error::{Result, TokenizerError};
use crate::vocab::{TokenAttr, Vocab};

/// A piece of the input: text still to be tokenized, or a special token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// A byte range of the input text (never empty).
    Text(Range<usize>),
    /// A special token.
    Token(u32),
}

/// The special tokens of a vocabulary, ready to be found in text.
pub(crate) struct Partitioner {
    /// (id, attributes) in llama.cpp's order: longest text first.
    specials: Vec<(u32, TokenAttr)>,
    /// Their texts, same order.
    texts: Vec<String>,
    /// Finds all (overlapping) occurrences of every special text.
    finder: Option<AhoCorasick>,
}

impl std::fmt::Debug for Partitioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partitioner")
            .field("specials", &self.specials.len())
            .finish()
    }
}

/// ASCII whitespace as C's `isspace` sees it in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

impl Partitioner {
    /// The partitioner of `vocab`'s special-token list.
    pub fn new(vocab: &Vocab) -> Result<Partitioner> {
        let specials: Vec<(u32, TokenAttr)> = vocab
            .special_cache
            .iter()
            .map(|&id| (id, vocab.attrs[id as usize]))
            .collect();
        let texts: Vec<String> = vocab
            .special_cache
            .iter()
            .map(|&id| vocab.tokens[id as usize].clone())
            .collect();
        let finder = if texts.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::new(&texts)
                    .map_err(|e| TokenizerError::hf("special-token matcher", e))?,
            )
        };
        Ok(Partitioner {
            specials,
            texts,
            finder,
        })
    }

    /// Splits `text` into fragments, cutting out the special tokens
    /// (control and unknown ones only when `parse_special`).
    pub fn split(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut frags = vec![Fragment::Text(0..text.len())];
        let Some(finder) = &self.finder else {
            return frags;
        };
        let mut present = vec![false; self.specials.len()];
        let mut any = false;
        for m in finder.find_overlapping_iter(text) {
            present[m.pattern().as_usize()] = true;
            any = true;
        }
        if !any {
            return frags;
        }
        let skip_attr = TokenAttr(TokenAttr::CONTROL.0 | TokenAttr::UNKNOWN.0);
        for (i, &(id, attr)) in self.specials.iter().enumerate() {
            if !present[i] || (!parse_special && attr.has(skip_attr)) {
                continue;
            }
            frags = cut(text, frags, &self.texts[i], id, attr);
        }
        frags
    }
}

/// Cuts every occurrence of `needle` out of the text fragments.
fn cut(text: &str, frags: Vec<Fragment>, needle: &str, id: u32, attr: TokenAttr) -> Vec<Fragment> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(frags.len() + 2);
    for frag in frags {
        let Fragment::Text(range) = frag else {
            out.push(frag);
            continue;
        };
        let (mut start, end) = (range.start, range.end);
        loop {
            let Some(rel) = text[start..end].find(needle) else {
                if start < end {
                    out.push(Fragment::Text(start..end));
                }
                break;
            };
            let m = start + rel;
            let mut left_end = m;
            if attr.has(TokenAttr::LSTRIP) {
                while left_end > start && is_c_space(bytes[left_end - 1]) {
                    left_end -= 1;
                }
            }
            if left_end > start {
                out.push(Fragment::Text(start..left_end));
            }
            out.push(Fragment::Token(id));
            start = m + needle.len();
            if attr.has(TokenAttr::RSTRIP) {
                while start < end && is_c_space(bytes[start]) {
                    start += 1;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frags_text<'a>(text: &'a str, frags: &[Fragment]) -> Vec<Result<&'a str, u32>> {
        frags
            .iter()
            .map(|f| match f {
                Fragment::Text(r) => Ok(&text[r.clone()]),
                Fragment::Token(id) => Err(*id),
            })
            .collect()
    }

    #[test]
    fn cuts_all_occurrences_and_strips() {
        let text = "a<x>b <x>  c<x>";
        let f = cut(
            text,
            vec![Fragment::Text(0..text.len())],
            "<x>",
            7,
            TokenAttr::CONTROL,
        );
        assert_eq!(
            frags_text(text, &f),
            [Ok("a"), Err(7), Ok("b "), Err(7), Ok("  c"), Err(7)]
        );
        let f = cut(
            text,
            vec![Fragment::Text(0..text.len())],
            "<x>",
            7,
            TokenAttr::CONTROL
                .with(TokenAttr::RSTRIP, true)
                .with(TokenAttr::LSTRIP, true),
        );
        assert_eq!(
            frags_text(text, &f),
            [Ok("a"), Err(7), Ok("b"), Err(7), Ok("c"), Err(7)]
        );
    }

    #[test]
    fn longest_first_is_not_leftmost_first() {
        // "ab" and "bcd" overlap in "abcd": llama.cpp cuts the longer one first.
        let text = "abcd";
        let f = cut(
            text,
            vec![Fragment::Text(0..4)],
            "bcd",
            2,
            TokenAttr::USER_DEFINED,
        );
        let f = cut(text, f, "ab", 1, TokenAttr::USER_DEFINED);
        assert_eq!(frags_text(text, &f), [Ok("a"), Err(2)]);
    }
}
