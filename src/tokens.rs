//! A token estimate that never undercounts, for budgeting what a model reads.
//!
//! No tokenizer ships with the binary, so the count is an upper bound built from how BPE and SentencePiece tokenizers
//! split text: every punctuation mark and every digit may be a token of its own, a run of letters takes at most one
//! token per two letters, whitespace at most one per run (one per line break), and other characters one token per UTF-8
//! byte (byte fallback). Real tokenizers merge far more, so the estimate runs high; the budget stays safe, and the
//! server's reported prompt size says how high.

/// An upper bound on the tokens `text` takes.
pub fn estimate(text: &str) -> usize {
    let mut tokens: usize = 0;
    let mut letters: usize = 0;
    let mut in_space = false;
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            letters += 1;
            in_space = false;
            continue;
        }
        tokens += letters.div_ceil(2);
        letters = 0;
        if c == '\n' {
            tokens += 1;
            in_space = false;
        } else if c.is_whitespace() {
            if !in_space {
                tokens += 1;
            }
            in_space = true;
        } else {
            in_space = false;
            tokens += if c.is_ascii() { 1 } else { c.len_utf8() };
        }
    }
    tokens + letters.div_ceil(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_generous_with_symbols_and_words() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("pod"), 2);
        assert_eq!(estimate("pod web-1"), 2 + 1 + 2 + 1 + 1);
        assert_eq!(estimate("a\n\nb"), 4);
        assert_eq!(estimate("é"), 2);
        // English prose: real tokenizers need about a quarter of the characters; the estimate stays above that.
        let prose = "Back-off restarting failed container app in pod payments-api";
        assert!(estimate(prose) >= prose.len() / 4);
    }
}
