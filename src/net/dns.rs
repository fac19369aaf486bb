//! The DNS wire format (RFC 1035) for one purpose: ask for A or AAAA records of a name and read
//! the answer.
//!
//! Owns query encoding and response parsing only; no socket, no retries. It never trusts a
//! length or a compression pointer from the packet: every read is bounds-checked and pointer
//! chains are capped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QType {
    A,
    Aaaa,
}

impl QType {
    fn code(self) -> u16 {
        match self {
            QType::A => 1,
            QType::Aaaa => 28,
        }
    }
}

const CNAME: u16 = 5;
const CLASS_IN: u16 = 1;
/// CNAME links followed within one answer.
const MAX_CNAMES: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// The name cannot be put in a query (empty label, label over 63 bytes, name over 253).
    BadName,
    /// The packet is not a well-formed DNS response.
    Malformed(&'static str),
    /// Not the answer to our query (other id or other question): ignore it, keep waiting.
    NotOurs,
    /// The TC bit: the answer did not fit in UDP.
    Truncated,
    /// The name does not exist (RCODE 3).
    NxDomain,
    /// The server failed (RCODE 2).
    ServFail,
    /// Any other error RCODE.
    Rcode(u8),
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsError::BadName => f.write_str("invalid host name"),
            DnsError::Malformed(why) => write!(f, "malformed DNS response: {why}"),
            DnsError::NotOurs => f.write_str("DNS response for another query"),
            DnsError::Truncated => f.write_str("DNS response truncated"),
            DnsError::NxDomain => f.write_str("no such host"),
            DnsError::ServFail => f.write_str("DNS server failure"),
            DnsError::Rcode(c) => write!(f, "DNS error code {c}"),
        }
    }
}

/// A recursive query for `name`'s `qtype` records, with the given id.
pub fn build_query(id: u16, name: &str, qtype: QType) -> Result<Vec<u8>, DnsError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err(DnsError::BadName);
    }
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(DnsError::BadName);
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.code().to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// The addresses in a response to `build_query(id, name, qtype)`, following CNAMEs within the
/// answer. An empty list means the name exists without records of that type.
pub fn parse_response(
    packet: &[u8],
    id: u16,
    name: &str,
    qtype: QType,
) -> Result<Vec<IpAddr>, DnsError> {
    let p = Packet(packet);
    if p.u16(0)? != id {
        return Err(DnsError::NotOurs);
    }
    let flags = p.u16(2)?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::NotOurs);
    }
    if flags & 0x0200 != 0 {
        return Err(DnsError::Truncated);
    }
    match (flags & 0x000f) as u8 {
        0 => {}
        2 => return Err(DnsError::ServFail),
        3 => return Err(DnsError::NxDomain),
        c => return Err(DnsError::Rcode(c)),
    }
    let qd = p.u16(4)?;
    let an = p.u16(6)?;
    if qd != 1 {
        return Err(DnsError::NotOurs);
    }
    let (qname, mut pos) = p.name(12)?;
    let want = name.strip_suffix('.').unwrap_or(name);
    if !qname.eq_ignore_ascii_case(want)
        || p.u16(pos)? != qtype.code()
        || p.u16(pos + 2)? != CLASS_IN
    {
        return Err(DnsError::NotOurs);
    }
    pos += 4;
    let mut records = Vec::with_capacity(usize::from(an).min(32));
    for _ in 0..an {
        let (owner, after) = p.name(pos)?;
        let rtype = p.u16(after)?;
        let class = p.u16(after + 2)?;
        let rdlen = usize::from(p.u16(after + 8)?);
        let rdata = after + 10;
        let end = rdata + rdlen;
        if end > packet.len() {
            return Err(DnsError::Malformed("record past the end"));
        }
        if class == CLASS_IN {
            let value = match rtype {
                CNAME => Some(Rdata::Cname(p.name(rdata)?.0)),
                1 if rdlen == 4 => {
                    let b = &packet[rdata..end];
                    Some(Rdata::Ip(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))))
                }
                28 if rdlen == 16 => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(&packet[rdata..end]);
                    Some(Rdata::Ip(IpAddr::V6(Ipv6Addr::from(b))))
                }
                _ => None,
            };
            if let Some(v) = value {
                records.push((owner, rtype, v));
            }
        }
        pos = end;
    }
    // Follow the CNAME chain from the question name to its end.
    let mut current = qname;
    for _ in 0..MAX_CNAMES {
        let next = records.iter().find_map(|(owner, _, v)| match v {
            Rdata::Cname(target) if owner.eq_ignore_ascii_case(&current) => Some(target.clone()),
            _ => None,
        });
        match next {
            Some(target) => current = target,
            None => break,
        }
    }
    Ok(records
        .iter()
        .filter(|(owner, rtype, _)| *rtype == qtype.code() && owner.eq_ignore_ascii_case(&current))
        .filter_map(|(_, _, v)| match v {
            Rdata::Ip(ip) => Some(*ip),
            Rdata::Cname(_) => None,
        })
        .collect())
}

