//! TSIG (RFC 8945) for zone transfers: signs the SOA query and the AXFR request with a shared
//! key, and checks the MAC of every signed answer, chaining each to the one before (§5.3.1),
//! so a transfer cannot be read from, or forged to, a resolver without the key.
//!
//! HMAC-SHA256 is the one algorithm supported (RFC 8945 §6: mandatory to implement).

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::dns::query::skip_name;

/// The TSIG record type and the ANY class it uses (RFC 8945 §4.2).
const TYPE_TSIG: u16 = 250;
const CLASS_ANY: u16 = 255;
/// Seconds of clock difference allowed, as RFC 8945 §10 recommends.
const FUDGE: u16 = 300;
const ALGORITHM: &str = "hmac-sha256";

/// A TSIG key: its name and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// Lower case, without the trailing dot.
    pub name: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never goes into a log line.
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Signs a request and checks the answers that follow it.
pub struct Session<'k> {
    key: &'k TsigKey,
    /// The MAC of the last signed message, which the next one covers.
    previous: Vec<u8>,
    /// Answers since the last signed one (RFC 8945 §5.3.1 lets up to 99 go unsigned).
    unsigned: Vec<u8>,
    answers: usize,
}

impl<'k> Session<'k> {
    /// Appends a TSIG record to `message` (a request with no TSIG yet) and returns the session
    /// that checks its answers.
    pub fn sign(key: &'k TsigKey, message: &mut Vec<u8>) -> Self {
        let time = now();
        let mut digest = message.clone();
        push_variables(&mut digest, key, time);
        let mac = hmac(&key.secret, &[&digest]);
        let id = u16::from_be_bytes([message[0], message[1]]);
        push_record(message, key, time, &mac, id);
        Self {
            key,
            previous: mac,
            unsigned: Vec::new(),
            answers: 0,
        }
    }

    /// Checks one answer; returns it without its TSIG record. An answer without TSIG is
    /// accepted only between signed ones, never first and never more than 99 in a row.
    pub fn verify(&mut self, answer: &[u8]) -> Result<Vec<u8>, String> {
        let first = self.answers == 0;
        self.answers += 1;
        let Some((stripped, tsig)) = split_tsig(answer)? else {
            if first || self.unsigned.len() > 99 * 65_535 {
                return Err("answer is not signed with the TSIG key".to_owned());
            }
            self.unsigned.extend_from_slice(answer);
            return Ok(answer.to_vec());
        };
        if tsig.key != self.key.name {
            return Err(format!("answer signed with another key {:?}", tsig.key));
        }
        if tsig.error != 0 {
            return Err(format!(
                "TSIG error {} (16 BADSIG, 17 BADKEY, 18 BADTIME)",
                tsig.error
            ));
        }
        let mut digest = Vec::with_capacity(stripped.len() + 64);
        digest.extend_from_slice(&(self.previous.len() as u16).to_be_bytes());
        digest.extend_from_slice(&self.previous);
        digest.extend_from_slice(&self.unsigned);
        digest.extend_from_slice(&stripped);
        if first {
            push_variables(&mut digest, self.key, tsig.time);
        } else {
            push_timers(&mut digest, tsig.time, tsig.fudge);
        }
        // HMAC takes a key of any length (RFC 2104 §3), so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key.secret)
            .expect("HMAC key of any length");
        mac.update(&digest);
        mac.verify_slice(&tsig.mac)
            .map_err(|_| "TSIG signature does not match: wrong key or altered answer".to_owned())?;
        if now().abs_diff(tsig.time) > u64::from(tsig.fudge) {
            return Err("TSIG time outside the allowed clock difference".to_owned());
        }
        self.previous = tsig.mac;
        self.unsigned.clear();
        Ok(stripped)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn hmac(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes a key of any length (RFC 2104 §3), so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC key of any length");
    parts.iter().for_each(|part| mac.update(part));
    mac.finalize().into_bytes().to_vec()
}

/// A name in canonical wire form (RFC 8945 §4.3.3: lower case, uncompressed).
fn push_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|label| !label.is_empty()) {
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|byte| byte.to_ascii_lowercase()));
    }
    out.push(0);
}

