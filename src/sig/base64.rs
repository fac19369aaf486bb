//! Base64 decoding for the two alphabets a pvs@2 signature uses: base64url without padding
//! (JWS `protected`, `signature`) and standard base64 with padding (`x5c` certificates).
//!
//! Also encodes base64url (the payload half of the JWS signing input).
//!
//! Owns only the coding; it never accepts a character outside the alphabet it was asked
//! for (a `+` in base64url is an error, not a silent alias).

/// Which alphabet: the 62nd and 63rd characters.
#[derive(Clone, Copy)]
pub enum Alphabet {
    /// `+` `/` (RFC 4648 §4), as `x5c` and PEM use.
    Standard,
    /// `-` `_` (RFC 4648 §5), as JWS uses.
    Url,
}

/// Decodes `text`; trailing `=` padding is accepted (a correct amount or none). `None` for any
/// other character, a length no encoding produces, or non-zero bits after the last byte.
pub fn decode(text: &str, alphabet: Alphabet) -> Option<Vec<u8>> {
    let body = text.trim_end_matches('=');
    let padding = text.len() - body.len();
    if padding > 2 || (padding > 0 && !text.len().is_multiple_of(4)) || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in body.bytes() {
        acc = (acc << 6) | u32::from(value(c, alphabet)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero: otherwise two texts would decode to the same bytes.
    (acc == 0).then_some(out)
}

/// base64url without padding, as JWS writes the payload.
pub fn encode_url(data: &[u8]) -> String {
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn value(c: u8, alphabet: Alphabet) -> Option<u8> {
    match (c, alphabet) {
        (b'A'..=b'Z', _) => Some(c - b'A'),
        (b'a'..=b'z', _) => Some(c - b'a' + 26),
        (b'0'..=b'9', _) => Some(c - b'0' + 52),
        (b'+', Alphabet::Standard) | (b'-', Alphabet::Url) => Some(62),
        (b'/', Alphabet::Standard) | (b'_', Alphabet::Url) => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_rfc4648_vectors_with_and_without_padding() {
        for (text, bytes) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
            ("Zg", "f"),
            ("Zm8", "fo"),
        ] {
            assert_eq!(
                decode(text, Alphabet::Standard).as_deref(),
                Some(bytes.as_bytes()),
                "{text}"
            );
        }
    }

    #[test]
    fn encodes_url_without_padding_and_round_trips() {
        assert_eq!(encode_url(b""), "");
        assert_eq!(encode_url(b"f"), "Zg");
        assert_eq!(encode_url(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode_url(&[0xfb, 0xff]), "-_8");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode_url(&all), Alphabet::Url), Some(all));
    }

    #[test]
    fn each_alphabet_keeps_to_its_own_characters() {
        assert_eq!(decode("-_8", Alphabet::Url), Some(vec![0xfb, 0xff]));
        assert_eq!(decode("+/8", Alphabet::Standard), Some(vec![0xfb, 0xff]));
        assert_eq!(decode("+/8", Alphabet::Url), None);
        assert_eq!(decode("-_8", Alphabet::Standard), None);
    }

    #[test]
    fn refuses_what_no_encoder_writes() {
        assert_eq!(decode("Z", Alphabet::Url), None, "a lone character");
        assert_eq!(decode("Zh", Alphabet::Url), None, "non-zero trailing bits");
        assert_eq!(decode("Zg=", Alphabet::Standard), None, "short padding");
        assert_eq!(
            decode("Zg===", Alphabet::Standard),
            None,
            "too much padding"
        );
        assert_eq!(decode("Zm 9v", Alphabet::Standard), None, "a space");
    }
}
