//! Reading a reply's outcomes back: [`OutcomeReader`], the one reader of what
//! [`ReplyWriter`](super::ReplyWriter) writes, and what it reads ([`RawOutcome`]) or why it
//! cannot ([`OutcomeError`]).

use super::{BAD_INPUT, BAD_OUTPUT, CODE_NOT_LOADED, OK, PANICKED, REPLY_HEADER_LEN};
use crate::proto::codec;
use serde::de::DeserializeOwned;

/// One item's outcome as a worker wrote it with [`ReplyWriter`](super::ReplyWriter) and the parent reads it back
/// with [`OutcomeReader`]: untrusted, and not yet an error of the parent's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawOutcome<R> {
    /// The function returned this result (`OK`).
    Ok(R),
    /// The function panicked (`PANICKED`).
    Panicked {
        /// The panic message.
        message: String,
        /// Where it panicked (`file:line:column`), if known.
        location: Option<String>,
    },
    /// The worker could not decode the item (`BAD_INPUT`); the message says why.
    BadInput(String),
    /// The worker could not encode the result (`BAD_OUTPUT`); the message says why.
    BadOutput(String),
    /// The worker refused to call this code address (`CODE_NOT_LOADED`).
    CodeNotLoaded(u64),
}

/// Why an outcome could not be read. The outcomes after it cannot be read either: their
/// boundaries are unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeError {
    /// The reply ended before this outcome.
    Ended,
    /// The tag byte names no outcome.
    UnknownTag(u8),
    /// What follows the tag could not be decoded; the message says why.
    Malformed(String),
}

impl std::fmt::Display for OutcomeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutcomeError::Ended => f.write_str("reply ended early"),
            OutcomeError::UnknownTag(tag) => write!(f, "unknown outcome tag {tag}"),
            OutcomeError::Malformed(message) => f.write_str(message),
        }
    }
}

/// Reads a reply's outcomes one item at a time, in item order: the one reader of what
/// [`ReplyWriter`](super::ReplyWriter) writes. Checks every byte (the parent reads a worker's reply as untrusted);
/// never panics and never allocates for a length before the bytes are there (see
/// [`codec::decode`]).
///
/// ```
/// use forkpool_worker::protocol::{OutcomeReader, RawOutcome, ReplyWriter};
/// let mut writer = ReplyWriter::new();
/// writer.begin();
/// writer.ok(&7u32);
/// let mut reader = OutcomeReader::of_reply(writer.seal(1, 0, 0));
/// assert_eq!(reader.read::<u32>(), Ok(RawOutcome::Ok(7)));
/// assert!(reader.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct OutcomeReader<'a> {
    rest: &'a [u8],
}

impl<'a> OutcomeReader<'a> {
    /// A reader of `outcomes`, the outcome bytes of a reply ([`Reply::outcomes`](super::Reply::outcomes)).
    pub fn new(outcomes: &'a [u8]) -> OutcomeReader<'a> {
        OutcomeReader { rest: outcomes }
    }

    /// A reader of the outcomes of `frame`, a whole reply frame whose header the caller has
    /// read (with [`Message::parse`](super::Message::parse)). A frame shorter than a reply header has no outcomes.
    pub fn of_reply(frame: &'a [u8]) -> OutcomeReader<'a> {
        OutcomeReader::new(frame.get(REPLY_HEADER_LEN..).unwrap_or_default())
    }

    /// The next outcome if it is a result that decodes as an `R` (the common case, without the
    /// general outcome's moves); `None` leaves the reader as it was, for [`read`] to say what
    /// the outcome is instead.
    ///
    /// [`read`]: OutcomeReader::read
    #[inline]
    pub fn read_ok<R: DeserializeOwned>(&mut self) -> Option<R> {
        let (&OK, body) = self.rest.split_first()? else {
            return None;
        };
        let (value, used) = codec::decode::<R>(body).ok()?;
        self.rest = body.get(used..)?;
        Some(value)
    }

    /// Reads the next outcome, decoding a result as an `R`. After an error nothing more can be
    /// read: later calls return [`OutcomeError::Ended`].
    pub fn read<R: DeserializeOwned>(&mut self) -> Result<RawOutcome<R>, OutcomeError> {
        let read = self.next_outcome();
        if read.is_err() {
            self.rest = &[];
        }
        read
    }

    fn next_outcome<R: DeserializeOwned>(&mut self) -> Result<RawOutcome<R>, OutcomeError> {
        let Some((&tag, body)) = self.rest.split_first() else {
            return Err(OutcomeError::Ended);
        };
        let decoded = match tag {
            OK => codec::decode::<R>(body).map(|(value, used)| (RawOutcome::Ok(value), used)),
            PANICKED => codec::decode::<(String, Option<String>)>(body).map(
                |((message, location), used)| (RawOutcome::Panicked { message, location }, used),
            ),
            BAD_INPUT => {
                codec::decode::<String>(body).map(|(m, used)| (RawOutcome::BadInput(m), used))
            }
            BAD_OUTPUT => {
                codec::decode::<String>(body).map(|(m, used)| (RawOutcome::BadOutput(m), used))
            }
            CODE_NOT_LOADED => codec::decode::<u64>(body)
                .map(|(address, used)| (RawOutcome::CodeNotLoaded(address), used)),
            other => return Err(OutcomeError::UnknownTag(other)),
        };
        let (outcome, used) = decoded.map_err(OutcomeError::Malformed)?;
        self.rest = &body[used..];
        Ok(outcome)
    }

    /// Whether every byte has been read (true at the end of an honest reply).
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}
