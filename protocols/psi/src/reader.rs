//! The checked reader every decoder of this crate parses with.

use crate::PsiError;

/// Reads big-endian fields from a byte slice, checking every length.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Check a message's 4-byte magic (else `not_this`) and its version byte (else
    /// `unknown_version`).
    pub(crate) fn header(
        &mut self,
        magic: &[u8; 4],
        version: u8,
        not_this: &'static str,
        unknown_version: &'static str,
    ) -> Result<(), PsiError> {
        if &self.array::<4>()? != magic {
            return Err(PsiError::Malformed(not_this));
        }
        if self.u8()? != version {
            return Err(PsiError::Malformed(unknown_version));
        }
        Ok(())
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Result<&'a [u8], PsiError> {
        if self.rest.len() < len {
            return Err(PsiError::Malformed("a message ends before its fields do"));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], PsiError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, PsiError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, PsiError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, PsiError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn remaining(self) -> &'a [u8] {
        self.rest
    }

    pub(crate) fn finish(self) -> Result<(), PsiError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(PsiError::Malformed("trailing bytes after a message"))
        }
    }
}