enum Rdata {
    Cname(String),
    Ip(IpAddr),
}

struct Packet<'a>(&'a [u8]);

impl Packet<'_> {
    fn u16(&self, at: usize) -> Result<u16, DnsError> {
        match self.0.get(at..at + 2) {
            Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
            None => Err(DnsError::Malformed("short packet")),
        }
    }

    fn byte(&self, at: usize) -> Result<u8, DnsError> {
        self.0
            .get(at)
            .copied()
            .ok_or(DnsError::Malformed("short packet"))
    }

    /// A (possibly compressed) name at `at`: the dotted name and the position after it.
    fn name(&self, at: usize) -> Result<(String, usize), DnsError> {
        let mut name = String::new();
        let mut pos = at;
        let mut after = None;
        let mut jumps = 0;
        loop {
            let len = self.byte(pos)?;
            match len {
                0 => {
                    return Ok((name, after.unwrap_or(pos + 1)));
                }
                l if l & 0xc0 == 0xc0 => {
                    let target = usize::from(u16::from_be_bytes([l & 0x3f, self.byte(pos + 1)?]));
                    after.get_or_insert(pos + 2);
                    jumps += 1;
                    if jumps > 32 {
                        return Err(DnsError::Malformed("compression loop"));
                    }
                    pos = target;
                }
                l if l & 0xc0 != 0 => return Err(DnsError::Malformed("bad label type")),
                l => {
                    let label = self
                        .0
                        .get(pos + 1..pos + 1 + usize::from(l))
                        .ok_or(DnsError::Malformed("short label"))?;
                    if !name.is_empty() {
                        name.push('.');
                    }
                    name.push_str(&String::from_utf8_lossy(label));
                    if name.len() > 255 {
                        return Err(DnsError::Malformed("name too long"));
                    }
                    pos += 1 + usize::from(l);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `query` with the given flags and answer records (already encoded).
    fn response(query: &[u8], rcode_flags: u16, answers: &[Vec<u8>]) -> Vec<u8> {
        let mut r = query.to_vec();
        r[2..4].copy_from_slice(&(0x8180 | rcode_flags).to_be_bytes());
        r[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for a in answers {
            r.extend_from_slice(a);
        }
        r
    }

    /// A record whose owner is a pointer to `owner_at`, of `rtype`, with `rdata`.
    fn record(owner_at: u16, rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut r = (0xc000 | owner_at).to_be_bytes().to_vec();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    fn ips(r: Result<Vec<IpAddr>, DnsError>) -> Result<Vec<String>, DnsError> {
        r.map(|v| v.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn query_encoding() {
        let q = build_query(0x1234, "api.pantahub.com.", QType::Aaaa).unwrap_or_default();
        assert_eq!(
            q,
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03api\x08pantahub\x03com\x00\x00\x1c\x00\x01"
        );
        assert_eq!(build_query(1, "", QType::A), Err(DnsError::BadName));
        assert_eq!(build_query(1, "a..b", QType::A), Err(DnsError::BadName));
        assert_eq!(
            build_query(1, &"x".repeat(64), QType::A),
            Err(DnsError::BadName)
        );
    }

    #[test]
    fn a_records_are_collected() {
        let q = build_query(7, "hub.lan", QType::A).unwrap_or_default();
        let r = response(
            &q,
            0,
            &[record(12, 1, &[10, 0, 0, 1]), record(12, 1, &[10, 0, 0, 2])],
        );
        assert_eq!(
            ips(parse_response(&r, 7, "hub.lan", QType::A)),
            Ok(vec!["10.0.0.1".into(), "10.0.0.2".into()])
        );
        assert_eq!(
            parse_response(&r, 8, "hub.lan", QType::A),
            Err(DnsError::NotOurs)
        );
        assert_eq!(
            parse_response(&r, 7, "other.lan", QType::A),
            Err(DnsError::NotOurs)
        );
        assert_eq!(
            parse_response(&r, 7, "hub.lan", QType::Aaaa),
            Err(DnsError::NotOurs)
        );
        assert_eq!(
            parse_response(&q, 7, "hub.lan", QType::A),
            Err(DnsError::NotOurs)
        );
    }

    #[test]
    fn cname_chain_is_followed_and_strays_ignored() {
        let q = build_query(9, "Hub.Lan", QType::Aaaa).unwrap_or_default();
        // The CNAME target "real" + pointer to "lan" (offset 16 in the question).
        let target = [4, b'r', b'e', b'a', b'l', 0xc0, 16];
        let cname = record(12, CNAME, &target);
        let real_at = (q.len() + 12) as u16; // owner of the AAAA: the CNAME's rdata
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        let aaaa = record(real_at, 28, &v6);
        let stray = record(12, 28, &[0xff; 16]); // an AAAA for the alias itself: not the end
        let r = response(&q, 0, &[cname, aaaa, stray]);
        assert_eq!(
            ips(parse_response(&r, 9, "hub.lan", QType::Aaaa)),
            Ok(vec!["::1".into()])
        );
    }

    #[test]
    fn errors_and_empty_answers() {
        let q = build_query(3, "x.y", QType::A).unwrap_or_default();
        assert_eq!(
            parse_response(&response(&q, 3, &[]), 3, "x.y", QType::A),
            Err(DnsError::NxDomain)
        );
        assert_eq!(
            parse_response(&response(&q, 2, &[]), 3, "x.y", QType::A),
            Err(DnsError::ServFail)
        );
        assert_eq!(
            parse_response(&response(&q, 5, &[]), 3, "x.y", QType::A),
            Err(DnsError::Rcode(5))
        );
        assert_eq!(
            parse_response(&response(&q, 0x0200, &[]), 3, "x.y", QType::A),
            Err(DnsError::Truncated)
        );
        assert_eq!(
            ips(parse_response(&response(&q, 0, &[]), 3, "x.y", QType::A)),
            Ok(vec![])
        );
    }

    #[test]
    fn hostile_packets_are_malformed_not_panics() {
        let q = build_query(3, "x.y", QType::A).unwrap_or_default();
        let good = response(&q, 0, &[record(12, 1, &[1, 2, 3, 4])]);
        for cut in 0..good.len() {
            let _ = parse_response(&good[..cut], 3, "x.y", QType::A);
        }
        // A record whose owner points at itself.
        let mut looped = response(&q, 0, &[]);
        looped[6..8].copy_from_slice(&1u16.to_be_bytes());
        let at = looped.len() as u16;
        looped.extend_from_slice(&(0xc000 | at).to_be_bytes());
        assert!(matches!(
            parse_response(&looped, 3, "x.y", QType::A),
            Err(DnsError::Malformed(_))
        ));
        // rdlength past the end.
        let mut long = good.clone();
        let n = long.len();
        long[n - 6..n - 4].copy_from_slice(&200u16.to_be_bytes());
        assert!(matches!(
            parse_response(&long, 3, "x.y", QType::A),
            Err(DnsError::Malformed(_))
        ));
    }
}
