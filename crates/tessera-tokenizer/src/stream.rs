//! [`StreamDecoder`]: detokenizing one token at a time, as text is generated.
//!
//! A token's bytes may end in the middle of a UTF-8 character (byte-level BPE
//! splits characters across tokens; SentencePiece byte-fallback tokens
//! `<0xE2>` `<0x82>` `<0xAC>` carry one byte each). The decoder keeps such an
//! unfinished tail until the next token completes it, so every string it
//! returns is whole characters. Bytes that can never become UTF-8 are
//! returned as U+FFFD; [`StreamDecoder::finish`] does the same for a tail the
//! stream ended on.
//!
//! Pieces are concatenated without llama.cpp's `clean_spaces` pass, as in
//! llama.cpp's own generation loop. When decoding a sequence from its start,
//! [`StreamDecoder::from_start`] applies llama.cpp's leading-space rule: a
//! vocabulary that prefixes text with a space (`add_space_prefix`) drops one
//! leading space of the first token.

use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// Token-by-token detokenizer that never splits a UTF-8 character.
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    tok: &'t Tokenizer,
    render_special: bool,
    strip_first_space: bool,
    started: bool,
    pending: Vec<u8>,
}

impl<'t> StreamDecoder<'t> {
    /// A decoder that continues a text (no leading-space rule), hiding
    /// control tokens.
    pub fn new(tok: &'t Tokenizer) -> StreamDecoder<'t> {
        StreamDecoder {
            tok,
            render_special: false,
            strip_first_space: false,
            started: false,
            pending: Vec::new(),
        }
    }

    /// Render control tokens (`<|im_end|>` …) as their text.
    pub fn render_special(mut self, on: bool) -> Self {
        self.render_special = on;
        self
    }

    /// Decode a sequence from its first token: apply the vocabulary's
    /// leading-space rule to the first token.
    pub fn from_start(mut self) -> Self {
        self.strip_first_space = self.tok.add_space_prefix();
        self
    }

    /// Adds token `id`; returns the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        let mut piece = self.tok.piece(id, self.render_special)?;
        if !self.started {
            self.started = true;
            if self.strip_first_space {
                piece = piece.strip_prefix(b" ").unwrap_or(piece);
            }
        }
        self.pending.extend_from_slice(piece);
        Ok(self.take_complete())
    }

    /// Ends the stream: the unfinished tail, if any, as U+FFFD.
    pub fn finish(&mut self) -> String {
        let tail = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&tail).into_owned()
    }

    /// Bytes held back because they end inside a character.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Moves every complete character out of `pending`.
    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    // Checked above: the prefix up to `valid` is UTF-8.
                    out.push_str(std::str::from_utf8(&self.pending[start..valid]).unwrap_or(""));
                    match e.error_len() {
                        // An unfinished character: keep it for the next token.
                        None => {
                            start = valid;
                            break;
                        }
                        Some(len) => {
                            out.push('\u{FFFD}');
                            start = valid + len;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }
}
