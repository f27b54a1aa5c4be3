//! Incremental UTF-8 validation for text messages that arrive in pieces (RFC 6455 §8.1).
//!
//! A fragment may end in the middle of a multi-byte sequence, so the validator keeps at most three
//! pending bytes between calls. It fails on the first piece that contains an invalid sequence, or
//! whose pending prefix can no longer be completed, without waiting for the end of the message.
//! The bulk of each piece goes through `std::str::from_utf8`, which is already vectorised.

/// The state between pieces: an incomplete trailing sequence, if any.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

/// The input is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Length of the sequence a lead byte announces (only called on bytes that began a valid prefix).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// Validate the next piece.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let pending_len = usize::from(self.pending_len);
            let need = sequence_len(self.pending[0]) - pending_len;
            let take = need.min(bytes.len());
            let mut joined = self.pending;
            joined[pending_len..pending_len + take].copy_from_slice(&bytes[..take]);
            let joined_len = pending_len + take;
            match std::str::from_utf8(&joined[..joined_len]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => {
                    self.pending = joined;
                    self.pending_len = joined_len as u8;
                    return Ok(());
                }
            }
            bytes = &bytes[take..];
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                // An incomplete sequence is at most 3 bytes.
                self.pending_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// The message ended: valid only if no sequence is left incomplete. Resets the state.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete { Ok(()) } else { Err(InvalidUtf8) }
    }

    /// Forget any pending bytes.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], split: usize) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::default();
        let (a, b) = bytes.split_at(split);
        v.feed(a)?;
        v.feed(b)?;
        v.finish()
    }

    #[test]
    fn valid_text_at_every_split() {
        let text = "κόσμε 𝄞 héllo € ✓".as_bytes();
        for split in 0..=text.len() {
            assert_eq!(feed_split(text, split), Ok(()), "split {split}");
        }
    }

    #[test]
    fn byte_by_byte() {
        let text = "ab𝄞c€".as_bytes();
        let mut v = Utf8Validator::default();
        for b in text {
            v.feed(std::slice::from_ref(b)).unwrap();
        }
        v.finish().unwrap();
    }

    #[test]
    fn fails_fast_inside_a_fragment() {
        // Autobahn 6.4.x: κόσμε followed by an invalid sequence fails on that fragment, not at the end.
        let mut v = Utf8Validator::default();
        v.feed("κόσμε".as_bytes()).unwrap();
        assert_eq!(v.feed(&[0xf4, 0x90, 0x80, 0x80]), Err(InvalidUtf8));
    }

    #[test]
    fn fails_when_a_pending_prefix_cannot_complete() {
        let mut v = Utf8Validator::default();
        v.feed(&[0xE2, 0x82]).unwrap();
        assert_eq!(v.feed(&[0x41]), Err(InvalidUtf8));
        let mut v = Utf8Validator::default();
        v.feed(&[0xE2]).unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8));
        // Surrogates and overlongs are invalid at any split.
        for bad in [
            &[0xED, 0xA0, 0x80][..],
            &[0xC0, 0x80],
            &[0xF5, 0x80, 0x80, 0x80],
        ] {
            for split in 0..=bad.len() {
                assert_eq!(
                    feed_split(bad, split),
                    Err(InvalidUtf8),
                    "{bad:x?} at {split}"
                );
            }
        }
    }
}
