//! Just enough DER to read what pinning needs from an X.509 certificate: the
//! SubjectPublicKeyInfo (for the fingerprint), the validity window (for expiry) and the
//! subject common name (to recognise a look-alike). Signatures are checked by rustls/webpki;
//! this module never decides trust by itself.

use thiserror::Error;

/// Why a certificate could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum X509Error {
    /// The DER ended before an element said it would.
    #[error("certificate DER truncated: element needs {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the element announced.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// An element had another tag than the X.509 structure puts there.
    #[error("certificate DER: expected tag {expected:#04x} for {field}, found {found:#04x}")]
    UnexpectedTag {
        /// The field being read.
        field: &'static str,
        /// The tag X.509 requires.
        expected: u8,
        /// The tag present.
        found: u8,
    },
    /// A length form that DER forbids or that is larger than any certificate.
    #[error("certificate DER: unsupported length encoding {first_byte:#04x}")]
    BadLength {
        /// The first length octet.
        first_byte: u8,
    },
    /// A UTCTime/GeneralizedTime that is not `YYMMDDHHMMSSZ` / `YYYYMMDDHHMMSSZ`.
    #[error("certificate DER: malformed time of {len} bytes")]
    BadTime {
        /// Length of the time string.
        len: usize,
    },
}

/// The fields of a certificate that pinning uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo<'a> {
    /// The complete DER of the SubjectPublicKeyInfo element (tag and length included).
    pub spki_der: &'a [u8],
    /// notBefore, unix seconds.
    pub not_before_unix: i64,
    /// notAfter, unix seconds.
    pub not_after_unix: i64,
    /// The subject's first common name, if any.
    pub common_name: Option<String>,
}

struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
    rest: &'a [u8],
}

fn read_tlv(input: &[u8]) -> Result<Tlv<'_>, X509Error> {
    let truncated = |needed: usize| X509Error::Truncated {
        needed,
        available: input.len(),
    };
    if input.len() < 2 {
        return Err(truncated(2));
    }
    let tag = input[0];
    let first = input[1];
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let octets = usize::from(first & 0x7f);
        // Four length octets describe 4 GiB: more than any certificate; zero is BER only.
        if octets == 0 || octets > 4 {
            return Err(X509Error::BadLength { first_byte: first });
        }
        if input.len() < 2 + octets {
            return Err(truncated(2 + octets));
        }
        let len = input[2..2 + octets]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + octets)
    };
    let end = header
        .checked_add(len)
        .ok_or(X509Error::BadLength { first_byte: first })?;
    if input.len() < end {
        return Err(truncated(end));
    }
    Ok(Tlv {
        tag,
        content: &input[header..end],
        whole: &input[..end],
        rest: &input[end..],
    })
}

fn expect<'a>(input: &'a [u8], tag: u8, field: &'static str) -> Result<Tlv<'a>, X509Error> {
    let tlv = read_tlv(input)?;
    if tlv.tag != tag {
        return Err(X509Error::UnexpectedTag {
            field,
            expected: tag,
            found: tlv.tag,
        });
    }
    Ok(tlv)
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const EXPLICIT_VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// Reads the pinning-relevant fields of a DER certificate.
pub fn parse_certificate(der: &[u8]) -> Result<CertInfo<'_>, X509Error> {
    let cert = expect(der, SEQUENCE, "Certificate")?;
    let tbs = expect(cert.content, SEQUENCE, "tbsCertificate")?;
    let mut cursor = tbs.content;
    if cursor.first() == Some(&EXPLICIT_VERSION) {
        cursor = read_tlv(cursor)?.rest;
    }
    cursor = expect(cursor, INTEGER, "serialNumber")?.rest;
    cursor = expect(cursor, SEQUENCE, "signature")?.rest;
    cursor = expect(cursor, SEQUENCE, "issuer")?.rest;
    let validity = expect(cursor, SEQUENCE, "validity")?;
    let not_before = read_tlv(validity.content)?;
    let not_after = read_tlv(not_before.rest)?;
    let subject = expect(validity.rest, SEQUENCE, "subject")?;
    let spki = expect(subject.rest, SEQUENCE, "subjectPublicKeyInfo")?;
    Ok(CertInfo {
        spki_der: spki.whole,
        not_before_unix: parse_time(not_before.tag, not_before.content)?,
        not_after_unix: parse_time(not_after.tag, not_after.content)?,
        common_name: common_name(subject.content),
    })
}

fn common_name(mut rdns: &[u8]) -> Option<String> {
    while let Ok(set) = read_tlv(rdns) {
        let mut attrs = set.content;
        while let Ok(attr) = read_tlv(attrs) {
            if let Ok(oid) = read_tlv(attr.content) {
                if oid.content == OID_COMMON_NAME {
                    if let Ok(value) = read_tlv(oid.rest) {
                        return Some(String::from_utf8_lossy(value.content).into_owned());
                    }
                }
            }
            attrs = attr.rest;
        }
        rdns = set.rest;
    }
    None
}

fn digits(s: &[u8]) -> Option<i64> {
    s.iter().try_fold(0i64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

fn parse_time(tag: u8, s: &[u8]) -> Result<i64, X509Error> {
    let bad = X509Error::BadTime { len: s.len() };
    let (year, rest) = match (tag, s.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&s[..2]).ok_or(bad.clone())?;
            // RFC 5280 4.1.2.5.1: YY >= 50 is 19YY, otherwise 20YY.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&s[..4]).ok_or(bad.clone())?, &s[4..]),
        _ => return Err(bad),
    };
    if rest[10] != b'Z' {
        return Err(bad);
    }
    let field = |i: usize| digits(&rest[i..i + 2]).ok_or(bad.clone());
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(bad);
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the "days from civil" algorithm).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Gregorian year containing the given unix second.
pub(crate) fn year_of_unix(unix: i64) -> i64 {
    // Walk from an estimate; at most a step or two either way.
    let mut year = 1970 + unix.div_euclid(31_556_952);
    while days_from_civil(year, 1, 1) * 86_400 > unix {
        year -= 1;
    }
    while days_from_civil(year + 1, 1, 1) * 86_400 <= unix {
        year += 1;
    }
    year
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_unix_times() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1) * 86_400, 951_868_800);
        assert_eq!(days_from_civil(2038, 1, 19) * 86_400, 2_147_472_000);
        assert_eq!(year_of_unix(0), 1970);
        assert_eq!(year_of_unix(951_868_800), 2000);
        assert_eq!(
            year_of_unix(days_from_civil(2024, 12, 31) * 86_400 + 86_399),
            2024
        );
    }

    #[test]
    fn times_parse_both_encodings() {
        assert_eq!(parse_time(UTC_TIME, b"000301000000Z"), Ok(951_868_800));
        assert_eq!(
            parse_time(GENERALIZED_TIME, b"20000301000000Z"),
            Ok(951_868_800)
        );
        assert!(parse_time(UTC_TIME, b"0003010000Z").is_err());
        assert!(parse_time(GENERALIZED_TIME, b"2000130100000 Z").is_err());
    }

    #[test]
    fn truncated_and_overlong_lengths_are_errors_not_panics() {
        assert!(parse_certificate(&[]).is_err());
        assert!(parse_certificate(&[0x30]).is_err());
        assert!(parse_certificate(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(parse_certificate(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(parse_certificate(&[0x30, 0x03, 0x30, 0x01, 0x00]).is_err());
    }
}
