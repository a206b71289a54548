//! Decoding of pgoutput messages (protocol version 1), the payloads of XLogData.
//!
//! pgwire-replication turns Begin and Commit into events of its own; every other message
//! arrives here as bytes. Tuples are not copied: a [`Tuple`] borrows the message and yields
//! its values on iteration, straight into the column builders.

use std::fmt;

/// A decoding failure: the stream is not what protocol version 1 promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed pgoutput message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

type Result<T> = std::result::Result<T, DecodeError>;

/// One column of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelColumn {
    /// Part of the replica identity (the key sent in old tuples).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

/// A Relation message: the table's columns as the following changes carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelColumn>,
}

/// Which old image an Update or Delete carries: `K` the replica-identity key only (other
/// columns null), `O` the whole old row (REPLICA IDENTITY FULL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OldKind {
    Key,
    Full,
}

/// The values of one row image, decoded lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tuple<'a> {
    ncols: usize,
    data: &'a [u8],
}

/// One value of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Null,
    /// A TOASTed value the update did not change; the server did not send it.
    Unchanged,
    Text(&'a [u8]),
    Binary(&'a [u8]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    Begin {
        final_lsn: u64,
        commit_time: i64,
        xid: u32,
    },
    Commit {
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
    },
    Relation(Relation),
    Insert {
        rel: u32,
        new: Tuple<'a>,
    },
    Update {
        rel: u32,
        old: Option<(OldKind, Tuple<'a>)>,
        new: Tuple<'a>,
    },
    Delete {
        rel: u32,
        old: (OldKind, Tuple<'a>),
    },
    Truncate {
        rels: Vec<u32>,
    },
    /// Type, Origin, logical Message: nothing for a table mirror.
    Ignored(u8),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| DecodeError(format!("truncated {what}")))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn i16(&mut self, what: &str) -> Result<i16> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(self.i32(what)? as u32)
    }

    fn i64(&mut self, what: &str) -> Result<i64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn cstr(&mut self, what: &str) -> Result<String> {
        let rest = &self.buf[self.pos..];
        let end = rest.iter().position(|&b| b == 0).ok_or_else(|| DecodeError(format!("unterminated {what}")))?;
        let s = String::from_utf8(rest[..end].to_vec()).map_err(|_| DecodeError(format!("{what} is not UTF-8")))?;
        self.pos += end + 1;
        Ok(s)
    }

    /// A TupleData: checks its structure and returns it with its extent.
    fn tuple(&mut self) -> Result<Tuple<'a>> {
        let ncols = self.i16("tuple column count")?;
        let ncols = usize::try_from(ncols).map_err(|_| DecodeError("negative column count".into()))?;
        let start = self.pos;
        for _ in 0..ncols {
            match self.u8("tuple value kind")? {
                b'n' | b'u' => {}
                b't' | b'b' => {
                    let len = self.i32("value length")?;
                    let len = usize::try_from(len).map_err(|_| DecodeError("negative value length".into()))?;
                    self.take(len, "value")?;
                }
                other => {
                    return Err(DecodeError(format!("unknown tuple value kind {:?}", other as char)));
                }
            }
        }
        Ok(Tuple { ncols, data: &self.buf[start..self.pos] })
    }
}

impl<'a> Tuple<'a> {
    pub fn len(&self) -> usize {
        self.ncols
    }

    /// The values in column order. The structure was checked when the tuple was decoded.
    pub fn iter(&self) -> TupleIter<'a> {
        TupleIter { data: self.data, pos: 0, left: self.ncols }
    }
}

pub(crate) struct TupleIter<'a> {
    data: &'a [u8],
    pos: usize,
    left: usize,
}