/// The TSIG variables of RFC 8945 §4.3.3, error and other data empty.
fn push_variables(out: &mut Vec<u8>, key: &TsigKey, time: u64) {
    push_name(out, &key.name);
    out.extend_from_slice(&CLASS_ANY.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    push_name(out, ALGORITHM);
    push_timers(out, time, FUDGE);
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
}

fn push_timers(out: &mut Vec<u8>, time: u64, fudge: u16) {
    out.extend_from_slice(&time.to_be_bytes()[2..]);
    out.extend_from_slice(&fudge.to_be_bytes());
}

/// Appends the TSIG record and counts it in ARCOUNT.
fn push_record(message: &mut Vec<u8>, key: &TsigKey, time: u64, mac: &[u8], id: u16) {
    let mut rdata = Vec::with_capacity(64 + mac.len());
    push_name(&mut rdata, ALGORITHM);
    push_timers(&mut rdata, time, FUDGE);
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(mac);
    rdata.extend_from_slice(&id.to_be_bytes());
    rdata.extend_from_slice(&0u16.to_be_bytes());
    rdata.extend_from_slice(&0u16.to_be_bytes());

    push_name(message, &key.name);
    message.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    message.extend_from_slice(&CLASS_ANY.to_be_bytes());
    message.extend_from_slice(&0u32.to_be_bytes());
    message.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    message.extend_from_slice(&rdata);
    let arcount = u16::from_be_bytes([message[10], message[11]]) + 1;
    message[10..12].copy_from_slice(&arcount.to_be_bytes());
}

/// What a TSIG record of an answer says.
struct Tsig {
    key: String,
    time: u64,
    fudge: u16,
    mac: Vec<u8>,
    error: u16,
}

/// Splits an answer into the message as it was before it was signed (TSIG removed, ARCOUNT
/// lowered, the original ID back) and its TSIG; `None` when it has no TSIG.
fn split_tsig(message: &[u8]) -> Result<Option<(Vec<u8>, Tsig)>, String> {
    let bad = || "malformed answer".to_owned();
    let count = |at: usize| -> Result<usize, String> {
        Ok(usize::from(u16::from_be_bytes([
            *message.get(at).ok_or_else(bad)?,
            *message.get(at + 1).ok_or_else(bad)?,
        ])))
    };
    let questions = count(4)?;
    let records = count(6)? + count(8)? + count(10)?;
    if count(10)? == 0 {
        return Ok(None);
    }
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(message, at).ok_or_else(bad)? + 4;
    }
    let mut last = at;
    for _ in 0..records {
        last = at;
        at = skip_name(message, at).ok_or_else(bad)? + 10;
        at += count(at - 2)?;
    }
    if at != message.len() {
        return Err(bad());
    }
    let (key_end, key) = read_name(message, last).ok_or_else(bad)?;
    if count(key_end)? != usize::from(TYPE_TSIG) {
        return Ok(None);
    }
    let rdata = &message[key_end + 10..];
    let (algorithm_end, algorithm) = read_name(rdata, 0).ok_or_else(bad)?;
    if algorithm != ALGORITHM {
        return Err(format!("answer signed with {algorithm}, not {ALGORITHM}"));
    }
    let fields = rdata.get(algorithm_end..).ok_or_else(bad)?;
    let number = |at: usize, len: usize| -> Result<u64, String> {
        let bytes = fields.get(at..at + len).ok_or_else(bad)?;
        Ok(bytes.iter().fold(0u64, |n, &b| n << 8 | u64::from(b)))
    };
    let time = number(0, 6)?;
    let fudge = number(6, 2)? as u16;
    let mac_len = number(8, 2)? as usize;
    let mac = fields.get(10..10 + mac_len).ok_or_else(bad)?.to_vec();
    let original_id = number(10 + mac_len, 2)? as u16;
    let error = number(12 + mac_len, 2)? as u16;

    let mut stripped = message[..last].to_vec();
    stripped[0..2].copy_from_slice(&original_id.to_be_bytes());
    let arcount = (count(10)? - 1) as u16;
    stripped[10..12].copy_from_slice(&arcount.to_be_bytes());
    let tsig = Tsig {
        key,
        time,
        fudge,
        mac,
        error,
    };
    Ok(Some((stripped, tsig)))
}

/// An uncompressed name at `at`, lower case without the trailing dot, and where it ends.
fn read_name(message: &[u8], mut at: usize) -> Option<(usize, String)> {
    let mut name = String::new();
    loop {
        let len = usize::from(*message.get(at)?);
        if len == 0 {
            return Some((at + 1, name));
        }
        if len >= 0xc0 {
            return None;
        }
        let label = message.get(at + 1..at + 1 + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
        at += 1 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &[u8]) -> TsigKey {
        TsigKey {
            name: "sinkhole-xfr".into(),
            secret: secret.to_vec(),
        }
    }

    fn query() -> Vec<u8> {
        use hickory_proto::op::{Message, MessageType, OpCode, Query};
        use hickory_proto::rr::{Name, RecordType};
        let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
        let name = Name::from_ascii("rpz.example.").unwrap();
        message.add_query(Query::query(name, RecordType::AXFR));
        message.to_vec().unwrap()
    }

    /// A server's side: signs an answer to `request_mac` as RFC 8945 §5.3 says.
    fn signed_answer(key: &TsigKey, request_mac: &[u8], body: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let time = now();
        let mut digest = (request_mac.len() as u16).to_be_bytes().to_vec();
        digest.extend_from_slice(request_mac);
        digest.extend_from_slice(body);
        push_variables(&mut digest, key, time);
        let mac = hmac(&key.secret, &[&digest]);
        let mut answer = body.to_vec();
        push_record(&mut answer, key, time, &mac, 0x1234);
        (answer, mac)
    }

    #[test]
    fn signed_answers_verify_and_altered_ones_do_not() {
        let key = key(b"0123456789abcdef0123456789abcdef");
        let mut request = query();
        let plain = request.clone();
        let mut session = Session::sign(&key, &mut request);
        assert_eq!(u16::from_be_bytes([request[10], request[11]]), 1);
        let (stripped, tsig) = split_tsig(&request).unwrap().unwrap();
        assert_eq!(stripped, plain);
        assert_eq!(tsig.key, "sinkhole-xfr");

        let mut body = plain.clone();
        body[2] |= 0x80;
        let (answer, _) = signed_answer(&key, &session.previous.clone(), &body);
        assert_eq!(session.verify(&answer).unwrap(), body);

        let mut other = Session::sign(&key, &mut query());
        let mut altered = answer.clone();
        altered[3] ^= 0x01;
        assert!(other.verify(&altered).is_err(), "altered");
        let stranger = self::key(b"another secret");
        let mut session = Session::sign(&stranger, &mut query());
        assert!(session.verify(&answer).is_err(), "other key");
        let mut session = Session::sign(&key, &mut query());
        assert!(session.verify(&body).unwrap_err().contains("not signed"));
    }
}
