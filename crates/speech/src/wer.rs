//! Word error rate, the standard measure of a transcript against what was really said:
//! (substitutions + deletions + insertions) / words said, after both are normalised
//! (lower case, punctuation dropped, digits and words kept apart as whisper writes them).

/// Splits text into normalised words: lower case, letters, digits and inner apostrophes.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '-')
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .flat_map(char::to_lowercase)
                .collect::<String>()
                .trim_matches('\'')
                .to_string()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word-level edit distance between `reference` and `hypothesis` (after [`words`]).
pub fn word_errors(reference: &str, hypothesis: &str) -> usize {
    let (r, h) = (words(reference), words(hypothesis));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut row = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let substitution = prev[j] + usize::from(rw != hw);
            row[j + 1] = substitution.min(prev[j + 1] + 1).min(row[j] + 1);
        }
        prev = row;
    }
    prev[h.len()]
}

/// Word error rate of `hypothesis` against `reference`; 0 for two empty texts.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let n = words(reference).len();
    if n == 0 {
        return if words(hypothesis).is_empty() {
            0.0
        } else {
            1.0
        };
    }
    word_errors(reference, hypothesis) as f64 / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_substitutions_deletions_and_insertions() {
        assert_eq!(word_errors("block my card", "Block my card."), 0);
        assert_eq!(word_errors("block my card", "lock my card"), 1);
        assert_eq!(word_errors("block my credit card", "block my card"), 1);
        assert_eq!(word_errors("block my card", "please block my card now"), 2);
        assert_eq!(word_errors("", "anything"), 1);
        assert!((word_error_rate("a b c d", "a x c") - 0.5).abs() < 1e-9);
        assert_eq!(word_error_rate("", ""), 0.0);
    }

    #[test]
    fn normalises_case_and_punctuation() {
        assert_eq!(
            words("It's stolen, I think - yesterday!"),
            ["it's", "stolen", "i", "think", "yesterday"]
        );
    }
}