impl<'a> Iterator for TupleIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let kind = *self.data.get(self.pos)?;
        self.pos += 1;
        match kind {
            b'n' => Some(Value::Null),
            b'u' => Some(Value::Unchanged),
            _ => {
                let len_bytes = self.data.get(self.pos..self.pos + 4)?;
                let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
                self.pos += 4;
                let v = self.data.get(self.pos..self.pos + len)?;
                self.pos += len;
                Some(if kind == b't' { Value::Text(v) } else { Value::Binary(v) })
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Decodes one pgoutput message.
pub(crate) fn decode(buf: &[u8]) -> Result<Message<'_>> {
    let mut r = Reader { buf, pos: 0 };
    let tag = r.u8("message tag")?;
    let msg = match tag {
        b'B' => Message::Begin {
            final_lsn: r.i64("final lsn")? as u64,
            commit_time: r.i64("commit time")?,
            xid: r.u32("xid")?,
        },
        b'C' => {
            r.u8("commit flags")?;
            Message::Commit {
                commit_lsn: r.i64("commit lsn")? as u64,
                end_lsn: r.i64("end lsn")? as u64,
                commit_time: r.i64("commit time")?,
            }
        }
        b'R' => {
            let id = r.u32("relation id")?;
            let namespace = r.cstr("namespace")?;
            let name = r.cstr("relation name")?;
            let replica_identity = r.u8("replica identity")?;
            let n = r.i16("column count")?;
            let mut columns = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
            for _ in 0..n {
                let flags = r.u8("column flags")?;
                columns.push(RelColumn {
                    key: flags & 1 != 0,
                    name: r.cstr("column name")?,
                    type_oid: r.u32("type oid")?,
                    typmod: r.i32("typmod")?,
                });
            }
            Message::Relation(Relation { id, namespace, name, replica_identity, columns })
        }
        b'I' => {
            let rel = r.u32("relation id")?;
            expect(&mut r, b'N')?;
            Message::Insert { rel, new: r.tuple()? }
        }
        b'U' => {
            let rel = r.u32("relation id")?;
            let mut old = None;
            let mut kind = r.u8("update tuple kind")?;
            if kind == b'K' || kind == b'O' {
                old = Some((if kind == b'K' { OldKind::Key } else { OldKind::Full }, r.tuple()?));
                kind = r.u8("update tuple kind")?;
            }
            if kind != b'N' {
                return Err(DecodeError(format!("update: expected new tuple 'N', got {:?}", kind as char)));
            }
            Message::Update { rel, old, new: r.tuple()? }
        }
        b'D' => {
            let rel = r.u32("relation id")?;
            let kind = match r.u8("delete tuple kind")? {
                b'K' => OldKind::Key,
                b'O' => OldKind::Full,
                other => {
                    return Err(DecodeError(format!("delete: expected 'K' or 'O', got {:?}", other as char)));
                }
            };
            Message::Delete { rel, old: (kind, r.tuple()?) }
        }
        b'T' => {
            let n = r.i32("relation count")?;
            r.u8("truncate options")?;
            let mut rels = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
            for _ in 0..n {
                rels.push(r.u32("relation id")?);
            }
            Message::Truncate { rels }
        }
        b'Y' | b'O' | b'M' => Message::Ignored(tag),
        other => {
            return Err(DecodeError(format!("unknown message tag {:?}", other as char)));
        }
    };
    Ok(msg)
}

fn expect(r: &mut Reader<'_>, tag: u8) -> Result<()> {
    let got = r.u8("tuple kind")?;
    if got != tag {
        return Err(DecodeError(format!("expected tuple kind {:?}, got {:?}", tag as char, got as char)));
    }
    Ok(())
}

/// Encoders for tests: build the messages PostgreSQL would send.
#[cfg(test)]
pub(crate) mod encode {
    pub enum V<'a> {
        N,
        U,
        T(&'a str),
    }

    pub fn tuple(out: &mut Vec<u8>, values: &[V<'_>]) {
        out.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for v in values {
            match v {
                V::N => out.push(b'n'),
                V::U => out.push(b'u'),
                V::T(s) => {
                    out.push(b't');
                    out.extend_from_slice(&(s.len() as i32).to_be_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
    }

    pub fn relation(id: u32, ns: &str, name: &str, ident: u8, cols: &[(bool, &str, u32, i32)]) -> Vec<u8> {
        let mut out = vec![b'R'];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(ns.as_bytes());
        out.push(0);
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.push(ident);
        out.extend_from_slice(&(cols.len() as i16).to_be_bytes());
        for (key, n, t, m) in cols {
            out.push(u8::from(*key));
            out.extend_from_slice(n.as_bytes());
            out.push(0);
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&m.to_be_bytes());
        }
        out
    }

    pub fn insert(rel: u32, values: &[V<'_>]) -> Vec<u8> {
        let mut out = vec![b'I'];
        out.extend_from_slice(&rel.to_be_bytes());
        out.push(b'N');
        tuple(&mut out, values);
        out
    }

    pub fn update(rel: u32, old: Option<(u8, &[V<'_>])>, new: &[V<'_>]) -> Vec<u8> {
        let mut out = vec![b'U'];
        out.extend_from_slice(&rel.to_be_bytes());
        if let Some((kind, values)) = old {
            out.push(kind);
            tuple(&mut out, values);
        }
        out.push(b'N');
        tuple(&mut out, new);
        out
    }

    pub fn delete(rel: u32, kind: u8, old: &[V<'_>]) -> Vec<u8> {
        let mut out = vec![b'D'];
        out.extend_from_slice(&rel.to_be_bytes());
        out.push(kind);
        tuple(&mut out, old);
        out
    }

    pub fn truncate(rels: &[u32]) -> Vec<u8> {
        let mut out = vec![b'T'];
        out.extend_from_slice(&(rels.len() as i32).to_be_bytes());
        out.push(0);
        for r in rels {
            out.extend_from_slice(&r.to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::encode::{self, V};
    use super::*;

    #[test]
    fn decodes_relation_and_changes() {
        let rel = encode::relation(16384, "public", "orders", b'd', &[(true, "id", 23, -1), (false, "note", 25, -1)]);
        let Message::Relation(r) = decode(&rel).unwrap() else { panic!("not a relation") };
        assert_eq!(
            (r.id, r.namespace.as_str(), r.name.as_str(), r.replica_identity),
            (16384, "public", "orders", b'd')
        );
        assert_eq!(r.columns[0], RelColumn { key: true, name: "id".into(), type_oid: 23, typmod: -1 });
        assert!(!r.columns[1].key);

        let ins = encode::insert(16384, &[V::T("1"), V::N]);
        let Message::Insert { rel, new } = decode(&ins).unwrap() else { panic!("not an insert") };
        assert_eq!(rel, 16384);
        assert_eq!(new.iter().collect::<Vec<_>>(), vec![Value::Text(b"1"), Value::Null]);

        let upd = encode::update(16384, Some((b'K', &[V::T("1"), V::N])), &[V::T("2"), V::U]);
        let Message::Update { old: Some((OldKind::Key, old)), new, .. } = decode(&upd).unwrap() else {
            panic!("not an update")
        };
        assert_eq!(old.iter().collect::<Vec<_>>(), vec![Value::Text(b"1"), Value::Null]);
        assert_eq!(new.iter().collect::<Vec<_>>(), vec![Value::Text(b"2"), Value::Unchanged]);

        let upd = encode::update(16384, None, &[V::T("3"), V::T("")]);
        let Message::Update { old: None, new, .. } = decode(&upd).unwrap() else { panic!("not an update") };
        assert_eq!(new.iter().collect::<Vec<_>>(), vec![Value::Text(b"3"), Value::Text(b"")]);

        let del = encode::delete(16384, b'O', &[V::T("3"), V::T("x")]);
        let Message::Delete { old: (OldKind::Full, old), .. } = decode(&del).unwrap() else { panic!("not a delete") };
        assert_eq!(old.len(), 2);

        assert_eq!(decode(&encode::truncate(&[1, 16384])).unwrap(), Message::Truncate { rels: vec![1, 16384] });
        assert_eq!(decode(b"Y\0\0\0\x01").unwrap(), Message::Ignored(b'Y'));
    }

    #[test]
    fn decodes_begin_and_commit() {
        let mut b = vec![b'B'];
        b.extend_from_slice(&0x16_B374_D848_u64.to_be_bytes());
        b.extend_from_slice(&5_i64.to_be_bytes());
        b.extend_from_slice(&77_u32.to_be_bytes());
        assert_eq!(decode(&b).unwrap(), Message::Begin { final_lsn: 0x16_B374_D848, commit_time: 5, xid: 77 });
        let mut c = vec![b'C', 0];
        c.extend_from_slice(&10_u64.to_be_bytes());
        c.extend_from_slice(&20_u64.to_be_bytes());
        c.extend_from_slice(&30_i64.to_be_bytes());
        assert_eq!(decode(&c).unwrap(), Message::Commit { commit_lsn: 10, end_lsn: 20, commit_time: 30 });
    }

    #[test]
    fn rejects_truncated_and_unknown_messages() {
        let ins = encode::insert(1, &[V::T("12345")]);
        for cut in 1..ins.len() {
            assert!(decode(&ins[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(b"Z").is_err());
        assert!(decode(b"").is_err());
        let mut bad = encode::insert(1, &[V::T("1")]);
        bad[7] = b'x';
        assert!(decode(&bad).is_err());
    }
}
