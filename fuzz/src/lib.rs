//! What the fuzz targets share: the framing of inputs that carry keys.

/// Splits `<log verifier key>\n<witness verifier key>\n<rest>`: the inputs
/// of the checkpoint and add-checkpoint targets carry the keys their notes
/// are checked against, so that a seed taken from a real vault (its key, a
/// real witness's key, a note they signed) reaches past the signature
/// checks, and the keys' own parsers are fuzzed too. The witness key may be
/// an empty line. `None` when the input has fewer than two lines or the
/// keys are not UTF-8.
pub fn keyed_input(data: &[u8]) -> Option<(&str, &str, &[u8])> {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let log = std::str::from_utf8(parts.next()?).ok()?;
    let witness = std::str::from_utf8(parts.next()?).ok()?;
    Some((log, witness, parts.next().unwrap_or_default()))
}
